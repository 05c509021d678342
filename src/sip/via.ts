import { findParam, isLws, isTokenChar, parseParams, skipLws, splitTopLevel, type Param } from "./lex.js";

/** One Via value (RFC 3261 §20.42, RFC 3581 `rport`). */
export interface Via {
  /** e.g. "SIP/2.0" */
  protocol: string;
  /** Upper-cased transport token: UDP, TCP, TLS, WS, WSS, SCTP or an extension. */
  transport: string;
  /** sent-by host without IPv6 brackets. */
  host: string;
  port: number | undefined;
  params: Param[];
  branch: string | undefined;
  received: string | undefined;
  /** undefined: absent; null: bare `;rport` (a request for RFC 3581); number: filled in. */
  rport: number | null | undefined;
  /** The value's text, trimmed. */
  raw: string;
}

export type ViaResult = { ok: true; via: Via } | { ok: false; reason: string };

export const MAGIC_COOKIE = "z9hG4bK";

function fail(reason: string): ViaResult {
  return { ok: false, reason };
}

/** Reads a token, allowing LWS before it; returns [token, next index]. */
function readToken(s: string, i: number, end: number): [string, number] {
  i = skipLws(s, i, end);
  const st = i;
  while (i < end && isTokenChar(s.charCodeAt(i))) i++;
  return [s.slice(st, i), i];
}

function expectSlash(s: string, i: number, end: number): number {
  i = skipLws(s, i, end);
  return i < end && s.charCodeAt(i) === 47 /* / */ ? i + 1 : -1;
}

/** Parses a single Via value `SIP / 2.0 / UDP host:port;params`. */
export function parseViaValue(s: string, start = 0, end = s.length): ViaResult {
  let i: number;
  let name: string;
  let version: string;
  let transport: string;
  [name, i] = readToken(s, start, end);
  if (name.length === 0) return fail("Via: missing protocol name");
  if ((i = expectSlash(s, i, end)) < 0) return fail("Via: expected '/' after protocol name");
  [version, i] = readToken(s, i, end);
  if (version.length === 0) return fail("Via: missing protocol version");
  if ((i = expectSlash(s, i, end)) < 0) return fail("Via: expected '/' after protocol version");
  [transport, i] = readToken(s, i, end);
  if (transport.length === 0) return fail("Via: missing transport");
  const afterTransport = i;
  i = skipLws(s, i, end);
  if (i === afterTransport) return fail("Via: missing LWS before sent-by");
  let host: string;
  if (s.charCodeAt(i) === 91 /* [ */) {
    const close = s.indexOf("]", i);
    if (close < 0 || close >= end) return fail("Via: unterminated IPv6 reference");
    host = s.slice(i + 1, close);
    // An IPv6 reference holds at least one colon; `[192.0.2.1]` is not one.
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || host.indexOf(":") < 0) return fail("Via: bad IPv6 reference");
    i = close + 1;
  } else {
    const hs = i;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c === 58 || c === 59 || isLws(c)) break;
      i++;
    }
    host = s.slice(hs, i);
    if (!isHostname(host)) return fail("Via: bad sent-by host");
  }
  let port: number | undefined;
  const beforeColon = skipLws(s, i, end);
  if (beforeColon < end && s.charCodeAt(beforeColon) === 58 /* : */) {
    i = skipLws(s, beforeColon + 1, end);
    const ps = i;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      i++;
    }
    if (i === ps || i - ps > 5) return fail("Via: bad sent-by port");
    port = Number(s.slice(ps, i));
    if (port > 65535) return fail("Via: port out of range");
  }
  const params: Param[] = [];
  if (!parseParams(s, i, end, params)) return fail("Via: malformed parameters");
  const branchP = findParam(params, "branch");
  const receivedP = findParam(params, "received");
  const rportP = findParam(params, "rport");
  let rport: number | null | undefined;
  if (rportP !== undefined) {
    if (rportP.value === null) rport = null;
    else {
      if (!/^[0-9]{1,5}$/.test(rportP.value)) return fail("Via: bad rport");
      rport = Number(rportP.value);
      // A response must never be aimed at a port that cannot exist (RFC 3581 §4).
      if (rport > 65535) return fail("Via: rport out of range");
    }
  }
  let received = receivedP?.value ?? undefined;
  if (received !== undefined && received.charCodeAt(0) === 91) received = received.slice(1, -1);
  return {
    ok: true,
    via: {
      protocol: `${name}/${version}`,
      transport: transport.toUpperCase(),
      host,
      port,
      params,
      branch: branchP?.value ?? undefined,
      received,
      rport,
      raw: s.slice(start, end).trim(),
    },
  };
}

const HOST_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (/[A-Za-z0-9\-._]/.test(String.fromCharCode(c))) HOST_CHAR[c] = 1;

function isHostname(h: string): boolean {
  if (h.length === 0) return false;
  for (let i = 0; i < h.length; i++) if (HOST_CHAR[h.charCodeAt(i)] !== 1) return false;
  return true;
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

/** The address a response to this Via goes to (RFC 3261 §18.2.2, RFC 3581 §4). */
export function responseTarget(via: Via, defaultPort: number): { address: string; port: number } {
  const address = via.received ?? via.host;
  const port = typeof via.rport === "number" ? via.rport : (via.port ?? defaultPort);
  return { address, port };
}
