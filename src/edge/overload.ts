/**
 * What the edge does when it is behind (DESIGN.md §2.1: calm under
 * failure). A stateless proxy past its CPU ceiling does not slow down
 * gracefully: datagrams wait in the receive queues, phones retransmit
 * into the backlog (RFC 3261 Timer A/E), answers that are merely late
 * look like dead targets to the per-request timer, which sends the request
 * to the Standby as well, and every one of those adds work. Measured
 * (perf/RESULTS.md, "The ladder again"): goodput fell to ~20 % of the
 * offered rate. Two answers, both driven by the queue delay the transport
 * measures (src/transport/queue-delay.ts):
 *
 * - shed: while the delay is at or above `shedAtMs`, a new request from
 *   a phone or carrier is answered 503 with Retry-After (RFC 3261
 *   §21.5.4) instead of forwarded: one parse and one small send instead of
 *   a call's six more messages, so the calls already up keep working. It
 *   stops once the delay is back at or below `resumeAtMs` (hysteresis, so
 *   it does not flap per datagram);
 * - wait: while the delay is above `resumeAtMs`, a per-request timeout
 *   is not trusted (the answer may be in the queue, unread) and is
 *   re-armed, at most `maxTimeoutDeferrals` times, instead of failing over.
 */
export interface OverloadOptions {
  /** Queue delay (ms) at which new requests are answered 503; 0 never sheds. */
  shedAtMs: number;
  /** Queue delay (ms) at or below which shedding stops and timeouts are trusted again. */
  resumeAtMs: number;
  /** Retry-After of the 503. */
  retryAfterSeconds: number;
  /** How many times one request's timeout may be put off while the edge is behind. */
  maxTimeoutDeferrals: number;
}

export const DEFAULT_OVERLOAD: Readonly<OverloadOptions> = Object.freeze({
  shedAtMs: 100,
  resumeAtMs: 20,
  retryAfterSeconds: 2,
  maxTimeoutDeferrals: 4,
});

export interface OverloadChange {
  shedding: boolean;
  queueDelayMs: number;
}

export class OverloadGate {
  private on = false;
  /** The header of the 503, built once. */
  readonly retryAfter: readonly string[];

  constructor(
    readonly options: Readonly<OverloadOptions>,
    /** The transport's current queue delay in ms. */
    private readonly queueDelayMs: () => number,
    private readonly onChange?: (c: OverloadChange) => void,
  ) {
    this.retryAfter = Object.freeze([`Retry-After: ${options.retryAfterSeconds}`]);
  }

  /** Asked for each new request from a phone or carrier: answer it 503 instead of forwarding it? */
  shed(): boolean {
    if (this.options.shedAtMs <= 0) return false;
    this.update(this.queueDelayMs());
    return this.on;
  }

  /** Asked when a per-request timeout fires: may the answer still be waiting in a queue? */
  behind(): boolean {
    return this.queueDelayMs() > this.options.resumeAtMs;
  }

  /** For status: is the edge shedding now, and how far behind is it? */
  status(): OverloadChange {
    const d = this.queueDelayMs();
    if (this.options.shedAtMs > 0) this.update(d);
    return { shedding: this.on, queueDelayMs: d };
  }

  private update(d: number): void {
    const o = this.options;
    const next = this.on ? d > o.resumeAtMs : d >= o.shedAtMs;
    if (next === this.on) return;
    this.on = next;
    this.onChange?.({ shedding: next, queueDelayMs: d });
  }
}
