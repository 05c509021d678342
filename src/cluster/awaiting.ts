/**
 * Requests sent over the cluster IPC channel that wait for an answer, by
 * reference number: a flow hand-over waiting for a failure report
 * (src/cluster/flow-relay.ts), a worker's "who owns this transaction?"
 * (src/cluster/txn-owner.ts) and the primary's fan-out of it
 * (src/cluster/txn-fanout.ts). Each waits at most `withinMs` on the
 * injected clock, then `onExpire` gets it; at most `max` wait at once, and
 * the caller decides what "full" means (drop the oldest, or do not ask).
 */
import { TimeoutQueue, type QueuedTimeout } from "../edge/timeout-queue.js";
import type { Clock } from "../util/clock.js";

interface Entry<T> {
  readonly value: T;
  readonly timeout: QueuedTimeout<number>;
}

export class Awaiting<T> {
  private readonly entries = new Map<number, Entry<T>>();
  private readonly timeouts: TimeoutQueue<number>;
  private lastRef = 0;

  constructor(
    clock: Clock,
    withinMs: number,
    readonly max: number,
    onExpire: (value: T, ref: number) => void,
  ) {
    this.timeouts = new TimeoutQueue(clock, withinMs, (ref) => {
      const e = this.entries.get(ref);
      if (e === undefined) return;
      this.entries.delete(ref);
      onExpire(e.value, ref);
    });
  }

  get size(): number {
    return this.entries.size;
  }

  get full(): boolean {
    return this.entries.size >= this.max;
  }

  /** A new reference number, for the message that will carry it. */
  nextRef(): number {
    return ++this.lastRef;
  }

  /** `value` waits under `ref` from now on. */
  wait(ref: number, value: T): void {
    this.entries.set(ref, { value, timeout: this.timeouts.add(ref) });
  }

  /** The value waiting under `ref`, which goes on waiting; undefined when none does. */
  get(ref: number): T | undefined {
    return this.entries.get(ref)?.value;
  }

  /** The value waiting under `ref`, which waits no more; undefined when none does. */
  take(ref: number): T | undefined {
    const e = this.entries.get(ref);
    if (e === undefined) return undefined;
    this.entries.delete(ref);
    this.timeouts.cancel(e.timeout);
    return e.value;
  }

  /** Stops the oldest wait without expiring it; its value, or undefined when none waits. */
  dropOldest(): T | undefined {
    const first = this.entries.keys().next();
    return first.done === true ? undefined : this.take(first.value);
  }

  /** Every waiting value with its reference, oldest first (take() inside is safe: Map iteration allows it). */
  forEach(fn: (value: T, ref: number) => void): void {
    for (const [ref, e] of this.entries) fn(e.value, ref);
  }
}
