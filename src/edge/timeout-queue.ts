import type { Clock, TimerHandle } from "../util/clock.js";

/** One pending timeout; only ever handed back to `TimeoutQueue.cancel`. */
export interface QueuedTimeout<T> {
  readonly due: number;
  /** Dropped on cancel: a cancelled entry waits in the queue until its deadline, its value need not. */
  value: T | undefined;
  live: boolean;
}

/** Queue length past which the consumed front of the array is dropped. */
const COMPACT_AT = 1024;

/**
 * Timeouts that all have the same duration, such as the per-request
 * failover timer (DESIGN.md §2.1). Their deadlines come in the order they
 * are armed, so a FIFO keeps them sorted, and one clock timer, set for the
 * earliest live deadline, serves them all. Cancelling only marks an entry.
 * At thousands of INVITE/REGISTER per second this replaces a timer, a
 * closure and a map entry per request with one array slot while several
 * are pending; each timeout still fires at its own deadline, in arming
 * order. The clock timer is left to run out when the last live timeout is
 * cancelled (it then finds nothing and is not set again): at 10,000
 * REGISTER/s answered within a millisecond the queue empties between most
 * requests, and setting and clearing a system timer each time was most of
 * the failover timers' cost.
 */
export class TimeoutQueue<T> {
  private items: QueuedTimeout<T>[] = [];
  private head = 0;
  private timer: TimerHandle | undefined;
  private sweeping = false;
  private live = 0;

  constructor(
    private readonly clock: Clock,
    private readonly durationMs: number,
    private readonly onExpire: (value: T) => void,
  ) {}

  add(value: T): QueuedTimeout<T> {
    const e: QueuedTimeout<T> = { due: this.clock.now() + this.durationMs, value, live: true };
    this.items.push(e);
    this.live++;
    if (this.timer === undefined && !this.sweeping) this.arm(e.due);
    return e;
  }

  cancel(e: QueuedTimeout<T>): void {
    if (!e.live) return;
    e.live = false;
    e.value = undefined;
    if (--this.live === 0 && !this.sweeping) this.drop();
  }

  /**
   * Nothing live is left: the entries go now, young, rather than wait in
   * the queue until their deadlines (which got them promoted to the old
   * generation and grew the heap). A clock timer still set fires early for
   * the next timeout added, and the sweep sets it again for that one's
   * deadline.
   */
  private drop(): void {
    this.items.length = 0;
    this.head = 0;
  }

  /** Live timeouts still waiting (for tests and status). */
  get pending(): number {
    return this.live;
  }

  private arm(due: number): void {
    this.timer = this.clock.setTimer(Math.max(0, due - this.clock.now()), this.sweep);
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    this.sweeping = true;
    try {
      const now = this.clock.now();
      while (this.head < this.items.length) {
        const e = this.items[this.head]!;
        // A system timer may fire a little before the deadline by this clock: wait for it.
        if (e.live && e.due > now) break;
        this.head++;
        if (e.live) {
          const v = e.value as T;
          e.live = false;
          e.value = undefined;
          this.live--;
          this.onExpire(v);
        }
      }
      // Cancelled entries at the front need no timer of their own.
      while (this.head < this.items.length && !this.items[this.head]!.live) this.head++;
    } finally {
      this.sweeping = false;
      if (this.head >= this.items.length) {
        this.drop();
      } else {
        if (this.head >= COMPACT_AT && this.head * 2 >= this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        this.arm(this.items[this.head]!.due);
      }
    }
  };
}
