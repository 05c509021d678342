import type { ResolvedHealthOptions } from "./options.js";

/**
 * The pure health state machine of one target (DESIGN.md §2.2, §5.5): a
 * transition function from (state, event, time) to the next state, with no
 * timers and no I/O. `TargetHealth` wraps it with counters and events.
 *
 *   suspect ──N-th failure──▶ down ──success──▶ recovering ──M-th success──▶ up
 *      ▲  └──success──▶ up       ▲                   │failure                 │
 *      └──────────────── first failure ──────────────┼────────────────────────┘
 *                                └───────────────────┘
 *
 * `disabled` is an admin overlay: probes and traffic keep updating the
 * underlying `probed` status, so enabling a target restores what the probes
 * say now instead of trusting a stale guess.
 */
export type HealthStatus = "up" | "suspect" | "down" | "recovering" | "disabled";

/** What probes and traffic say, whatever the admin overlay. */
export type ProbedStatus = Exclude<HealthStatus, "disabled">;

export interface HealthState {
  /** What routing and status see: `disabled` while the admin says so, else `probed`. */
  readonly status: HealthStatus;
  readonly probed: ProbedStatus;
  readonly disabled: boolean;
  /** Admin drain: no new requests; in-dialog requests still flow. */
  readonly draining: boolean;
  /** Consecutive failures (probe or traffic) since the last success. */
  readonly failures: number;
  /** Consecutive successes since the last failure; only counted outside a Retry-After hold. */
  readonly successes: number;
  /** Clock ms until which a 503 with Retry-After keeps the target down. */
  readonly holdUntil: number | undefined;
  /**
   * Bumped on every change of `probed`, `disabled` or `draining`. A probe
   * carries the generation it was sent in; a result from an older generation
   * describes a world that has since changed and is not applied.
   */
  readonly generation: number;
}

/** What happened to one probe or one real request. */
export type Observation =
  | { readonly kind: "response"; readonly status: number; readonly retryAfterSeconds?: number | undefined }
  | { readonly kind: "timeout" }
  | { readonly kind: "transport-error"; readonly reason?: string | undefined };

export type HealthEvent =
  /** An OPTIONS probe finished; `generation` is the one returned when it was sent. */
  | { readonly type: "probe"; readonly generation: number; readonly observation: Observation }
  /** A passive signal from real traffic sent to the target. */
  | { readonly type: "traffic"; readonly observation: Observation }
  | { readonly type: "disable" }
  | { readonly type: "enable" }
  | { readonly type: "drain" }
  | { readonly type: "undrain" }
  /** The Retry-After hold timer fired. */
  | { readonly type: "hold-expired" };

export interface Step {
  readonly state: HealthState;
  /** Why the state is what it is now, for the transition event. */
  readonly reason: string;
  /** `stale`: a probe result from an older generation, not applied. */
  readonly outcome: "applied" | "stale";
}

/** Whether a target may take traffic (DESIGN.md §2.3, "Two questions"). */
export interface Usability {
  /** New requests and registrations: never to a down, recovering, disabled or draining target. */
  readonly newRequests: boolean;
  /** Requests inside an existing dialog (they follow their route set): only `disabled` refuses them. */
  readonly inDialog: boolean;
}

/**
 * The initial state is `suspect`, with no failures counted: a target is
 * presumed usable until proven otherwise, so an edge that starts does not
 * answer 503 for a whole probe interval; a dead target is found `down` after
 * N failed probes or N failed requests (each of which the per-request
 * failover has already moved to the next target), not used forever. A single
 * success makes it `up`.
 */
export function initialHealthState(): HealthState {
  return {
    status: "suspect",
    probed: "suspect",
    disabled: false,
    draining: false,
    failures: 0,
    successes: 0,
    holdUntil: undefined,
    generation: 0,
  };
}

export const INITIAL_REASON = "initial: not probed yet, presumed usable";

export function usability(s: HealthState): Usability {
  const alive = s.probed === "up" || s.probed === "suspect";
  return { newRequests: alive && !s.disabled && !s.draining, inDialog: !s.disabled };
}

/** The probe interval that applies now: never probe a target inside its Retry-After hold (RFC 3261 §21.5.4). */
export function probeDelayMs(s: HealthState, o: ResolvedHealthOptions, now: number): number {
  const base = s.probed === "up" ? o.intervalUpMs : o.intervalDownMs;
  if (s.holdUntil !== undefined && s.holdUntil > now) return Math.max(base, s.holdUntil - now);
  return base;
}

function assertNever(x: never): never {
  throw new Error(`unhandled case ${JSON.stringify(x)}`);
}

/**
 * Builds the next state, keeping `status` and `generation` consistent with
 * the other fields. Field by field rather than by object spread: every
 * final answer from a target comes through here (health from traffic), and
 * two spreads per answer were most of that cost. `holdUntil` is cleared by
 * passing it as undefined, so it is taken from the patch whenever present.
 */
function next(prev: HealthState, patch: Partial<Omit<HealthState, "status" | "generation">>): HealthState {
  const probed = patch.probed ?? prev.probed;
  const disabled = patch.disabled ?? prev.disabled;
  const draining = patch.draining ?? prev.draining;
  const changed = probed !== prev.probed || disabled !== prev.disabled || draining !== prev.draining;
  return {
    status: disabled ? "disabled" : probed,
    probed,
    disabled,
    draining,
    failures: patch.failures ?? prev.failures,
    successes: patch.successes ?? prev.successes,
    holdUntil: "holdUntil" in patch ? patch.holdUntil : prev.holdUntil,
    generation: changed ? prev.generation + 1 : prev.generation,
  };
}

type Verdict = { alive: true; why: string } | { alive: false; why: string; holdMs: number };

function retryAfterMs(status: number, seconds: number | undefined): number {
  return status === 503 && seconds !== undefined && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/**
 * Probes judge by the alive-code set; real traffic by the failure-code set
 * (a 404 to an INVITE says nothing bad about the PBX, even in strict mode).
 * A timeout is generated locally and never counts as alive.
 */
function judge(source: "probe" | "traffic", obs: Observation, o: ResolvedHealthOptions): Verdict {
  switch (obs.kind) {
    case "timeout":
      return { alive: false, why: source === "probe" ? "probe timeout" : "no response to a request", holdMs: 0 };
    case "transport-error":
      return { alive: false, why: `${source} transport error${obs.reason ? `: ${obs.reason}` : ""}`, holdMs: 0 };
    case "response": {
      const alive = source === "probe" ? o.isAlive(obs.status) : !o.passiveFailureCodes.has(obs.status);
      if (alive) return { alive: true, why: `${source} answered ${obs.status}` };
      const holdMs = retryAfterMs(obs.status, obs.retryAfterSeconds);
      const ra = holdMs > 0 ? ` with Retry-After ${obs.retryAfterSeconds}s` : "";
      return { alive: false, why: `${source} answered ${obs.status}${ra}`, holdMs };
    }
    default:
      return assertNever(obs);
  }
}

function onFailure(s: HealthState, v: Verdict & { alive: false }, o: ResolvedHealthOptions, now: number): Step {
  const failures = s.failures + 1;
  if (v.holdMs > 0) {
    // RFC 3261 §21.5.4: the server asked not to be sent requests for this
    // long, so the target is down at once and stays down until then.
    const holdUntil = Math.max(s.holdUntil ?? 0, now + v.holdMs);
    return { state: next(s, { probed: "down", failures, successes: 0, holdUntil }), reason: v.why, outcome: "applied" };
  }
  let probed: ProbedStatus;
  switch (s.probed) {
    case "up":
    case "suspect":
      probed = failures >= o.failuresToDown ? "down" : "suspect";
      break;
    case "recovering":
    case "down":
      probed = "down";
      break;
    default:
      return assertNever(s.probed);
  }
  const reason = probed === "down" && s.probed !== "down" ? `${v.why} (${failures} consecutive failures)` : v.why;
  return { state: next(s, { probed, failures, successes: 0 }), reason, outcome: "applied" };
}

function onSuccess(s: HealthState, why: string, o: ResolvedHealthOptions, now: number): Step {
  if (s.holdUntil !== undefined && now < s.holdUntil) {
    return { state: next(s, { failures: 0, successes: 0 }), reason: `${why}, ignored: Retry-After hold`, outcome: "applied" };
  }
  const successes = s.successes + 1;
  let probed: ProbedStatus;
  switch (s.probed) {
    case "up":
    case "suspect":
      probed = "up";
      break;
    case "down":
    case "recovering":
      probed = successes >= o.successesToUp ? "up" : "recovering";
      break;
    default:
      return assertNever(s.probed);
  }
  const reason = probed === "up" && s.probed !== "up" && s.probed !== "suspect" ? `${why} (${successes} consecutive successes)` : why;
  return { state: next(s, { probed, failures: 0, successes, holdUntil: undefined }), reason, outcome: "applied" };
}

function observe(s: HealthState, source: "probe" | "traffic", obs: Observation, o: ResolvedHealthOptions, now: number): Step {
  const v = judge(source, obs, o);
  return v.alive ? onSuccess(s, v.why, o, now) : onFailure(s, v, o, now);
}

/** The transition function. `now` is `Clock.now()` milliseconds. */
export function transition(s: HealthState, e: HealthEvent, o: ResolvedHealthOptions, now: number): Step {
  switch (e.type) {
    case "probe":
      if (e.generation !== s.generation) {
        return { state: s, reason: `late probe result from generation ${e.generation}, now ${s.generation}`, outcome: "stale" };
      }
      return observe(s, "probe", e.observation, o, now);
    case "traffic":
      return observe(s, "traffic", e.observation, o, now);
    case "disable":
      return { state: next(s, { disabled: true }), reason: "admin disable", outcome: "applied" };
    case "enable":
      return { state: next(s, { disabled: false }), reason: `admin enable (probes say ${s.probed})`, outcome: "applied" };
    case "drain":
      return { state: next(s, { draining: true }), reason: "admin drain", outcome: "applied" };
    case "undrain":
      return { state: next(s, { draining: false }), reason: "admin undrain", outcome: "applied" };
    case "hold-expired":
      // The hold may have been extended by a later 503 since the timer was
      // armed: only a hold that has really run out is lifted.
      if (s.holdUntil === undefined || now < s.holdUntil) {
        return { state: s, reason: "Retry-After hold still running", outcome: "applied" };
      }
      return { state: next(s, { holdUntil: undefined }), reason: "Retry-After hold expired", outcome: "applied" };
    default:
      return assertNever(e);
  }
}
