import type { Logger } from "pino";
import { HealthMonitor } from "../health/monitor.js";
import { resolveHealthOptions, type HealthOptions } from "../health/options.js";
import { Prober, type ProbeTarget } from "../health/prober.js";
import { TargetHealth, type ProbeReport, type TargetHealthSnapshot } from "../health/target-health.js";
import type { DeviceTable } from "../policy/device-table.js";
import { FailoverPolicy, type PolicyStatus } from "../policy/failover.js";
import type { FailoverOptions as PolicyOptions } from "../policy/options.js";
import type { ParseLimits } from "../sip/parse.js";
import { TransportLayer } from "../transport/layer.js";
import type { BoundListener, ListenerSpec, RemoteFlows, TlsSettings, TransportLimits } from "../transport/types.js";
import type { UdpIo } from "../transport/udp.js";
import type { Clock } from "../util/clock.js";
import { Counters } from "../util/counters.js";
import { FlowTokenCodec } from "./flow-token.js";
import { EdgeIdentity } from "./identity.js";
import { OverloadGate, type OverloadOptions, type OverloadStatus } from "./overload.js";
import { PolicyRouter, type DualOutcome } from "./policy-router.js";
import { Proxy, type FailoverOptions, type ProxyObserver, type TxnPeers } from "./proxy.js";
import { PriorityRouter, type Router } from "./router.js";
import { SoftState } from "./soft-state.js";
import { literalResolver, makeTarget, type Target, type TargetResolver, type TargetSpec } from "./targets.js";

/** Everything an edge instance needs, already validated (src/config maps the YAML onto this). */
export interface EdgeOptions {
  listeners: ListenerSpec[];
  domains: string[];
  targets: TargetSpec[];
  tls?: TlsSettings;
  transportLimits: TransportLimits;
  /** SO_RCVBUF/SO_SNDBUF of the UDP sockets (bounded by net.core.rmem_max/wmem_max). */
  udpSocketBufferBytes?: number;
  /**
   * A cluster worker's own UDP port per UDP listener, which requests towards
   * targets leave from so their answers come back to it (src/transport/udp.ts).
   */
  udpPrivateSockets?: boolean;
  /** How the UDP sockets do their I/O (src/transport/udp.ts); dgram when absent. */
  udpIo?: UdpIo;
  /**
   * A cluster worker: its tag in its flow ids, and where requests for
   * another worker's flows are handed (TransportLayerOptions).
   */
  flowOwner?: string;
  remoteFlows?: RemoteFlows;
  /** A cluster worker: the other workers, asked before a request timeout fails over (ProxyDeps.peers). */
  txnPeers?: TxnPeers;
  /** The event counters, when the caller counts into them too (a cluster worker's hand-overs); a new set otherwise. */
  counters?: Counters;
  parseLimits: ParseLimits;
  softState: { maxEntries: number; ttlMs: number };
  flowKey: Buffer;
  failover: FailoverOptions;
  clock: Clock;
  logger: Logger;
  /** Builds the router from the targets; defaults to the failover policy (two targets or more) or priority order. */
  makeRouter?: (targets: readonly Target[]) => Router;
  /**
   * Wraps the router (the rules engine in front of the failover policy):
   * gets the router built above, the targets and the health view.
   */
  wrapRouter?: (inner: Router, targets: readonly Target[], usable: (t: Target) => boolean) => Router;
  /**
   * Every outcome of an attempt towards a target, unfiltered (the carrier
   * breakers count each call; health gets its own filtered view).
   */
  onTargetOutcome?: ProxyObserver["targetOutcome"];
  /**
   * Targets whose refused calls a carrier breaker judges (DESIGN.md §2.5):
   * their failure responses (503, ...) are not passive health signals, or
   * health would take a carrier that answers probes but refuses calls down
   * after a few calls and back up after a few probes, flapping under the
   * breaker's cool-down. Timeouts and transport errors still count.
   */
  breakerJudges?: (t: Target) => boolean;
  resolver?: TargetResolver;
  /** OPTIONS probing and the health state machine (DESIGN.md §2.2); off when absent. */
  health?: {
    options: Partial<HealthOptions>;
    /** Local address the probe sockets bind to. */
    sourceAddress?: string;
    closeStreamAfterTimeouts: number;
    /**
     * With several workers only one probes ("active") and hands each result
     * to `onProbeResult`; the others ("follower") get them through
     * `applyProbeResult`, so a PBX is probed once, not once per worker.
     */
    mode?: "active" | "follower";
    onProbeResult?: (target: string, result: ProbeReport) => void;
    /**
     * Probe results to apply before the edge takes traffic, oldest first: a
     * fresh cluster worker gets the recent results of the worker that
     * probes, so it does not start with a dead Main presumed usable.
     */
    seed?: ReadonlyArray<{ target: string; result: ProbeReport }>;
  };
  /**
   * Shed new requests and distrust request timeouts while the UDP queues
   * wait longer than the thresholds (src/edge/overload.ts); off when absent.
   */
  overload?: OverloadOptions;
  /** The Main/Standby failover policy (DESIGN.md §2.3); needs `health` and two targets. */
  policy?: { options: Partial<PolicyOptions>; table: DeviceTable };
}

/** The state ops read: what the admin API and the status page will show. */
export interface EdgeStatus {
  startedAt: number;
  listeners: readonly BoundListener[];
  targets: readonly Target[];
  health: Record<string, TargetHealthSnapshot>;
  policy: PolicyStatus | undefined;
  dual: Record<string, DualOutcome>;
  counters: Record<string, number>;
  transport: ReturnType<TransportLayer["stats"]>;
  /** Which share of new requests the edge sheds, and how long datagrams wait (ms); undefined when overload control is off. */
  overload: OverloadStatus | undefined;
}

/**
 * One running edge: transports, proxy core and the state ops read. The
 * admin API and the metrics exporter are built on `status()`, `counters`
 * and the action methods; nothing here knows about HTTP.
 */
export class Edge {
  private router: Router;
  private targetList: readonly Target[];
  private readonly startedAt: number;

  private constructor(
    o: EdgeOptions,
    readonly transport: TransportLayer,
    readonly listeners: readonly BoundListener[],
    readonly proxy: Proxy,
    readonly counters: Counters,
    targets: readonly Target[],
    router: Router,
    /** Health per target name; empty when probing is off. */
    readonly health: ReadonlyMap<string, TargetHealth>,
    /** The Main/Standby policy, with its ops actions (force failover, failback, pin, drain). */
    readonly policy: FailoverPolicy | undefined,
    /** Builds the prober and its scheduler; undefined when probing is off. */
    private readonly makeProbing: (() => { prober: Prober; monitor: HealthMonitor }) | undefined,
    /** Builds a router over a target list (kept for reloads). */
    private readonly makeRouter: (targets: readonly Target[]) => Router,
    /** Outcomes of `dual` REGISTER copies per device class (from the policy router in use). */
    private readonly dualStatus: () => Record<string, DualOutcome>,
    /** Overload control (src/edge/overload.ts); undefined when off. */
    readonly overload: OverloadGate | undefined,
  ) {
    this.targetList = targets;
    this.router = router;
    this.startedAt = o.clock.wallNow();
  }

  private probing: { prober: Prober; monitor: HealthMonitor } | undefined;

  static async start(o: EdgeOptions): Promise<Edge> {
    const targets = o.targets.map(makeTarget);
    const log = o.logger;
    const transport = new TransportLayer({
      listeners: o.listeners,
      ...(o.tls === undefined ? {} : { tls: o.tls }),
      limits: o.transportLimits,
      ...(o.udpSocketBufferBytes === undefined ? {} : { udpSocketBufferBytes: o.udpSocketBufferBytes }),
      ...(o.udpPrivateSockets === true ? { udpPrivateSockets: true } : {}),
      ...(o.udpIo === undefined ? {} : { udpIo: o.udpIo }),
      // A probe not back after ten intervals was dropped in a full queue.
      ...(o.overload === undefined ? {} : { queueProbe: { intervalMs: o.overload.probeIntervalMs, staleAfterMs: 10 * o.overload.probeIntervalMs } }),
      ...(o.flowOwner === undefined ? {} : { flowOwner: o.flowOwner }),
      ...(o.remoteFlows === undefined ? {} : { remoteFlows: o.remoteFlows }),
      clock: o.clock,
      logger: log.child({ module: "transport" }),
    });
    const listeners = await transport.start();
    const resolver = o.resolver ?? literalResolver;

    // Health: one state machine per target, transitions logged once each.
    const health = new Map<string, TargetHealth>();
    let makeProbing: (() => { prober: Prober; monitor: HealthMonitor }) | undefined;
    if (o.health !== undefined) {
      const ho = o.health;
      const hopts = resolveHealthOptions(ho.options);
      const hlog = log.child({ module: "health" });
      for (const t of targets) {
        const h = new TargetHealth(t.name, hopts, o.clock, (tr) => hlog.info(tr, `target ${tr.target}: ${tr.from ?? "start"} -> ${tr.to}${tr.draining ? " (draining)" : ""}: ${tr.reason}`));
        health.set(t.name, h);
      }
      for (const s of ho.seed ?? []) {
        const h = health.get(s.target);
        if (h !== undefined) h.probeResult(h.beginProbe(), s.result);
      }
      const via = listeners.find((l) => l.transport === "udp") ?? listeners[0]!;
      makeProbing = () => {
        const prober = new Prober({
          clock: o.clock,
          logger: hlog,
          timeoutMs: hopts.probeTimeoutMs,
          viaHost: via.advertise,
          closeStreamAfterTimeouts: ho.closeStreamAfterTimeouts,
          ...(ho.sourceAddress === undefined ? {} : { sourceAddress: ho.sourceAddress }),
          ...(o.tls === undefined ? {} : { tls: { ...(o.tls.ca === undefined ? {} : { ca: o.tls.ca }), rejectUnauthorized: o.tls.verifyPeer !== false } }),
        });
        const monitor = new HealthMonitor(
          prober,
          targets.map((t) => ({ health: health.get(t.name)!, probeTarget: () => probeTargetOf(t, resolver) })),
          o.clock,
          hlog,
          ho.onProbeResult,
        );
        return { prober, monitor };
      };
    }

    // Policy: Main is the lowest priority number, Standby the next.
    let policy: FailoverPolicy | undefined;
    const byPriority = [...targets].sort((a, b) => a.priority - b.priority);
    if (o.policy !== undefined && byPriority.length >= 2 && health.size > 0) {
      const plog = log.child({ module: "policy" });
      policy = new FailoverPolicy({
        main: health.get(byPriority[0]!.name)!,
        standby: health.get(byPriority[1]!.name)!,
        table: o.policy.table,
        clock: o.clock,
        options: o.policy.options,
        onEvent: (e) => plog.info(e, `policy: ${e.reason}`),
      });
    }
    const plog = log.child({ module: "router" });
    const usable = (t: Target): boolean => health.get(t.name)?.usability().newRequests ?? true;
    let policyRouter: PolicyRouter | undefined;
    const baseRouter =
      o.makeRouter ??
      ((ts: readonly Target[]) => {
        if (policy === undefined) return new PriorityRouter(ts, usable);
        policyRouter = new PolicyRouter(policy, ts, o.clock, plog);
        return policyRouter;
      });
    const wrap = o.wrapRouter;
    const makeRouter = wrap === undefined ? baseRouter : (ts: readonly Target[]) => wrap(baseRouter(ts), ts, usable);
    const router = makeRouter(targets);

    const holder: { edge?: Edge } = {};
    const counters = o.counters ?? new Counters();
    // A request timing out is evidence against a target only if nothing at
    // all came back from it meanwhile: an overloaded but answering PBX must
    // not be declared down by its slow transactions (a failover storm).
    const lastHeard = new Map<string, number>();
    const observer: ProxyObserver = {
      targetOutcome: (t, outcome, status) => {
        o.onTargetOutcome?.(t, outcome, status);
        const now = o.clock.now();
        if (outcome === "response" || outcome === "failure-response") {
          lastHeard.set(t.name, now);
          if (outcome === "failure-response" && o.breakerJudges?.(t) === true) return;
        } else if (outcome === "timeout" && now - (lastHeard.get(t.name) ?? -Infinity) < o.failover.requestTimeoutMs) {
          counters.inc("passive.timeout-while-answering");
          return;
        }
        health.get(t.name)?.traffic({ outcome, status });
      },
    };
    const olog = log.child({ module: "overload" });
    const overload =
      o.overload === undefined
        ? undefined
        : new OverloadGate(
            o.overload,
            () => transport.queueDelayMs(),
            o.clock,
            loopUtilization(),
            (c) =>
              c.shedding
                ? olog.warn(c, `overload: datagrams wait ${Math.round(c.queueDelayMs)} ms; a growing share of new requests is answered 503 (or dropped unread: overload.dropMethods) until the wait is back under ${o.overload!.resumeAtMs} ms`)
                : olog.warn(c, "overload over: every new request is forwarded again"),
          );
    const proxy = new Proxy({
      ...(overload === undefined ? {} : { overload }),
      ...(o.txnPeers === undefined ? {} : { peers: o.txnPeers }),
      transport,
      identity: new EdgeIdentity(listeners, o.domains),
      router: () => holder.edge!.router,
      targets: () => holder.edge!.targetList,
      resolver,
      flowTokens: new FlowTokenCodec(o.flowKey),
      softState: new SoftState(o.softState, o.clock),
      counters,
      logger: log.child({ module: "proxy" }),
      clock: o.clock,
      failover: o.failover,
      limits: o.parseLimits,
      observer,
      isDown: (t) => {
        const st = health.get(t.name)?.status;
        return st === "down" || st === "disabled";
      },
    });
    for (const h of health.values()) {
      h.onTransition((tr) => {
        // Only a dead target: one merely draining may still answer its calls.
        if (tr.to === "down" || tr.to === "disabled") proxy.targetDown(tr.target);
      });
    }
    const edge = new Edge(o, transport, listeners, proxy, counters, targets, router, health, policy, makeProbing, makeRouter, () => policyRouter?.dualStatus() ?? {}, overload);
    holder.edge = edge;
    transport.onMessage = (m) => proxy.onMessage(m);
    if (overload !== undefined) transport.onQueueProbe = () => overload.tick();
    if (o.health?.mode !== "follower") edge.setProbing(true);
    const privatePorts = transport.privateUdpPorts();
    log.info(
      {
        listeners: listeners.map((l) => `${l.transport}:${l.address}:${l.port}`),
        ...(Object.keys(privatePorts).length === 0 ? {} : { privateUdpPorts: privatePorts }),
        udpIo: transport.udpIoByListener(),
        targets: targets.map((t) => `${t.name}=${t.uri}`),
      },
      "edge started",
    );
    return edge;
  }

  /** A probe result from the worker that probes (follower mode). */
  applyProbeResult(target: string, result: ProbeReport): void {
    const h = this.health.get(target);
    if (h !== undefined) h.probeResult(h.beginProbe(), result);
  }

  /**
   * Starts or stops OPTIONS probing. In a cluster one worker probes and the
   * primary moves that role when the worker is restarted or dies; the
   * others apply its results through `applyProbeResult`.
   */
  setProbing(on: boolean): void {
    if (on && this.probing === undefined && this.makeProbing !== undefined) {
      this.probing = this.makeProbing();
      this.probing.monitor.start();
    } else if (!on && this.probing !== undefined) {
      this.probing.monitor.stop();
      this.probing.prober.stop();
      this.probing = undefined;
    }
  }

  get targets(): readonly Target[] {
    return this.targetList;
  }

  /**
   * Swaps the targets and router in one step (config reload). Requests in
   * flight keep what they already decided; health state lives outside.
   */
  replaceRouting(targets: readonly TargetSpec[], makeRouter?: (targets: readonly Target[]) => Router): void {
    const ts = targets.map(makeTarget);
    const router = (makeRouter ?? this.makeRouter)(ts);
    this.targetList = ts;
    this.router = router;
  }

  status(): EdgeStatus {
    const health: Record<string, TargetHealthSnapshot> = {};
    for (const [name, h] of this.health) health[name] = h.snapshot();
    return {
      startedAt: this.startedAt,
      listeners: this.listeners,
      targets: this.targetList,
      health,
      policy: this.policy?.status(),
      dual: this.dualStatus(),
      counters: this.counters.snapshot(),
      transport: this.transport.stats(),
      overload: this.overload?.status(),
    };
  }

  async stop(): Promise<void> {
    this.setProbing(false);
    this.policy?.close();
    for (const h of this.health.values()) h.close();
    await this.transport.stop();
  }
}

/** The event loop's utilization between two calls (the first call: since the process started). */
function loopUtilization(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return u;
  };
}

/** Where to send a target's OPTIONS probe (WS targets are not probed). */
function probeTargetOf(t: Target, resolver: TargetResolver): ProbeTarget | undefined {
  if (t.transport === "ws" || t.transport === "wss") return undefined;
  const ep = resolver.endpoint(t);
  if (ep === undefined) return undefined;
  return { name: t.name, transport: t.transport, address: ep.address, port: ep.port, uri: t.uri, ...(t.transport === "tls" ? { servername: t.host } : {}) };
}
