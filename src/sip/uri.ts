import { isLws, type Param } from "./lex.js";

/**
 * A parsed URI. `sip:` and `sips:` URIs are split into their parts
 * (RFC 3261 §19.1.1); `tel:` (RFC 3966) keeps its number and parameters;
 * any other scheme is kept opaque (RFC 4475 §3.3.2, §3.3.4).
 * Values stay escaped exactly as received: unescaping happens only where a
 * comparison needs it (`unescape`), and only once (RFC 4475 §3.1.1.3).
 */
export interface SipUri {
  scheme: string; // lower-cased
  /** sip/sips user part, tel number; undefined when absent. */
  user: string | undefined;
  password: string | undefined;
  /** Host without IPv6 brackets; "" for opaque schemes. */
  host: string;
  /** True when the host was an IPv6 reference `[...]`. */
  ipv6: boolean;
  port: number | undefined;
  params: Param[];
  /** Raw `?headers` part without the `?`, undefined when absent. */
  headers: string | undefined;
  /** The whole URI text as received. */
  raw: string;
}

export type UriResult = { ok: true; uri: SipUri } | { ok: false; reason: string };

const HOST_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  if (/[A-Za-z0-9\-._]/.test(String.fromCharCode(c))) HOST_CHAR[c] = 1;
}

function fail(reason: string): UriResult {
  return { ok: false, reason };
}

export function parseUri(raw: string): UriResult {
  const colon = raw.indexOf(":");
  if (colon <= 0) return fail("URI has no scheme");
  for (let i = 0; i < raw.length; i++) {
    if (isLws(raw.charCodeAt(i))) return fail("whitespace inside URI");
  }
  // Fast path for the schemes seen on nearly every message.
  const scheme =
    colon === 3 && raw.startsWith("sip") ? "sip" : colon === 4 && raw.startsWith("sips") ? "sips" : raw.slice(0, colon).toLowerCase();
  if (scheme !== "sip" && scheme !== "sips" && !/^[a-z][a-z0-9+.-]*$/.test(scheme)) return fail("bad URI scheme");
  if (scheme === "sip" || scheme === "sips") return parseSipUri(raw, scheme, colon + 1);
  if (scheme === "tel") return parseTelUri(raw, colon + 1);
  if (colon + 1 >= raw.length) return fail("empty URI");
  return { ok: true, uri: { scheme, user: undefined, password: undefined, host: "", ipv6: false, port: undefined, params: [], headers: undefined, raw } };
}

function parseSipUri(raw: string, scheme: string, start: number): UriResult {
  // The userinfo ends at the last '@': the user part may contain ';', '?'
  // and ',' (RFC 4475 §3.1.1.2, §3.1.1.9), but neither params nor headers
  // may contain an unescaped '@'.
  const at = raw.lastIndexOf("@");
  let user: string | undefined;
  let password: string | undefined;
  let i = start;
  if (at >= start) {
    const userinfo = raw.slice(start, at);
    const pc = userinfo.indexOf(":");
    if (pc >= 0) {
      user = userinfo.slice(0, pc);
      password = userinfo.slice(pc + 1);
    } else {
      user = userinfo;
    }
    if (user.length === 0) return fail("empty user part");
    i = at + 1;
  }
  const n = raw.length;
  let host: string;
  let ipv6 = false;
  if (raw.charCodeAt(i) === 91 /* [ */) {
    const close = raw.indexOf("]", i);
    if (close < 0) return fail("unterminated IPv6 reference");
    host = raw.slice(i + 1, close);
    // Tolerant on purpose: RFC 5118 §4.10 asks parsers to accept the
    // three-colon form the RFC 3261 ABNF admits.
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || host.indexOf(":") < 0) return fail("bad IPv6 reference");
    ipv6 = true;
    i = close + 1;
  } else {
    const hs = i;
    while (i < n && HOST_CHAR[raw.charCodeAt(i)] === 1) i++;
    host = raw.slice(hs, i);
    if (host.length === 0) return fail("empty host");
  }
  let port: number | undefined;
  if (i < n && raw.charCodeAt(i) === 58 /* : */) {
    const ps = ++i;
    while (i < n) {
      const c = raw.charCodeAt(i);
      if (c < 48 || c > 57) break;
      i++;
    }
    if (i === ps || i - ps > 5) return fail("bad port");
    port = Number(raw.slice(ps, i));
    if (port > 65535) return fail("port out of range");
  }
  const params: Param[] = [];
  while (i < n && raw.charCodeAt(i) === 59 /* ; */) {
    const ps = ++i;
    while (i < n) {
      const c = raw.charCodeAt(i);
      if (c === 59 || c === 63) break;
      i++;
    }
    const p = raw.slice(ps, i);
    if (p.length === 0) return fail("empty URI parameter");
    const eq = p.indexOf("=");
    params.push(eq < 0 ? { name: p, value: null } : { name: p.slice(0, eq), value: p.slice(eq + 1) });
  }
  let headers: string | undefined;
  if (i < n && raw.charCodeAt(i) === 63 /* ? */) {
    headers = raw.slice(i + 1);
    i = n;
  }
  if (i !== n) return fail(`unexpected character in URI at ${i}`);
  return { ok: true, uri: { scheme, user, password, host, ipv6, port, params, headers, raw } };
}

function parseTelUri(raw: string, start: number): UriResult {
  const semi = raw.indexOf(";", start);
  const number = semi < 0 ? raw.slice(start) : raw.slice(start, semi);
  if (!/^\+?[0-9A-Fa-f*#().\-]+$/.test(number)) return fail("bad tel number");
  const params: Param[] = [];
  if (semi >= 0) {
    for (const p of raw.slice(semi + 1).split(";")) {
      if (p.length === 0) return fail("empty tel parameter");
      const eq = p.indexOf("=");
      params.push(eq < 0 ? { name: p, value: null } : { name: p.slice(0, eq), value: p.slice(eq + 1) });
    }
  }
  return { ok: true, uri: { scheme: "tel", user: number, password: undefined, host: "", ipv6: false, port: undefined, params, headers: undefined, raw } };
}

export function uriParam(uri: SipUri, name: string): string | null | undefined {
  for (const p of uri.params) if (p.name.toLowerCase() === name) return p.value;
  return undefined;
}

/**
 * Host as it appears in a URI or Via: IPv6 addresses get their brackets back.
 * A host that already has them is returned as it is, so a caller holding a
 * reference never produces `[[...]]`.
 */
export function hostRef(host: string): string {
  return host.indexOf(":") >= 0 && host.charCodeAt(0) !== 91 ? `[${host}]` : host;
}

/** Decodes %HH escapes once (RFC 3261 §19.1.4); invalid escapes stay literal. */
export function unescape(s: string): string {
  if (s.indexOf("%") < 0) return s;
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** Builds `sip:user@host:port;params` text. */
export function formatSipUri(parts: { scheme?: string; user?: string; host: string; port?: number; params?: readonly Param[] }): string {
  let s = `${parts.scheme ?? "sip"}:`;
  if (parts.user !== undefined) s += `${parts.user}@`;
  s += hostRef(parts.host);
  if (parts.port !== undefined) s += `:${parts.port}`;
  if (parts.params) for (const p of parts.params) s += p.value === null ? `;${p.name}` : `;${p.name}=${p.value}`;
  return s;
}
