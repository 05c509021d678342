import type { Clock, TimerHandle } from "../util/clock.js";
import {
  INITIAL_REASON,
  initialHealthState,
  probeDelayMs,
  transition,
  usability,
  type HealthEvent,
  type HealthState,
  type HealthStatus,
  type Observation,
  type ProbedStatus,
  type Usability,
} from "./machine.js";
import type { ResolvedHealthOptions } from "./options.js";

/**
 * One change of a target's health as routing sees it: its status or its
 * drain flag. The first event of every target has `from: null` (its initial
 * state). The integrator logs each one once.
 */
export interface HealthTransition {
  readonly target: string;
  readonly from: HealthStatus | null;
  readonly to: HealthStatus;
  readonly draining: boolean;
  /** Usability after the transition. */
  readonly usable: Usability;
  readonly reason: string;
  /** Wall-clock ms, for people. */
  readonly at: number;
  /** `Clock.now()` ms, for timing decisions (the policy's hold-down and stability clocks). */
  readonly mono: number;
}

export type TransitionListener = (t: HealthTransition) => void;

/** Handed out when a probe is sent; handed back with its result. */
export interface ProbeTicket {
  readonly generation: number;
  readonly sentAt: number;
}

/**
 * A finished probe, in the shape the OPTIONS prober reports it: a final
 * response (`ok: true`, whatever its code) or no response at all.
 */
export type ProbeReport =
  | { readonly ok: true; readonly status: number; readonly rttMs: number; readonly retryAfterSeconds?: number | undefined }
  | { readonly ok: false; readonly kind: "timeout" | "transport"; readonly reason?: string | undefined; readonly rttMs?: number | undefined };

/** A passive signal, in the proxy's terms (`ProxyObserver.targetOutcome`). */
export interface TrafficReport {
  readonly outcome: "timeout" | "transport-error" | "failure-response" | "response";
  readonly status?: number | undefined;
  readonly retryAfterSeconds?: number | undefined;
}

export interface RttStats {
  readonly lastMs: number | null;
  readonly ewmaMs: number | null;
  readonly maxMs: number | null;
}

export interface ProbeCounts {
  readonly sent: number;
  /** Answered with an alive code. */
  readonly ok: number;
  /** Answered with another code, or a transport error. */
  readonly failed: number;
  readonly timeouts: number;
  /** Results that arrived after the state had moved on, and were not applied. */
  readonly stale: number;
}

export interface TargetHealthSnapshot {
  readonly name: string;
  readonly status: HealthStatus;
  readonly probed: ProbedStatus;
  readonly disabled: boolean;
  readonly draining: boolean;
  readonly usable: Usability;
  /** Wall ms of the last transition. */
  readonly since: number;
  readonly consecutiveFailures: number;
  readonly consecutiveSuccesses: number;
  /** Wall ms at which a Retry-After hold ends, or null. */
  readonly holdUntil: number | null;
  readonly generation: number;
  readonly rtt: RttStats;
  readonly probes: ProbeCounts;
  /** Oldest first; bounded by `historySize`. */
  readonly history: readonly HealthTransition[];
}

/**
 * The health of one target: the pure machine plus what status and metrics
 * need (RTT, probe counts, a bounded transition history) and the one timer
 * the machine asks for, the end of a Retry-After hold.
 *
 * Probe protocol, for the prober: `const ticket = h.beginProbe()` when the
 * OPTIONS goes out, `h.probeResult(ticket, report)` when it completes, and
 * `h.nextProbeDelayMs()` to schedule the next one. A result whose ticket is
 * from an older generation (the status, drain or disable flag changed while
 * it was in flight) is counted but not applied.
 */
export class TargetHealth {
  private s: HealthState = initialHealthState();
  private readonly listeners = new Set<TransitionListener>();
  private readonly hist: HealthTransition[] = [];
  private sinceWall: number;
  private holdTimer: TimerHandle | undefined;
  private armedHoldUntil: number | undefined;
  private rtt = { lastMs: null as number | null, ewmaMs: null as number | null, maxMs: null as number | null };
  private counts = { sent: 0, ok: 0, failed: 0, timeouts: 0, stale: 0 };

  constructor(
    readonly name: string,
    private readonly options: ResolvedHealthOptions,
    private readonly clock: Clock,
    onTransition?: TransitionListener,
  ) {
    if (onTransition !== undefined) this.listeners.add(onTransition);
    this.sinceWall = clock.wallNow();
    this.emit(null, INITIAL_REASON);
  }

  get state(): HealthState {
    return this.s;
  }

  get status(): HealthStatus {
    return this.s.status;
  }

  usability(): Usability {
    return usability(this.s);
  }

  /** Adds a listener for later transitions; returns its removal. */
  onTransition(listener: TransitionListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  beginProbe(): ProbeTicket {
    this.counts.sent++;
    return { generation: this.s.generation, sentAt: this.clock.now() };
  }

  probeResult(ticket: ProbeTicket, r: ProbeReport): "applied" | "stale" {
    let observation: Observation;
    if (r.ok) {
      this.recordRtt(r.rttMs);
      if (this.options.isAlive(r.status)) this.counts.ok++;
      else this.counts.failed++;
      observation = { kind: "response", status: r.status, retryAfterSeconds: r.retryAfterSeconds };
    } else if (r.kind === "timeout") {
      this.counts.timeouts++;
      observation = { kind: "timeout" };
    } else {
      this.counts.failed++;
      observation = { kind: "transport-error", reason: r.reason };
    }
    const outcome = this.apply({ type: "probe", generation: ticket.generation, observation });
    if (outcome === "stale") this.counts.stale++;
    return outcome;
  }

  traffic(r: TrafficReport): void {
    let observation: Observation;
    switch (r.outcome) {
      case "timeout":
        observation = { kind: "timeout" };
        break;
      case "transport-error":
        observation = { kind: "transport-error" };
        break;
      case "failure-response":
        // Judged by `passiveFailureCodes`, which should equal the proxy's
        // retry set; a failure reported without its code counts as a 500.
        observation = { kind: "response", status: r.status ?? 500, retryAfterSeconds: r.retryAfterSeconds };
        break;
      case "response":
        observation = { kind: "response", status: r.status ?? 200, retryAfterSeconds: r.retryAfterSeconds };
        break;
    }
    this.apply({ type: "traffic", observation });
  }

  /** Out of service: no new requests and no in-dialog requests. Wins over probes until `enable`. */
  disable(): void {
    this.apply({ type: "disable" });
  }

  enable(): void {
    this.apply({ type: "enable" });
  }

  /** No new requests; calls in progress keep flowing (in-dialog requests follow their route set). */
  drain(): void {
    this.apply({ type: "drain" });
  }

  undrain(): void {
    this.apply({ type: "undrain" });
  }

  /** Delay before the next probe should be sent: the up or down interval, or the rest of a Retry-After hold. */
  nextProbeDelayMs(): number {
    return probeDelayMs(this.s, this.options, this.clock.now());
  }

  snapshot(): TargetHealthSnapshot {
    const now = this.clock.now();
    const s = this.s;
    return {
      name: this.name,
      status: s.status,
      probed: s.probed,
      disabled: s.disabled,
      draining: s.draining,
      usable: usability(s),
      since: this.sinceWall,
      consecutiveFailures: s.failures,
      consecutiveSuccesses: s.successes,
      holdUntil: s.holdUntil !== undefined && s.holdUntil > now ? this.clock.wallNow() + (s.holdUntil - now) : null,
      generation: s.generation,
      rtt: { ...this.rtt },
      probes: { ...this.counts },
      history: [...this.hist],
    };
  }

  /** Cancels the hold timer; the object stays readable. */
  close(): void {
    if (this.holdTimer !== undefined) this.clock.clearTimer(this.holdTimer);
    this.holdTimer = undefined;
    this.armedHoldUntil = undefined;
  }

  private apply(e: HealthEvent): "applied" | "stale" {
    const prev = this.s;
    const step = transition(prev, e, this.options, this.clock.now());
    this.s = step.state;
    this.armHold();
    if (step.state.status !== prev.status || step.state.draining !== prev.draining) {
      this.emit(prev.status, step.reason);
    }
    return step.outcome;
  }

  /** Timers are events (DESIGN.md §5.5): the end of a hold comes back as `hold-expired`. */
  private armHold(): void {
    const until = this.s.holdUntil;
    if (until === this.armedHoldUntil) return;
    if (this.holdTimer !== undefined) this.clock.clearTimer(this.holdTimer);
    this.holdTimer = undefined;
    this.armedHoldUntil = until;
    if (until === undefined) return;
    this.holdTimer = this.clock.setTimer(until - this.clock.now(), () => {
      this.holdTimer = undefined;
      this.armedHoldUntil = undefined;
      this.apply({ type: "hold-expired" });
    });
  }

  private recordRtt(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const a = this.options.rttEwmaAlpha;
    this.rtt = {
      lastMs: ms,
      ewmaMs: this.rtt.ewmaMs === null ? ms : a * ms + (1 - a) * this.rtt.ewmaMs,
      maxMs: this.rtt.maxMs === null ? ms : Math.max(ms, this.rtt.maxMs),
    };
  }

  private emit(from: HealthStatus | null, reason: string): void {
    const t: HealthTransition = {
      target: this.name,
      from,
      to: this.s.status,
      draining: this.s.draining,
      usable: usability(this.s),
      reason,
      at: this.clock.wallNow(),
      mono: this.clock.now(),
    };
    this.sinceWall = t.at;
    this.hist.push(t);
    if (this.hist.length > this.options.historySize) this.hist.splice(0, this.hist.length - this.options.historySize);
    for (const l of [...this.listeners]) l(t);
  }
}
