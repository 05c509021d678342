/**
 * Compiled string tests for rule conditions: exact (any of a list), prefix
 * (any of a list) or a regular expression. Exact and prefix tests never run
 * a regex; case folding is ASCII-only (hosts, tokens, header names are
 * ASCII in SIP, RFC 3261 §25.1) and allocates nothing. Values from the
 * message are wire text (src/sip/wire-text.ts): exact and prefix values are
 * stored in that form, and a regex sees the value decoded from UTF-8.
 */
import { equalsFoldedAt } from "../sip/lex.js";
import { fromWire, toWire } from "../sip/wire-text.js";


export type StringTestKind = "exact" | "prefix" | "regex";

export interface StringTest {
  readonly kind: StringTestKind;
  /** Exact/prefix values; lower-cased when `ignoreCase`. */
  readonly values: readonly string[];
  /** Exact values as a set, for long lists. */
  readonly set: ReadonlySet<string> | undefined;
  readonly regex: RegExp | undefined;
  /**
   * Regex only: literal text every match must start with (the pattern is
   * `^literal...` with no alternation), lower-cased when `ignoreCase`. A
   * value without it is refused before the regex engine runs.
   */
  readonly required: string | undefined;
  readonly ignoreCase: boolean;
  /** How the test reads in explain output: `exact "1001"`, `prefix "+49"`, `regex /^9\d+$/i`. */
  readonly text: string;
}

/**
 * Regexes come from ops and values from the network: only the start of a
 * value is searched, which bounds the work one request can cause.
 */
export const MAX_MATCHED_LENGTH = 512;

/** Above this many exact values a Set lookup beats a scan. */
const SET_THRESHOLD = 8;

/**
 * A-Z to a-z and nothing else. String.toLowerCase would also fold the
 * wire form's other characters (the bytes of UTF-8, src/sip/wire-text.ts),
 * which equalsFolded does not, so the two forms would disagree.
 */
export function lowerAscii(s: string): string {
  let upper = false;
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) upper = true;
    else if (c > 127) ascii = false;
  }
  if (!upper) return s;
  if (ascii) return s.toLowerCase();
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += c >= 65 && c <= 90 ? String.fromCharCode(c | 0x20) : s[i];
  }
  return out;
}

function equalsFolded(value: string, lower: string): boolean {
  return value.length === lower.length && equalsFoldedAt(value, 0, lower);
}

function startsWithFolded(value: string, lower: string): boolean {
  return value.length >= lower.length && equalsFoldedAt(value, 0, lower);
}

function quoteList(values: readonly string[]): string {
  return values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;
}

const REGEX_SPECIAL = new Set([..."\\^$.|?*+()[]{}"]);

/**
 * The literal start of an anchored regex, or undefined. Conservative: any
 * `|` in the pattern (which could un-anchor part of it) or a quantifier that
 * makes the last literal optional ends the literal early or gives nothing.
 * Only ASCII is taken, because case folding of other characters under the
 * `i` flag is not the ASCII folding the prefilter does.
 */
export function requiredPrefix(source: string): string | undefined {
  if (!source.startsWith("^") || source.includes("|")) return undefined;
  let lit = "";
  let i = 1;
  while (i < source.length) {
    const ch = source[i]!;
    if (ch === "\\") {
      const next = source[i + 1];
      // `\+`, `\.`: an escaped punctuation character is itself; `\d`, `\b`... are not literals.
      if (next === undefined || /[0-9A-Za-z]/.test(next) || next.charCodeAt(0) > 126) break;
      lit += next;
      i += 2;
      continue;
    }
    if (REGEX_SPECIAL.has(ch) || ch.charCodeAt(0) > 126 || ch.charCodeAt(0) < 32) break;
    lit += ch;
    i++;
  }
  const after = source[i];
  // `ab?`, `ab*`, `ab{0,2}`: the last literal may be absent.
  if (after === "?" || after === "*" || after === "{") lit = lit.slice(0, -1);
  return lit === "" ? undefined : lit;
}

/** Compiles a test; the regex source must already have been checked (the schema does it). */
export function compileStringTest(
  kind: StringTestKind,
  values: readonly string[],
  ignoreCase: boolean,
): StringTest {
  if (kind === "regex") {
    const source = values[0] ?? "";
    const regex = new RegExp(source, ignoreCase ? "i" : "");
    const lit = requiredPrefix(source);
    const required = lit !== undefined && ignoreCase ? lowerAscii(lit) : lit;
    return Object.freeze({ kind, values: Object.freeze([source]), set: undefined, regex, required, ignoreCase, text: `regex ${String(regex)}` });
  }
  // Compared with wire text (one character per byte), so stored as the UTF-8 bytes the phone sends.
  const stored = Object.freeze(values.map((v) => (ignoreCase ? lowerAscii(toWire(v)) : toWire(v))));
  const set = kind === "exact" && stored.length > SET_THRESHOLD ? new Set(stored) : undefined;
  const fold = ignoreCase ? " (any case)" : "";
  return Object.freeze({ kind, values: stored, set, regex: undefined, required: undefined, ignoreCase, text: `${kind} ${quoteList(values)}${fold}` });
}

export function testString(t: StringTest, value: string | undefined): boolean {
  if (value === undefined) return false;
  switch (t.kind) {
    case "exact": {
      if (t.set !== undefined) return t.set.has(t.ignoreCase ? lowerAscii(value) : value);
      const vs = t.values;
      if (t.ignoreCase) {
        for (let i = 0; i < vs.length; i++) if (equalsFolded(value, vs[i]!)) return true;
      } else {
        for (let i = 0; i < vs.length; i++) if (value === vs[i]) return true;
      }
      return false;
    }
    case "prefix": {
      const vs = t.values;
      if (t.ignoreCase) {
        for (let i = 0; i < vs.length; i++) if (startsWithFolded(value, vs[i]!)) return true;
      } else {
        for (let i = 0; i < vs.length; i++) if (value.startsWith(vs[i]!)) return true;
      }
      return false;
    }
    case "regex": {
      const v = value.length > MAX_MATCHED_LENGTH ? value.slice(0, MAX_MATCHED_LENGTH) : value;
      const req = t.required;
      if (req !== undefined && !(t.ignoreCase ? startsWithFolded(v, req) : v.startsWith(req))) return false;
      // A regex from config means Unicode characters: a value with UTF-8 in it is decoded first.
      return t.regex!.test(fromWire(v));
    }
  }
}
