import type { Device } from "./device.js";

export type TargetRole = "main" | "standby";

/**
 * A switch window: a span of time during which devices move their home to
 * `to`, each at `start + its own delay`, for as long as the window stays
 * open. A failover window opens once Main has been unusable for the
 * hold-down and closes when Main is usable again; a failback window opens
 * once Main has been usable and stable for the failback delay and closes
 * when Main drops. A device whose delay had not run out when the window
 * closed never moved: that is how a Main that comes back inside the
 * hold-down plus a device's delay re-homes nobody, and how a flapping Main
 * moves nobody back (DESIGN.md §2.3).
 *
 * Homes are computed from this shared history and the device's delays, so
 * the edge keeps no per-device state and every instance that sees the same
 * health computes the same homes.
 */
export interface SwitchWindow {
  readonly to: TargetRole;
  /** Clock ms. */
  readonly start: number;
  /** Clock ms; undefined while open. */
  readonly end: number | undefined;
  /** `ops`: force failover or failback now, not the guards. */
  readonly cause: "auto" | "ops";
  /** Ops asked for everyone at once: no class delays. */
  readonly immediate: boolean;
}

/**
 * How long a device waits inside a window before it moves, or null when it
 * does not move in it. A class with no delay for a direction (`null` in the
 * table) is moved only by ops, and then at once.
 */
export function delayIn(w: SwitchWindow, d: Device): number | null {
  if (w.immediate) return 0;
  const delay = w.to === "standby" ? d.toBackupMs : d.toMainMs;
  if (delay === null) return w.cause === "ops" ? 0 : null;
  return delay;
}

/**
 * The kind of a device for the history: whether it moves by itself towards
 * the Standby (first letter) and towards Main (second), `d` for a delay and
 * `n` for none.
 */
export type MoverKey = "dd" | "dn" | "nd" | "nn";

export const MOVER_KEYS: readonly MoverKey[] = ["dd", "dn", "nd", "nn"];

export function moverKey(d: { readonly toBackupMs: number | null; readonly toMainMs: number | null }): MoverKey {
  return `${d.toBackupMs === null ? "n" : "d"}${d.toMainMs === null ? "n" : "d"}` as MoverKey;
}

/**
 * moverKey(d) from the device's class alone: a delay is null exactly when
 * the class has none for that direction, and reading the delays themselves
 * would hash the device's identity (src/policy/device.ts) for nothing.
 */
export function classMoverKey(d: Device): MoverKey {
  const c = d.deviceClass;
  return MOVER_KEYS[(c.toBackup === null ? 2 : 0) + (c.toMain === null ? 1 : 0)]!;
}

/** Whether devices of that kind move in the window. */
export function movesIn(w: SwitchWindow, k: MoverKey): boolean {
  return w.immediate || w.cause === "ops" || (w.to === "standby" ? k[0] === "d" : k[1] === "d");
}

export interface Placement {
  readonly home: TargetRole;
  /** When the device moved to `home`; undefined if it never moved in the remembered history. */
  readonly movedAt: number | undefined;
  readonly window: SwitchWindow | undefined;
}

/**
 * The bounded list of switch windows. A device's home is decided by the
 * newest window it moved in, so a window in which every device that moves
 * in it has moved ("complete") hides all older windows from those devices;
 * an older window is dropped once no kind of device in the table could
 * still need it. In the normal case the list holds one or two windows. When
 * the bound is hit anyway (hours of a Main that flaps on exactly the guard
 * timings), the oldest window is folded into a fallback home per kind of
 * device, as if everyone who moves in it had moved.
 */
export class SwitchHistory {
  private windows: SwitchWindow[] = [];
  private readonly fallback = new Map<MoverKey, TargetRole>(MOVER_KEYS.map((k) => [k, "main"]));

  constructor(private readonly limit: number) {}

  get list(): readonly SwitchWindow[] {
    return this.windows;
  }

  get last(): SwitchWindow | undefined {
    return this.windows.at(-1);
  }

  get open(): SwitchWindow | undefined {
    const w = this.windows.at(-1);
    return w !== undefined && w.end === undefined ? w : undefined;
  }

  /** Opens a window; an open one is closed at its start first. */
  begin(w: Omit<SwitchWindow, "end">): SwitchWindow {
    this.end(w.start);
    const opened: SwitchWindow = Object.freeze({ ...w, end: undefined });
    this.windows.push(opened);
    while (this.windows.length > this.limit) this.fold(this.windows.shift()!);
    return opened;
  }

  /** Closes the open window, if any; returns it. */
  end(at: number): SwitchWindow | undefined {
    const w = this.open;
    if (w === undefined) return undefined;
    const closed: SwitchWindow = Object.freeze({ ...w, end: Math.max(at, w.start) });
    this.windows[this.windows.length - 1] = closed;
    return closed;
  }

  /** Every device that moves in `w` has moved (or, while it is open, already has by `now`). */
  complete(w: SwitchWindow, now: number, longest: (w: SwitchWindow) => number): boolean {
    return (w.end ?? now) - w.start >= longest(w);
  }

  /**
   * Drops windows no device can need any more. `longest(w)` is the longest
   * delay of any device that moves in w; `present` the kinds of device the
   * table can produce.
   */
  compact(now: number, present: ReadonlySet<MoverKey>, longest: (w: SwitchWindow) => number): void {
    // The common case, checked on every request: nothing older to drop.
    if (this.windows.length <= 1) return;
    const caught = new Set<MoverKey>();
    const kept: SwitchWindow[] = [];
    for (let i = this.windows.length - 1; i >= 0; i--) {
      const w = this.windows[i]!;
      const movers = MOVER_KEYS.filter((k) => present.has(k) && movesIn(w, k));
      // The newest window stays: it decides what opens next.
      if (i === this.windows.length - 1 || movers.some((k) => !caught.has(k))) kept.push(w);
      if (this.complete(w, now, longest)) for (const k of movers) caught.add(k);
    }
    if (kept.length !== this.windows.length) this.windows = kept.reverse();
  }

  placement(d: Device, now: number): Placement {
    for (let i = this.windows.length - 1; i >= 0; i--) {
      const w = this.windows[i]!;
      const delay = delayIn(w, d);
      if (delay === null) continue;
      const moveAt = w.start + delay;
      // Moved only if its delay ran out while the window was still open
      // (a window closing at the very moment a device moves does not undo it).
      if (moveAt > now || (w.end !== undefined && moveAt > w.end)) continue;
      return { home: w.to, movedAt: moveAt, window: w };
    }
    return { home: this.fallback.get(classMoverKey(d)) ?? "main", movedAt: undefined, window: undefined };
  }

  private fold(w: SwitchWindow): void {
    for (const k of MOVER_KEYS) if (movesIn(w, k)) this.fallback.set(k, w.to);
  }
}
