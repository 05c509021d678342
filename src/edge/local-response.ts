import type { HeaderField } from "../sip/message.js";
import { hasTagParam } from "../sip/nameaddr.js";

/** Reason phrases for the responses the edge generates itself. */
export const REASONS: Readonly<Record<number, string>> = {
  100: "Trying",
  200: "OK",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  408: "Request Timeout",
  416: "Unsupported URI Scheme",
  420: "Bad Extension",
  430: "Flow Failed",
  482: "Loop Detected",
  483: "Too Many Hops",
  500: "Server Internal Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "Version Not Supported",
  513: "Message Too Large",
};

/** Headers a response copies from its request (RFC 3261 §8.2.6.2). */
const COPIED = new Set(["via", "from", "to", "call-id", "cseq"]);

export interface LocalResponseSpec {
  status: number;
  reason?: string;
  /** Header lines of the request, as parsed (possibly only partly, for a 400). */
  requestHeaders: readonly HeaderField[];
  /** To tag to add when the To has none and the status is above 100. */
  toTag?: string;
  extraHeaders?: readonly string[];
  server: string;
}

/**
 * Builds a response the edge sends itself (stateless: 400, 403, 416, 420,
 * 430, 482, 483, 503, and 200 to OPTIONS addressed to the edge). Returns
 * undefined when the request lacks what a response needs (a Via): such a
 * request is dropped and counted instead.
 */
export function buildLocalResponse(spec: LocalResponseSpec): string | undefined {
  const reason = spec.reason ?? REASONS[spec.status] ?? "Unknown";
  let out = `SIP/2.0 ${spec.status} ${reason}\r\n`;
  let sawVia = false;
  for (const h of spec.requestHeaders) {
    if (!COPIED.has(h.name)) continue;
    if (h.name === "via") sawVia = true;
    if (h.name === "to" && spec.toTag !== undefined && spec.status > 100 && !hasTagParam(h.raw, h.valueStart, h.raw.length)) {
      out += `${h.raw};tag=${spec.toTag}\r\n`;
      continue;
    }
    out += `${h.raw}\r\n`;
  }
  if (!sawVia) return undefined;
  for (const x of spec.extraHeaders ?? []) out += `${x}\r\n`;
  out += `Server: ${spec.server}\r\nContent-Length: 0\r\n\r\n`;
  return out;
}
