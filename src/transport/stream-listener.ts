import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket, type TlsOptions } from "node:tls";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { Clock, TimerHandle } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import type { ConnectionBudget } from "./budget.js";
import { listenerId, normalizeAddress } from "./address.js";
import type { BoundListener, ListenerSpec, TransportName } from "./types.js";

export interface StreamListenerHost {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly budget: ConnectionBudget;
  /** Bound on the TLS handshake and the WebSocket upgrade of an accepted socket. */
  readonly connectTimeoutMs: number;
  readonly maxMessageBytes: number;
  count(reason: string): void;
  /** A TCP connection, or a TLS connection whose handshake is done. */
  adoptSocket(socket: Socket, listener: BoundListener): void;
  /** A WebSocket that agreed on the "sip" subprotocol. */
  adoptWebSocket(ws: WebSocket, address: string, port: number, listener: BoundListener): void;
}

const noop = (): void => {};

/**
 * A TCP, TLS, WS or WSS listener. Every accepted socket passes the
 * connection budget first, on a plain TCP server, so a flood is refused
 * before it costs a TLS handshake or an HTTP parse. TLS and HTTP are then
 * run by a non-listening `tls.Server` / `http.Server` fed the admitted
 * sockets, and the handshake/upgrade is bounded by a timer on the injected
 * clock.
 */
export class StreamListener {
  private readonly server: NetServer;
  private readonly tlsEngine: TlsServer | undefined;
  private readonly httpEngine: HttpServer | undefined;
  private readonly wss: WebSocketServer | undefined;
  /** Accepted sockets, including those still in a handshake or upgrade. */
  private readonly raw = new Set<Socket>();
  /**
   * Handshake/upgrade deadline per accepted socket that is not yet a flow,
   * keyed by remote address and port: the TLS socket of a WSS connection and
   * the TCP socket under it share that key.
   */
  private readonly pending = new Map<string, TimerHandle>();
  bound: BoundListener | undefined;
  private closed = false;

  constructor(
    private readonly host: StreamListenerHost,
    private readonly spec: ListenerSpec & { transport: Exclude<TransportName, "udp"> },
    readonly family: 4 | 6,
    private readonly advertise: string,
    tlsOptions: TlsOptions | undefined,
  ) {
    const transport = spec.transport;
    if ((transport === "tls" || transport === "wss") && tlsOptions === undefined) {
      throw new Error(`${transport} listener ${spec.address}:${spec.port} needs tls settings (cert and key)`);
    }
    this.server = createNetServer({ noDelay: true });
    this.server.on("connection", (socket: Socket) => this.onConnection(socket));

    if (transport === "tls" || transport === "wss") {
      // handshakeTimeout 0: the deadline is ours, on the injected clock.
      this.tlsEngine = createTlsServer({ ...tlsOptions, handshakeTimeout: 0 });
      this.tlsEngine.on("secureConnection", (socket: TLSSocket) => this.onSecure(socket));
      this.tlsEngine.on("tlsClientError", (err: Error, socket: TLSSocket) => {
        host.count("tls-handshake-failed");
        if (host.logger.isLevelEnabled("debug")) host.logger.debug({ err: err.message, remote: socket.remoteAddress }, "tls handshake failed");
      });
    }
    if (transport === "ws" || transport === "wss") {
      this.httpEngine = createHttpServer();
      this.wss = new WebSocketServer({
        noServer: true,
        clientTracking: false,
        perMessageDeflate: false,
        maxPayload: host.maxMessageBytes,
        handleProtocols: (protocols: Set<string>) => (protocols.has("sip") ? "sip" : false),
      });
      this.httpEngine.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
      this.httpEngine.on("request", (_req: IncomingMessage, res: ServerResponse) => {
        // Only WebSocket upgrades are served here (RFC 7118 §4).
        host.count("ws-not-upgrade");
        res.writeHead(426, { Connection: "close", Upgrade: "websocket" });
        res.end();
      });
      this.httpEngine.on("clientError", (_err: Error, socket: Duplex) => {
        host.count("ws-bad-http");
        socket.destroy();
      });
    }
  }

  start(): Promise<BoundListener> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`${this.spec.transport} listener ${this.spec.address}:${this.spec.port}: ${err.message}`));
      this.server.once("error", onError);
      this.server.listen({ port: this.spec.port, host: this.spec.address, ipv6Only: false }, () => {
        this.server.off("error", onError);
        this.server.on("error", (err) => this.host.logger.warn({ err: err.message, listener: this.bound?.id }, "listener error"));
        const addr = this.server.address();
        const port = typeof addr === "object" && addr !== null ? addr.port : this.spec.port;
        this.bound = Object.freeze({
          id: listenerId(this.spec.transport, this.spec.address, port),
          transport: this.spec.transport,
          address: this.spec.address,
          port,
          advertise: this.advertise,
          family: this.family,
        });
        resolve(this.bound);
      });
    });
  }

  /**
   * Stops accepting; connections already accepted carry on (a draining
   * cluster worker). Not awaited: net.Server's close callback waits for
   * every open connection to end.
   */
  stopAccepting(): void {
    if (!this.closed && this.server.listening) this.server.close();
  }

  /** Stops accepting and destroys every socket that has not become a flow yet. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const timer of this.pending.values()) this.host.clock.clearTimer(timer);
    this.pending.clear();
    for (const s of this.raw) s.destroy();
    this.wss?.close();
    return new Promise((resolve) => {
      if (!this.server.listening) {
        resolve();
        return;
      }
      this.server.close(() => resolve());
    });
  }

  private onConnection(socket: Socket): void {
    const remote = socket.remoteAddress;
    if (this.closed || remote === undefined) {
      socket.destroy();
      return;
    }
    const source = normalizeAddress(remote);
    const verdict = this.host.budget.admitInbound(source);
    if (verdict !== "ok") {
      this.host.count(verdict);
      socket.destroy();
      return;
    }
    this.raw.add(socket);
    // Errors are handled by whoever owns the socket next; this one only
    // keeps an early reset from becoming an uncaught 'error' event.
    socket.on("error", noop);
    socket.once("close", () => {
      this.raw.delete(socket);
      this.host.budget.releaseInbound(source);
    });
    const bound = this.bound!;
    switch (bound.transport) {
      case "tcp":
        this.host.adoptSocket(socket, bound);
        return;
      case "tls":
      case "wss":
        this.arm(socket);
        this.tlsEngine!.emit("connection", socket);
        return;
      case "ws":
        this.arm(socket);
        this.httpEngine!.emit("connection", socket);
        return;
      case "udp":
        return;
    }
  }

  private onSecure(socket: TLSSocket): void {
    const bound = this.bound!;
    if (bound.transport === "tls") {
      this.disarm(socket);
      this.host.adoptSocket(socket, bound);
      return;
    }
    // WSS: the HTTP upgrade runs inside TLS and its deadline keeps running.
    this.httpEngine!.emit("connection", socket);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // RFC 7118 §4.1: the client must offer the "sip" subprotocol.
    const offered = req.headers["sec-websocket-protocol"];
    const ok = typeof offered === "string" && offered.split(",").some((p) => p.trim() === "sip");
    if (!ok) {
      this.host.count("ws-no-sip-subprotocol");
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      socket.destroy();
      return;
    }
    const address = req.socket.remoteAddress;
    const port = req.socket.remotePort;
    if (address === undefined || port === undefined) {
      socket.destroy();
      return;
    }
    this.wss!.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      this.disarm(req.socket);
      this.host.adoptWebSocket(ws, normalizeAddress(address), port, this.bound!);
    });
  }

  /** Starts the handshake/upgrade deadline of an accepted socket. */
  private arm(socket: Socket): void {
    const key = remoteKey(socket);
    const timer = this.host.clock.setTimer(this.host.connectTimeoutMs, () => {
      this.pending.delete(key);
      this.host.count("handshake-timeout");
      socket.destroy();
    });
    this.pending.set(key, timer);
    socket.once("close", () => this.disarm(socket));
  }

  private disarm(socket: Socket): void {
    const key = remoteKey(socket);
    const timer = this.pending.get(key);
    if (timer === undefined) return;
    this.host.clock.clearTimer(timer);
    this.pending.delete(key);
  }
}

function remoteKey(socket: Socket): string {
  return `${socket.remoteAddress ?? ""} ${socket.remotePort ?? ""}`;
}
