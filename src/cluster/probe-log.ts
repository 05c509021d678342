/**
 * The primary's memory of recent probe results, so a worker that starts
 * later (a replacement, a rolling restart) begins with the health the
 * probing worker sees instead of every target presumed usable: replaying
 * the last results through the worker's own health machine drives its
 * hysteresis to the same state (a Main that is down is down at once, not
 * after N more probe intervals of black-holed first attempts).
 */
import type { ProbeReport } from "../health/target-health.js";
import type { SeedEntry } from "./messages.js";

interface Entry {
  readonly result: ProbeReport;
  /** `Clock.now()` of the primary when the result arrived. */
  readonly at: number;
}

export class ProbeLog {
  private readonly byTarget = new Map<string, Entry[]>();

  /**
   * @param perTarget how many results to keep per target: enough for the
   *   hysteresis (downAfter + upAfter) to reach any state from the start.
   */
  constructor(private readonly perTarget: number) {
    if (!Number.isInteger(perTarget) || perTarget < 1) throw new Error("ProbeLog: perTarget must be a whole number of at least 1");
  }

  add(target: string, result: ProbeReport, now: number): void {
    let list = this.byTarget.get(target);
    if (list === undefined) {
      list = [];
      this.byTarget.set(target, list);
    }
    list.push({ result, at: now });
    if (list.length > this.perTarget) list.splice(0, list.length - this.perTarget);
  }

  /**
   * The results to replay at `now`, oldest first per target. A 503's
   * Retry-After is shortened by the time since it arrived (a replay must not
   * restart the hold from the beginning) and dropped once it has run out,
   * leaving a plain failure.
   */
  replay(now: number): SeedEntry[] {
    const out: SeedEntry[] = [];
    for (const [target, list] of this.byTarget) {
      for (const e of list) out.push({ target, result: aged(e.result, now - e.at) });
    }
    return out;
  }
}

function aged(r: ProbeReport, elapsedMs: number): ProbeReport {
  if (!r.ok || r.retryAfterSeconds === undefined) return r;
  const left = r.retryAfterSeconds - Math.max(0, elapsedMs) / 1000;
  if (left > 0) return { ...r, retryAfterSeconds: left };
  return { ok: true, status: r.status, rttMs: r.rttMs };
}
