import { isLws, isNameAt, isTokenChar, scanParams, skipLws, splitTopLevel, topLevelEnd, trimEndLws } from "./lex.js";

/** One Via value (RFC 3261 §20.42, RFC 3581 `rport`). */
export interface Via {
  /** e.g. "SIP/2.0" */
  protocol: string;
  /** Upper-cased transport token: UDP, TCP, TLS, WS, WSS, SCTP or an extension. */
  transport: string;
  /** sent-by host without IPv6 brackets. */
  host: string;
  port: number | undefined;
  /** The first `branch` parameter's value (the parameters themselves are not kept: nothing needs them). */
  branch: string | undefined;
  received: string | undefined;
  /** undefined: absent; null: bare `;rport` (a request for RFC 3581); number: filled in. */
  rport: number | null | undefined;
  /** With a bare `;rport`: the offset in `raw` just past its name, where `=port` goes (RFC 3581 §4); else -1. */
  rportAt: number;
  /** The value's text, trimmed. */
  raw: string;
}

export type ViaResult = { ok: true; via: Via } | { ok: false; reason: string };

export const MAGIC_COOKIE = "z9hG4bK";

/** Characters of a hostname or IPv4 address in a sent-by (RFC 3261 §25.1 `hostname`). */
const HOST_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (/[A-Za-z0-9\-._]/.test(String.fromCharCode(c))) HOST_CHAR[c] = 1;

function fail(reason: string): ViaResult {
  return { ok: false, reason };
}

/** End of the token starting at `i`; `i` itself when there is none. */
function tokenEnd(s: string, i: number, end: number): number {
  while (i < end && isTokenChar(s.charCodeAt(i))) i++;
  return i;
}

function expectSlash(s: string, i: number, end: number): number {
  i = skipLws(s, i, end);
  return i < end && s.charCodeAt(i) === 47 /* / */ ? i + 1 : -1;
}

/**
 * Upper-cased transport for `s[st..en)`. The registered transports come back
 * as constants, compared in place, so the common Via costs no allocation.
 */
function transportAt(s: string, st: number, en: number): string {
  const len = en - st;
  const c0 = s.charCodeAt(st) & 0xdf;
  const c1 = s.charCodeAt(st + 1) & 0xdf;
  if (len === 3) {
    const c2 = s.charCodeAt(st + 2) & 0xdf;
    if (c0 === 85 && c1 === 68 && c2 === 80) return "UDP";
    if (c0 === 84 && c1 === 67 && c2 === 80) return "TCP";
    if (c0 === 84 && c1 === 76 && c2 === 83) return "TLS";
    if (c0 === 87 && c1 === 83 && c2 === 83) return "WSS";
  } else if (len === 2 && c0 === 87 && c1 === 83) {
    return "WS";
  }
  return s.slice(st, en).toUpperCase();
}

/** Parses a single Via value `SIP / 2.0 / UDP host:port;params`. */
export function parseViaValue(s: string, start = 0, end = s.length): ViaResult {
  let i = skipLws(s, start, end);
  let protocol: string;
  if (i + 8 <= end && s.startsWith("SIP/2.0/", i)) {
    // Nearly every Via: no LWS around the slashes, nothing to assemble.
    protocol = "SIP/2.0";
    i += 8;
  } else {
    const ns = i;
    i = tokenEnd(s, i, end);
    if (i === ns) return fail("Via: missing protocol name");
    const name = s.slice(ns, i);
    if ((i = expectSlash(s, i, end)) < 0) return fail("Via: expected '/' after protocol name");
    const vs = skipLws(s, i, end);
    i = tokenEnd(s, vs, end);
    if (i === vs) return fail("Via: missing protocol version");
    protocol = `${name}/${s.slice(vs, i)}`;
    if ((i = expectSlash(s, i, end)) < 0) return fail("Via: expected '/' after protocol version");
  }
  const ts = skipLws(s, i, end);
  i = tokenEnd(s, ts, end);
  if (i === ts) return fail("Via: missing transport");
  const transport = transportAt(s, ts, i);
  const afterTransport = i;
  i = skipLws(s, i, end);
  if (i === afterTransport) return fail("Via: missing LWS before sent-by");
  let host: string;
  if (i < end && s.charCodeAt(i) === 91 /* [ */) {
    const close = s.indexOf("]", i);
    if (close < 0 || close >= end) return fail("Via: unterminated IPv6 reference");
    host = s.slice(i + 1, close);
    // An IPv6 reference holds at least one colon; `[192.0.2.1]` is not one.
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || host.indexOf(":") < 0) return fail("Via: bad IPv6 reference");
    i = close + 1;
  } else {
    const hs = i;
    while (i < end && HOST_CHAR[s.charCodeAt(i)] === 1) i++;
    // The host ends at ':' (port), ';' (params), LWS or the end of the value.
    if (i === hs || (i < end && !isHostEnd(s.charCodeAt(i)))) return fail("Via: bad sent-by host");
    host = s.slice(hs, i);
  }
  let port: number | undefined;
  const beforeColon = skipLws(s, i, end);
  if (beforeColon < end && s.charCodeAt(beforeColon) === 58 /* : */) {
    i = skipLws(s, beforeColon + 1, end);
    const ps = i;
    let p = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      p = p * 10 + (c - 48);
      i++;
    }
    if (i === ps || i - ps > 5) return fail("Via: bad sent-by port");
    if (p > 65535) return fail("Via: port out of range");
    port = p;
  }
  const spans = VIA_SPANS;
  const count = scanParams(s, i, end, spans);
  if (count < 0) return fail("Via: malformed parameters");
  // The first parameter of each name decides, as a lookup by name would;
  // one without a value leaves branch and received unset.
  let branch: string | undefined;
  let received: string | undefined;
  let rport: number | null | undefined;
  let seenBranch = false;
  let seenReceived = false;
  let rportStart = -2;
  let rportEnd = -1;
  let rportNameEnd = -1;
  for (let k = 0; k < 4 * count; k += 4) {
    const ns = spans[k]!;
    const ne = spans[k + 1]!;
    const vs = spans[k + 2]!;
    const ve = spans[k + 3]!;
    if (!seenBranch && isNameAt(s, ns, ne, "branch")) {
      seenBranch = true;
      if (vs >= 0) branch = s.slice(vs, ve);
    } else if (!seenReceived && isNameAt(s, ns, ne, "received")) {
      seenReceived = true;
      if (vs >= 0) received = s.charCodeAt(vs) === 91 ? s.slice(vs + 1, ve - 1) : s.slice(vs, ve);
    } else if (rportStart === -2 && isNameAt(s, ns, ne, "rport")) {
      rportStart = vs;
      rportEnd = ve;
      rportNameEnd = ne;
    }
  }
  if (rportStart === -1) rport = null;
  else if (rportStart >= 0) {
    let n = 0;
    for (let k = rportStart; k < rportEnd; k++) {
      const c = s.charCodeAt(k);
      if (c < 48 || c > 57) return fail("Via: bad rport");
      n = n * 10 + (c - 48);
    }
    if (rportEnd - rportStart > 5) return fail("Via: bad rport");
    // A response must never be aimed at a port that cannot exist (RFC 3581 §4).
    if (n > 65535) return fail("Via: rport out of range");
    rport = n;
  }
  const rawStart = skipLws(s, start, end);
  return {
    ok: true,
    via: { protocol, transport, host, port, branch, received, rport, rportAt: rport === null ? rportNameEnd - rawStart : -1, raw: s.slice(rawStart, trimEndLws(s, rawStart, end)) },
  };
}

/** Reused by parseViaValue for its parameter spans (JS runs one call at a time). */
const VIA_SPANS: number[] = [];

function isHostEnd(c: number): boolean {
  return c === 58 || c === 59 || isLws(c);
}

/**
 * The first value of a Via line's `s[start..end)`; the others (SIPp and
 * some PBXs answer with `Via: ours, the phone's` on one line) are not
 * read: nothing needs them until the edge's own is removed, and a Via line
 * of its own below the top one is not read either.
 */
export function parseTopVia(s: string, start = 0, end = s.length): ViaResult {
  // Without a comma the value is the whole line, read as one value is read
  // wherever it stands (a stray quote in it is that reader's to judge, as
  // in parseViaList): a lone value must not be refused here and taken there.
  // Searched only up to `end`: `s` may be a whole message.
  let comma = start;
  while (comma < end && s.charCodeAt(comma) !== 44) comma++;
  if (comma === end) return parseViaValue(s, start, end);
  const e = topLevelEnd(s, start, end);
  if (e < 0) return fail("Via: unbalanced quotes");
  return parseViaValue(s, start, e);
}

/** Parses every value of a (possibly multi-value) Via header line. */
export function parseViaList(value: string): { ok: true; vias: Via[] } | { ok: false; reason: string } {
  if (value.indexOf(",") < 0) {
    // The common case, one value per line: no splitting pass.
    const r = parseViaValue(value, 0, value.length);
    return r.ok ? { ok: true, vias: [r.via] } : r;
  }
  const spans = splitTopLevel(value);
  if (spans === undefined) return { ok: false, reason: "Via: unbalanced quotes" };
  const vias: Via[] = [];
  for (const sp of spans) {
    if (sp.start === sp.end) return { ok: false, reason: "Via: empty value" };
    const r = parseViaValue(value, sp.start, sp.end);
    if (!r.ok) return r;
    vias.push(r.via);
  }
  return { ok: true, vias };
}

/**
 * The Via a proxy adds (RFC 3261 §16.6 step 8, with RFC 3581 `rport`), as
 * the object `parseViaValue` makes of its text: the caller takes it as the
 * message's top Via without parsing back what it just wrote. `host` may
 * carry IPv6 brackets or not; `transport` is upper-cased.
 */
export function proxyVia(transport: string, host: string, port: number, branch: string): Via {
  const bare = host.charCodeAt(0) === 91 /* [ */ ? host.slice(1, -1) : host;
  const ref = bare.indexOf(":") >= 0 ? `[${bare}]` : bare;
  const raw = `SIP/2.0/${transport} ${ref}:${port};branch=${branch};rport`;
  return { protocol: "SIP/2.0", transport, host: bare, port, branch, received: undefined, rport: null, rportAt: raw.length, raw };
}

/** The address a response to this Via goes to (RFC 3261 §18.2.2, RFC 3581 §4). */
export function responseTarget(via: Via, defaultPort: number): { address: string; port: number } {
  const address = via.received ?? via.host;
  const port = typeof via.rport === "number" ? via.rport : (via.port ?? defaultPort);
  return { address, port };
}
