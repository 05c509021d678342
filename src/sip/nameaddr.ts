import { equalsFoldedAt, findParam, isLws, isTokenChar, parseParams, skipLws, skipQuoted, splitTopLevel, type Param } from "./lex.js";
import { parseUri, type SipUri } from "./uri.js";

/**
 * A `name-addr` or `addr-spec` with header parameters, as used by From, To,
 * Contact, Route, Record-Route and Path (RFC 3261 §20.10, §25.1).
 */
export interface NameAddr {
  /** Display name as written (quotes kept for a quoted-string); undefined when absent. */
  displayName: string | undefined;
  uri: SipUri;
  /** True when the URI was enclosed in `<...>`. */
  bracketed: boolean;
  /** Header parameters after the address (tag, expires, q, ...). */
  params: Param[];
  raw: string;
}

export type NameAddrResult = { ok: true; value: NameAddr } | { ok: false; reason: string };

function fail(reason: string): NameAddrResult {
  return { ok: false, reason };
}

export function parseNameAddr(s: string, start = 0, end = s.length): NameAddrResult {
  let i = skipLws(s, start, end);
  let displayName: string | undefined;
  const lt = findOpenAngle(s, i, end);
  if (lt === -2) return fail("unterminated quoted display name");
  if (lt >= 0) {
    const dn = s.slice(i, lt).trim();
    if (dn.length > 0) {
      if (dn.charCodeAt(0) === 34) {
        const close = skipQuoted(dn, 0);
        if (close !== dn.length) return fail("bad quoted display name");
      } else if (!isTokenList(dn)) {
        // e.g. an unquoted comma (RFC 4475 §3.1.2.15)
        return fail("display name is neither tokens nor a quoted string");
      }
      displayName = dn;
    }
    const gt = s.indexOf(">", lt + 1);
    if (gt < 0 || gt >= end) return fail("missing '>'");
    const inner = s.slice(lt + 1, gt);
    // No LWS inside the brackets (RFC 4475 §3.1.2.14).
    if (inner.length === 0 || isLws(inner.charCodeAt(0)) || isLws(inner.charCodeAt(inner.length - 1))) {
      return fail("whitespace inside <addr-spec>");
    }
    const u = parseUri(inner);
    if (!u.ok) return fail(u.reason);
    const params: Param[] = [];
    if (!parseParams(s, gt + 1, end, params)) return fail("malformed header parameters");
    return { ok: true, value: { displayName, uri: u.uri, bracketed: true, params, raw: s.slice(start, end).trim() } };
  }
  // addr-spec form: the URI ends at the first ';', which starts header
  // params (RFC 3261 §20.10; RFC 4475 §3.3.12). Such a URI may not carry
  // ',', ';' or '?' (RFC 4475 §3.1.2.13).
  const us = i;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c === 59 || isLws(c)) break;
    i++;
  }
  const uriText = s.slice(us, i);
  if (uriText.length === 0) return fail("missing address");
  if (uriText.indexOf("?") >= 0 || uriText.indexOf(",") >= 0) return fail("addr-spec with '?' or ',' must be enclosed in <>");
  const u = parseUri(uriText);
  if (!u.ok) return fail(u.reason);
  const params: Param[] = [];
  if (!parseParams(s, i, end, params)) return fail("malformed header parameters");
  return { ok: true, value: { displayName: undefined, uri: u.uri, bracketed: false, params, raw: s.slice(start, end).trim() } };
}

/** Index of the `<` that opens the URI, -1 when none, -2 for an unterminated quote. */
export function findOpenAngle(s: string, i: number, end: number): number {
  for (; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      const j = skipQuoted(s, i, end);
      if (j < 0) return -2;
      i = j - 1;
    } else if (c === 60) return i;
    else if (c === 59) return -1; // params started: addr-spec form
  }
  return -1;
}

function isTokenList(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isTokenChar(c) && !isLws(c)) return false;
  }
  return true;
}

/** Parses a comma-separated list of name-addrs (Route, Record-Route, Path, Contact). */
export function parseNameAddrList(value: string): { ok: true; values: NameAddr[] } | { ok: false; reason: string } {
  const spans = splitTopLevel(value);
  if (spans === undefined) return { ok: false, reason: "unbalanced quotes or angle brackets" };
  const values: NameAddr[] = [];
  for (const sp of spans) {
    if (sp.start === sp.end) return { ok: false, reason: "empty list element" };
    const r = parseNameAddr(value, sp.start, sp.end);
    if (!r.ok) return r;
    values.push(r.value);
  }
  return { ok: true, values };
}

export type ContactList = { star: true } | { star: false; contacts: NameAddr[] };

/** Contact: `*` (RFC 3261 §10.2.2) or a list of name-addrs. */
export function parseContact(value: string): { ok: true; value: ContactList } | { ok: false; reason: string } {
  if (value.trim() === "*") return { ok: true, value: { star: true } };
  const r = parseNameAddrList(value);
  return r.ok ? { ok: true, value: { star: false, contacts: r.values } } : r;
}

export function tagOf(na: NameAddr): string | undefined {
  const p = findParam(na.params, "tag");
  return p?.value ?? undefined;
}

/**
 * Does the From/To value `s[start..end)` carry a `tag` header parameter
 * (RFC 3261 §19.3)? Read in place, for every request (is it in a dialog?).
 * Only the header parameters count: after the `>` of a name-addr, after
 * the first `;` of an addr-spec. A `;tag=` inside `<...>` is a URI
 * parameter, and one in a quoted display name is text: neither puts the
 * request in a dialog.
 */
export function hasTagParam(s: string, start: number, end: number): boolean {
  const lt = findOpenAngle(s, start, end);
  if (lt === -2) return false;
  let i = start;
  if (lt >= 0) {
    i = s.indexOf(">", lt + 1);
    if (i < 0 || i >= end) return false;
  }
  for (;;) {
    while (i < end && s.charCodeAt(i) !== 59 /* ; */) i++;
    if (i >= end) return false;
    i = skipLws(s, i + 1, end);
    if (i + 3 <= end && equalsFoldedAt(s, i, "tag") && (i + 3 === end || !isTokenChar(s.charCodeAt(i + 3)))) {
      const j = skipLws(s, i + 3, end);
      if (j < end && s.charCodeAt(j) === 61 /* = */) return true;
    }
  }
}

const NAME_ADDR_SPECIAL = new Uint8Array(256);
for (const c of [34, 44, 60, 62]) NAME_ADDR_SPECIAL[c] = 1;

/**
 * Cheap well-formedness check for From/To on the hot path: one pass over
 * `s[start..end)` that checks quotes and angle brackets balance and no LWS
 * hugs the addr-spec inside `<>`. Works in place, so the parser need not
 * slice the value out first. Returns a reason or undefined.
 */
export function quickCheckNameAddr(s: string, start = 0, end = s.length): string | undefined {
  let lt = -1;
  for (let i = start; i < end; i++) {
    // Skip ordinary characters in a tight loop; only `" < > ,` need a decision.
    while (i < end && NAME_ADDR_SPECIAL[s.charCodeAt(i)] !== 1) i++;
    if (i >= end) break;
    const c = s.charCodeAt(i);
    if (c === 34) {
      const j = skipQuoted(s, i, end);
      if (j < 0) return "unterminated quoted string";
      i = j - 1;
    } else if (c === 60) {
      if (lt >= 0) return "unbalanced '<'";
      lt = i;
      if (i + 1 < end && isLws(s.charCodeAt(i + 1))) return "whitespace inside <addr-spec>";
    } else if (c === 62) {
      if (lt < 0) return "unbalanced '>'";
      if (isLws(s.charCodeAt(i - 1))) return "whitespace inside <addr-spec>";
      // Display name before '<' must be a quoted string or tokens (RFC 4475 §3.1.2.15).
      const ds = skipLws(s, start, lt);
      if (ds < lt && s.charCodeAt(ds) !== 34 && !isTokenListAt(s, ds, lt)) return "display name is neither tokens nor a quoted string";
      lt = -2; // closed
    } else if (c === 44 /* , */ && lt === -1) {
      // A comma inside <...> belongs to the URI; outside, From/To would hold two addresses.
      return "unquoted ',' outside <>";
    }
  }
  if (lt >= 0) return "missing '>'";
  return undefined;
}

function isTokenListAt(s: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!isTokenChar(c) && !isLws(c)) return false;
  }
  return true;
}
