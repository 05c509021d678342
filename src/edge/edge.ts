import type { Logger } from "pino";
import type { ParseLimits } from "../sip/parse.js";
import { TransportLayer } from "../transport/layer.js";
import type { BoundListener, ListenerSpec, TlsSettings, TransportLimits } from "../transport/types.js";
import type { Clock } from "../util/clock.js";
import { Counters } from "../util/counters.js";
import { FlowTokenCodec } from "./flow-token.js";
import { EdgeIdentity } from "./identity.js";
import { Proxy, type FailoverOptions, type ProxyObserver } from "./proxy.js";
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
  parseLimits: ParseLimits;
  softState: { maxEntries: number; ttlMs: number };
  flowKey: Buffer;
  failover: FailoverOptions;
  clock: Clock;
  logger: Logger;
  /** Builds the router from the targets; defaults to priority order. */
  makeRouter?: (targets: readonly Target[]) => Router;
  resolver?: TargetResolver;
  observer?: ProxyObserver;
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
    private readonly o: EdgeOptions,
    readonly transport: TransportLayer,
    readonly listeners: readonly BoundListener[],
    readonly proxy: Proxy,
    readonly counters: Counters,
    targets: readonly Target[],
    router: Router,
  ) {
    this.targetList = targets;
    this.router = router;
    this.startedAt = o.clock.wallNow();
  }

  static async start(o: EdgeOptions): Promise<Edge> {
    const targets = o.targets.map(makeTarget);
    const transport = new TransportLayer({
      listeners: o.listeners,
      ...(o.tls === undefined ? {} : { tls: o.tls }),
      limits: o.transportLimits,
      clock: o.clock,
      logger: o.logger.child({ module: "transport" }),
    });
    const listeners = await transport.start();
    const holder: { edge?: Edge } = {};
    const router = (o.makeRouter ?? ((ts) => new PriorityRouter(ts)))(targets);
    const counters = new Counters();
    const proxy = new Proxy({
      transport,
      identity: new EdgeIdentity(listeners, o.domains),
      router: () => holder.edge!.router,
      targets: () => holder.edge!.targetList,
      resolver: o.resolver ?? literalResolver,
      flowTokens: new FlowTokenCodec(o.flowKey),
      softState: new SoftState(o.softState),
      counters,
      logger: o.logger.child({ module: "proxy" }),
      clock: o.clock,
      failover: o.failover,
      limits: o.parseLimits,
      ...(o.observer === undefined ? {} : { observer: o.observer }),
    });
    const edge = new Edge(o, transport, listeners, proxy, counters, targets, router);
    holder.edge = edge;
    transport.onMessage = (m) => proxy.onMessage(m);
    o.logger.info({ listeners: listeners.map((l) => `${l.transport}:${l.address}:${l.port}`), targets: targets.map((t) => `${t.name}=${t.uri}`) }, "edge started");
    return edge;
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
    const router = (makeRouter ?? this.o.makeRouter ?? ((x: readonly Target[]) => new PriorityRouter(x)))(ts);
    this.targetList = ts;
    this.router = router;
  }

  status(): { startedAt: number; listeners: readonly BoundListener[]; targets: readonly Target[]; counters: Record<string, number>; transport: ReturnType<TransportLayer["stats"]> } {
    return { startedAt: this.startedAt, listeners: this.listeners, targets: this.targetList, counters: this.counters.snapshot(), transport: this.transport.stats() };
  }

  async stop(): Promise<void> {
    await this.transport.stop();
  }
}
