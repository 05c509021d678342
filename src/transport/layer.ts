import { isIP, type Socket } from "node:net";
import type { WebSocket } from "ws";
import type { FramerLimits } from "../sip/framer.js";
import type { Clock, TimerHandle } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import { bytesOf } from "./bytes.js";
import { defaultAdvertise, endpointKey, familyOf, isValidDestination, isWildcard, mappedAddress, normalizeAddress } from "./address.js";
import { ConnectionBudget } from "./budget.js";
import { openStream, openWebSocket } from "./connect.js";
import type { ErrorCallback, Flow, FlowHost } from "./flow.js";
import { FlowIds, ownerOf } from "./flow-id.js";
import { classifyKeepalive } from "./keepalive.js";
import { SocketFlow } from "./socket-flow.js";
import { StreamListener, type StreamListenerHost } from "./stream-listener.js";
import { clientTlsOptions, serverTlsOptions } from "./tls-options.js";
import {
  TRANSPORTS,
  type BoundListener,
  type Endpoint,
  type InboundMessage,
  type ListenerSpec,
  type RemoteFlows,
  type SendOptions,
  type TlsSettings,
  type TransportError,
  type TransportErrorCode,
  type TransportLimits,
  type TransportName,
  type TransportStats,
} from "./types.js";
import { UdpListener, type UdpHost, type UdpIo } from "./udp.js";
import { WsFlow } from "./ws-flow.js";

export interface TransportLayerOptions {
  listeners: ListenerSpec[];
  /** Certificate and key (PEM text) for TLS/WSS listeners and outbound TLS/WSS. */
  tls?: TlsSettings;
  limits: TransportLimits;
  clock: Clock;
  logger: Logger;
  /** SO_RCVBUF/SO_SNDBUF for UDP sockets; the OS default when absent. */
  udpSocketBufferBytes?: number;
  /**
   * Give each UDP listener a second socket of this process's own (same
   * address, a free port, not shared through node:cluster), which sends
   * marked with `SendOptions.fromPrivatePort` leave from, so their answers
   * (RFC 3581 rport) come back to this process (src/transport/udp.ts). A
   * cluster worker turns it on; one process has no use for it.
   */
  udpPrivateSockets?: boolean;
  /** How the UDP listeners do their I/O (src/transport/udp.ts, UdpIo); dgram when absent. */
  udpIo?: UdpIo;
  /**
   * Measure each UDP socket's queue delay with a probe every `intervalMs`
   * (src/transport/queue-delay.ts); no probe back for `staleAfterMs` means
   * the socket is dropping. Off when absent: `queueDelayMs()` is then 0.
   */
  queueProbe?: { intervalMs: number; staleAfterMs: number };
  /**
   * This process's tag in its flow ids (a cluster worker's id), so that a
   * request for one of its flows read by another worker names the worker
   * that holds the connection (src/transport/flow-id.ts). Absent in a
   * single process: its ids are untagged, as they always were.
   */
  flowOwner?: string;
  /**
   * Where `send` hands a message for a flow whose id carries another
   * owner's tag (the cluster worker's IPC relay). Without it such a flow
   * is unknown here, and `send` returns false.
   */
  remoteFlows?: RemoteFlows;
}

const DEFAULT_WRITE_QUEUE_BYTES = 1024 * 1024;

/**
 * Every socket of the edge: UDP, TCP, TLS, WS and WSS listeners, outbound
 * connections reused per destination, connection limits and timers. It
 * moves whole SIP messages in and out and reports connection events; SIP
 * decisions belong to the caller (DESIGN.md §5.1).
 */
export class TransportLayer implements FlowHost, UdpHost, StreamListenerHost {
  /** Receives every inbound SIP message; set by the composition root. */
  onMessage: (m: InboundMessage) => void;
  /** Called once for every connection that closes, with why. */
  onFlowClosed: ((flowId: string, reason: string) => void) | undefined;
  /** Called after each round of queue-delay probes (`queueProbe`). */
  onQueueProbe: (() => void) | undefined;

  readonly clock: Clock;
  readonly logger: Logger;
  readonly budget: ConnectionBudget;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxWriteQueueBytes: number;
  readonly maxMessageBytes: number;

  private readonly specs: readonly ListenerSpec[];
  private readonly tls: TlsSettings | undefined;
  private readonly framerLimits: FramerLimits;
  private readonly udpBufferBytes: number | undefined;
  private readonly udpPrivateSockets: boolean;
  private readonly udpIo: UdpIo;
  private readonly udpListeners: UdpListener[] = [];
  private readonly streamListeners: StreamListener[] = [];
  private boundListeners: readonly BoundListener[] = [];
  /** transport + family -> the listener outbound traffic of that kind leaves from. */
  private readonly outboundListener = new Map<string, BoundListener>();
  private udp4: UdpListener | undefined;
  private udp6: UdpListener | undefined;
  private readonly flows = new Map<string, Flow>();
  /** Destination key -> open flows to it, newest last (inbound flows count for their source). */
  private readonly byDest = new Map<string, Flow[]>();
  private readonly drops = new Map<string, number>();
  private keepaliveCount = 0;
  /** Messages handed to another worker for its flow. */
  private handedOver = 0;
  private state: "new" | "running" | "stopped" = "new";
  private readonly flowIds: FlowIds;
  private readonly remoteFlows: RemoteFlows | undefined;
  private readonly queueProbe: { intervalMs: number; staleAfterMs: number } | undefined;
  private probeTimer: TimerHandle | undefined;
  private readonly udpSent = (err: Error | null): void => {
    if (err) this.count("udp-send-failed");
  };

  constructor(opts: TransportLayerOptions) {
    const l = opts.limits;
    for (const [name, v] of Object.entries(l)) {
      if (v !== undefined && !(typeof v === "number" && v > 0)) throw new Error(`transport limit ${name} must be a positive number`);
    }
    for (const s of opts.listeners) {
      if (!TRANSPORTS.includes(s.transport)) throw new Error(`unknown transport ${String(s.transport)}`);
      if (isIP(s.address) === 0) throw new Error(`listener address ${s.address} is not an IP literal`);
      if (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535) throw new Error(`listener port ${s.port} is out of range`);
      if ((s.transport === "tls" || s.transport === "wss") && opts.tls === undefined) {
        throw new Error(`${s.transport} listener ${s.address}:${s.port} needs tls settings (cert and key)`);
      }
    }
    this.specs = opts.listeners;
    this.tls = opts.tls;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.connectTimeoutMs = l.connectTimeoutMs;
    this.idleTimeoutMs = l.idleTimeoutMs;
    this.maxMessageBytes = l.maxMessageBytes;
    this.maxWriteQueueBytes = l.maxWriteQueueBytes ?? DEFAULT_WRITE_QUEUE_BYTES;
    this.framerLimits = { maxMessageBytes: l.maxMessageBytes, maxBufferBytes: l.maxStreamBufferBytes };
    this.budget = new ConnectionBudget(l.maxConnections, l.maxConnectionsPerSource);
    this.udpBufferBytes = opts.udpSocketBufferBytes;
    this.udpPrivateSockets = opts.udpPrivateSockets === true;
    this.udpIo = opts.udpIo ?? { kind: "dgram" };
    this.queueProbe = opts.queueProbe;
    this.flowIds = new FlowIds(opts.flowOwner);
    this.remoteFlows = opts.remoteFlows;
    this.onMessage = () => this.count("no-handler");
    this.onFlowClosed = undefined;
    this.onQueueProbe = undefined;
  }

  /** Binds every listener (port 0 picks a free one) and reports what was bound, in config order. */
  async start(): Promise<BoundListener[]> {
    if (this.state !== "new") throw new Error("transport layer already started");
    this.state = "running";
    const serverTls = this.tls === undefined ? undefined : serverTlsOptions(this.tls);
    const starts: Array<Promise<BoundListener>> = [];
    try {
      for (const spec of this.specs) {
        const family = familyOf(spec.address);
        const advertise = spec.advertise ?? defaultAdvertise(spec.address, family);
        if (spec.transport === "udp") {
          const u = new UdpListener(this, spec, family, advertise, this.udpBufferBytes, this.udpPrivateSockets, this.udpIo);
          this.udpListeners.push(u);
          starts.push(u.start());
        } else {
          const s = new StreamListener(this, { ...spec, transport: spec.transport }, family, advertise, serverTls);
          this.streamListeners.push(s);
          starts.push(s.start());
        }
      }
      const bound = await Promise.all(starts);
      this.boundListeners = Object.freeze(bound);
    } catch (err) {
      await Promise.allSettled(starts);
      await this.stop();
      throw err;
    }
    for (const b of this.boundListeners) {
      const key = b.transport + b.family;
      if (!this.outboundListener.has(key)) this.outboundListener.set(key, b);
    }
    // A dual-stack "::" listener also serves IPv4 when no IPv4 one exists.
    for (const b of this.boundListeners) {
      const key = `${b.transport}4`;
      if (b.family === 6 && b.address === "::" && !this.outboundListener.has(key)) this.outboundListener.set(key, b);
    }
    // The sockets UDP leaves from are those of the listeners named in Via.
    this.udp4 = this.udpListeners.find((u) => u.bound === this.outboundListener.get("udp4"));
    this.udp6 = this.udpListeners.find((u) => u.bound === this.outboundListener.get("udp6"));
    if (this.queueProbe !== undefined && this.udpListeners.length > 0) this.probeQueues();
    return [...this.boundListeners];
  }

  /** Closes every listener and connection and clears every timer. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    if (this.probeTimer !== undefined) this.clock.clearTimer(this.probeTimer);
    this.probeTimer = undefined;
    for (const flow of [...this.flows.values()]) flow.fail("stopped", "transport layer stopped");
    await Promise.all([...this.udpListeners.map((u) => u.close()), ...this.streamListeners.map((s) => s.close())]);
  }

  /**
   * Stops accepting stream connections; open connections and UDP keep
   * working. A draining cluster worker calls it so new connections go to
   * the other workers while its own still finish what they carry. A UDP
   * socket in an SO_REUSEPORT group (the native socket in a worker) also
   * stops getting new datagrams on the shared port, which then go to the
   * other workers; what is queued is still read, and the private port
   * still gets the answers to this worker's requests.
   */
  stopAccepting(): void {
    for (const s of this.streamListeners) s.stopAccepting();
    for (const u of this.udpListeners) u.stopAccepting();
  }

  get listeners(): readonly BoundListener[] {
    return this.boundListeners;
  }

  /**
   * The ports of the UDP listeners' private sockets (`udpPrivateSockets`),
   * by listener id; empty without them.
   */
  privateUdpPorts(): Record<string, number> {
    const ports: Record<string, number> = {};
    for (const u of this.udpListeners) if (u.bound !== undefined && u.privatePort !== undefined) ports[u.bound.id] = u.privatePort;
    return ports;
  }

  /** Which I/O each UDP listener's sockets use ("native" or "dgram"), by listener id. */
  udpIoByListener(): Record<string, "native" | "dgram"> {
    const io: Record<string, "native" | "dgram"> = {};
    for (const u of this.udpListeners) if (u.bound !== undefined) io[u.bound.id] = u.io;
    return io;
  }

  /** The listener outbound traffic of a transport and family leaves from (for Via, Record-Route, Path). */
  listenerFor(transport: TransportName, family: 4 | 6): BoundListener | undefined {
    return this.outboundListener.get(transport + family);
  }

  /**
   * Sends one SIP message. With `flowId` it goes on that connection or, if
   * the connection is gone, `send` returns false at once (the proxy answers
   * 430, RFC 5626 §5.3). A flow of another cluster worker (its tag in the
   * id) is handed to that worker through `remoteFlows`; its failure comes
   * back through `onError`, like any failure after `send` returned.
   * Otherwise UDP leaves from the UDP listener of the destination's family
   * (from its private socket with `fromPrivatePort`, when it has one), and
   * stream transports reuse the open connection to the destination or
   * open one. Every other failure goes to `onError`,
   * after `send` has returned.
   */
  send(dest: Endpoint, data: Buffer | string, opts?: SendOptions): boolean {
    const onError = opts?.onError;
    const flowId = opts?.flowId;
    if (flowId !== undefined) {
      const flow = this.flows.get(flowId);
      if (flow === undefined || flow.state === "closed") return this.handOver(dest, flowId, data, onError);
      flow.send(bytesOf(data), onError);
      return true;
    }
    if (this.state !== "running") {
      this.reportLater(onError, "stopped", "transport layer is not running", dest);
      return true;
    }
    if (!isValidDestination(dest)) {
      this.count("bad-destination");
      this.reportLater(onError, "write-failed", `cannot send to ${dest.address}:${dest.port}`, dest);
      return true;
    }
    if (dest.transport === "udp") {
      this.sendUdp(dest, data, onError, opts?.fromPrivatePort === true);
      return true;
    }
    const key = endpointKey(dest.transport, dest.address, dest.port);
    const flow = this.reusable(key) ?? this.connect(dest, key, opts?.servername, onError);
    flow?.send(bytesOf(data), onError);
    return true;
  }

  private readonly probeQueues = (): void => {
    if (this.state !== "running") return;
    const q = this.queueProbe!;
    for (const u of this.udpListeners) u.probe(q.staleAfterMs);
    this.probeTimer = this.clock.setTimer(q.intervalMs, this.probeQueues);
    this.onQueueProbe?.();
  };

  /**
   * How long the datagram read now has waited in the longest UDP receive
   * queue of this process, in ms (src/transport/queue-delay.ts); 0 without
   * `queueProbe`.
   */
  queueDelayMs(): number {
    if (this.probeTimer === undefined) return 0;
    const now = this.clock.now();
    let max = 0;
    for (const u of this.udpListeners) {
      const d = u.queueDelayMs(now);
      if (d > max) max = d;
    }
    return max;
  }

  hasFlow(flowId: string): boolean {
    const flow = this.flows.get(flowId);
    return flow !== undefined && flow.state !== "closed";
  }

  /** Closes one connection (ops action, ban); false when it is already gone. */
  closeFlow(flowId: string, reason: string): boolean {
    const flow = this.flows.get(flowId);
    if (flow === undefined) return false;
    flow.close(reason);
    return true;
  }

  stats(): TransportStats {
    const perTransport: Record<string, number> = {};
    for (const t of TRANSPORTS) if (t !== "udp") perTransport[t] = 0;
    for (const f of this.flows.values()) {
      if (f.state === "open") perTransport[f.transport] = (perTransport[f.transport] ?? 0) + 1;
    }
    const dropped = Object.fromEntries([...this.drops.entries()].sort(([a], [b]) => a.localeCompare(b)));
    return { connections: this.budget.total, perTransport, dropped, keepalives: this.keepaliveCount, handedOver: this.handedOver };
  }

  // ---- hosts for listeners and flows ---------------------------------------------

  count(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  keepalive(): void {
    this.keepaliveCount++;
  }

  report(onError: ErrorCallback | undefined, e: TransportError): void {
    if (onError === undefined) return;
    try {
      onError(e);
    } catch (err) {
      this.count("error-callback-threw");
      this.logger.error({ err }, "transport error callback threw");
    }
  }

  onDatagram(listener: UdpListener, data: string, address: string, port: number): void {
    if (data.length > this.maxMessageBytes) {
      this.count("udp-oversize");
      return;
    }
    if (data.length === 0) {
      this.count("udp-empty");
      return;
    }
    // CRLF keepalives over UDP carry no message (RFC 5626 §3.5.1 peers use them to keep NAT bindings).
    if (data.charCodeAt(0) === 13 && classifyKeepalive(data) !== "none") {
      this.keepaliveCount++;
      return;
    }
    this.emit({ data, source: { transport: "udp", address, port }, listener: listener.bound! });
  }

  deliver(flow: Flow, data: Buffer): void {
    this.emit({ data, source: flow.remote, listener: flow.listener, flowId: flow.id });
  }

  adoptSocket(socket: Socket, listener: BoundListener): void {
    const address = socket.remoteAddress;
    const port = socket.remotePort;
    if (address === undefined || port === undefined) {
      socket.destroy();
      return;
    }
    const remote: Endpoint = Object.freeze({ transport: listener.transport, address: normalizeAddress(address), port });
    const flow = new SocketFlow(this, this.flowIds.next(), socket, remote, listener, false, undefined, this.framerLimits);
    this.register(flow, endpointKey(remote.transport, remote.address, remote.port));
  }

  adoptWebSocket(ws: WebSocket, address: string, port: number, listener: BoundListener): void {
    const remote: Endpoint = Object.freeze({ transport: listener.transport, address, port });
    const flow = new WsFlow(this, this.flowIds.next(), ws, remote, listener, false);
    this.register(flow, endpointKey(remote.transport, address, port));
  }

  flowOpened(flow: Flow): void {
    if (this.logger.isLevelEnabled("debug")) this.logger.debug({ flowId: flow.id, remote: flow.remote }, "connection open");
  }

  flowClosed(flow: Flow, reason: string): void {
    this.flows.delete(flow.id);
    const key = endpointKey(flow.remote.transport, flow.remote.address, flow.remote.port);
    const list = this.byDest.get(key);
    if (list !== undefined) {
      const i = list.indexOf(flow);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byDest.delete(key);
    }
    // Inbound sockets give their budget back when the accepted socket closes.
    if (flow.outbound) this.budget.releaseOutbound();
    if (this.logger.isLevelEnabled("debug")) this.logger.debug({ flowId: flow.id, remote: flow.remote, reason }, "connection closed");
    const hook = this.onFlowClosed;
    if (hook !== undefined) {
      try {
        hook(flow.id, reason);
      } catch (err) {
        this.count("flow-closed-hook-threw");
        this.logger.error({ err }, "onFlowClosed threw");
      }
    }
  }

  // ---- internals ---------------------------------------------------------------------

  private emit(m: InboundMessage): void {
    try {
      this.onMessage(m);
    } catch (err) {
      // A bug in a handler must not take the socket's event loop down with it.
      this.count("handler-threw");
      this.logger.error({ err, source: m.source }, "message handler threw");
    }
  }

  private sendUdp(dest: Endpoint, data: Buffer | string, onError: ErrorCallback | undefined, fromPrivatePort: boolean): void {
    let address = dest.address;
    let udp: UdpListener | undefined;
    if (familyOf(address) === 6) {
      udp = this.udp6;
    } else {
      udp = this.udp4;
      if (udp !== undefined && udp.family === 6) address = mappedAddress(address);
    }
    if (udp === undefined) {
      this.count("udp-no-listener");
      this.reportLater(onError, "no-listener", `no UDP listener for ${dest.address}`, dest);
      return;
    }
    const done = onError === undefined ? this.udpSent : (err: Error | null): void => {
      if (err) {
        this.count("udp-send-failed");
        this.report(onError, { code: "write-failed", reason: err.message, dest });
      }
    };
    udp.send(data, dest.port, address, fromPrivatePort, done);
  }

  private reusable(key: string): Flow | undefined {
    const list = this.byDest.get(key);
    return list === undefined ? undefined : list[list.length - 1];
  }

  private connect(dest: Endpoint, key: string, servername: string | undefined, onError: ErrorCallback | undefined): Flow | undefined {
    if (!this.budget.admitOutbound()) {
      this.count("max-connections");
      this.reportLater(onError, "limit", "connection limit reached", dest);
      return undefined;
    }
    const family = familyOf(dest.address);
    const out = this.listenerFor(dest.transport, family);
    // Leave from the listener's address on a multi-homed host, so the peer
    // sees the address our Via and Record-Route name.
    const localAddress = out !== undefined && out.family === family && !isWildcard(out.address) ? out.address : undefined;
    const listener = out ?? this.unlistenedListener(dest.transport, family);
    const remote: Endpoint = Object.freeze({ transport: dest.transport, address: dest.address, port: dest.port });
    const secure = dest.transport === "tls" || dest.transport === "wss";
    const tls = secure ? clientTlsOptions(this.tls, servername) : undefined;
    let flow: Flow;
    try {
      if (dest.transport === "tcp" || dest.transport === "tls") {
        const socket = openStream(remote, tls, localAddress);
        flow = new SocketFlow(this, this.flowIds.next(), socket, remote, listener, true, secure ? "secureConnect" : "connect", this.framerLimits);
      } else {
        const ws = openWebSocket(remote, tls, localAddress, this.maxMessageBytes);
        flow = new WsFlow(this, this.flowIds.next(), ws, remote, listener, true);
      }
    } catch (err) {
      this.budget.releaseOutbound();
      this.count("connect-failed");
      this.reportLater(onError, "connect-failed", err instanceof Error ? err.message : String(err), dest);
      return undefined;
    }
    this.register(flow, key);
    return flow;
  }

  /** Stands in for a listener when traffic leaves on a transport the edge does not listen on. */
  private unlistenedListener(transport: TransportName, family: 4 | 6): BoundListener {
    const address = family === 4 ? "0.0.0.0" : "::";
    return Object.freeze({ id: `${transport}:outbound`, transport, address, port: 0, advertise: defaultAdvertise(address, family), family });
  }

  private register(flow: Flow, key: string): void {
    if (flow.state === "closed") return;
    this.flows.set(flow.id, flow);
    const list = this.byDest.get(key);
    if (list === undefined) this.byDest.set(key, [flow]);
    else list.push(flow);
  }

  /**
   * A flow not held here: another worker's is handed to it (true), one of
   * ours that closed, or one with no owner we can reach, is gone (false).
   */
  private handOver(dest: Endpoint, flowId: string, data: Buffer | string, onError: ErrorCallback | undefined): boolean {
    const remote = this.remoteFlows;
    if (remote === undefined || this.state !== "running") return false;
    const owner = ownerOf(flowId);
    if (owner === undefined || owner === this.flowIds.owner) return false;
    this.handedOver++;
    remote.send(owner, flowId, dest, data, (code, reason) => {
      this.count("handover-failed");
      this.report(onError, { code, reason, dest });
    });
    return true;
  }

  private reportLater(onError: ErrorCallback | undefined, code: TransportErrorCode, reason: string, dest: Endpoint): void {
    if (onError === undefined) return;
    const e: TransportError = { code, reason, dest };
    queueMicrotask(() => this.report(onError, e));
  }
}

