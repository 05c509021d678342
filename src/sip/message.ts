import { canonicalName } from "./headers.js";
import { isLws, isNameAt, secondElementStart, skipLws, splitTopLevel, trimEndLws, unfold } from "./lex.js";
import { parseContact, parseNameAddrList, type ContactList, type NameAddr } from "./nameaddr.js";
import { parseTopVia, parseViaList, type Via, type ViaResult } from "./via.js";
import type { SipUri } from "./uri.js";

/** One header line as received (continuation lines included). */
export interface HeaderField {
  /** Lower-case long name ("via", "call-id"): compact forms are already mapped. */
  readonly name: string;
  /** The line(s) exactly as on the wire, without the final CRLF. */
  readonly raw: string;
  /** Offset in `raw` where the value starts (just after the colon). */
  readonly valueStart: number;
}

/**
 * A header line as parse() found it, with where its bytes sit in the parsed
 * input, so serializing a rewritten message can copy the untouched lines as
 * one slice instead of re-joining them line by line.
 */
export interface LocatedHeaderField extends HeaderField {
  /** The whole input the line was parsed from. */
  readonly base: string;
  /** Offset of the line in `base` (a line made by a rewrite is its own `base`, at 0). */
  readonly offset: number;
  /** Offset in `base` just past the line (before its CRLF). */
  readonly end: number;
}

/**
 * One header line of a message: parsed (it points into the datagram's text)
 * or made by a rewrite (it holds its own text). A parsed line's text is cut
 * out only when something asks for `raw`: a proxy reads a handful of the
 * dozen lines of a message, and the rest go out as part of one slice of
 * the original (toString), so most lines never cost a string of their own.
 */
export class HeaderLine implements LocatedHeaderField {
  private text: string | undefined;

  constructor(
    readonly name: string,
    readonly base: string,
    readonly offset: number,
    readonly end: number,
    readonly valueStart: number,
    /** The line spans continuation lines (RFC 3261 §7.3.1): its value must be unfolded. */
    readonly folded: boolean,
    text?: string,
  ) {
    this.text = text;
  }

  /** A line made by a rewrite: `Name: value`, located nowhere. */
  static made(name: string, wireName: string, value: string): HeaderLine {
    const raw = `${wireName}: ${value}`;
    return new HeaderLine(name, raw, 0, raw.length, wireName.length + 1, false, raw);
  }

  get raw(): string {
    let t = this.text;
    if (t === undefined) {
      t = this.base.slice(this.offset, this.end);
      this.text = t;
    }
    return t;
  }

  /** The value, unfolded and trimmed: for an unfolded line one slice of `base`, no intermediate copy. */
  value(): string {
    if (this.folded) return unfold(this.raw.slice(this.valueStart));
    const b = this.base;
    let i = this.offset + this.valueStart;
    let e = this.end;
    while (i < e && isLws(b.charCodeAt(i))) i++;
    while (e > i && isLws(b.charCodeAt(e - 1))) e--;
    return b.slice(i, e);
  }

  /** Is there a ',' in the value? Bounded to the line (an indexOf on `base` would run on into the message). */
  valueHasComma(): boolean {
    const b = this.base;
    for (let i = this.offset + this.valueStart, e = this.end; i < e; i++) if (b.charCodeAt(i) === 44) return true;
    return false;
  }
}

export interface CSeq {
  seq: number;
  method: string;
}

/**
 * A parsed SIP message that keeps its original bytes. Only what routing needs
 * is parsed up front (see parse.ts); everything else is read from the raw
 * header lines on first access. Rewrites touch only the lines they must, and
 * an untouched message serializes to exactly the bytes it was parsed from.
 */
export class SipMessage {
  /** The message as received (latin1: one char per octet), without trailing datagram junk. */
  readonly raw: string;
  private dirty = false;

  startLine: string;
  readonly isRequest: boolean;
  /** Request method; for a response, the CSeq method. */
  readonly method: string;
  /** Request-URI text (requests only). */
  requestUri: string;
  /** Parsed Request-URI (requests only). */
  uri: SipUri | undefined;
  readonly status: number;
  readonly reason: string;
  headers: HeaderField[];
  body: string;

  /** The first Via value as parsed; undefined while it is left unread (`ownViaBranch`) or after it failed to parse. */
  private parsedTopVia: Via | undefined;
  /**
   * For a response whose top Via the edge wrote itself: that Via's branch,
   * all that parse() read of it (ParseOptions.ownBranchPrefix). The edge
   * removes its own Via unread (RFC 3261 §16.7 step 3). Cleared whenever
   * the top Via changes.
   */
  private ownViaBranch: string | undefined;
  maxForwards: number | undefined;
  readonly callId: string;
  readonly cseq: CSeq;
  /** Content-Length as declared, or undefined when the header is absent. */
  contentLength: number | undefined;

  /** Where the original bytes live (see LocatedHeaderField); undefined when unknown. */
  private readonly base: string | undefined;
  private readonly startOffset: number;
  private readonly origStartLine: string;
  private readonly origBody: string;
  /** Offset of the body in `base`, when the header section ended with an empty line. */
  private readonly bodyOffset: number;

  constructor(init: {
    raw: string;
    startLine: string;
    isRequest: boolean;
    method: string;
    requestUri: string;
    uri: SipUri | undefined;
    status: number;
    reason: string;
    headers: HeaderField[];
    body: string;
    /** Undefined only with `ownViaBranch`: the top Via is then read on first use. */
    topVia: Via | undefined;
    ownViaBranch?: string | undefined;
    maxForwards: number | undefined;
    callId: string;
    cseq: CSeq;
    contentLength: number | undefined;
    /** The parsed input, the start line's offset in it, and the body's offset (-1 without an empty line). */
    located?: { base: string; startOffset: number; bodyOffset: number };
  }) {
    this.raw = init.raw;
    this.startLine = init.startLine;
    this.isRequest = init.isRequest;
    this.method = init.method;
    this.requestUri = init.requestUri;
    this.uri = init.uri;
    this.status = init.status;
    this.reason = init.reason;
    this.headers = init.headers;
    this.body = init.body;
    this.parsedTopVia = init.topVia;
    this.ownViaBranch = init.ownViaBranch;
    this.maxForwards = init.maxForwards;
    this.callId = init.callId;
    this.cseq = init.cseq;
    this.contentLength = init.contentLength;
    this.base = init.located?.base;
    this.startOffset = init.located?.startOffset ?? -1;
    this.bodyOffset = init.located?.bodyOffset ?? -1;
    this.origStartLine = init.startLine;
    this.origBody = init.body;
  }

  get modified(): boolean {
    return this.dirty;
  }

  /** The first Via value; kept current by the Via rewrites. */
  get topVia(): Via {
    return this.parsedTopVia ?? this.readTopVia();
  }

  /** The top Via's branch: for the edge's own Via on a response, without parsing that Via. */
  get topViaBranch(): string | undefined {
    return this.ownViaBranch ?? this.topVia.branch;
  }

  /** Does the top Via parse? False after a rewrite left a malformed one on top (a response's next Via). */
  topViaParses(): boolean {
    return this.topVia.protocol !== "";
  }

  /**
   * Reads a top Via parse() left unread, or one that failed to parse. What
   * does not parse (the edge's own Via mangled on its way back, a
   * malformed Via below it) is a Via of no protocol, known only by its
   * branch (when it was ours) and its text; topViaParses() tells.
   */
  private readTopVia(): Via {
    const i = this.indexOf("via");
    const h = i < 0 ? undefined : this.headers[i]!;
    const r = h === undefined ? undefined : firstVia(h);
    if (r?.ok === true) {
      this.parsedTopVia = r.via;
      return r.via;
    }
    return { protocol: "", transport: "", host: "", port: undefined, branch: this.ownViaBranch, received: undefined, rport: undefined, rportAt: -1, raw: h === undefined ? "" : headerValue(h) };
  }

  // ---- reading ----------------------------------------------------------

  indexOf(name: string, from = 0): number {
    const h = this.headers;
    for (let i = from; i < h.length; i++) if (h[i]!.name === name) return i;
    return -1;
  }

  has(name: string): boolean {
    return this.indexOf(canonicalName(name)) >= 0;
  }

  /** Value of the first header with this name (any form of the name), unfolded and trimmed. */
  get(name: string): string | undefined {
    const i = this.indexOf(canonicalName(name));
    return i < 0 ? undefined : headerValue(this.headers[i]!);
  }

  /** Values of every line with this name, one entry per line. */
  getAll(name: string): string[] {
    const n = canonicalName(name);
    const out: string[] = [];
    for (const h of this.headers) if (h.name === n) out.push(headerValue(h));
    return out;
  }

  /** Every comma-separated element of a list header across all its lines. */
  listValues(name: string): string[] {
    const out: string[] = [];
    for (const v of this.getAll(name)) {
      const spans = splitTopLevel(v);
      if (spans === undefined) {
        out.push(v);
        continue;
      }
      for (const sp of spans) if (sp.end > sp.start) out.push(v.slice(sp.start, sp.end));
    }
    return out;
  }

  /**
   * True when an option tag is listed in Supported/Require/... (case-
   * insensitive). Read in place, element by element: asked of every
   * REGISTER, it builds no list and no lower-cased copies. Option tags are
   * tokens (RFC 3261 §25.1), so a comma always separates two.
   */
  hasOptionTag(header: string, tag: string): boolean {
    const name = canonicalName(header);
    const t = tag.toLowerCase();
    const h = this.headers;
    for (let k = 0; k < h.length; k++) {
      const f = h[k]!;
      if (f.name !== name) continue;
      // In place in the parsed input when the line is one line there.
      const inPlace = f instanceof HeaderLine && !f.folded;
      const s = inPlace ? f.base : f.raw;
      const n = inPlace ? f.end : s.length;
      let i = inPlace ? f.offset + f.valueStart : f.valueStart;
      while (i < n) {
        let end = s.indexOf(",", i);
        if (end < 0) end = n;
        while (i < end && isLws(s.charCodeAt(i))) i++;
        let e = end;
        while (e > i && isLws(s.charCodeAt(e - 1))) e--;
        if (isNameAt(s, i, e, t)) return true;
        i = end + 1;
      }
    }
    return false;
  }

  /** All Via values, top first. Undefined when a Via line is malformed. */
  vias(): Via[] | undefined {
    const out: Via[] = [];
    for (const h of this.headers) {
      if (h.name !== "via") continue;
      const r = parseViaList(headerValue(h));
      if (!r.ok) return undefined;
      out.push(...r.vias);
    }
    return out;
  }

  private nameAddrs(name: string): NameAddr[] | undefined {
    const out: NameAddr[] = [];
    for (const h of this.headers) {
      if (h.name !== name) continue;
      const r = parseNameAddrList(headerValue(h));
      if (!r.ok) return undefined;
      out.push(...r.values);
    }
    return out;
  }

  /** Route set, top first; undefined when malformed. */
  routes(): NameAddr[] | undefined {
    return this.nameAddrs("route");
  }

  recordRoutes(): NameAddr[] | undefined {
    return this.nameAddrs("record-route");
  }

  paths(): NameAddr[] | undefined {
    return this.nameAddrs("path");
  }

  contacts(): ContactList | undefined {
    const all: NameAddr[] = [];
    for (const h of this.headers) {
      if (h.name !== "contact") continue;
      const r = parseContact(headerValue(h));
      if (!r.ok) return undefined;
      if (r.value.star) return r.value;
      all.push(...r.value.contacts);
    }
    return { star: false, contacts: all };
  }

  // ---- rewriting ----------------------------------------------------------

  private touch(): void {
    this.dirty = true;
  }

  /** Adds a Via above all others (RFC 3261 §16.6 step 8). */
  prependVia(via: Via | string, viaValue?: string): void {
    const value = typeof via === "string" ? via : (viaValue ?? via.raw);
    const at = this.indexOf("via");
    this.headers.splice(at < 0 ? 0 : at, 0, makeHeader("via", "Via", value));
    if (typeof via !== "string") this.setTopVia(via);
    else this.refreshTopVia();
    this.touch();
  }

  /** Removes the first Via value, even when it shares a line with others (RFC 3261 §16.7 step 3). */
  removeTopVia(): boolean {
    const i = this.indexOf("via");
    if (i < 0) return false;
    const h = this.headers[i]!;
    const restAt = this.removeFirstValueAt(i, "Via");
    if (restAt >= 0 && h instanceof HeaderLine) {
      // The rest of the line (`Via: ours, the phone's`, as SIPp answers) is
      // read where it was received, not from the line just made of it.
      const r = parseTopVia(h.base, restAt, h.end);
      this.setTopVia(r.ok ? r.via : undefined);
    } else {
      this.refreshTopVia();
    }
    return true;
  }

  /**
   * Replaces the first Via value (e.g. to add `received`/`rport`, RFC 3581
   * §4), keeping any further values that share its line.
   */
  replaceTopVia(via: Via): void {
    const i = this.indexOf("via");
    if (i < 0) return;
    const h = this.headers[i]!;
    let rest = "";
    // A line without a comma holds one value: nothing to keep after it.
    if (valueHasComma(h)) {
      const v = headerValue(h);
      const second = secondElementStart(v);
      if (second >= 0) rest = `, ${v.slice(second)}`;
    }
    this.headers[i] = makeHeader("via", "Via", via.raw + rest);
    this.setTopVia(via);
    this.touch();
  }

  private setTopVia(via: Via | undefined): void {
    this.parsedTopVia = via;
    this.ownViaBranch = undefined;
  }

  /** The new top Via, read where the line is (a response's next Via, once ours is removed); left for `topVia` to report when it does not parse. */
  private refreshTopVia(): void {
    const i = this.indexOf("via");
    if (i < 0) return this.setTopVia(undefined);
    const r = firstVia(this.headers[i]!);
    this.setTopVia(r.ok ? r.via : undefined);
  }

  setMaxForwards(n: number): void {
    this.maxForwards = n;
    this.setHeader("Max-Forwards", String(n));
  }

  /** Removes the first Route value, even inside a multi-value line (RFC 3261 §16.4). */
  removeFirstRoute(): boolean {
    return this.removeFirstValue("route", "Route");
  }

  /** Adds a Record-Route value above the existing ones (RFC 3261 §16.6 step 4). */
  addRecordRoute(value: string): void {
    this.insertBeforeFirst("record-route", "Record-Route", value);
  }

  /** Adds a Path value above the existing ones (RFC 3327 §5.1). */
  addPath(value: string): void {
    this.insertBeforeFirst("path", "Path", value);
  }

  /** Adds a Route value above the existing ones (pre-loaded route towards a target). */
  addRoute(value: string): void {
    this.insertBeforeFirst("route", "Route", value);
  }

  private insertBeforeFirst(name: string, wireName: string, value: string): void {
    let at = this.indexOf(name);
    if (at < 0) {
      // No existing one: put it after the Via block so it reads naturally.
      at = 0;
      for (let i = 0; i < this.headers.length; i++) if (this.headers[i]!.name === "via") at = i + 1;
    }
    this.headers.splice(at, 0, makeHeader(name, wireName, value));
    this.touch();
  }

  private removeFirstValue(name: string, wireName: string): boolean {
    const i = this.indexOf(name);
    if (i < 0) return false;
    this.removeFirstValueAt(i, wireName);
    return true;
  }

  /**
   * Removes the first value of line `i`. Returns where the values left on
   * the line start in its `base` when the line was read in place (a parsed
   * line, not folded), else -1 (the line went, or was read as a copy).
   */
  private removeFirstValueAt(i: number, wireName: string): number {
    const h = this.headers[i]!;
    this.touch();
    if (!valueHasComma(h)) {
      // One value on the line (nearly every Via and Route): the line goes.
      this.headers.splice(i, 1);
      return -1;
    }
    // The rest of the line starts at the next non-empty element: a dangling
    // or doubled comma (`<x>,` or `<x>,,<y>`) must not leave an empty value
    // or a line that starts with a comma. No rest: the line goes.
    if (h instanceof HeaderLine && !h.folded) {
      // In place: the rest is read where it was received.
      const b = h.base;
      const end = trimEndLws(b, h.offset + h.valueStart, h.end);
      const rest = secondElementStart(b, 44, skipLws(b, h.offset + h.valueStart, end), end);
      if (rest < 0) this.headers.splice(i, 1);
      else this.headers[i] = makeHeader(h.name, wireName, b.slice(rest, end));
      return rest;
    }
    const v = headerValue(h);
    const rest = secondElementStart(v);
    if (rest < 0) this.headers.splice(i, 1);
    else this.headers[i] = makeHeader(h.name, wireName, v.slice(rest));
    return -1;
  }

  /** Appends a header line at the end of the header section. */
  addHeader(wireName: string, value: string): void {
    this.headers.push(makeHeader(canonicalName(wireName), wireName, value));
    this.touch();
  }

  /** Replaces the first line with this name (and removes the others), or appends one. */
  setHeader(wireName: string, value: string): void {
    const name = canonicalName(wireName);
    const i = this.indexOf(name);
    if (i < 0) {
      this.headers.push(makeHeader(name, wireName, value));
    } else {
      this.headers[i] = makeHeader(name, wireName, value);
      // One pass: splicing each later duplicate would be quadratic in their number.
      if (this.indexOf(name, i + 1) >= 0) this.headers = this.headers.filter((h, j) => j <= i || h.name !== name);
    }
    this.touch();
  }

  /** Removes every line with this name; returns how many were removed. */
  removeHeader(wireName: string): number {
    const name = canonicalName(wireName);
    const before = this.headers.length;
    this.headers = this.headers.filter((h) => h.name !== name);
    const removed = before - this.headers.length;
    if (removed > 0) this.touch();
    return removed;
  }

  /** Replaces the Request-URI (RFC 3261 §16.6 step 2, or a rules rewrite). */
  setRequestUri(uriText: string, parsed?: SipUri): void {
    if (!this.isRequest) throw new Error("setRequestUri on a response");
    this.requestUri = uriText;
    this.uri = parsed;
    this.startLine = `${this.method} ${uriText} SIP/2.0`;
    this.touch();
  }

  /** Replaces the body and keeps Content-Length in step. */
  setBody(body: string): void {
    this.body = body;
    this.contentLength = body.length;
    this.setHeader("Content-Length", String(body.length));
  }

  /**
   * Makes Content-Length match the body. Needed before a message parsed from
   * a datagram without Content-Length goes out on a stream (RFC 3261 §18.3).
   */
  fixContentLength(): void {
    if (this.contentLength === this.body.length) return;
    this.contentLength = this.body.length;
    this.setHeader("Content-Length", String(this.body.length));
  }

  // ---- serializing -------------------------------------------------------

  /**
   * The message as it goes out. A rewritten message is the start line, every
   * header line and the body joined by CRLF; lines that still sit where the
   * parser found them, one after another, are copied as one slice of the
   * original input. The result is the same; the string has a handful of
   * pieces instead of two per line, which makes writing it out cheaper.
   */
  toString(): string {
    if (!this.dirty) return this.raw;
    const base = this.base;
    const h = this.headers;
    if (base === undefined) {
      let s = this.startLine + "\r\n";
      for (let i = 0; i < h.length; i++) s += h[i]!.raw + "\r\n";
      return s + "\r\n" + this.body;
    }
    let out = "";
    // [runStart, runEnd): a range of `base` still to be appended.
    let runStart = -1;
    let runEnd = -1;
    if (this.startLine === this.origStartLine) {
      runStart = this.startOffset;
      runEnd = runStart + this.startLine.length + 2;
    } else {
      out = this.startLine + "\r\n";
    }
    const n = base.length;
    for (let i = 0; i < h.length; i++) {
      const f = h[i]!;
      // Only a line from this very input, whose CRLF is in it, can be
      // copied: a line moved over from another message has another base.
      // (Its text is not cut out for this: `end` says where it ends.)
      if (f instanceof HeaderLine && f.base === base && f.end + 2 <= n) {
        const o = f.offset;
        const e = f.end + 2;
        if (o === runEnd) {
          runEnd = e;
          continue;
        }
        if (runStart >= 0) out += base.slice(runStart, runEnd);
        runStart = o;
        runEnd = e;
        continue;
      }
      if (runStart >= 0) {
        out += base.slice(runStart, runEnd);
        runStart = -1;
        runEnd = -1;
      }
      out += f.raw + "\r\n";
    }
    if (this.bodyOffset >= 2 && this.body === this.origBody) {
      // The empty line and the untouched body are still in `base`.
      const from = this.bodyOffset - 2;
      const to = this.bodyOffset + this.body.length;
      if (from !== runEnd) {
        if (runStart >= 0) out += base.slice(runStart, runEnd);
        runStart = from;
      }
      return out + base.slice(runStart, to);
    }
    if (runStart >= 0) out += base.slice(runStart, runEnd);
    return out + "\r\n" + this.body;
  }

  toBuffer(): Buffer {
    const s = this.toString();
    // allocUnsafe draws from the shared pool; one latin1 write, no re-encode.
    const b = Buffer.allocUnsafe(s.length);
    b.write(s, 0, "latin1");
    return b;
  }
}

/** The first Via value of a Via line, read where the line is when it can be. */
function firstVia(h: HeaderField): ViaResult {
  return h instanceof HeaderLine && !h.folded ? parseTopVia(h.base, h.offset + h.valueStart, h.end) : parseTopVia(headerValue(h));
}

export function headerValue(h: HeaderField): string {
  return h instanceof HeaderLine ? h.value() : unfold(h.raw.slice(h.valueStart));
}

/** Does the line's value hold a ','? (Then it may hold more than one value.) */
function valueHasComma(h: HeaderField): boolean {
  return h instanceof HeaderLine ? h.valueHasComma() : h.raw.indexOf(",", h.valueStart) >= 0;
}

export function makeHeader(name: string, wireName: string, value: string): HeaderField {
  // The class of a parsed line (one hidden class on the hot path).
  return HeaderLine.made(name, wireName, value);
}
