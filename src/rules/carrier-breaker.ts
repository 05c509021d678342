import type { Clock, TimerHandle } from "../util/clock.js";
import type { BreakerSpec } from "./schema.js";

/**
 * The carrier breaker (DESIGN.md §2.5): fed by the outcomes of real calls to
 * one carrier. A run of N consecutive failures (503, 408, no response,
 * transport error) within a window trips it open for a cool-down; then one
 * call may test the carrier (half-open): an answer closes it, a failure opens
 * it again for twice as long (up to a maximum), so a carrier that keeps
 * failing its tests is tried less and less often instead of flapping.
 * A callee's answer (404, 486, 603, ...) and any success prove the carrier
 * works: they never count, and they end a run of failures.
 *
 * `step` is the whole machine as a pure function of (state, input, settings,
 * now); `CarrierBreaker` holds one state, asks the clock for the cool-down
 * timer, and reports each transition as an event with its reason.
 */

export type BreakerStatus = "closed" | "open" | "half-open";

export interface BreakerSettings {
  /** Consecutive failures that trip the breaker (at least 2). */
  readonly failures: number;
  readonly windowMs: number;
  readonly coolDownMs: number;
  readonly maxCoolDownMs: number;
  /** Final responses that count as failures. */
  readonly failureCodes: ReadonlySet<number>;
  /** A test call with no outcome after this long frees the half-open slot. */
  readonly trialTimeoutMs: number;
}

export const DEFAULT_BREAKER: BreakerSettings = Object.freeze({
  failures: 5,
  windowMs: 60_000,
  coolDownMs: 30_000,
  maxCoolDownMs: 240_000,
  failureCodes: new Set([408, 503]),
  trialTimeoutMs: 32_000,
});

export function breakerSettings(spec: BreakerSpec): BreakerSettings {
  const coolDownMs = spec.coolDownSeconds * 1000;
  return Object.freeze({
    failures: spec.failures,
    windowMs: spec.windowSeconds * 1000,
    coolDownMs,
    // Three doublings by default: 30 s, 60 s, 120 s, 240 s.
    maxCoolDownMs: spec.maxCoolDownSeconds !== undefined ? spec.maxCoolDownSeconds * 1000 : coolDownMs * 8,
    failureCodes: new Set(spec.failureCodes),
    trialTimeoutMs: spec.trialTimeoutSeconds * 1000,
  });
}

/** How one attempt towards the carrier ended. */
export type CallOutcome =
  | { readonly kind: "response"; readonly status: number }
  | { readonly kind: "timeout" }
  | { readonly kind: "transport-error" };

export interface BreakerState {
  readonly status: BreakerStatus;
  /** Monotonic ms this status began. */
  readonly since: number;
  /** Closed: times of the current run of consecutive failures, oldest first (at most `failures`). */
  readonly run: readonly number[];
  /** Open: when the cool-down ends. */
  readonly openUntil: number;
  /** Trips since the breaker last closed; the cool-down doubles with each. */
  readonly trips: number;
  /** Half-open: when the test call started; -1 when none is in flight. */
  readonly trialAt: number;
}

export type BreakerInput =
  | { readonly type: "outcome"; readonly outcome: CallOutcome }
  /** A call is being sent to the carrier (takes the half-open test slot). */
  | { readonly type: "attempt" }
  /** The cool-down timer fired. */
  | { readonly type: "cool-down-over" };

export interface BreakerStep {
  readonly state: BreakerState;
  /** Present when the status changed. */
  readonly reason?: string;
}

export function initialBreakerState(now: number): BreakerState {
  return { status: "closed", since: now, run: [], openUntil: 0, trips: 0, trialAt: -1 };
}

/** `failure`: counts against the carrier; `answer`: proves it works; `ignore`: says nothing (provisional). */
export function classifyOutcome(o: CallOutcome, s: BreakerSettings): "failure" | "answer" | "ignore" {
  switch (o.kind) {
    case "timeout":
    case "transport-error":
      return "failure";
    case "response":
      if (o.status < 200) return "ignore";
      return s.failureCodes.has(o.status) ? "failure" : "answer";
  }
}

function describe(o: CallOutcome): string {
  switch (o.kind) {
    case "timeout":
      return "no response";
    case "transport-error":
      return "transport error";
    case "response":
      return String(o.status);
  }
}

function coolDownFor(trips: number, s: BreakerSettings): number {
  // trips >= 1 here; 2^(trips-1) grows past any max quickly, so cap the exponent.
  return Math.min(s.maxCoolDownMs, s.coolDownMs * 2 ** Math.min(trips - 1, 30));
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}s`;
}

function open(trips: number, s: BreakerSettings, now: number): BreakerState {
  return { status: "open", since: now, run: [], openUntil: now + coolDownFor(trips, s), trips, trialAt: -1 };
}

export function step(st: BreakerState, input: BreakerInput, s: BreakerSettings, now: number): BreakerStep {
  switch (st.status) {
    case "closed": {
      if (input.type !== "outcome") return { state: st };
      const kind = classifyOutcome(input.outcome, s);
      if (kind === "ignore") return { state: st };
      if (kind === "answer") return st.run.length === 0 ? { state: st } : { state: { ...st, run: [] } };
      const run = [...st.run, now].filter((t) => now - t <= s.windowMs);
      if (run.length > s.failures) run.splice(0, run.length - s.failures);
      if (run.length < s.failures) return { state: { ...st, run } };
      const next = open(1, s, now);
      return {
        state: next,
        reason: `${s.failures} failures in a row within ${seconds(s.windowMs)} (last: ${describe(input.outcome)}); open for ${seconds(next.openUntil - now)}`,
      };
    }
    case "open": {
      // Outcomes arriving now are from calls sent before the trip: they say nothing new.
      if (input.type !== "cool-down-over" || now < st.openUntil) return { state: st };
      return {
        state: { status: "half-open", since: now, run: [], openUntil: 0, trips: st.trips, trialAt: -1 },
        reason: `cool-down of ${seconds(st.openUntil - st.since)} over; the next call tests the carrier`,
      };
    }
    case "half-open": {
      if (input.type === "attempt") {
        return trialFree(st, s, now) ? { state: { ...st, trialAt: now } } : { state: st };
      }
      if (input.type !== "outcome") return { state: st };
      const kind = classifyOutcome(input.outcome, s);
      if (kind === "ignore") return { state: st };
      if (kind === "answer") {
        return { state: initialBreakerState(now), reason: `test call answered (${describe(input.outcome)})` };
      }
      const next = open(st.trips + 1, s, now);
      return { state: next, reason: `test call failed (${describe(input.outcome)}); open for ${seconds(next.openUntil - now)}` };
    }
  }
}

function trialFree(st: BreakerState, s: BreakerSettings, now: number): boolean {
  return st.trialAt < 0 || now - st.trialAt >= s.trialTimeoutMs;
}

/** May a new call be sent to the carrier now? (A pure question: asking takes nothing.) */
export function canAttempt(st: BreakerState, s: BreakerSettings, now: number): boolean {
  switch (st.status) {
    case "closed":
      return true;
    case "open":
      return false;
    case "half-open":
      return trialFree(st, s, now);
  }
}

// ---------------------------------------------------------------------------

export interface BreakerTransition {
  readonly carrier: string;
  /** Undefined for the initial state. */
  readonly from: BreakerStatus | undefined;
  readonly to: BreakerStatus;
  readonly reason: string;
  /** Wall-clock ms. */
  readonly at: number;
}

export type BreakerListener = (t: BreakerTransition) => void;

export interface BreakerSnapshot {
  readonly carrier: string;
  readonly status: BreakerStatus;
  /** Wall-clock ms of the last transition. */
  readonly since: number;
  /** Failures in the current run (closed). */
  readonly consecutiveFailures: number;
  /** Wall-clock ms the cool-down ends (open), else null. */
  readonly openUntil: number | null;
  readonly trips: number;
  readonly testInFlight: boolean;
  /** Oldest first, bounded. */
  readonly history: readonly BreakerTransition[];
}

const HISTORY_SIZE = 32;

/** One carrier's breaker: the machine, its cool-down timer and its transition history. */
export class CarrierBreaker {
  private st: BreakerState;
  private settingsNow: BreakerSettings;
  private timer: TimerHandle | undefined;
  private readonly hist: BreakerTransition[] = [];

  constructor(
    readonly carrier: string,
    settings: BreakerSettings,
    private readonly clock: Clock,
    private readonly onTransition: BreakerListener = () => {},
  ) {
    this.settingsNow = settings;
    this.st = initialBreakerState(clock.now());
    this.emit(undefined, "closed", "initial: no calls seen yet");
  }

  get status(): BreakerStatus {
    return this.st.status;
  }

  get state(): BreakerState {
    return this.st;
  }

  get settings(): BreakerSettings {
    return this.settingsNow;
  }

  /** New settings from a reload; the state (and a running cool-down) is kept. */
  configure(settings: BreakerSettings): void {
    this.settingsNow = settings;
  }

  canAttempt(): boolean {
    this.catchUp();
    return canAttempt(this.st, this.settingsNow, this.clock.now());
  }

  /** A call is going to this carrier: in half-open it becomes the one test call. */
  attempt(): void {
    this.catchUp();
    this.apply({ type: "attempt" });
  }

  record(outcome: CallOutcome): void {
    this.catchUp();
    this.apply({ type: "outcome", outcome });
  }

  snapshot(): BreakerSnapshot {
    this.catchUp();
    const st = this.st;
    const now = this.clock.now();
    const wall = this.clock.wallNow();
    return Object.freeze({
      carrier: this.carrier,
      status: st.status,
      since: this.hist.at(-1)?.at ?? wall,
      consecutiveFailures: st.run.length,
      openUntil: st.status === "open" ? wall + (st.openUntil - now) : null,
      trips: st.trips,
      testInFlight: st.status === "half-open" && !canAttempt(st, this.settingsNow, now),
      history: Object.freeze([...this.hist]),
    });
  }

  close(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /**
   * The timer is the normal way out of `open`; this covers a timer that
   * fires late (a busy event loop) so a question asked after the cool-down
   * gets the answer the timer would have given.
   */
  private catchUp(): void {
    if (this.st.status === "open" && this.clock.now() >= this.st.openUntil) this.apply({ type: "cool-down-over" });
  }

  private apply(input: BreakerInput): void {
    const before = this.st.status;
    const r = step(this.st, input, this.settingsNow, this.clock.now());
    this.st = r.state;
    if (r.reason === undefined) return;
    if (this.st.status === "open") this.armTimer();
    else this.close();
    this.emit(before, this.st.status, r.reason);
  }

  private armTimer(): void {
    this.close();
    this.timer = this.clock.setTimer(Math.max(0, this.st.openUntil - this.clock.now()), () => {
      this.timer = undefined;
      this.apply({ type: "cool-down-over" });
    });
  }

  private emit(from: BreakerStatus | undefined, to: BreakerStatus, reason: string): void {
    const t: BreakerTransition = Object.freeze({ carrier: this.carrier, from, to, reason, at: this.clock.wallNow() });
    this.hist.push(t);
    if (this.hist.length > HISTORY_SIZE) this.hist.splice(0, this.hist.length - HISTORY_SIZE);
    this.onTransition(t);
  }
}
