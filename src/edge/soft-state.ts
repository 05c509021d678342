import { LRUCache } from "lru-cache";
import type { SipMessage } from "../sip/message.js";
import { systemClock, type Clock } from "../util/clock.js";
import { ownString } from "../util/own-string.js";
import type { Endpoint, Inbound } from "./ports.js";
import type { QueuedTimeout } from "./timeout-queue.js";
import type { Target } from "./targets.js";

/**
 * What the edge remembers about one forwarded INVITE/REGISTER: where it went,
 * so that its CANCEL and the ACK of a non-2xx response reach the same target
 * (RFC 3261 §16.10), and the per-transaction failover state. Keyed by Call-ID
 * and the incoming top Via branch, which the CANCEL and the non-2xx ACK share
 * with their INVITE (RFC 3261 §9.1, §17.1.1.3).
 */
export interface TxnState {
  dest: Endpoint;
  target: Target | undefined;
  /** The branch of our Via on the request as last forwarded (per attempt). */
  branch: string;
  /**
   * Present while the request may still be retried on another target
   * (RFC 3261 §16.7-style serial forking, DESIGN.md §2.1): until a
   * provisional response from beyond the target, or a final answer.
   */
  retry?: RetryState | undefined;
  /** Kept for INVITEs that may fail over, to ACK responses the edge absorbs. */
  ackBase?: AckBase | undefined;
  /** From the routing decision: shapes the 2xx before it is relayed. */
  shapeResponse?: ((response: SipMessage) => void) | undefined;
  /**
   * From the routing decision: its changes to the request (the rules'
   * rewrites), made again on every later copy the router does not see.
   */
  rewrite?: (request: SipMessage) => void;
  onForkResponse?: (target: Target, response: SipMessage) => void;
  /** The fork copies' targets by our branch. */
  forks?: ReadonlyMap<string, Target>;
  /**
   * With peers (ProxyDeps.peers) only: when this process first forwarded
   * the transaction, and whether a target has answered it here. Another
   * worker asks for them to learn who owns it.
   */
  firstAt?: number;
  heard?: boolean;
}

export interface RetryState {
  /** Candidates not tried yet, in order. */
  rest: readonly Target[];
  /** The request exactly as received, re-processed for each attempt. */
  original: string | Buffer;
  /** Where it was received: the source of any answer the edge gives itself. */
  inbound: Inbound;
  attempt: number;
  /** Fires when the current target has not answered at all in time. */
  timer: QueuedTimeout<RetryTimeout> | undefined;
  /** Any failure final response moves the request, not only 408/5xx. */
  anyFailure: boolean;
  /** Times the current attempt's timeout was put off because the edge was behind (src/edge/overload.ts). */
  deferrals: number;
  /**
   * The current attempt's target answered 100 Trying, which stopped its
   * timer: a retransmission from the caller (a REGISTER's goes on after a
   * 100, RFC 3261 §17.1.2.2) must not arm it again.
   */
  trying: boolean;
  /**
   * Set while the other workers are asked whether one of them owns the
   * transaction, after this attempt's timeout (ProxyDeps.peers): an answer
   * acts only if it finds the same object here.
   */
  question: object | undefined;
}

/** What the failover timeout of one attempt needs to find its transaction again. */
export interface RetryTimeout {
  /** `SoftState.key` of the transaction. */
  key: string;
  retry: RetryState;
}

/** What an ACK for an absorbed non-2xx response needs (RFC 3261 §17.1.1.3). */
export interface AckBase {
  requestUri: string;
  routes: readonly string[];
}

export interface SoftStateOptions {
  maxEntries: number;
  ttlMs: number;
}

/**
 * The options object lru-cache's get/peek/set take. Each call without one
 * allocates an empty object for its default, and these run several times
 * per message; lru-cache only writes `status` (undefined) into it.
 */
const LOOKUP: LRUCache.GetOptions<string, TxnState, unknown> = {};
const PEEK: LRUCache.PeekOptions<string, TxnState, unknown> = {};
const STORE: LRUCache.SetOptions<string, TxnState, unknown> = {};

/** A bounded LRU: it never grows past `maxEntries`, and entries expire after `ttlMs`. */
export class SoftState {
  private readonly txns: LRUCache<string, TxnState>;

  constructor(opts: SoftStateOptions, clock: Clock = systemClock) {
    this.txns = new LRUCache<string, TxnState>({
      max: opts.maxEntries,
      ttl: opts.ttlMs,
      ttlAutopurge: false,
      // The edge's clock (a fake one in tests). With the default resolution
      // of 1 ms, lru-cache caches its time reading and arms a timer to forget
      // it: a setTimeout per millisecond of traffic, and a clock read per
      // lookup is cheaper than that.
      perf: clock,
      ttlResolution: 0,
    });
  }

  /**
   * Keys of the transactions that wait on a target with failover still
   * possible (`retry` set), so a target that goes down can hand them to the
   * next one at once (a PBX that sent 100 Trying and then died would
   * otherwise hold the call forever). Found by a walk over the soft state
   * when a target goes down, which is rare, instead of an index kept per
   * INVITE and REGISTER, which cost two set operations on every one.
   */
  waitingOn(target: string): string[] {
    const keys: string[] = [];
    // Keys first, then the caller acts: moving a transaction on stores it again.
    this.txns.forEach((st, key) => {
      if (st.retry !== undefined && st.target?.name === target) keys.push(key);
    });
    return keys;
  }

  getByKey(key: string): TxnState | undefined {
    return this.txns.get(key, LOOKUP);
  }

  /**
   * The transaction's key. The proxy builds it once per message and passes
   * it to the `ByKey` methods: a string built and hashed per lookup was up to
   * seven per call.
   */
  static key(callId: string, branch: string | undefined): string {
    return `${callId}\n${branch ?? ""}`;
  }

  /** The Call-ID a key was made from, for log lines. */
  static callIdOf(key: string): string {
    const nl = key.indexOf("\n");
    return nl < 0 ? key : key.slice(0, nl);
  }

  /** Without refreshing the entry's place in the LRU. */
  peekByKey(key: string): TxnState | undefined {
    return this.txns.peek(key, PEEK);
  }

  get(callId: string, branch: string | undefined): TxnState | undefined {
    return this.txns.get(SoftState.key(callId, branch), LOOKUP);
  }

  setByKey(key: string, s: TxnState): void {
    // A copy: the key is made of the Call-ID and branch as sliced from the
    // datagram's text, and an entry can live long (an INVITE answered with
    // a failure keeps its own for the ACK, until the LRU evicts it).
    this.txns.set(ownString(key), s, STORE);
  }

  /**
   * Drops a transaction nothing will refer to again, so that finished
   * transactions do not fill the soft state (at 10,000 REGISTER/s they were
   * all of it, ~30 MiB of live heap). The last entry is left for the LRU:
   * lru-cache's delete() clears every one of its arrays, O(maxEntries), when
   * it empties the cache, which at low traffic would be once per transaction.
   */
  forget(key: string): void {
    if (this.txns.size > 1) this.txns.delete(key);
  }

  get size(): number {
    return this.txns.size;
  }

  get max(): number {
    return this.txns.max;
  }
}
