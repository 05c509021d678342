import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../util/clock.js";
import type { ProbeTarget, Prober } from "./prober.js";
import type { ProbeReport, TargetHealth } from "./target-health.js";

export interface MonitoredTarget {
  health: TargetHealth;
  /** Where to probe now; undefined while the target's name does not resolve. */
  probeTarget: () => ProbeTarget | undefined;
}

/**
 * Schedules OPTIONS probes: each target is probed after the delay its health
 * state asks for (different intervals while up and while down, none inside a
 * Retry-After hold), and every result goes back to that target's health with
 * the ticket it was sent under, so a late result cannot overwrite a newer
 * state.
 */
export class HealthMonitor {
  private readonly timers = new Map<string, TimerHandle>();
  private running = false;

  constructor(
    private readonly prober: Prober,
    private readonly targets: readonly MonitoredTarget[],
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** Every result, as applied here (workers that do not probe get them from this). */
    private readonly onResult?: (target: string, result: ProbeReport) => void,
  ) {}

  start(): void {
    this.running = true;
    // The first probe goes out at once: a fresh edge learns its targets'
    // health within one round trip.
    for (const t of this.targets) this.schedule(t, 0);
  }

  stop(): void {
    this.running = false;
    for (const h of this.timers.values()) this.clock.clearTimer(h);
    this.timers.clear();
  }

  private schedule(t: MonitoredTarget, delayMs: number): void {
    if (!this.running) return;
    const name = t.health.name;
    const prev = this.timers.get(name);
    if (prev !== undefined) this.clock.clearTimer(prev);
    this.timers.set(
      name,
      this.clock.setTimer(delayMs, () => {
        this.timers.delete(name);
        this.probe(t);
      }),
    );
  }

  private probe(t: MonitoredTarget): void {
    const ticket = t.health.beginProbe();
    const pt = t.probeTarget();
    if (pt === undefined) {
      t.health.probeResult(ticket, { ok: false, kind: "transport", reason: "target does not resolve" });
      this.schedule(t, t.health.nextProbeDelayMs());
      return;
    }
    this.prober.probe(pt, (r) => {
      // After stop() a result says nothing about the target: it is the
      // prober's own "prober stopped" report, or a reply that raced the
      // hand-over of probing to another cluster worker.
      if (!this.running) return;
      const applied = t.health.probeResult(ticket, r);
      if (applied === "applied") this.onResult?.(t.health.name, r);
      if (applied === "stale" && this.logger.isLevelEnabled("debug")) this.logger.debug({ target: pt.name }, "stale probe result ignored");
      this.schedule(t, t.health.nextProbeDelayMs());
    });
  }
}
