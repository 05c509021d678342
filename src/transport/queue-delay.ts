/**
 * How long a datagram waits in a UDP socket's receive queue before the
 * edge reads it: the first sign that the edge is behind (DESIGN.md §2.1,
 * "calm under failure"). Node exposes neither the queue's length nor a
 * datagram's arrival time (SO_TIMESTAMP), so the edge measures the wait:
 * at each tick a socket sends itself a small stamped datagram, which
 * queues behind everything already waiting; when it is read, now − stamp is
 * how long it waited. A socket whose queue is full loses datagrams
 * instead, its probes among them: then the silence since the last probe
 * came back is the estimate. Silence counts only once a probe has come
 * back: a host where they never do (a firewall on loopback) must not look
 * overloaded forever; it just has no estimate.
 *
 * Wire form, never valid SIP (a SIP message starts with a letter, a
 * keepalive with CR): 0x00 'q', a 32-bit tag naming the socket that sent
 * it, the stamp as a 64-bit float.
 */
export const PROBE_BYTES = 14;
const MAGIC = 0x71; // 'q'

export function encodeProbe(tag: number, stampMs: number): Buffer {
  const b = Buffer.allocUnsafe(PROBE_BYTES);
  b[0] = 0;
  b[1] = MAGIC;
  b.writeUInt32BE(tag >>> 0, 2);
  b.writeDoubleBE(stampMs, 6);
  return b;
}

/** A probe's tag and stamp; undefined when `data` (the datagram, as bytes or as latin1 text) is not a probe. */
export function decodeProbe(data: Buffer | string): { tag: number; stampMs: number } | undefined {
  if (data.length !== PROBE_BYTES) return undefined;
  const b = typeof data === "string" ? Buffer.from(data, "latin1") : data;
  if (b[0] !== 0 || b[1] !== MAGIC) return undefined;
  const stampMs = b.readDoubleBE(6);
  if (!Number.isFinite(stampMs)) return undefined;
  return { tag: b.readUInt32BE(2), stampMs };
}

/**
 * The queue delay of one socket from its probes. `silenceCounts` is false
 * for a socket other processes read too (a listener shared by cluster
 * workers): its probes may be read by another worker, so not seeing them
 * back means nothing there; its samples still do.
 */
export class DelayEstimate {
  private lastDelayMs = 0;
  /** When the last probe came back; meaningful once one has (`seen`). */
  private lastSampleAt = 0;
  private seen = false;

  constructor(
    private readonly staleAfterMs: number,
    private readonly silenceCounts: boolean,
  ) {}

  sample(stampMs: number, now: number): void {
    // A stamp from the future (a clock the test moved back) is no wait at all.
    this.lastDelayMs = Math.max(0, now - stampMs);
    this.lastSampleAt = now;
    this.seen = true;
  }

  /** The wait a datagram read now has had, in ms (0 when the queue is empty). */
  estimate(now: number): number {
    if (!this.silenceCounts || !this.seen) return this.lastDelayMs;
    const silent = now - this.lastSampleAt;
    return silent > this.staleAfterMs ? Math.max(this.lastDelayMs, silent) : this.lastDelayMs;
  }
}
