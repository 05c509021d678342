/**
 * The primary's side of "who owns this transaction?" (src/cluster/txn-owner.ts
 * has the workers' side): a worker whose request timeout fired asks; the
 * question goes to every other worker, and the asker gets one answer, the
 * first holder by `precedes` (or none), once all have answered, or at the
 * bound with what has come in by then. A worker that exits meanwhile is
 * not waited for, and the question of one that exits is dropped.
 */
import type { Clock } from "../util/clock.js";
import { Awaiting } from "./awaiting.js";
import type { ToWorker, TxnClaim, TxnStampWire } from "./messages.js";
import { precedes } from "./txn-owner.js";

/**
 * How long the primary waits for the other workers' claims. Shorter than
 * the asker's own bound (ANSWER_WITHIN_MS), so a worker that is slow to
 * answer (busy, starting, hung) costs the asker only that worker's claim.
 */
export const CLAIMS_WITHIN_MS = 200;
/** Questions open at most; past it a question is answered "none" at once (the asker fails over as in one process). */
export const MAX_OPEN = 10_000;

/** What the fan-out needs of a worker. */
export interface TxnWorker {
  readonly id: number;
  send(m: ToWorker): void;
}

interface Open {
  readonly asker: TxnWorker;
  readonly askerRef: number;
  /** Workers asked and not heard from yet. */
  readonly waiting: Set<number>;
  best: TxnClaim | undefined;
}

export interface TxnFanOutOptions {
  clock: Clock;
  claimsWithinMs?: number;
  maxOpen?: number;
}

export class TxnFanOut {
  private readonly open: Awaiting<Open>;

  constructor(o: TxnFanOutOptions) {
    // At the bound the asker gets what has come in by then.
    this.open = new Awaiting(o.clock, o.claimsWithinMs ?? CLAIMS_WITHIN_MS, o.maxOpen ?? MAX_OPEN, (q) => answer(q));
  }

  /** Questions waiting for claims. */
  get pending(): number {
    return this.open.size;
  }

  /** `asker` asks about `key` (its `ref`); `others` are the workers to ask, the asker not among them. */
  ask(asker: TxnWorker, ref: number, key: string, others: readonly TxnWorker[]): void {
    if (others.length === 0 || this.open.full) {
      asker.send({ kind: "txn-owner", ref, owner: undefined });
      return;
    }
    const qref = this.open.nextRef();
    const waiting = new Set<number>();
    for (const w of others) {
      waiting.add(w.id);
      w.send({ kind: "txn-ask", ref: qref, key });
    }
    this.open.wait(qref, { asker, askerRef: ref, waiting, best: undefined });
  }

  /** Worker `from` answers question `ref`: its stamp, or none. A claim not asked for (late, twice, wrong worker) is ignored. */
  claim(from: number, ref: number, stamp: TxnStampWire | undefined): void {
    const q = this.open.get(ref);
    if (q === undefined || !q.waiting.delete(from)) return;
    if (stamp !== undefined) {
      // The worker id is the one the primary heard it from, not one a message names.
      const c: TxnClaim = { worker: from, firstAt: stamp.firstAt, heard: stamp.heard };
      if (q.best === undefined || precedes(c, q.best)) q.best = c;
    }
    if (q.waiting.size === 0) this.finish(ref);
  }

  /** Worker `id` has exited: its questions are dropped, and no question waits for it any more. */
  exited(id: number): void {
    this.open.forEach((q, ref) => {
      if (q.asker.id === id) this.open.take(ref);
      else if (q.waiting.delete(id) && q.waiting.size === 0) this.finish(ref);
    });
  }

  private finish(ref: number): void {
    const q = this.open.take(ref);
    if (q !== undefined) answer(q);
  }
}

function answer(q: Open): void {
  q.asker.send({ kind: "txn-owner", ref: q.askerRef, owner: q.best });
}
