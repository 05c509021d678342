import { LRUCache } from "lru-cache";
import type { Endpoint } from "./ports.js";
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
  /** The branch of our Via on the forwarded request. */
  branch: string;
}

export interface SoftStateOptions {
  maxEntries: number;
  ttlMs: number;
}

/** A bounded LRU: it never grows past `maxEntries`, and entries expire after `ttlMs`. */
export class SoftState {
  private readonly txns: LRUCache<string, TxnState>;

  constructor(opts: SoftStateOptions) {
    this.txns = new LRUCache<string, TxnState>({ max: opts.maxEntries, ttl: opts.ttlMs, ttlAutopurge: false });
  }

  static key(callId: string, branch: string | undefined): string {
    return `${callId}\n${branch ?? ""}`;
  }

  get(callId: string, branch: string | undefined): TxnState | undefined {
    return this.txns.get(SoftState.key(callId, branch));
  }

  set(callId: string, branch: string | undefined, s: TxnState): void {
    this.txns.set(SoftState.key(callId, branch), s);
  }

  get size(): number {
    return this.txns.size;
  }

  get max(): number {
    return this.txns.max;
  }
}
