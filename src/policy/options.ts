/**
 * Failover policy settings (DESIGN.md §2.3). Defaults from a PBX vendor's
 * resilience guide; the config schema maps onto `FailoverOptions`.
 */
export type FailbackMode = "auto" | "manual";

export interface FailoverOptions {
  /** Main must have been unusable this long before anyone's home moves (a reboot must not cause a failover). */
  holdDownSeconds: number;
  /** Main must have been usable this long, without a drop, before anyone moves back. */
  failbackStableSeconds: number;
  /** After a device moved back to Main, its requests that fail there are served by the Standby this long. */
  graceSeconds: number;
  /** `manual`: devices stay on the Standby until ops call failback. */
  failbackMode: FailbackMode;
  /** While a switch is pending, the Expires returned to a device is at most the time to its switch plus this. */
  pendingExpiresSlackSeconds: number;
  /** ...and never below this, so a device is not made to refresh in a tight loop near its switch. */
  pendingExpiresMinSeconds: number;
  /** Switch windows remembered (see `SwitchHistory`); a bound, not a tuning knob. */
  historyLimit: number;
}

export const DEFAULT_FAILOVER_OPTIONS: Readonly<FailoverOptions> = Object.freeze({
  holdDownSeconds: 180,
  failbackStableSeconds: 600,
  graceSeconds: 300,
  failbackMode: "auto",
  pendingExpiresSlackSeconds: 30,
  pendingExpiresMinSeconds: 30,
  historyLimit: 256,
});

/** Fills defaults and validates; throws on a config error. */
export function resolveFailoverOptions(partial: Partial<FailoverOptions> = {}): Readonly<FailoverOptions> {
  const o: FailoverOptions = { ...DEFAULT_FAILOVER_OPTIONS, ...partial };
  for (const k of [
    "holdDownSeconds",
    "failbackStableSeconds",
    "graceSeconds",
    "pendingExpiresSlackSeconds",
    "pendingExpiresMinSeconds",
  ] as const) {
    if (!Number.isFinite(o[k]) || o[k] < 0) throw new Error(`failover.${k}: must be a number >= 0, got ${o[k]}`);
  }
  if (o.failbackMode !== "auto" && o.failbackMode !== "manual") {
    throw new Error(`failover.failbackMode: must be auto or manual, got ${String(o.failbackMode)}`);
  }
  if (!Number.isInteger(o.historyLimit) || o.historyLimit < 1) throw new Error(`failover.historyLimit: must be a positive integer`);
  return Object.freeze(o);
}
