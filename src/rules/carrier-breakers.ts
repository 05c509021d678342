import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import { CarrierBreaker, type BreakerListener, type BreakerSnapshot, type CallOutcome } from "./carrier-breaker.js";
import type { Carrier, Decision, RoutingView, RulesTable } from "./types.js";

/**
 * Every carrier's breaker, kept across rules reloads: `configure` with a new
 * table's carriers updates settings in place (state and cool-downs survive),
 * adds new carriers and drops removed ones. Breaker state is runtime state,
 * so it lives here and not in the frozen table.
 */
export class CarrierBreakers {
  private readonly byName = new Map<string, CarrierBreaker>();

  constructor(
    private readonly clock: Clock,
    private readonly logger?: Logger,
    private readonly onTransition?: BreakerListener,
  ) {}

  configure(carriers: ReadonlyMap<string, Carrier>): void {
    for (const [name, b] of this.byName) {
      if (!carriers.has(name)) {
        b.close();
        this.byName.delete(name);
      }
    }
    for (const c of carriers.values()) {
      const b = this.byName.get(c.name);
      if (b !== undefined) b.configure(c.breaker);
      else this.byName.set(c.name, new CarrierBreaker(c.name, c.breaker, this.clock, (t) => this.report(t)));
    }
  }

  get(carrier: string): CarrierBreaker | undefined {
    return this.byName.get(carrier);
  }

  /** True for a carrier without a breaker. */
  canAttempt(carrier: string): boolean {
    return this.byName.get(carrier)?.canAttempt() ?? true;
  }

  attempt(carrier: string): void {
    this.byName.get(carrier)?.attempt();
  }

  record(carrier: string, outcome: CallOutcome): void {
    this.byName.get(carrier)?.record(outcome);
  }

  /** Feeds the outcome of an attempt to `target` to its carrier's breaker, if it has one. */
  recordTarget(table: RulesTable, target: string, outcome: CallOutcome): void {
    const carrier = table.carrierOfTarget.get(target);
    if (carrier !== undefined) this.record(carrier, outcome);
  }

  /**
   * After a route decision is acted on: the first target is where the call
   * goes now, so if its carrier is half-open this call is the test.
   */
  noteRouted(table: RulesTable, decision: Decision): void {
    if (decision.action !== "route") return;
    const first = decision.targets[0];
    const carrier = first === undefined ? undefined : table.carrierOfTarget.get(first);
    if (carrier !== undefined) this.attempt(carrier);
  }

  snapshot(): BreakerSnapshot[] {
    return [...this.byName.values()].map((b) => b.snapshot());
  }

  close(): void {
    for (const b of this.byName.values()) b.close();
    this.byName.clear();
  }

  private report(t: Parameters<BreakerListener>[0]): void {
    if (t.from !== undefined) {
      const line = { carrier: t.carrier, from: t.from, to: t.to, reason: t.reason };
      if (t.to === "open") this.logger?.warn(line, "carrier breaker open");
      else this.logger?.info(line, `carrier breaker ${t.to}`);
    }
    this.onTransition?.(t);
  }
}

/**
 * Health and breakers as one view: a carrier's target is usable when its
 * health says so and its carrier's breaker lets a call through. Targets of
 * no carrier (PBXs) are decided by health alone.
 */
export function withBreakers(table: RulesTable, health: RoutingView, breakers: CarrierBreakers): RoutingView {
  return {
    usable(target: string): boolean {
      if (!health.usable(target)) return false;
      const carrier = table.carrierOfTarget.get(target);
      return carrier === undefined || breakers.canAttempt(carrier);
    },
  };
}

/** The proxy's per-attempt outcome (`ProxyObserver.targetOutcome`) in breaker terms; undefined when it says nothing. */
export function callOutcome(kind: "timeout" | "transport-error" | "failure-response" | "response", status?: number): CallOutcome | undefined {
  switch (kind) {
    case "timeout":
      return { kind: "timeout" };
    case "transport-error":
      return { kind: "transport-error" };
    case "failure-response":
    case "response":
      return status === undefined ? undefined : { kind: "response", status };
  }
}
