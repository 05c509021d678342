/**
 * Character-level helpers shared by the sub-parsers (RFC 3261 §25.1).
 * All functions work on latin1 strings: one char per octet, so offsets are
 * byte offsets.
 */

/** RFC 3261 `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~". */
const TOKEN = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9\-.!%*_+`'~]/.test(ch)) TOKEN[c] = 1;
}

export function isTokenChar(code: number): boolean {
  return TOKEN[code] === 1;
}

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TOKEN[s.charCodeAt(i)] !== 1) return false;
  return true;
}

export function isWs(code: number): boolean {
  return code === 32 || code === 9;
}

/** Whitespace including the CR/LF left inside folded header values. */
export function isLws(code: number): boolean {
  return code === 32 || code === 9 || code === 13 || code === 10;
}

export function skipLws(s: string, i: number, end = s.length): number {
  while (i < end && isLws(s.charCodeAt(i))) i++;
  return i;
}

export function trimEndLws(s: string, start: number, end: number): number {
  while (end > start && isLws(s.charCodeAt(end - 1))) end--;
  return end;
}

/**
 * Index just past the closing quote of a quoted-string starting at `i`
 * (which must be the opening `"`), honouring quoted-pairs (`\x`).
 * Returns -1 when the string never closes (RFC 4475 §3.1.2.6).
 */
export function skipQuoted(s: string, i: number, end = s.length): number {
  for (let j = i + 1; j < end; j++) {
    const c = s.charCodeAt(j);
    if (c === 92 /* \ */) {
      j++;
      continue;
    }
    if (c === 34 /* " */) return j + 1;
  }
  return -1;
}

export interface Span {
  start: number;
  end: number;
}

/**
 * Splits a header value at top-level commas: commas inside quoted strings
 * and inside `<...>` do not separate values (RFC 3261 §7.3.1). Spans are
 * trimmed of LWS. Returns undefined when a quote or angle bracket is left
 * open, so the caller can report a malformed value.
 */
export function splitTopLevel(s: string, sep = 44 /* , */): Span[] | undefined {
  const out: Span[] = [];
  const n = s.length;
  for (let start = 0; ; ) {
    const e = topLevelEnd(s, start, n, sep);
    if (e < 0) return undefined;
    out.push(trimSpan(s, start, e));
    if (e === n) return out;
    start = e + 1;
  }
}

/**
 * Where the element of a list value that starts at `from` ends: the first
 * top-level `sep` in `s[from..end)` (see splitTopLevel), or `end`; -1 when
 * a quote or angle bracket is left open before it. For a reader that needs
 * only the first element of a line (the top Via of `Via: a, b`), with no
 * spans built for the rest.
 */
export function topLevelEnd(s: string, from: number, end: number, sep = 44 /* , */): number {
  let angle = false;
  for (let i = from; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      const j = skipQuoted(s, i, end);
      if (j < 0) return -1;
      i = j - 1;
    } else if (c === 60 /* < */) {
      if (angle) return -1;
      angle = true;
    } else if (c === 62 /* > */) {
      angle = false;
    } else if (c === sep && !angle) {
      return i;
    }
  }
  return angle ? -1 : end;
}

/**
 * Where the second element of a list value starts: past the first
 * top-level `sep`, past LWS and empty elements (`a,,b`); -1 when there is
 * none, or when a quote or angle bracket is left open anywhere in the value
 * (splitTopLevel refuses such a value whole). For removing or replacing the
 * first element (the edge's own Via on `Via: ours, the phone's`) without
 * building spans for the rest. With `from` and `n`, of the value at
 * `s[from..n)` in place; the position returned is then in `s` too.
 */
export function secondElementStart(s: string, sep = 44 /* , */, from = 0, n = s.length): number {
  const first = topLevelEnd(s, from, n, sep);
  if (first < 0 || first === n) return -1;
  let i = skipLws(s, first + 1, n);
  while (i < n && s.charCodeAt(i) === sep) i = skipLws(s, i + 1, n);
  if (i >= n) return -1;
  for (let j = i; j < n; ) {
    const e = topLevelEnd(s, j, n, sep);
    if (e < 0) return -1;
    j = e + 1;
  }
  return i;
}

function trimSpan(s: string, start: number, end: number): Span {
  start = skipLws(s, start, end);
  end = trimEndLws(s, start, end);
  return { start, end };
}

export interface Param {
  name: string;
  /** null for a parameter without `=value` (e.g. bare `;rport`, `;lr`). */
  value: string | null;
}

/**
 * Finds the `;name[=value]` generic parameters (RFC 3261 `generic-param`)
 * of `s[i..end)`, which must start at a `;` or be empty, without making
 * anything: parameter k's four numbers are written at `spans[4k..4k+3]`
 * (name start, name end, value start, value end; value start -1 for a
 * parameter without `=value`, e.g. bare `;rport`, `;lr`). The array is
 * written, never emptied, so a caller can reuse one (emptying it frees its
 * storage, and every message would grow it again). LWS is allowed around
 * `;` and `=`. Returns the number of parameters, or -1 for an empty name
 * or value, or an unterminated quoted value (RFC 4475 §3.1.2.1).
 */
export function scanParams(s: string, i: number, end: number, spans: number[]): number {
  let n = 0;
  i = skipLws(s, i, end);
  while (i < end) {
    if (s.charCodeAt(i) !== 59 /* ; */) return -1;
    i = skipLws(s, i + 1, end);
    const nameStart = i;
    while (i < end && isTokenChar(s.charCodeAt(i))) i++;
    if (i === nameStart) return -1;
    const nameEnd = i;
    i = skipLws(s, i, end);
    let vStart = -1;
    let vEnd = -1;
    if (i < end && s.charCodeAt(i) === 61 /* = */) {
      i = skipLws(s, i + 1, end);
      vStart = i;
      if (i < end && s.charCodeAt(i) === 34) {
        const j = skipQuoted(s, i, end);
        if (j < 0) return -1;
        i = j;
      } else if (i < end && s.charCodeAt(i) === 91 /* [ */) {
        // IPv6 reference, e.g. received=[2001:db8::9:255] (RFC 5118 §4.5).
        const j = s.indexOf("]", i);
        if (j < 0 || j >= end) return -1;
        i = j + 1;
      } else {
        while (i < end) {
          const c = s.charCodeAt(i);
          if (c === 59 || isLws(c)) break;
          i++;
        }
      }
      if (i === vStart) return -1;
      vEnd = i;
      i = skipLws(s, i, end);
    }
    const at = 4 * n++;
    spans[at] = nameStart;
    spans[at + 1] = nameEnd;
    spans[at + 2] = vStart;
    spans[at + 3] = vEnd;
  }
  return n;
}

/** Reused by parseParams (JS runs one call at a time, and it calls nothing that uses it). */
const SPANS: number[] = [];

/** The parameters `scanParams` finds, as objects appended to `out`. */
export function parseParams(s: string, i: number, end: number, out: Param[]): boolean {
  const n = scanParams(s, i, end, SPANS);
  if (n < 0) return false;
  for (let k = 0; k < 4 * n; k += 4) {
    const vStart = SPANS[k + 2]!;
    out.push({ name: s.slice(SPANS[k]!, SPANS[k + 1]!), value: vStart < 0 ? null : s.slice(vStart, SPANS[k + 3]!) });
  }
  return true;
}

/**
 * Does `s` hold `lower` (lower case) at `at`, A-Z matching a-z? Only ASCII
 * letters fold (tokens, header and parameter names, RFC 3261 §7.3.1); the
 * caller checks that `s` is long enough.
 */
export function equalsFoldedAt(s: string, at: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) {
    let c = s.charCodeAt(at + k);
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== lower.charCodeAt(k)) return false;
  }
  return true;
}

/** Is `s[start..end)` the name `lower`, ignoring case? */
export function isNameAt(s: string, start: number, end: number, lower: string): boolean {
  return end - start === lower.length && equalsFoldedAt(s, start, lower);
}

/** First parameter whose name equals `name` (given in lower case), ignoring case. */
export function findParam(params: readonly Param[], name: string): Param | undefined {
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    // Exact match first: names almost always arrive in lower case, and
    // lower-casing each candidate would allocate on the hot path.
    if (p.name === name || (p.name.length === name.length && p.name.toLowerCase() === name)) return p;
  }
  return undefined;
}

/**
 * Unfolds header continuation lines (RFC 3261 §7.3.1) and trims LWS. Not
 * String.prototype.trim: that also takes U+00A0, which in the latin1 text
 * the parser reads is the byte 0xA0 (the last byte of a UTF-8 "à").
 */
export function unfold(raw: string): string {
  let v = raw;
  if (v.indexOf("\n") >= 0) v = v.replace(/\r?\n[ \t]+/g, " ");
  const st = skipLws(v, 0, v.length);
  const en = trimEndLws(v, st, v.length);
  return st === 0 && en === v.length ? v : v.slice(st, en);
}
