/**
 * An in-memory harness around the proxy core: a recording TransportPort,
 * two listeners (UDP and TCP on 192.0.2.1:5060), Main and Standby targets.
 * Used by unit tests that assert the exact bytes the proxy sends.
 */
import type { OverloadGate } from "../../src/edge/overload.js";
import { FlowTokenCodec } from "../../src/edge/flow-token.js";
import { EdgeIdentity } from "../../src/edge/identity.js";
import type { Endpoint, Inbound, Listener, SendError, TransportName, TransportPort } from "../../src/edge/ports.js";
import { Proxy, type ProxyObserver, type TxnPeers } from "../../src/edge/proxy.js";
import { FakeClock } from "../../src/util/clock.js";
import { PriorityRouter, type Router } from "../../src/edge/router.js";
import { SoftState } from "../../src/edge/soft-state.js";
import { literalResolver, makeTarget, type Target } from "../../src/edge/targets.js";
import { Counters } from "../../src/util/counters.js";
import { silentLogger } from "../../src/util/logger.js";

export interface Sent {
  dest: Endpoint;
  data: string;
  flowId: string | undefined;
  onError: ((e: SendError) => void) | undefined;
  /** Asked to leave from this process's own UDP port (a request towards a target). */
  fromPrivatePort: boolean;
}

export class RecordingTransport implements TransportPort {
  readonly sent: Sent[] = [];
  readonly flows = new Set<string>();
  constructor(readonly listeners: Listener[]) {}

  listenerFor(transport: TransportName, family: 4 | 6): Listener | undefined {
    return this.listeners.find((l) => l.transport === transport && l.family === family);
  }

  send(dest: Endpoint, data: Buffer | string, opts?: { flowId?: string; onError?: (e: SendError) => void; fromPrivatePort?: boolean }): boolean {
    if (opts?.flowId !== undefined && !this.flows.has(opts.flowId)) return false;
    this.sent.push({ dest, data: typeof data === "string" ? data : data.toString("latin1"), flowId: opts?.flowId, onError: opts?.onError, fromPrivatePort: opts?.fromPrivatePort === true });
    return true;
  }

  hasFlow(flowId: string): boolean {
    return this.flows.has(flowId);
  }

  take(): Sent {
    const s = this.sent.shift();
    if (s === undefined) throw new Error("nothing was sent");
    return s;
  }
}

export const UDP: Listener = { id: "udp0", transport: "udp", address: "192.0.2.1", port: 5060, advertise: "192.0.2.1", family: 4 };
export const TCP: Listener = { id: "tcp0", transport: "tcp", address: "192.0.2.1", port: 5060, advertise: "192.0.2.1", family: 4 };

export const KEY = Buffer.alloc(32, 7);

export function makeEdge(opts: { targets?: Target[]; router?: Router; domains?: string[]; observer?: ProxyObserver; isDown?: (t: Target) => boolean; overload?: OverloadGate; peers?: TxnPeers } = {}) {
  const clock = new FakeClock();
  const transport = new RecordingTransport([UDP, TCP]);
  const targets = opts.targets ?? [
    makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1, acceptsPath: true }),
    makeTarget({ name: "standby", uri: "sip:10.0.0.2:5080", priority: 2, acceptsPath: true }),
  ];
  const router = opts.router ?? new PriorityRouter(targets);
  const counters = new Counters();
  const flowTokens = new FlowTokenCodec(KEY);
  const softState = new SoftState({ maxEntries: 1000, ttlMs: 60_000 }, clock);
  const proxy = new Proxy({
    transport,
    identity: new EdgeIdentity([UDP, TCP], opts.domains ?? ["edge.example.com"]),
    router: () => router,
    targets: () => targets,
    resolver: literalResolver,
    flowTokens,
    softState,
    counters,
    logger: silentLogger,
    clock,
    ...(opts.observer === undefined ? {} : { observer: opts.observer }),
    ...(opts.isDown === undefined ? {} : { isDown: opts.isDown }),
    ...(opts.overload === undefined ? {} : { overload: opts.overload }),
    ...(opts.peers === undefined ? {} : { peers: opts.peers }),
  });
  const deliver = (text: string, source: Endpoint, listener: Listener = source.transport === "udp" ? UDP : TCP, flowId?: string): void => {
    // As the transport hands them over: a datagram as text, a stream message as bytes.
    const data = source.transport === "udp" ? text : Buffer.from(text, "latin1");
    const inb: Inbound = { data, source, listener, ...(flowId === undefined ? {} : { flowId }) };
    proxy.onMessage(inb);
  };
  return { proxy, transport, counters, flowTokens, softState, targets, deliver, clock };
}

export const PHONE: Endpoint = { transport: "udp", address: "198.51.100.7", port: 5062 };
export const MAIN: Endpoint = { transport: "udp", address: "10.0.0.1", port: 5070 };

/** The Via lines of a message as sent, top first. */
export function viasOf(data: string): string[] {
  return data.split("\r\n").filter((l) => l.startsWith("Via:"));
}

/** The branch of a sent message's top Via (ours, on a forwarded request). */
export function branchOf(data: string): string {
  return /^Via: [^;]+;branch=([^;]+)/.exec(viasOf(data)[0]!)![1]!;
}

/** Joins lines with CRLF and appends the empty line (and body). */
export function sip(lines: string[], body = ""): string {
  return lines.join("\r\n") + "\r\n\r\n" + body;
}
