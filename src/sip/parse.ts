import { canonicalName, lookupNameAt } from "./headers.js";
import { isToken, isWs, skipLws, trimEndLws } from "./lex.js";
import { HeaderLine, SipMessage, type CSeq, type HeaderField } from "./message.js";
import { parseContact, quickCheckNameAddr } from "./nameaddr.js";
import { parseUri, type SipUri } from "./uri.js";
import { parseTopVia, parseViaValue, type Via } from "./via.js";

/** Limits enforced while reading (DESIGN.md §2.8). */
export interface ParseLimits {
  maxMessageBytes: number;
  maxHeaders: number;
  maxVias: number;
  maxHeaderLineBytes: number;
}

export const DEFAULT_LIMITS: Readonly<ParseLimits> = Object.freeze({
  maxMessageBytes: 65535,
  maxHeaders: 128,
  maxVias: 70,
  maxHeaderLineBytes: 8192,
});

export type ParseErrorCode =
  | "empty"
  | "too-large"
  | "bad-start-line"
  | "bad-version"
  | "bad-request-uri"
  | "bad-status-code"
  | "bad-header"
  | "header-line-too-long"
  | "too-many-headers"
  | "too-many-vias"
  | "bad-via"
  | "missing-header"
  | "duplicate-header"
  | "bad-cseq"
  | "cseq-method-mismatch"
  | "bad-max-forwards"
  | "bad-content-length"
  | "content-length-mismatch"
  | "content-length-exceeds"
  | "missing-content-length"
  | "bad-from-to"
  | "bad-contact";

/**
 * Bad input as a value (DESIGN.md §5.3). `status` is the response a request
 * deserves when one can be formed (400, 505, 513); responses in error are
 * dropped by the caller. `headers` holds whatever header lines were split
 * before the error, so a 400 can copy Via/From/To/Call-ID/CSeq.
 */
export interface ParseError {
  ok: false;
  code: ParseErrorCode;
  reason: string;
  offset: number;
  status: number;
  isRequest: boolean | undefined;
  method: string | undefined;
  headers: HeaderField[];
}

export type ParseResult = { ok: true; message: SipMessage; trailingBytes: number } | ParseError;

export interface ParseOptions {
  limits?: ParseLimits;
  /**
   * True for a message framed from a stream: Content-Length is mandatory
   * (RFC 3261 §18.3). On a datagram a missing Content-Length means "the rest".
   */
  stream?: boolean;
  /**
   * The message is read for a proxy that relays it, whose own Via branches
   * start with this (src/edge/branch.ts): a response is then read only as
   * far as relaying needs (RFC 3261 §16.7). A top Via whose first `branch`
   * parameter starts with it is the proxy's own, which it removes unread:
   * only that branch is read (`SipMessage.topViaBranch`), the rest when
   * something asks for `topVia`. A response's From/To are not checked
   * either: the proxy never reads them, and the client they go back to
   * judges them. Requests are read in full as always.
   */
  ownBranchPrefix?: string;
}

const MAX_UINT32 = 4294967295;

class Fail {
  constructor(
    readonly code: ParseErrorCode,
    readonly reason: string,
    readonly offset: number,
    readonly status = 400,
  ) {}
}

/**
 * Parses one SIP message from a datagram or a framed stream message.
 * Never throws on bad input.
 */
export function parse(input: Buffer | string, opts: ParseOptions = {}): ParseResult {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const maxHeaderLineBytes = limits.maxHeaderLineBytes;
  const maxHeaders = limits.maxHeaders;
  const s = typeof input === "string" ? input : input.toString("latin1");
  const n = s.length;
  const headers: HeaderLine[] = [];
  let isRequest: boolean | undefined;
  let method: string | undefined;

  if (n > limits.maxMessageBytes) {
    return toError(new Fail("too-large", `message of ${n} bytes exceeds ${limits.maxMessageBytes}`, limits.maxMessageBytes, 513), undefined, undefined, headers);
  }
  // RFC 3261 §7.5: CRLFs before the start line are ignored.
  let start = 0;
  while (start + 1 < n && s.charCodeAt(start) === 13 && s.charCodeAt(start + 1) === 10) start += 2;
  if (start >= n) return toError(new Fail("empty", "no message", start), undefined, undefined, headers);

  let lineEnd = findCrlf(s, start);
  if (lineEnd < 0) lineEnd = n;
  if (lineEnd - start > maxHeaderLineBytes) {
    return toError(new Fail("header-line-too-long", "start line too long", start), undefined, undefined, headers);
  }
  const startLine = s.slice(start, lineEnd);

  // ---- start line -------------------------------------------------------
  let startFail: Fail | undefined;
  let requestUri = "";
  let uri: SipUri | undefined;
  let status = 0;
  let reason = "";
  if (startLine.startsWith("SIP/")) {
    isRequest = false;
    const sp1 = startLine.indexOf(" ");
    const sp2 = sp1 < 0 ? -1 : startLine.indexOf(" ", sp1 + 1);
    const code = sp1 < 0 ? -1 : readStatusCode(startLine, sp1 + 1, sp2 < 0 ? startLine.length : sp2);
    if (code < 0) {
      startFail = new Fail("bad-status-code", "status code is not 100-699", start + sp1 + 1);
    } else if (sp1 !== 7 || !startLine.startsWith("SIP/2.0")) {
      startFail = new Fail("bad-version", "unsupported SIP version", start, 505);
    } else {
      status = code;
      reason = sp2 < 0 ? "" : startLine.slice(sp2 + 1);
    }
  } else {
    isRequest = true;
    // Exactly one SP between the three elements and none at the end
    // (RFC 3261 §7.1; RFC 4475 §3.1.2.8–3.1.2.10).
    const sp1 = startLine.indexOf(" ");
    const sp2 = sp1 < 0 ? -1 : startLine.indexOf(" ", sp1 + 1);
    method = sp1 < 0 ? startLine : (methodAt(startLine, 0, sp1) ?? startLine.slice(0, sp1));
    if (sp1 <= 0 || sp2 < 0 || sp2 === sp1 + 1 || sp2 === startLine.length - 1 || startLine.indexOf(" ", sp2 + 1) >= 0 || !isToken(method)) {
      startFail = new Fail("bad-start-line", "malformed Request-Line", start);
    } else {
      requestUri = startLine.slice(sp1 + 1, sp2);
      if (startLine.length - sp2 - 1 !== 7 || !startLine.endsWith("SIP/2.0")) {
        const version = startLine.slice(sp2 + 1);
        startFail = /^SIP\/[0-9]+\.[0-9]+$/.test(version)
          ? new Fail("bad-version", `unsupported version ${version}`, start + startLine.length - version.length, 505)
          : new Fail("bad-start-line", "malformed SIP-Version", start);
      } else {
        const u = parseUri(requestUri);
        if (!u.ok) {
          startFail = new Fail("bad-request-uri", `Request-URI: ${u.reason}`, start + method.length + 1);
        } else if (u.uri.headers !== undefined) {
          // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5; RFC 4475 §3.1.2.11).
          startFail = new Fail("bad-request-uri", "Request-URI carries headers", start + method.length + 1);
        } else {
          uri = u.uri;
        }
      }
    }
  }

  // ---- header lines -------------------------------------------------------
  let pos = lineEnd + 2;
  let bodyStart = n;
  let sawEmptyLine = false;
  let viaCount = 0;
  // Position of the next ',' at or after the last search (n when none): a
  // Via line that ends before it has no comma, with no scan at all. Searches
  // only ever start past the previous hit, so all of them together read the
  // message at most once.
  let nextComma = -1;
  let topVia: Via | undefined;
  let ownViaBranch: string | undefined;
  // A response read for relaying (ParseOptions.ownBranchPrefix): our top Via by its branch, no From/To check.
  const relayPrefix = isRequest === false ? opts.ownBranchPrefix : undefined;
  let maxForwards: number | undefined;
  let callId: string | undefined;
  let cseq: CSeq | undefined;
  let contentLength: number | undefined;
  let seenFrom = false;
  let seenTo = false;
  try {
    for (;;) {
      if (pos >= n) {
        // Datagram without the empty line that ends the headers: tolerated
        // (RFC 5118 §4.10 messages are archived that way); no body.
        bodyStart = n;
        break;
      }
      let eol = findCrlf(s, pos);
      if (eol === pos) {
        bodyStart = pos + 2;
        sawEmptyLine = true;
        break;
      }
      if (eol < 0) eol = n;
      // Continuation lines start with SP or HT (RFC 3261 §7.3.1).
      let end = eol;
      while (end + 2 < n && isWs(s.charCodeAt(end + 2))) {
        const e2 = findCrlf(s, end + 2);
        end = e2 < 0 ? n : e2;
      }
      if (end - pos > maxHeaderLineBytes) throw new Fail("header-line-too-long", "header line too long", pos);
      // The name is short: a bounded scan beats a search call, and cannot
      // run past the line.
      let colon = pos;
      while (colon < end && s.charCodeAt(colon) !== 58) colon++;
      if (colon >= end) throw new Fail("bad-header", "header line without ':'", pos);
      const nameEnd = trimEndLws(s, pos, colon);
      let name = lookupNameAt(s, pos, nameEnd);
      if (name === undefined) {
        const wireName = s.slice(pos, nameEnd);
        if (!isToken(wireName)) throw new Fail("bad-header", "malformed header name", pos);
        name = canonicalName(wireName);
      }
      const folded = end !== eol;
      const h = new HeaderLine(name, s, pos, end, colon - pos + 1, folded);
      headers.push(h);
      if (headers.length > maxHeaders) throw new Fail("too-many-headers", `more than ${limits.maxHeaders} header lines`, pos);
      switch (name) {
        case "via": {
          // Counting commas over-counts quoted ones; fine for a limit.
          if (nextComma <= colon) {
            nextComma = s.indexOf(",", colon + 1);
            if (nextComma < 0) nextComma = n;
          }
          const commas = nextComma < end ? countChar(s, 44, nextComma, end) : 0;
          viaCount += 1 + commas;
          if (viaCount > limits.maxVias) throw new Fail("too-many-vias", `more than ${limits.maxVias} Via values`, pos);
          if (topVia === undefined && ownViaBranch === undefined) {
            if (relayPrefix !== undefined && !folded) {
              ownViaBranch = ownBranchAt(s, colon + 1, commas === 0 ? end : nextComma, relayPrefix);
              if (ownViaBranch !== undefined) break;
            }
            // Parsed in place unless folded; of a line of several values only
            // the first. A line known to have no comma (nearly every Via) is
            // one value, with no further scan.
            const r = folded ? parseTopVia(h.value()) : commas === 0 ? parseViaValue(s, colon + 1, end) : parseTopVia(s, colon + 1, end);
            if (!r.ok) throw new Fail("bad-via", r.reason, pos);
            topVia = r.via;
          }
          break;
        }
        case "max-forwards": {
          if (maxForwards !== undefined) throw new Fail("duplicate-header", "more than one Max-Forwards", pos);
          const v = readUint(s, colon + 1, end);
          if (v < 0) throw new Fail("bad-max-forwards", "Max-Forwards is not a number", pos);
          // Above 255 is out of range (RFC 3261 §20.22): clamp rather than
          // loosen loop protection (RFC 4475 §3.1.2.4).
          maxForwards = Math.min(v, 255);
          break;
        }
        case "call-id": {
          if (callId !== undefined) throw new Fail("duplicate-header", "more than one Call-ID", pos);
          callId = folded ? h.value() : s.slice(skipLws(s, colon + 1, end), trimEndLws(s, colon + 1, end));
          if (callId.length === 0) throw new Fail("bad-header", "empty Call-ID", pos);
          break;
        }
        case "cseq": {
          if (cseq !== undefined) throw new Fail("duplicate-header", "more than one CSeq", pos);
          cseq = readCSeq(s, colon + 1, end, pos);
          break;
        }
        case "content-length": {
          const cl = readUint(s, colon + 1, end);
          if (cl < 0) throw new Fail("bad-content-length", "Content-Length is not a non-negative number", pos);
          // Two different values leave framing undefined (RFC 4475 §3.3.9).
          if (contentLength !== undefined && contentLength !== cl) throw new Fail("content-length-mismatch", "conflicting Content-Length values", pos);
          contentLength = cl;
          break;
        }
        case "from":
        case "to": {
          if (name === "from" ? seenFrom : seenTo) throw new Fail("duplicate-header", `more than one ${name === "from" ? "From" : "To"}`, pos);
          if (name === "from") seenFrom = true;
          else seenTo = true;
          const problem = relayPrefix !== undefined ? undefined : folded ? quickCheckNameAddr(h.value()) : quickCheckNameAddr(s, colon + 1, end);
          if (problem !== undefined) throw new Fail("bad-from-to", `${name === "from" ? "From" : "To"}: ${problem}`, pos);
          break;
        }
        default:
          break;
      }
      pos = end + 2;
    }
    if (startFail !== undefined) throw startFail;
    if (topVia === undefined && ownViaBranch === undefined) throw new Fail("missing-header", "no Via", start);
    if (callId === undefined) throw new Fail("missing-header", "no Call-ID", start);
    if (cseq === undefined) throw new Fail("missing-header", "no CSeq", start);
    if (!seenFrom) throw new Fail("missing-header", "no From", start);
    if (!seenTo) throw new Fail("missing-header", "no To", start);
    if (isRequest) {
      if (cseq.method !== method) throw new Fail("cseq-method-mismatch", "CSeq method does not match the request method", start);
      if (method === "REGISTER") {
        for (const h of headers) {
          if (h.name !== "contact") continue;
          const r = parseContact(h.value());
          if (!r.ok) throw new Fail("bad-contact", `Contact: ${r.reason}`, start);
        }
      }
    }
  } catch (e) {
    if (e instanceof Fail) return toError(e, isRequest, method, headers);
    throw e;
  }

  // ---- body ---------------------------------------------------------------
  const available = n - bodyStart;
  let bodyEnd: number;
  if (contentLength === undefined) {
    if (opts.stream === true) return toError(new Fail("missing-content-length", "no Content-Length on a stream", start), isRequest, method, headers);
    bodyEnd = n; // RFC 3261 §18.3: on a datagram the body is the rest.
  } else {
    if (contentLength > available) {
      return toError(new Fail("content-length-exceeds", `Content-Length ${contentLength} exceeds the ${available} bytes present`, bodyStart), isRequest, method, headers);
    }
    // Octets after Content-Length in a datagram are discarded (RFC 4475 §3.1.1.8).
    bodyEnd = bodyStart + contentLength;
  }

  const message = new SipMessage({
    raw: start === 0 && bodyEnd === n ? s : s.slice(start, bodyEnd),
    startLine,
    isRequest,
    method: isRequest ? method! : cseq!.method,
    requestUri,
    uri,
    status,
    reason,
    headers,
    body: s.slice(bodyStart, bodyEnd),
    topVia,
    ownViaBranch,
    maxForwards,
    callId: callId!,
    cseq: cseq!,
    contentLength,
    located: { base: s, startOffset: start, bodyOffset: sawEmptyLine ? bodyStart : -1 },
  });
  return { ok: true, message, trailingBytes: n - bodyEnd };
}

/**
 * The branch of the proxy's own Via in the first value of a Via line,
 * `s[from..end)` (`end`: the line's end, or its first comma, past which
 * the first value may not reach): where the first `;branch=` of the value,
 * as written, starts with the proxy's `prefix`. The branch runs to the
 * next `;`, `,` or LWS. Undefined otherwise (another party's Via, or ours
 * written otherwise, which is then parsed in full).
 */
function ownBranchAt(s: string, from: number, end: number, prefix: string): string | undefined {
  const at = s.indexOf(";branch=", from);
  const st = at + 8;
  if (at < 0 || at >= end || !s.startsWith(prefix, st)) return undefined;
  let e = st + prefix.length;
  while (e < end) {
    const c = s.charCodeAt(e);
    if (c === 59 || c === 44 || isWs(c)) break;
    e++;
  }
  return s.slice(st, e);
}

/**
 * Index of the next CRLF at or after `from`, or -1. Searching for the single
 * CR is the engine's fastest path; a CR not followed by LF stays part of the
 * line, as before.
 */
function findCrlf(s: string, from: number): number {
  for (;;) {
    const i = s.indexOf("\r", from);
    if (i < 0 || s.charCodeAt(i + 1) === 10) return i;
    from = i + 1;
  }
}

function toError(f: Fail, isRequest: boolean | undefined, method: string | undefined, headers: HeaderField[]): ParseError {
  return { ok: false, code: f.code, reason: f.reason, offset: f.offset, status: f.status, isRequest, method, headers };
}

/**
 * Occurrences of `code` in `s[from..end)`. A bounded scan on purpose:
 * `indexOf` would run past `end` to the next comma anywhere in the message,
 * once per Via line, which makes a message of many Via lines quadratic.
 */
function countChar(s: string, code: number, from: number, end: number): number {
  let c = 0;
  for (let i = from; i < end; i++) if (s.charCodeAt(i) === code) c++;
  return c;
}

/**
 * Reads an unsigned decimal in `s[from..end)` surrounded by optional LWS
 * (folded lines included). Returns -1 when it is not one, or when it exceeds
 * 2^32-1 (RFC 4475 §3.1.2.4): no regex, no substring on the hot path.
 */
function readUint(s: string, from: number, end: number): number {
  let i = skipLws(s, from, end);
  const st = i;
  let v = 0;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    v = v * 10 + (c - 48);
    i++;
  }
  if (i === st || i - st > 10 || v > MAX_UINT32) return -1;
  return skipLws(s, i, end) === end ? v : -1;
}

/** CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16), read in place. */
function readCSeq(s: string, from: number, end: number, pos: number): CSeq {
  let i = skipLws(s, from, end);
  const st = i;
  let seq = 0;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    seq = seq * 10 + (c - 48);
    i++;
  }
  if (i === st) throw new Fail("bad-cseq", "malformed CSeq", pos);
  if (i - st > 10 || seq > MAX_UINT32) throw new Fail("bad-cseq", "CSeq number exceeds 2^32-1", pos);
  const ms = skipLws(s, i, end);
  if (ms === i) throw new Fail("bad-cseq", "malformed CSeq", pos);
  const me = trimEndLws(s, ms, end);
  const method = methodAt(s, ms, me) ?? s.slice(ms, me);
  if (!isToken(method)) throw new Fail("bad-cseq", "malformed CSeq method", pos);
  return { seq, method };
}

/** Status-Code (RFC 3261 §7.2): exactly three digits, 100-699. -1 otherwise. */
function readStatusCode(s: string, from: number, end: number): number {
  if (end - from !== 3) return -1;
  const a = s.charCodeAt(from) - 48;
  const b = s.charCodeAt(from + 1) - 48;
  const c = s.charCodeAt(from + 2) - 48;
  if (a < 1 || a > 6 || b < 0 || b > 9 || c < 0 || c > 9) return -1;
  return a * 100 + b * 10 + c;
}

/**
 * The methods of RFC 3261 and its extensions, as literals: a method read
 * from the wire comes back as the engine's internalized constant (no slice,
 * and `m.method === "INVITE"` downstream is a pointer check). Methods are
 * case-sensitive (RFC 3261 §7.1), so the match is exact.
 */
const METHODS_BY_LENGTH: string[][] = [];
for (const m of ["ACK", "BYE", "INFO", "PRACK", "REFER", "INVITE", "CANCEL", "NOTIFY", "UPDATE", "OPTIONS", "PUBLISH", "MESSAGE", "REGISTER", "SUBSCRIBE"]) {
  (METHODS_BY_LENGTH[m.length] ??= []).push(m);
}

function methodAt(s: string, start: number, end: number): string | undefined {
  const bucket = METHODS_BY_LENGTH[end - start];
  if (bucket === undefined) return undefined;
  outer: for (let k = 0; k < bucket.length; k++) {
    const m = bucket[k]!;
    for (let i = 0; i < m.length; i++) if (s.charCodeAt(start + i) !== m.charCodeAt(i)) continue outer;
    return m;
  }
  return undefined;
}
