import type { Usability } from "../health/machine.js";
import type { HealthTransition, TransitionListener } from "../health/target-health.js";
import type { Clock, TimerHandle } from "../util/clock.js";
import { deviceAt, makeDevice, type Device } from "./device.js";
import type { DeviceClass, DeviceInfo, DeviceTable, RegisterMode } from "./device-table.js";
import { resolveFailoverOptions, type FailbackMode, type FailoverOptions } from "./options.js";
import { deviceIdentity, type SwitchDelay } from "./spread.js";
import { delayIn, moverKey, SwitchHistory, type MoverKey, type Placement, type SwitchWindow, type TargetRole } from "./windows.js";

export type { TargetRole } from "./windows.js";

/** What the policy needs of a target's health; `TargetHealth` is one. */
export interface HealthHandle {
  readonly name: string;
  usability(): Usability;
  onTransition(listener: TransitionListener): () => void;
  drain(): void;
  undrain(): void;
}

export interface PendingSwitch {
  readonly to: TargetRole;
  /** Clock ms at which the device's home moves, if conditions hold until then. */
  readonly at: number;
}

/** The answer to "where does this request go now?" for one device. */
export interface RouteAnswer {
  readonly device: Device;
  /** The answer to "where is this device's home?". */
  readonly home: TargetRole;
  /**
   * Names of the usable targets in the order to try them, home first; the
   * rest are the per-request failover. Never a down, recovering, disabled
   * or draining target. Empty: nothing is usable (answer 503).
   */
  readonly targets: readonly string[];
  readonly register: RegisterMode;
  readonly pinned: boolean;
  readonly pending: PendingSwitch | undefined;
  /**
   * Clock ms until which this device is inside its grace after failback:
   * while set, a request of this device that fails on Main with any final
   * failure (not only 408/5xx) should be retried on the Standby, so the
   * device is not left unregistered ("homeless prevention", DESIGN.md §2.3).
   */
  readonly graceUntil: number | undefined;
}

export type OpsResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export type PolicyEvent =
  | {
      readonly type: "switch-started";
      readonly to: TargetRole;
      readonly cause: "auto" | "ops";
      readonly immediate: boolean;
      /** Wall ms of the window's start (it may be opened a little after that, on the next call). */
      readonly at: number;
      readonly reason: string;
    }
  | { readonly type: "switch-stopped"; readonly to: TargetRole; readonly at: number; readonly reason: string }
  | { readonly type: "ops"; readonly action: string; readonly at: number; readonly reason: string };

export interface ClassStatus {
  readonly name: string;
  readonly register: RegisterMode;
  readonly transport: string | undefined;
  readonly port: number | undefined;
  readonly toBackup: SwitchDelay;
  readonly toMain: SwitchDelay;
  readonly pinned: TargetRole | null;
  /** `split` while a switch is under way: some devices of the class have moved, some not. */
  readonly home: TargetRole | "split";
  /** Share of the class's devices homed on the Standby (sampled over the class's ranges). */
  readonly onStandby: number;
  /** Wall ms of the first and last device switch still to come. */
  readonly pending: { readonly to: TargetRole; readonly first: number; readonly last: number } | null;
}

export interface PolicyStatus {
  readonly failbackMode: FailbackMode;
  /** An ops failover is in force: no automatic failback until ops call failback. */
  readonly forced: boolean;
  readonly holdDownSeconds: number;
  readonly failbackStableSeconds: number;
  readonly graceSeconds: number;
  readonly main: { readonly name: string; readonly usable: boolean; readonly since: number };
  readonly standby: { readonly name: string; readonly usable: boolean; readonly since: number };
  readonly windows: readonly {
    readonly to: TargetRole;
    readonly cause: "auto" | "ops";
    readonly immediate: boolean;
    readonly start: number;
    readonly end: number | null;
  }[];
  readonly classes: readonly ClassStatus[];
}

export interface FailoverPolicyDeps {
  /** The primary target (lowest priority number). */
  main: HealthHandle;
  /** The backup target. */
  standby: HealthHandle;
  table: DeviceTable;
  clock: Clock;
  options?: Partial<FailoverOptions>;
  onEvent?: (e: PolicyEvent) => void;
}

interface Side {
  readonly handle: HealthHandle;
  usable: boolean;
  /** Clock ms when `usable` last changed. */
  since: number;
}

/** Devices sampled per class for status: enough to show a switch's progress in 1.5 % steps. */
const STATUS_SAMPLES = 64;

/**
 * The failover/failback policy (DESIGN.md §2.3). It keeps the two
 * questions apart:
 * - `route(device)`: where does this request go now? Usable targets only,
 *   home first;
 * - the home itself, which moves only through switch windows opened by the
 *   global guards (hold-down, failback stability) and ops actions, each
 *   device at its class delay inside the window.
 *
 * Pure decisions over health transitions and time. Its one timer (through
 * the injected clock) only makes a window open on time for the event log;
 * every answer recomputes from the clock anyway.
 */
export class FailoverPolicy {
  private readonly o: Readonly<FailoverOptions>;
  private readonly clock: Clock;
  private readonly main: Side;
  private readonly standby: Side;
  private readonly history: SwitchHistory;
  private readonly pins = new Map<string, TargetRole>();
  private readonly unsubscribe: Array<() => void>;
  private readonly onEvent: ((e: PolicyEvent) => void) | undefined;
  private table: DeviceTable;
  private mode: FailbackMode;
  private forced = false;
  private lastNow: number;
  private wake: { at: number; handle: TimerHandle } | undefined;
  private present: ReadonlySet<MoverKey> = new Set();
  private readonly longest = (w: SwitchWindow): number => this.longestDelay(w);

  constructor(d: FailoverPolicyDeps) {
    this.o = resolveFailoverOptions(d.options);
    this.clock = d.clock;
    this.table = d.table;
    this.mode = this.o.failbackMode;
    this.onEvent = d.onEvent;
    this.history = new SwitchHistory(this.o.historyLimit);
    this.lastNow = d.clock.now();
    this.main = { handle: d.main, usable: d.main.usability().newRequests, since: this.lastNow };
    this.standby = { handle: d.standby, usable: d.standby.usability().newRequests, since: this.lastNow };
    this.present = this.presentKeys();
    this.unsubscribe = [
      d.main.onTransition((t) => this.observe(this.main, t)),
      d.standby.onTransition((t) => this.observe(this.standby, t)),
    ];
  }

  // ---- devices ----------------------------------------------------------------

  /** Classifies a device and places it in its class's ranges by its identity (AOR, else source address). */
  device(info: DeviceInfo): Device {
    return makeDevice(this.table.classify(info), deviceIdentity(info.aor, info.source));
  }

  /** A device whose class was set by name (a rule's `set device class`); the default class if unknown. */
  deviceOfClass(className: string, identity: string): Device {
    return makeDevice(this.table.byName(className) ?? this.table.defaultClass, identity);
  }

  /** Swaps the device table on reload; pins of classes that no longer exist are dropped. */
  setDeviceTable(table: DeviceTable): void {
    this.table = table;
    for (const name of [...this.pins.keys()]) if (table.byName(name) === undefined) this.pins.delete(name);
    this.present = this.presentKeys();
  }

  // ---- the two questions --------------------------------------------------------

  /** Where is this device's home now? */
  home(device: Device, now = this.clock.now()): TargetRole {
    return this.place(device, this.advance(now)).home;
  }

  /** Where does this device's new request go now? */
  route(device: Device, now = this.clock.now()): RouteAnswer {
    const t = this.advance(now);
    const pin = this.pins.get(device.deviceClass.name);
    const p = this.place(device, t);
    // Home first; asked per request, so one list, not an order filtered and mapped.
    const first = p.home === "main" ? this.main : this.standby;
    const second = first === this.main ? this.standby : this.main;
    const targets: string[] = [];
    if (first.usable) targets.push(first.handle.name);
    if (second.usable) targets.push(second.handle.name);
    const grace =
      pin === undefined && p.home === "main" && p.movedAt !== undefined && t < p.movedAt + this.o.graceSeconds * 1000
        ? p.movedAt + this.o.graceSeconds * 1000
        : undefined;
    return {
      device,
      home: p.home,
      targets,
      register: device.deviceClass.register,
      pinned: pin !== undefined,
      pending: pin === undefined ? this.pendingOf(device, p, t) : undefined,
      graceUntil: grace,
    };
  }

  /** The switch coming for this device if conditions hold, or undefined. */
  pendingSwitch(device: Device, now = this.clock.now()): PendingSwitch | undefined {
    // route(device, now).pending without the rest of the answer: asked of every REGISTER's 2xx (capExpires).
    const t = this.advance(now);
    if (this.pins.has(device.deviceClass.name)) return undefined;
    return this.pendingOf(device, this.place(device, t), t);
  }

  /**
   * The Expires (seconds) to give a device that asked for `requested`: while
   * a switch is pending for it, at most the time to its switch plus a little
   * slack (and never below a floor), so its next refresh lands in its
   * switch window and moves it; otherwise `requested` unchanged.
   */
  capExpires(device: Device, requested: number, now = this.clock.now()): number {
    const p = this.pendingSwitch(device, now);
    if (p === undefined) return requested;
    const toSwitch = Math.ceil((p.at - Math.max(now, this.lastNow)) / 1000);
    const cap = Math.max(this.o.pendingExpiresMinSeconds, toSwitch + this.o.pendingExpiresSlackSeconds);
    return Math.min(requested, cap);
  }

  // ---- ops actions ----------------------------------------------------------------

  /** Moves every device's home to the Standby now (each at its class delay unless `immediate`), and keeps it there until `failbackNow`. */
  forceFailover(opts: { immediate?: boolean } = {}): OpsResult {
    const t = this.advance(this.clock.now());
    if (!this.standby.usable) return { ok: false, reason: `standby ${this.standby.handle.name} is not usable` };
    this.closeWindow(t, "ops: force failover");
    this.forced = true;
    this.openWindow({ to: "standby", start: t, cause: "ops", immediate: opts.immediate ?? false }, "ops: force failover");
    this.scheduleWake(t);
    return { ok: true };
  }

  /** Moves every device's home back to Main now, skipping the stability delay (each at its class delay unless `immediate`). */
  failbackNow(opts: { immediate?: boolean } = {}): OpsResult {
    const t = this.advance(this.clock.now());
    if (!this.main.usable) return { ok: false, reason: `main ${this.main.handle.name} is not usable` };
    this.closeWindow(t, "ops: failback now");
    this.forced = false;
    this.openWindow({ to: "main", start: t, cause: "ops", immediate: opts.immediate ?? false }, "ops: failback now");
    this.scheduleWake(t);
    return { ok: true };
  }

  setFailbackMode(mode: FailbackMode): OpsResult {
    const t = this.advance(this.clock.now());
    this.mode = mode;
    this.ops("failback-mode", `failback mode ${mode}`, t);
    this.advance(t);
    this.scheduleWake(t);
    return { ok: true };
  }

  /** Keeps every device of a class homed on one target until `unpin`; its requests still avoid an unusable target. */
  pin(className: string, to: TargetRole): OpsResult {
    if (this.table.byName(className) === undefined) return { ok: false, reason: `unknown device class ${className}` };
    this.pins.set(className, to);
    this.ops("pin", `class ${className} pinned to ${to}`, this.advance(this.clock.now()));
    return { ok: true };
  }

  unpin(className: string): OpsResult {
    if (!this.pins.delete(className)) return { ok: false, reason: `device class ${className} is not pinned` };
    this.ops("unpin", `class ${className} unpinned`, this.advance(this.clock.now()));
    return { ok: true };
  }

  /** No new requests to that target (calls in progress continue); it counts as unusable for the guards. */
  drain(target: TargetRole): OpsResult {
    this.side(target).handle.drain();
    return { ok: true };
  }

  undrain(target: TargetRole): OpsResult {
    this.side(target).handle.undrain();
    return { ok: true };
  }

  // ---- status -----------------------------------------------------------------------

  status(now = this.clock.now()): PolicyStatus {
    const t = this.advance(now);
    const wall = (ms: number) => this.wall(ms, t);
    return {
      failbackMode: this.mode,
      forced: this.forced,
      holdDownSeconds: this.o.holdDownSeconds,
      failbackStableSeconds: this.o.failbackStableSeconds,
      graceSeconds: this.o.graceSeconds,
      main: { name: this.main.handle.name, usable: this.main.usable, since: wall(this.main.since) },
      standby: { name: this.standby.handle.name, usable: this.standby.usable, since: wall(this.standby.since) },
      windows: this.history.list.map((w) => ({
        to: w.to,
        cause: w.cause,
        immediate: w.immediate,
        start: wall(w.start),
        end: w.end === undefined ? null : wall(w.end),
      })),
      classes: this.table.classes.map((c) => this.classStatus(c, t)),
    };
  }

  /** Stops listening to health and cancels the wake-up timer. */
  close(): void {
    for (const u of this.unsubscribe) u();
    if (this.wake !== undefined) this.clock.clearTimer(this.wake.handle);
    this.wake = undefined;
  }

  // ---- internals ----------------------------------------------------------------------

  private side(role: TargetRole): Side {
    return role === "main" ? this.main : this.standby;
  }

  private wall(ms: number, now: number): number {
    return this.clock.wallNow() + (ms - now);
  }

  private place(device: Device, now: number): Placement {
    const pin = this.pins.get(device.deviceClass.name);
    if (pin !== undefined) return { home: pin, movedAt: undefined, window: undefined };
    return this.history.placement(device, now);
  }

  private observe(side: Side, t: HealthTransition): void {
    const now = this.advance(t.mono);
    const usable = t.usable.newRequests;
    if (usable === side.usable) return;
    side.usable = usable;
    side.since = now;
    if (side === this.main) {
      const open = this.history.open;
      // A failback window needs Main to stay usable: a drop stops it and
      // restarts the stability clock (a flapping Main moves nobody back).
      if (!usable && open?.to === "main") this.closeWindow(now, `main ${t.to}: ${t.reason}`);
      // Main is back: nobody else moves to the Standby. An ops failover stays.
      if (usable && open?.to === "standby" && open.cause === "auto") this.closeWindow(now, `main usable again: ${t.reason}`);
    }
    this.advance(now);
    this.scheduleWake(now);
  }

  /** When the next automatic window would open, if conditions hold until then. */
  private nextOpening(): { to: TargetRole; at: number } | undefined {
    const open = this.history.open;
    if (!this.main.usable && this.standby.usable && open?.to !== "standby") {
      // Nothing to fail over once a failover window has moved everyone.
      const last = this.history.last;
      if (last?.to === "standby" && this.history.complete(last, this.lastNow, this.longest)) return undefined;
      return { to: "standby", at: Math.max(this.main.since + this.o.holdDownSeconds * 1000, this.standby.since) };
    }
    const last = this.history.last;
    if (this.main.usable && this.mode === "auto" && !this.forced && open === undefined && last !== undefined) {
      // Nothing to fail back once a failback window has moved everyone.
      if (last.to === "main" && this.history.complete(last, this.lastNow, this.longest)) return undefined;
      return { to: "main", at: this.main.since + this.o.failbackStableSeconds * 1000 };
    }
    return undefined;
  }

  /** Brings the window history up to `now`; returns the (monotonic) time used. */
  private advance(now: number): number {
    const t = Math.max(now, this.lastNow);
    this.lastNow = t;
    const next = this.nextOpening();
    if (next !== undefined && next.at <= t) {
      const reason =
        next.to === "standby"
          ? `main ${this.main.handle.name} unusable for the ${this.o.holdDownSeconds}s hold-down`
          : `main ${this.main.handle.name} usable and stable for ${this.o.failbackStableSeconds}s`;
      this.openWindow({ to: next.to, start: next.at, cause: "auto", immediate: false }, reason);
    }
    this.history.compact(t, this.present, this.longest);
    return t;
  }

  private openWindow(w: Omit<SwitchWindow, "end">, reason: string): void {
    this.history.begin(w);
    this.emit({ type: "switch-started", to: w.to, cause: w.cause, immediate: w.immediate, at: this.wall(w.start, this.lastNow), reason });
  }

  private closeWindow(at: number, reason: string): void {
    const w = this.history.end(at);
    if (w !== undefined) this.emit({ type: "switch-stopped", to: w.to, at: this.wall(at, this.lastNow), reason });
  }

  private ops(action: string, reason: string, at: number): void {
    this.emit({ type: "ops", action, at: this.wall(at, this.lastNow), reason });
  }

  private emit(e: PolicyEvent): void {
    this.onEvent?.(e);
  }

  /** The timer that opens the next window on time (for the event log and status). */
  private scheduleWake(now: number): void {
    const next = this.nextOpening();
    const at = next !== undefined && next.at > now ? next.at : undefined;
    if (at === this.wake?.at) return;
    if (this.wake !== undefined) this.clock.clearTimer(this.wake.handle);
    this.wake = undefined;
    if (at === undefined) return;
    const handle = this.clock.setTimer(at - now, () => {
      this.wake = undefined;
      const t = this.advance(this.clock.now());
      this.scheduleWake(t);
    });
    this.wake = { at, handle };
  }

  private presentKeys(): ReadonlySet<MoverKey> {
    return new Set(
      this.table.classes.map((c) => moverKey({ toBackupMs: c.toBackup === null ? null : 0, toMainMs: c.toMain === null ? null : 0 })),
    );
  }

  /** The longest any device that moves in `w` waits in it. */
  private longestDelay(w: SwitchWindow): number {
    if (w.immediate) return 0;
    let m = 0;
    for (const c of this.table.classes) {
      const d = w.to === "standby" ? c.toBackup : c.toMain;
      // Without a delay a class moves only in ops windows, at once.
      if (d !== null) m = Math.max(m, d.max * 1000);
    }
    return m;
  }

  private pendingOf(device: Device, p: Placement, now: number): PendingSwitch | undefined {
    const open = this.history.open;
    if (open !== undefined && open.to !== p.home) {
      const d = delayIn(open, device);
      if (d !== null && open.start + d > now) return { to: open.to, at: open.start + d };
    }
    const next = this.nextOpening();
    if (next === undefined || next.to === p.home) return undefined;
    const d = next.to === "standby" ? device.toBackupMs : device.toMainMs;
    return d === null ? undefined : { to: next.to, at: next.at + d };
  }

  private classStatus(c: DeviceClass, now: number): ClassStatus {
    const pin = this.pins.get(c.name) ?? null;
    let onStandby = 0;
    let pending: { to: TargetRole; first: number; last: number } | null = null;
    for (let i = 0; i < STATUS_SAMPLES; i++) {
      const dev = deviceAt(c, "", (i + 0.5) / STATUS_SAMPLES);
      const p = this.place(dev, now);
      if (p.home === "standby") onStandby++;
      const s = pin === null ? this.pendingOf(dev, p, now) : undefined;
      if (s !== undefined) {
        const at = this.wall(s.at, now);
        pending = pending === null ? { to: s.to, first: at, last: at } : { to: s.to, first: Math.min(pending.first, at), last: Math.max(pending.last, at) };
      }
    }
    const share = onStandby / STATUS_SAMPLES;
    return {
      name: c.name,
      register: c.register,
      transport: c.transport,
      port: c.port,
      toBackup: c.toBackup,
      toMain: c.toMain,
      pinned: pin,
      home: share === 0 ? "main" : share === 1 ? "standby" : "split",
      onStandby: share,
      pending,
    };
  }
}
