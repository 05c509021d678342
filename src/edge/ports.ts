/**
 * What the proxy core needs from the outside world, as interfaces: the
 * transport layer, name resolution and the routing decision are plugged in by
 * the composition root (src/main.ts), and tests plug in their own.
 */
export type TransportName = "udp" | "tcp" | "tls" | "ws" | "wss";

export interface Endpoint {
  transport: TransportName;
  /** IP literal, no brackets. */
  address: string;
  port: number;
}

export interface Listener {
  id: string;
  transport: TransportName;
  address: string;
  port: number;
  /** Host written into Via, Record-Route and Path for this listener. */
  advertise: string;
  family: 4 | 6;
}

export interface Inbound {
  /** A datagram as text, one character per byte (latin1); a message framed from a stream as bytes. */
  data: string | Buffer;
  source: Endpoint;
  listener: Listener;
  /** The connection a stream message arrived on. */
  flowId?: string;
}

export interface SendError {
  code: string;
  reason: string;
  dest: Endpoint;
}

export interface TransportPort {
  listenerFor(transport: TransportName, family: 4 | 6): Listener | undefined;
  /** `fromPrivatePort`: see SendOptions in src/transport/types.ts. */
  send(dest: Endpoint, data: Buffer | string, opts?: { flowId?: string; servername?: string; onError?: (e: SendError) => void; fromPrivatePort?: boolean }): boolean;
  hasFlow(flowId: string): boolean;
}

export function isStream(t: TransportName): boolean {
  return t !== "udp";
}

export function familyOf(address: string): 4 | 6 {
  return address.indexOf(":") >= 0 ? 6 : 4;
}

/** Via transport token for a transport (RFC 3261 §18, RFC 7118 §5). */
export function viaTransport(t: TransportName): string {
  return t.toUpperCase();
}

/** Transport named by a Via token, or undefined for one we do not speak (SCTP, ...). */
export function transportFromVia(token: string): TransportName | undefined {
  switch (token) {
    case "UDP":
      return "udp";
    case "TCP":
      return "tcp";
    case "TLS":
      return "tls";
    case "WS":
      return "ws";
    case "WSS":
      return "wss";
    default:
      return undefined;
  }
}

export function defaultPort(t: TransportName): number {
  return t === "tls" || t === "wss" ? 5061 : 5060;
}
