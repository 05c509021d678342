/**
 * A cluster worker's side of "who owns this transaction?" (README,
 * "Workers"). The shared UDP socket gives each datagram to whichever
 * worker reads first, so a phone's retransmission of an INVITE or
 * REGISTER may be read, and forwarded again with the same branch, by
 * another worker than the one that forwarded the original. The target
 * treats it as a retransmission and answers the first worker only
 * (RFC 3261 §17.2.1, §17.2.2; RFC 3581 sends that answer to the first
 * worker's own port); the second one hears nothing and its request
 * timeout fires. Before failing over, the proxy asks (TxnPeers): the
 * primary puts the question to the other workers (src/cluster/txn-fanout.ts)
 * and answers with the first of them holding the transaction. A worker
 * that is not the owner yields: the owner has its own timer and fails
 * over itself if the target really is silent.
 */
import type { TxnPeers, TxnStamp } from "../edge/proxy.js";
import type { Clock } from "../util/clock.js";
import type { Counters } from "../util/counters.js";
import { Awaiting } from "./awaiting.js";
import { MAX_TXN_KEY, type ToPrimary, type TxnClaim } from "./messages.js";

/**
 * How long a question waits for the primary's answer; with none, the
 * timeout fails over as in one process. Longer than the primary's own
 * bound (CLAIMS_WITHIN_MS), so a slow worker costs only its claim, not
 * the answer; short beside the request timeout (1 s by default), which
 * this delay lengthens.
 */
export const ANSWER_WITHIN_MS = 250;
/** Questions out at most; past it a timeout fails over at once, as in one process. */
export const MAX_QUESTIONS = 10_000;

/**
 * Does claim `a` own the transaction rather than `b`? A worker a target
 * has answered owns it whatever the stamps say: its copy is the one the
 * target took (two workers forwarding within microseconds may reach it in
 * either order). Otherwise the first to forward it, and on a tie the
 * lower worker id, so every worker that compares the same two claims
 * picks the same owner.
 */
export function precedes(a: TxnClaim, b: TxnClaim): boolean {
  if (a.heard !== b.heard) return a.heard;
  if (a.firstAt !== b.firstAt) return a.firstAt < b.firstAt;
  return a.worker < b.worker;
}

/**
 * The stamp clock: libuv's monotonic clock (CLOCK_MONOTONIC on Linux),
 * which is one clock for the whole host, not one per process, so the
 * stamps of two workers compare. Nanoseconds, because a phone's
 * retransmissions can be forwarded by two workers within the same
 * millisecond (Date.now() would tie); and no wall-clock step (NTP, an
 * operator) can reorder them. Workers of one edge are always on one host.
 */
export function hostClockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

interface Question {
  readonly mine: TxnClaim;
  readonly done: (yieldToPeer: boolean) => void;
}

export interface TxnOwnershipOptions {
  /** This worker's id (the primary's cluster worker id). */
  self: number;
  /** To the primary; false when there is no channel any more (nothing was sent). */
  send: (m: ToPrimary) => boolean;
  clock: Clock;
  counters: Counters;
  /** The stamp clock; hostClockMs by default. */
  stamp?: () => number;
  answerWithinMs?: number;
  maxQuestions?: number;
}

export class TxnOwnership implements TxnPeers {
  private readonly questions: Awaiting<Question>;
  private readonly stampNow: () => number;
  private lookup: ((key: string) => TxnStamp | undefined) | undefined;

  constructor(private readonly o: TxnOwnershipOptions) {
    this.stampNow = o.stamp ?? hostClockMs;
    this.questions = new Awaiting(o.clock, o.answerWithinMs ?? ANSWER_WITHIN_MS, o.maxQuestions ?? MAX_QUESTIONS, (q) => {
      this.o.counters.inc("failover.owner-query.unanswered");
      q.done(false);
    });
  }

  /** The edge is up: other workers' questions are answered from its soft state from now on. */
  attach(lookup: (key: string) => TxnStamp | undefined): void {
    this.lookup = lookup;
  }

  /** Questions still waiting for the primary's answer. */
  get waiting(): number {
    return this.questions.size;
  }

  // ---- the asking side (TxnPeers) -------------------------------------------------

  stamp(): number {
    return this.stampNow();
  }

  confirmTimeout(key: string, mine: TxnStamp, done: (yieldToPeer: boolean) => void): void {
    if (key.length > MAX_TXN_KEY) {
      // The primary would drop it as junk; waiting for no answer only delays the failover.
      this.o.counters.inc("failover.owner-query.key-too-long");
      done(false);
      return;
    }
    if (this.questions.full) {
      this.o.counters.inc("failover.owner-query.too-many");
      done(false);
      return;
    }
    const ref = this.questions.nextRef();
    if (!this.o.send({ kind: "txn-ask", ref, key })) {
      // The primary is gone: nobody can say, and the timeout must not be lost.
      this.o.counters.inc("failover.owner-query.no-primary");
      done(false);
      return;
    }
    this.o.counters.inc("failover.owner-query.asked");
    this.questions.wait(ref, { mine: { worker: this.o.self, firstAt: mine.firstAt, heard: mine.heard }, done });
  }

  /** The primary's answer to one of our questions: the first other worker holding it, or none. */
  answered(ref: number, owner: TxnClaim | undefined): void {
    const q = this.questions.take(ref);
    if (q === undefined) {
      // Given up on already (the bound): its timeout has failed over.
      this.o.counters.inc("failover.owner-query.late-answer");
      return;
    }
    q.done(owner !== undefined && owner.worker !== this.o.self && precedes(owner, q.mine));
  }

  // ---- the answering side -----------------------------------------------------------

  /** Another worker asks (through the primary) about `key`: our stamp, or none. Before the edge is up, none. */
  asked(ref: number, key: string): void {
    const stamp = this.lookup?.(key);
    this.o.send({ kind: "txn-claim", ref, stamp: stamp === undefined ? undefined : { firstAt: stamp.firstAt, heard: stamp.heard } });
  }
}
