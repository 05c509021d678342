/**
 * CRLF keepalives carried as a whole datagram or WebSocket message
 * (RFC 5626 §4.4.1 uses CRLFCRLF as the ping and CRLF as the pong; SIP over
 * WebSocket clients send the same bytes as a message).
 */
export const CRLF = Buffer.from("\r\n", "latin1");

export type KeepaliveKind = "none" | "ping" | "pong";

/** "ping" for two or more CRLFs, "pong" for one, "none" when the bytes are anything else. */
export function classifyKeepalive(data: Buffer | string): KeepaliveKind {
  const n = data.length;
  if (n < 2 || n % 2 !== 0) return "none";
  for (let i = 0; i < n; i += 2) {
    if (codeAt(data, i) !== 13 || codeAt(data, i + 1) !== 10) return "none";
  }
  return n === 2 ? "pong" : "ping";
}

/** A datagram comes as text (src/transport/udp.ts), a WebSocket message as bytes. */
function codeAt(data: Buffer | string, i: number): number | undefined {
  return typeof data === "string" ? data.charCodeAt(i) : data[i];
}
