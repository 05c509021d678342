/**
 * Health-check settings for one target. Plain values with defaults; the
 * config schema maps onto `HealthOptions`, and `resolveHealthOptions`
 * validates them once and precompiles the code sets the machine consults on
 * every result (DESIGN.md §5.7: work moves from per-packet to config time).
 */

/**
 * Which probe responses prove the target alive (DESIGN.md §2.2):
 * - `"default"`: any final response except 408, 500, 503 and 504 (a 404 or
 *   405 to OPTIONS still proves a SIP stack is answering);
 * - `"strict"`: 2xx only;
 * - an explicit list of final status codes.
 */
export type AliveCodes = "default" | "strict" | readonly number[];

export interface HealthOptions {
  /** `down` after this many consecutive failures (N). */
  failuresToDown: number;
  /** `up` after this many consecutive successes once down (M). */
  successesToUp: number;
  /** Probe interval while the target is `up`. */
  intervalUpMs: number;
  /** Probe interval while it is `suspect`, `down` or `recovering`: faster, to confirm or clear the doubt. */
  intervalDownMs: number;
  /** Probe timeout, independent of SIP transaction timers. */
  probeTimeoutMs: number;
  aliveCodes: AliveCodes;
  /**
   * Final responses on real traffic that count as a failure of the target
   * (the same set that sends a request to the next target, DESIGN.md §2.1).
   * Every other response, provisional ones included, proves it alive.
   */
  passiveFailureCodes: readonly number[];
  /** Weight of the newest RTT sample in the moving average (0 < alpha <= 1). */
  rttEwmaAlpha: number;
  /** Transitions kept per target for status. */
  historySize: number;
}

export const DEFAULT_HEALTH_OPTIONS: Readonly<HealthOptions> = Object.freeze({
  failuresToDown: 3,
  successesToUp: 2,
  intervalUpMs: 10_000,
  intervalDownMs: 5_000,
  probeTimeoutMs: 2_000,
  aliveCodes: "default",
  passiveFailureCodes: Object.freeze([408, 500, 503, 504]),
  rttEwmaAlpha: 0.2,
  historySize: 50,
});

/** Codes that never prove a target alive in the default mode (DESIGN.md §2.2). */
const DEFAULT_NOT_ALIVE: ReadonlySet<number> = new Set([408, 500, 503, 504]);

export interface ResolvedHealthOptions extends Readonly<Omit<HealthOptions, "passiveFailureCodes">> {
  readonly passiveFailureCodes: ReadonlySet<number>;
  /** True when a probe's final response proves the target alive. */
  isAlive(status: number): boolean;
}

function isFinal(status: number): boolean {
  return Number.isInteger(status) && status >= 200 && status <= 699;
}

function isStatusCode(n: number): boolean {
  return Number.isInteger(n) && n >= 100 && n <= 699;
}

/** Compiles an alive-code spec into a predicate; throws on a config error. */
export function compileAliveCodes(spec: AliveCodes): (status: number) => boolean {
  if (spec === "default") return (s) => isFinal(s) && !DEFAULT_NOT_ALIVE.has(s);
  if (spec === "strict") return (s) => isFinal(s) && s < 300;
  if (spec.length === 0) throw new Error("health.aliveCodes: an explicit list must not be empty");
  for (const c of spec) {
    if (!isFinal(c)) throw new Error(`health.aliveCodes: ${c} is not a final status code (200-699)`);
  }
  const set = new Set(spec);
  return (s) => set.has(s);
}

function positive(name: string, v: number, integer: boolean): void {
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new Error(`health.${name}: must be a positive ${integer ? "integer" : "number"}, got ${v}`);
  }
}

/** Fills defaults and validates; throws on a config error (never on network input). */
export function resolveHealthOptions(partial: Partial<HealthOptions> = {}): ResolvedHealthOptions {
  const o: HealthOptions = { ...DEFAULT_HEALTH_OPTIONS, ...partial };
  positive("failuresToDown", o.failuresToDown, true);
  positive("successesToUp", o.successesToUp, true);
  positive("intervalUpMs", o.intervalUpMs, false);
  positive("intervalDownMs", o.intervalDownMs, false);
  positive("probeTimeoutMs", o.probeTimeoutMs, false);
  positive("historySize", o.historySize, true);
  if (!(o.rttEwmaAlpha > 0 && o.rttEwmaAlpha <= 1)) {
    throw new Error(`health.rttEwmaAlpha: must be in (0, 1], got ${o.rttEwmaAlpha}`);
  }
  for (const c of o.passiveFailureCodes) {
    if (!isStatusCode(c)) throw new Error(`health.passiveFailureCodes: ${c} is not a status code`);
  }
  const isAlive = compileAliveCodes(o.aliveCodes);
  return Object.freeze({ ...o, passiveFailureCodes: new Set(o.passiveFailureCodes), isAlive });
}
