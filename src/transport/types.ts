/**
 * Values the transport layer exchanges with the rest of the edge. The layer
 * moves whole SIP messages as bytes and reports connection events; it makes
 * no SIP decisions.
 */
export type TransportName = "udp" | "tcp" | "tls" | "ws" | "wss";

export const TRANSPORTS: readonly TransportName[] = Object.freeze(["udp", "tcp", "tls", "ws", "wss"]);

export interface Endpoint {
  transport: TransportName;
  /** IP literal, no brackets. */
  address: string;
  port: number;
}

export interface ListenerSpec {
  transport: TransportName;
  /** IP literal to bind ("0.0.0.0" and "::" bind every interface). */
  address: string;
  /** 0 picks a free port; `start()` reports the real one. */
  port: number;
  /** Host written into Via, Record-Route and Path for this listener. */
  advertise?: string;
}

export interface BoundListener {
  id: string;
  transport: TransportName;
  address: string;
  port: number;
  advertise: string;
  family: 4 | 6;
}

export interface InboundMessage {
  /** A datagram as text, one character per byte (latin1); a message framed from a stream as bytes. */
  data: string | Buffer;
  source: Endpoint;
  /** The listener the message arrived on (for an outbound connection: the one its traffic belongs to). */
  listener: BoundListener;
  /** Stream transports: the connection the message arrived on. */
  flowId?: string;
}

export const TRANSPORT_ERROR_CODES = Object.freeze([
  "connect-timeout",
  "connect-refused",
  "connect-failed",
  "flow-gone",
  "write-failed",
  "limit",
  "tls",
  "ws-protocol",
  "no-listener",
  "stopped",
] as const);

export type TransportErrorCode = (typeof TRANSPORT_ERROR_CODES)[number];

export interface TransportError {
  code: TransportErrorCode;
  reason: string;
  dest: Endpoint;
}

export interface SendOptions {
  /** Write on this exact connection; `send` returns false when it is gone. */
  flowId?: string;
  /** TLS SNI and certificate name for a new TLS/WSS connection (RFC 5922). */
  servername?: string;
  /** Failures after `send` returned are reported here, never thrown. */
  onError?: (e: TransportError) => void;
  /**
   * UDP: leave from this process's private socket of the listener, when it
   * has one (`udpPrivateSockets`), so the answer comes back to this process.
   * For requests towards targets; never for a phone (its NAT binding is on
   * the shared port) nor for responses.
   */
  fromPrivatePort?: boolean;
}

/**
 * The flows of the other processes of a cluster, as the transport layer
 * sees them (the cluster worker implements it over IPC; the layer imports
 * nothing of the cluster). A stream connection lives in the worker that
 * accepted it; a request for it read by another worker is handed to the
 * owner named in the flow id (src/transport/flow-id.ts).
 */
export interface RemoteFlows {
  /**
   * Hands `data` to process `owner`, which writes it on its flow `flowId`.
   * A failure there (the flow is gone, the write failed, the owner itself
   * is gone) comes back through `onFailure`, at most once and never before
   * `send` has returned. Success is not reported.
   */
  send(owner: string, flowId: string, dest: Endpoint, data: Buffer | string, onFailure: (code: TransportErrorCode, reason: string) => void): void;
}

export interface TransportLimits {
  /** Largest SIP message accepted on any transport, in bytes. */
  maxMessageBytes: number;
  /** Most bytes a stream connection may hold for an incomplete message. */
  maxStreamBufferBytes: number;
  /** Connections open at once, inbound and outbound together. */
  maxConnections: number;
  /** Inbound connections open at once from one source address. */
  maxConnectionsPerSource: number;
  connectTimeoutMs: number;
  /** A connection with no traffic either way for this long is closed. */
  idleTimeoutMs: number;
  /** Bytes queued for writing on one connection before further sends fail with "limit". */
  maxWriteQueueBytes?: number;
}

export interface TlsSettings {
  /** PEM text. */
  cert: string;
  /** PEM text. */
  key: string;
  /** PEM text of the CAs trusted for peers; the system store when absent. */
  ca?: string;
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /** Verify the server certificate of outbound TLS/WSS connections (default true). */
  verifyPeer?: boolean;
  /** Ask inbound TLS/WSS clients for a certificate and reject those without a valid one (default false). */
  requireClientCert?: boolean;
}

export interface TransportStats {
  /** Sockets open or opening, inbound and outbound. */
  connections: number;
  /** Established connections (flows) per transport. */
  perTransport: Record<string, number>;
  /** Messages or connections dropped, by reason. */
  dropped: Record<string, number>;
  /** CRLF keepalives received (UDP datagrams of CRLFs, stream and WebSocket pings). */
  keepalives: number;
  /** Messages for another cluster worker's flow, handed to that worker (`remoteFlows`). */
  handedOver: number;
}
