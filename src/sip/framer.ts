/**
 * Stream framer for SIP over TCP, TLS (RFC 3261 §18.3) and any other byte
 * stream: cuts whole messages out of arbitrary reads using Content-Length,
 * and recognises the RFC 5626 §4.4.1 CRLF keepalives between messages.
 *
 * Pure: no I/O, no timers. The owner of the connection feeds every read to
 * `push` and acts on the events (deliver, answer a ping, close on error).
 */

export type FrameEvent =
  /** One complete SIP message: header block, CRLFCRLF and Content-Length body bytes. */
  | { kind: "message"; data: Buffer }
  /** A CRLFCRLF keepalive: the caller answers with a single CRLF. */
  | { kind: "ping" }
  /** A lone CRLF outside a message: the answer to our own ping. */
  | { kind: "pong" }
  /** Framing is lost; the caller closes the connection. */
  | { kind: "error"; code: FramerErrorCode; reason: string; offset: number };

export type FramerErrorCode =
  | "header-too-large"
  | "message-too-large"
  | "buffer-overflow"
  | "content-length-missing"
  | "content-length-invalid"
  | "content-length-conflict";

export interface FramerLimits {
  /** Largest message (header block + body) accepted, in bytes. */
  maxMessageBytes: number;
  /** Most bytes of an incomplete message held between reads. */
  maxBufferBytes: number;
}

const CR = 13;
const LF = 10;
const SP = 32;
const HT = 9;
const COLON = 58;
const EMPTY = Buffer.alloc(0);
const CONTENT_LENGTH = "content-length";
const PING: FrameEvent = Object.freeze({ kind: "ping" });
const PONG: FrameEvent = Object.freeze({ kind: "pong" });
/** Longest Content-Length value worth parsing; anything longer exceeds every limit. */
const MAX_LENGTH_DIGITS = 15;

type LengthResult = { ok: true; length: number } | { ok: false; code: FramerErrorCode; reason: string; at: number };

export class StreamFramer {
  private readonly limits: FramerLimits;
  /** Unconsumed bytes; `buf[0]` is at stream offset `base`. */
  private buf: Buffer = EMPTY;
  private base = 0;
  /** Where the search for the end of the header block resumes (bytes before it hold no CRLFCRLF). */
  private scanFrom = 0;
  /** Total length of the message being read once its header block is known, else -1. */
  private expect = -1;
  /**
   * The previous read ended with a lone CRLF between messages, already
   * reported as a pong. If this read starts with another CRLF the two form a
   * ping split across reads, and the ping must still be answered.
   */
  private loneCrlfAtEnd = false;
  private isDead = false;

  constructor(limits: FramerLimits) {
    if (!(limits.maxMessageBytes > 0) || !(limits.maxBufferBytes > 0)) {
      throw new RangeError("framer limits must be positive");
    }
    this.limits = limits;
  }

  /** True once a framing error was reported; every later push returns nothing. */
  get dead(): boolean {
    return this.isDead;
  }

  /** Bytes held for a message not yet complete. */
  get buffered(): number {
    return this.buf.length;
  }

  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    if (this.isDead || chunk.length === 0) return events;
    // The common case (whole messages per read) takes the chunk as is, no copy.
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk], this.buf.length + chunk.length);

    let pos = 0;
    const buf = this.buf;
    const n = buf.length;
    while (pos < n) {
      if (this.expect < 0 && this.scanFrom === 0) {
        // Between messages: CRLF keepalives (RFC 5626 §4.4.1).
        if (buf[pos] === CR) {
          if (pos + 1 >= n) break; // a lone CR: wait for the LF
          if (buf[pos + 1] === LF) {
            if (this.loneCrlfAtEnd && pos === 0) {
              this.loneCrlfAtEnd = false;
              events.push(PING);
              pos += 2;
              continue;
            }
            if (pos + 3 < n && buf[pos + 2] === CR && buf[pos + 3] === LF) {
              events.push(PING);
              pos += 4;
              continue;
            }
            if (pos + 2 >= n || (pos + 3 >= n && buf[pos + 2] === CR)) {
              // CRLF (or CRLF CR) ends the read. Report the pong now rather
              // than wait for bytes that may never come; a CRLF that follows
              // completes a ping (see loneCrlfAtEnd).
              events.push(PONG);
              pos += 2;
              this.loneCrlfAtEnd = true;
              continue;
            }
            events.push(PONG);
            pos += 2;
            continue;
          }
        }
        this.loneCrlfAtEnd = false;
      }
      const taken = this.readMessage(buf, pos, events);
      if (taken < 0) return events; // dead
      if (taken === 0) break; // need more bytes
      pos += taken;
    }
    this.consume(pos);
    if (this.buf.length > this.limits.maxBufferBytes) {
      this.fail(events, "buffer-overflow", `${this.buf.length} bytes buffered exceed ${this.limits.maxBufferBytes}`, this.base + this.buf.length);
    }
    return events;
  }

  /**
   * Tries to cut one message starting at `pos`. Returns its length, 0 when
   * more bytes are needed, or -1 after a framing error.
   */
  private readMessage(buf: Buffer, pos: number, events: FrameEvent[]): number {
    const avail = buf.length - pos;
    if (this.expect < 0) {
      const from = pos + Math.max(0, this.scanFrom - 3);
      const end = buf.indexOf("\r\n\r\n", from, "latin1");
      if (end < 0) {
        // Enforce the limit while reading: a header block that never ends
        // must not grow the buffer without bound.
        if (avail > this.limits.maxMessageBytes) {
          this.fail(events, "header-too-large", `no end of headers within ${this.limits.maxMessageBytes} bytes`, this.base + pos + this.limits.maxMessageBytes);
          return -1;
        }
        this.scanFrom = avail;
        return 0;
      }
      const headerLen = end + 4 - pos;
      if (headerLen > this.limits.maxMessageBytes) {
        this.fail(events, "header-too-large", `header block of ${headerLen} bytes exceeds ${this.limits.maxMessageBytes}`, this.base + pos + this.limits.maxMessageBytes);
        return -1;
      }
      const cl = contentLength(buf, pos, end);
      if (!cl.ok) {
        this.fail(events, cl.code, cl.reason, this.base + cl.at);
        return -1;
      }
      const total = headerLen + cl.length;
      if (total > this.limits.maxMessageBytes) {
        this.fail(events, "message-too-large", `message of ${total} bytes exceeds ${this.limits.maxMessageBytes}`, this.base + pos);
        return -1;
      }
      this.expect = total;
    }
    if (avail < this.expect) return 0;
    const total = this.expect;
    events.push({ kind: "message", data: buf.subarray(pos, pos + total) });
    this.expect = -1;
    this.scanFrom = 0;
    this.loneCrlfAtEnd = false;
    return total;
  }

  private consume(pos: number): void {
    if (pos === 0) return;
    this.base += pos;
    // The next push copies the remainder into a fresh buffer, releasing the read.
    this.buf = pos >= this.buf.length ? EMPTY : this.buf.subarray(pos);
  }

  private fail(events: FrameEvent[], code: FramerErrorCode, reason: string, offset: number): void {
    this.isDead = true;
    this.buf = EMPTY;
    events.push({ kind: "error", code, reason, offset });
  }
}

/**
 * Finds Content-Length in the header block `buf[start, end)` (`end` is the
 * index of the final CRLFCRLF). Long or compact name (`l`, RFC 3261 §7.3.3),
 * any case, whitespace allowed before the colon and folded values (§7.3.1).
 * Repeats must agree; on a stream a missing value is fatal (§18.3).
 */
function contentLength(buf: Buffer, start: number, end: number): LengthResult {
  let found = -1;
  // Skip the start line.
  let line = buf.indexOf(LF, start);
  if (line < 0 || line >= end) return { ok: false, code: "content-length-missing", reason: "no Content-Length header", at: start };
  line += 1;
  const limit = end + 2; // include the CRLF that ends the last header line
  while (line < limit) {
    const c = buf[line]!;
    let next = buf.indexOf(LF, line);
    if (next < 0 || next >= limit) next = limit - 1;
    if ((c === 0x43 || c === 0x63 || c === 0x4c || c === 0x6c) && isContentLengthName(buf, line, next)) {
      // The value runs to the end of the logical line: follow folded continuations.
      let valueEnd = next;
      while (valueEnd + 1 < limit && (buf[valueEnd + 1] === SP || buf[valueEnd + 1] === HT)) {
        const more = buf.indexOf(LF, valueEnd + 1);
        valueEnd = more < 0 || more >= limit ? limit - 1 : more;
      }
      const colon = buf.indexOf(COLON, line);
      const value = parseLength(buf, colon + 1, valueEnd);
      if (value < 0) {
        return { ok: false, code: "content-length-invalid", reason: "Content-Length is not a non-negative integer", at: colon + 1 };
      }
      if (found >= 0 && found !== value) {
        return { ok: false, code: "content-length-conflict", reason: `Content-Length ${found} and ${value} disagree`, at: line };
      }
      found = value;
      next = valueEnd;
    }
    line = next + 1;
  }
  if (found < 0) return { ok: false, code: "content-length-missing", reason: "no Content-Length header", at: start };
  return { ok: true, length: found };
}

/** True when the header line starting at `at` is named Content-Length or l. */
function isContentLengthName(buf: Buffer, at: number, lineEnd: number): boolean {
  let i = at;
  if ((buf[at]! | 0x20) === 0x6c) {
    i = at + 1;
  } else {
    for (let k = 0; k < CONTENT_LENGTH.length; k++, i++) {
      if (i >= lineEnd) return false;
      const want = CONTENT_LENGTH.charCodeAt(k);
      const c = buf[i]!;
      // Case folding applies to letters only; the hyphen must match exactly.
      if (want === 0x2d ? c !== want : (c | 0x20) !== want) return false;
    }
  }
  while (i < lineEnd && (buf[i] === SP || buf[i] === HT)) i++;
  return i < lineEnd && buf[i] === COLON;
}

/** Parses 1*DIGIT surrounded by linear whitespace in `buf[from, to)`; -1 if it is anything else. */
function parseLength(buf: Buffer, from: number, to: number): number {
  let i = from;
  while (i < to && isLws(buf[i]!)) i++;
  let value = 0;
  let digits = 0;
  while (i < to) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
    digits++;
    i++;
  }
  while (i < to && isLws(buf[i]!)) i++;
  if (i !== to || digits === 0 || digits > MAX_LENGTH_DIGITS) return -1;
  return value;
}

function isLws(c: number): boolean {
  return c === SP || c === HT || c === CR || c === LF;
}
