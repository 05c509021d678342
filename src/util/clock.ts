/**
 * The clock every timing decision goes through. Production code gets
 * `systemClock`; tests get a `FakeClock` and advance it by hand, so no test
 * ever sleeps (DESIGN.md §5.5).
 */
export interface TimerHandle {
  /** Opaque; only ever passed back to `clearTimer`. */
  readonly id: number;
}

export interface Clock {
  /** Milliseconds since an arbitrary epoch; monotonic for the system clock. */
  now(): number;
  /** Wall-clock milliseconds since 1970, for timestamps shown to people. */
  wallNow(): number;
  setTimer(ms: number, fn: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

class SystemClock implements Clock {
  private nextId = 1;
  private readonly timers = new Map<number, NodeJS.Timeout>();

  now(): number {
    return performance.now();
  }

  wallNow(): number {
    return Date.now();
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const id = this.nextId++;
    const t = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, Math.max(0, ms));
    this.timers.set(id, t);
    return { id };
  }

  clearTimer(handle: TimerHandle): void {
    const t = this.timers.get(handle.id);
    if (t !== undefined) {
      clearTimeout(t);
      this.timers.delete(handle.id);
    }
  }
}

export const systemClock: Clock = new SystemClock();

/**
 * A clock that only moves when told to. `advance(ms)` fires every timer that
 * falls due, in due-time order, with `now()` set to each timer's due time.
 */
export class FakeClock implements Clock {
  private current: number;
  private readonly wallOffset: number;
  private nextId = 1;
  private readonly timers = new Map<number, { due: number; seq: number; fn: () => void }>();

  constructor(start = 0, wallStart = Date.UTC(2026, 0, 1)) {
    this.current = start;
    this.wallOffset = wallStart - start;
  }

  now(): number {
    return this.current;
  }

  wallNow(): number {
    return this.current + this.wallOffset;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { due: this.current + Math.max(0, ms), seq: id, fn });
    return { id };
  }

  clearTimer(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }

  /** Number of timers still pending. */
  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let nextId = -1;
      let next: { due: number; seq: number; fn: () => void } | undefined;
      for (const [id, t] of this.timers) {
        if (t.due <= target && (next === undefined || t.due < next.due || (t.due === next.due && t.seq < next.seq))) {
          next = t;
          nextId = id;
        }
      }
      if (next === undefined) break;
      this.timers.delete(nextId);
      this.current = next.due;
      next.fn();
    }
    this.current = target;
  }
}
