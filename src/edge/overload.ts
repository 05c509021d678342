import type { Clock } from "../util/clock.js";

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
 * - shed: a share of the new requests from phones and carriers (methods
 *   in `shedMethods`) is answered 503 with Retry-After (RFC 3261
 *   §21.5.4) instead of forwarded. A refused INVITE is one parse and one
 *   small send instead of a call's six more messages, so the calls
 *   already up keep working. The share rises by SHED_STEP_UP while the
 *   delay is at or above `shedAtMs` and the edge's own event loop was busy
 *   (BUSY_UTILIZATION of the interval), at most once per interval and once
 *   per measured delay; it drifts down by SHED_STEP_DRIFT per interval
 *   between `resumeAtMs` and `shedAtMs`, and falls by SHED_STEP_DOWN at or
 *   below `resumeAtMs`. So it settles where the delay hovers around
 *   `shedAtMs`. Each part is there because its absence was measured
 *   (perf/RESULTS.md, "Overload control"): all-or-nothing shedding refused
 *   82 % of the calls the edge could carry; without the busy condition a
 *   delay caused by other processes holding the CPU made it refuse calls
 *   at 0.17 of a core (refusing cannot shorten that wait); a share that
 *   held between the thresholds stuck high, and one stepping up every
 *   interval overshot (a step shows in the delay only once the queue ahead
 *   of it is read);
 * - drop: the same share of new requests in `dropMethods` (REGISTER)
 *   from UDP is dropped before it is parsed, which costs nearly nothing,
 *   instead of letting the kernel drop answers with them (below);
 * - wait: while the delay is above `resumeAtMs`, a per-request timeout
 *   is not trusted (the answer may be in the queue, unread) and is
 *   re-armed, at most `maxTimeoutDeferrals` times, instead of failing over.
 */
export interface OverloadOptions {
  /** Queue delay (ms) at which the shed share rises; 0 never sheds. */
  shedAtMs: number;
  /** Queue delay (ms) at or below which the shed share falls and timeouts are trusted again. */
  resumeAtMs: number;
  /** Retry-After of the 503. */
  retryAfterSeconds: number;
  /** How many times one request's timeout may be put off while the edge is behind. */
  maxTimeoutDeferrals: number;
  /** How often each UDP socket measures its queue delay; the shed share is adjusted as often (no newer delay exists in between). */
  probeIntervalMs: number;
  /**
   * The methods of new requests that may be shed. INVITE by default: a
   * refused call also spares its six further messages. A REGISTER is one
   * transaction, and refusing it costs nearly what forwarding it does
   * (in-process 16-25 µs against 24-28 µs for its inbound leg), so
   * shedding it fails registrations without freeing the CPU (measured: 22k
   * of 100k answered under a 10,000/s overload, against 82-94k without
   * shedding). Add REGISTER for an avalanche of real phones, which honour
   * Retry-After instead of retransmitting.
   */
  shedMethods: ReadonlySet<string>;
  /**
   * The methods of requests from UDP that are dropped unread, with the same
   * share, instead (REGISTER by default; absent: none). Past the ceiling the
   * kernel drops datagrams anyway once the socket buffer is full, and it
   * drops the targets' answers as readily as new requests, so work already
   * done is lost and each loss brings a retransmission. Dropping a share of
   * new REGISTERs from the head of the datagram costs a few byte compares,
   * keeps the queue short of full, and lets every answer through: the phone
   * retransmits a dropped REGISTER after T1 (RFC 3261 §17.1.2.2). Measured
   * (perf/RESULTS.md, "Retransmission collapse"). Never on streams, whose
   * senders do not retransmit.
   */
  dropMethods?: ReadonlySet<string>;
}

/** Share of an interval the event loop must have been working for the delay to be the edge's own backlog. */
export const BUSY_UTILIZATION = 0.85;

/** Added to the shed share while over `shedAtMs`, at most once per interval and once per queue wait. */
export const SHED_STEP_UP = 0.1;
/** Taken off per interval while between the thresholds: probing for room, from all to none in 2.5 s. */
export const SHED_STEP_DRIFT = 0.02;
/** Taken off per interval while at or under `resumeAtMs`: from all to none in 1 s. */
export const SHED_STEP_DOWN = 0.05;

export interface OverloadStatus {
  /** Are some new requests being answered 503? */
  shedding: boolean;
  /** Which share of them, 0 to 1. */
  shedShare: number;
  queueDelayMs: number;
  /** The event loop's utilization over the last interval, 0 to 1. */
  busy: number;
}

export class OverloadGate {
  private share = 0;
  private lastAdjust: number;
  private lastBusy = 0;
  /** No new step up before this: the last one cannot show in the delay until the queue ahead of it is read. */
  private nextUpAt = -Infinity;
  /** The header of the 503, built once. */
  readonly retryAfter: readonly string[];
  /** "REGISTER " and the like: how a datagram in `dropMethods` starts. */
  private readonly dropHeads: readonly string[];

  constructor(
    readonly options: Readonly<OverloadOptions>,
    /** The transport's current queue delay in ms. */
    private readonly queueDelayMs: () => number,
    private readonly clock: Clock,
    /**
     * How much of the time since the previous call the event loop was
     * working, 0 to 1 (`performance.eventLoopUtilization` in the edge).
     */
    private readonly utilization: () => number,
    /** Logs the start and the end of shedding. */
    private readonly onChange?: (s: OverloadStatus) => void,
    private readonly random: () => number = Math.random,
  ) {
    this.retryAfter = Object.freeze([`Retry-After: ${options.retryAfterSeconds}`]);
    this.dropHeads = [...(options.dropMethods ?? [])].map((m) => `${m} `);
    this.lastAdjust = clock.now();
  }

  /**
   * Asked for each new request from a phone or carrier: answer it 503
   * instead of forwarding it? Only reads the share: `tick` moves it, once
   * per probe round, so a request pays no clock read.
   */
  shed(method: string): boolean {
    return this.share > 0 && this.options.shedMethods.has(method) && this.random() < this.share;
  }

  /**
   * Asked for each datagram before it is parsed: drop it unread? Only while
   * shedding, and only a request whose method is in `dropMethods`.
   */
  dropUnread(data: string): boolean {
    if (this.share === 0) return false;
    const heads = this.dropHeads;
    for (let h = 0; h < heads.length; h++) {
      const head = heads[h]!;
      if (data.length > head.length && data.startsWith(head)) return this.random() < this.share;
    }
    return false;
  }

  /** Asked when a per-request timeout fires: may the answer still be waiting in a queue? */
  behind(): boolean {
    return this.queueDelayMs() > this.options.resumeAtMs;
  }

  /**
   * Called after each round of queue probes (TransportLayer.onQueueProbe):
   * the one place the share moves, so it also falls, and the end of
   * shedding is logged, while no request arrives.
   */
  tick(): void {
    if (this.options.shedAtMs > 0) this.adjust();
  }

  /** For status: the share shed now, and how far behind the edge is. */
  status(): OverloadStatus {
    return { shedding: this.share > 0, shedShare: this.share, queueDelayMs: this.queueDelayMs(), busy: this.lastBusy };
  }

  private adjust(): void {
    const o = this.options;
    const now = this.clock.now();
    const steps = Math.floor((now - this.lastAdjust) / o.probeIntervalMs);
    if (steps < 1) return;
    this.lastAdjust += steps * o.probeIntervalMs;
    const d = this.queueDelayMs();
    const busy = (this.lastBusy = this.utilization());
    const before = this.share;
    // Up once however many intervals passed (a late timer): the delay now
    // is all that is known. Down for every interval passed.
    if (d >= o.shedAtMs) {
      // A step up shows in the delay only once the datagrams queued before
      // it are read, about `d` later; stepping again sooner overshoots
      // (measured: a REGISTER overload shed twice the share it needed).
      if (busy >= BUSY_UTILIZATION && now >= this.nextUpAt) {
        this.share = Math.min(1, this.share + SHED_STEP_UP);
        this.nextUpAt = now + d;
      }
    } else {
      this.share = Math.max(0, this.share - steps * (d <= o.resumeAtMs ? SHED_STEP_DOWN : SHED_STEP_DRIFT));
    }
    // Float steps must land on exactly 0 and 1 (0.1 added ten times is not 1).
    if (this.share < 1e-9) this.share = 0;
    else if (this.share > 1 - 1e-9) this.share = 1;
    if ((before === 0) !== (this.share === 0)) this.onChange?.({ shedding: this.share > 0, shedShare: this.share, queueDelayMs: d, busy });
  }
}
