import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
  type YAMLError,
} from "yaml";
import type { z } from "zod";
import { describeMismatch, showValue, unknownFieldMessage } from "./messages.js";

/**
 * Loads a YAML file and validates it against a zod schema, reporting every
 * problem of the file (not just the first) with the file, line, column and
 * field it is about. Used for edge.yaml and for the rules and device files
 * under proxy-rules/. Bad user input is a value (`{ ok: false, errors }`),
 * never an exception.
 */

export interface ConfigError {
  file: string;
  /** 1-based; 0 when the error is about the file as a whole (I/O). */
  line: number;
  /** 1-based; 0 together with line 0. */
  column: number;
  /** `listen[1].port`; "" for errors that belong to no field (YAML syntax, I/O). */
  field: string;
  message: string;
}

export type LoadResult<T> =
  | {
      ok: true;
      value: T;
      /** sha256 (hex) of the file's text. */
      hash: string;
      /**
       * An error located at a field of this file, for checks made after
       * loading (a reference to another file, a compile step), so they read
       * exactly like the schema's own errors.
       */
      errorAt: (path: readonly (string | number)[], message: string) => ConfigError;
    }
  | { ok: false; errors: ConfigError[] };

/** Aliases expanded when building the value: bounds a "billion laughs" file. */
const MAX_ALIAS_COUNT = 100;
/** No config needs deeper nesting; the bound keeps every later recursion (ours, zod's) shallow. */
const MAX_DEPTH = 64;
/** Errors reported per file: the first ones in file order, then a count, so a pathological file cannot flood the log. */
export const MAX_REPORTED_ERRORS = 50;
/** Segments of a field path shown at each end of a very deep path. */
const FIELD_ENDS = 6;

type PathSegment = string | number;
type Issue = z.core.$ZodIssue;

/** `listen[1].port`, `targets[0]["odd key"]`; `(root)` for the document itself. */
export function formatField(path: readonly PropertyKey[]): string {
  const segment = (seg: PropertyKey, first: boolean): string => {
    if (typeof seg === "number") return `[${seg}]`;
    const s = String(seg);
    if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) return `[${JSON.stringify(s)}]`;
    return first ? s : `.${s}`;
  };
  const join = (segs: readonly PropertyKey[], atStart: boolean): string => segs.map((seg, i) => segment(seg, atStart && i === 0)).join("");
  if (path.length === 0) return "(root)";
  if (path.length <= 2 * FIELD_ENDS + 1) return join(path, true);
  const hidden = path.length - 2 * FIELD_ENDS;
  return `${join(path.slice(0, FIELD_ENDS), true)}...(${hidden} levels)...${join(path.slice(-FIELD_ENDS), false)}`;
}

/** `file:line:column: field: message`; position and field are left out when they do not apply. */
export function formatConfigError(e: ConfigError): string {
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.column}` : e.file;
  return e.field === "" ? `${where}: ${e.message}` : `${where}: ${e.field}: ${e.message}`;
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function byPosition(a: ConfigError, b: ConfigError): number {
  return a.line - b.line || a.column - b.column || a.field.localeCompare(b.field);
}

// ---------------------------------------------------------------------------
// Issue wording. The error map below is used for every issue whose schema did
// not word its own message, so built-in checks also say "expected X, got Y".

/** Marks messages that are rewritten after parsing (they need data the error map does not have). */
const UNKNOWN_KEYS_TAG = "\u0000unknown-keys\u0000";
const UNION_TAG = "\u0000union\u0000";

const TYPE_NOUNS: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  null: "null",
  bigint: "an integer",
  date: "a date",
};

function quoteValue(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

function unitOf(origin: string, n: number): string {
  switch (origin) {
    case "array":
    case "set":
      return n === 1 ? "entry" : "entries";
    case "string":
      return n === 1 ? "character" : "characters";
    default:
      return "";
  }
}

/** What the schema wanted, for the built-in issue kinds; undefined when the issue carries no such data. */
function expectationOf(issue: z.core.$ZodRawIssue | Issue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return TYPE_NOUNS[issue.expected] ?? `a value of type ${issue.expected}`;
    case "invalid_value":
      return issue.values.length === 1 ? quoteValue(issue.values[0]) : `one of ${issue.values.map(quoteValue).join(", ")}`;
    case "too_small": {
      const n = Number(issue.minimum);
      const unit = unitOf(issue.origin, n);
      if (unit !== "") return `at least ${n} ${unit}`;
      return issue.inclusive === false ? `a number greater than ${n}` : `a number of at least ${n}`;
    }
    case "too_big": {
      const n = Number(issue.maximum);
      const unit = unitOf(issue.origin, n);
      if (unit !== "") return `at most ${n} ${unit}`;
      return issue.inclusive === false ? `a number less than ${n}` : `a number of at most ${n}`;
    }
    case "invalid_format":
      return issue.format === "regex" && issue.pattern !== undefined
        ? `a string matching ${issue.pattern}`
        : `a valid ${issue.format}`;
    case "not_multiple_of":
      return `a multiple of ${String(issue.divisor)}`;
    default:
      return undefined;
  }
}

function shapeKeys(inst: unknown): string[] {
  const def = (inst as { _zod?: { def?: { type?: string; shape?: Record<string, unknown> } } } | undefined)?._zod?.def;
  return def?.type === "object" && def.shape !== undefined ? Object.keys(def.shape) : [];
}

const defaultErrorMap = (issue: z.core.$ZodRawIssue): string => {
  switch (issue.code) {
    case "unrecognized_keys":
      return UNKNOWN_KEYS_TAG + JSON.stringify(shapeKeys(issue.inst));
    case "invalid_union":
      return UNION_TAG;
    case "custom":
      return `invalid value ${showValue(issue.input)}`;
    case "too_small":
    case "too_big": {
      const what = expectationOf(issue) ?? "a different value";
      const input = issue.input;
      const got = Array.isArray(input) ? `${input.length} ${unitOf("array", input.length)}` : showValue(input);
      return `expected ${what}, got ${got}`;
    }
    default: {
      const what = expectationOf(issue);
      return what === undefined ? `invalid value ${showValue(issue.input)}` : describeMismatch(what, issue.input);
    }
  }
};

interface FlatIssue {
  path: PathSegment[];
  message: string;
  /** Report at the key itself (unknown fields) rather than at its value. */
  atKey: boolean;
}

function toSegments(path: readonly PropertyKey[]): PathSegment[] {
  return path.map((p) => (typeof p === "number" ? p : String(p)));
}

/**
 * One zod issue becomes one or more located messages: unknown keys are split
 * per key, and a union whose input had the right shape reports the errors of
 * the branch that came closest instead of a bare "matches no form".
 */
function flatten(issue: Issue, prefix: PathSegment[], out: FlatIssue[]): void {
  const path = [...prefix, ...toSegments(issue.path)];
  if (issue.code === "unrecognized_keys" && issue.message.startsWith(UNKNOWN_KEYS_TAG)) {
    const allowed = JSON.parse(issue.message.slice(UNKNOWN_KEYS_TAG.length)) as string[];
    for (const key of issue.keys) out.push({ path: [...path, key], message: unknownFieldMessage(key, allowed), atKey: true });
    return;
  }
  if (issue.code === "unrecognized_keys") {
    for (const key of issue.keys) out.push({ path: [...path, key], message: issue.message, atKey: true });
    return;
  }
  if (issue.code === "invalid_union" && issue.message === UNION_TAG) {
    // A branch "got inside" the value when one of its issues is below the
    // union's own path or is not a plain type/value mismatch: the value had
    // that branch's shape, so that branch's errors are the useful ones.
    const deep = issue.errors.filter((branch) =>
      branch.some((i) => i.path.length > 0 || (i.code !== "invalid_type" && i.code !== "invalid_value")),
    );
    if (deep.length > 0) {
      const closest = deep.reduce((a, b) => (b.length < a.length ? b : a));
      for (const i of closest) flatten(i, path, out);
      return;
    }
    const wanted = issue.errors
      .map((branch) => (branch[0] === undefined ? undefined : expectationOf(branch[0])))
      .filter((w): w is string => w !== undefined)
      .filter((w, i, all) => all.indexOf(w) === i);
    const message = wanted.length > 0 ? describeMismatch(wanted.join(" or "), issue.input) : `invalid value ${showValue(issue.input)}`;
    out.push({ path, message, atKey: false });
    return;
  }
  out.push({ path, message: issue.message, atKey: false });
}

// ---------------------------------------------------------------------------
// Mapping paths back to the YAML source.

interface Located {
  node: YamlNode | null;
  keyNode: YamlNode | null;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

/** The deepest node along `path`, with the key node of the last step when there is one. */
function locate(doc: Document, path: readonly PathSegment[]): Located {
  let node: YamlNode | null = (doc.contents as YamlNode | null) ?? null;
  let keyNode: YamlNode | null = null;
  for (const seg of path) {
    if (node !== null && isAlias(node)) node = (node.resolve(doc) as YamlNode | undefined) ?? node;
    if (node !== null && isMap(node)) {
      const pair = node.items.find((p) => keyText(p.key) === String(seg));
      if (pair === undefined) break;
      keyNode = (pair.key as YamlNode | null) ?? null;
      node = (pair.value as YamlNode | null) ?? null;
      if (node === null) break;
    } else if (node !== null && isSeq(node) && typeof seg === "number") {
      const item = node.items[seg] as YamlNode | undefined;
      if (item === undefined) break;
      keyNode = null;
      node = item;
    } else {
      break;
    }
  }
  return { node, keyNode };
}

function position(lc: LineCounter, offset: number, bomShift: number): { line: number; column: number } {
  const p = lc.linePos(offset);
  return { line: p.line, column: p.line === 1 ? Math.max(1, p.col - bomShift) : p.col };
}

/** Start offset for an issue: the value itself, else its key, else the nearest enclosing node. */
function offsetFor(doc: Document, path: readonly PathSegment[], atKey: boolean): number {
  const found = locate(doc, path);
  if (atKey && found.keyNode?.range) return found.keyNode.range[0];
  if (found.node?.range) return found.node.range[0];
  if (found.keyNode?.range) return found.keyNode.range[0];
  return 0;
}

// ---------------------------------------------------------------------------
// Checks the YAML library does not make the way we want them.

/**
 * Duplicate keys (the second one wins silently in most YAML tools, hiding an
 * edit) and aliases to anchors that do not exist, each reported at its own
 * position with the field it belongs to.
 */
function structuralErrors(doc: Document, file: string, lc: LineCounter, bomShift: number): { errors: ConfigError[]; fatal: boolean } {
  const errors: ConfigError[] = [];
  let fatal = false;
  const at = (offset: number, path: PathSegment[], message: string): void => {
    errors.push({ file, ...position(lc, offset, bomShift), field: formatField(path), message });
  };
  const walk = (node: unknown, path: PathSegment[]): void => {
    if (fatal) return;
    if (path.length > MAX_DEPTH) {
      fatal = true;
      at((node as YamlNode | null)?.range?.[0] ?? 0, path, `expected at most ${MAX_DEPTH} levels of nesting, got more`);
      return;
    }
    if (isAlias(node)) {
      if (node.resolve(doc) === undefined) at(node.range?.[0] ?? 0, path, `alias *${node.source} refers to no anchor defined before it`);
      return;
    }
    if (isMap(node)) {
      const seen = new Map<string, number>();
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const k = keyText(pair.key);
        const keyOffset = (pair.key as YamlNode | null)?.range?.[0] ?? node.range?.[0] ?? 0;
        if (k === undefined) {
          // The value would carry the key stringified ("[ a, b ]"): validating it would only add noise.
          fatal = true;
          at(keyOffset, path, "expected a plain key (a name), got a complex key");
          continue;
        }
        const first = seen.get(k);
        if (first !== undefined) {
          const p = position(lc, first, bomShift);
          at(keyOffset, [...path, k], `duplicate key; each key may appear once (first at line ${p.line}, column ${p.column})`);
        } else {
          seen.set(k, keyOffset);
        }
        walk(pair.value, [...path, k]);
      }
      return;
    }
    if (isSeq(node)) node.items.forEach((item, i) => walk(item, [...path, i]));
  };
  walk(doc.contents, []);
  return { errors, fatal };
}

interface Containing {
  path: PathSegment[];
  /** Start of the innermost quoted scalar or flow collection around the offset, if it starts before it. */
  openedAt: number | undefined;
  openedPath: PathSegment[];
}

/**
 * Where a syntax error sits in the document: the field around it and, for an
 * unclosed quote or bracket (which the parser notices only where the text
 * runs out), where that construct was opened, which is where the fix goes.
 */
function containing(doc: Document, offset: number): Containing {
  const out: Containing = { path: [], openedAt: undefined, openedPath: [] };
  let depth = -1;
  const visitNode = (node: unknown, path: PathSegment[]): void => {
    const range = (node as YamlNode | null)?.range;
    if (range === undefined || range === null || offset < range[0] || offset > range[2]) return;
    // Ranges touch at their ends: at equal depth the node that ends at the offset wins over the one starting there.
    if (path.length > depth) {
      out.path = path;
      depth = path.length;
    }
    const opens =
      (isScalar(node) && (node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE")) ||
      ((isMap(node) || isSeq(node)) && node.flow === true);
    if (opens && range[0] < offset) {
      out.openedAt = range[0];
      out.openedPath = path;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        const k = keyText(pair.key);
        const p = k === undefined ? path : [...path, k];
        visitNode(pair.key, p);
        visitNode(pair.value, p);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visitNode(item, [...path, i]));
    }
  };
  visitNode(doc.contents, []);
  return out;
}

function syntaxError(doc: Document, e: YAMLError, file: string, lc: LineCounter, bomShift: number): ConfigError {
  // The parser recurses on nesting and reports its own stack overflow as a syntax error.
  const what = /call stack/i.test(e.message) ? `expected at most ${MAX_DEPTH} levels of nesting, got far more` : e.message;
  if (e.code === "MULTIPLE_DOCS") {
    // The library's wording points at its own API; ops need to know what to remove.
    return { file, ...position(lc, e.pos[0], bomShift), field: "", message: "YAML syntax error: expected one document, got a second one after a --- line" };
  }
  const around = containing(doc, e.pos[0]);
  if (around.openedAt !== undefined) {
    const field = around.openedPath.length === 0 ? "" : formatField(around.openedPath);
    const noticed = position(lc, e.pos[0], bomShift);
    return {
      file,
      ...position(lc, around.openedAt, bomShift),
      field,
      message: `YAML syntax error: ${what} (opened here, noticed at line ${noticed.line}, column ${noticed.column})`,
    };
  }
  const field = around.path.length === 0 ? "" : formatField(around.path);
  return { file, ...position(lc, e.pos[0], bomShift), field, message: `YAML syntax error: ${what}` };
}

// ---------------------------------------------------------------------------

/**
 * Parses and validates YAML text. `file` names the source in errors (give it
 * as the user typed it). Never throws for bad input.
 */
export function parseYamlText<T>(text: string, file: string, schema: z.ZodType<T>): LoadResult<T> {
  const hash = sha256Hex(text);
  // A UTF-8 byte order mark is not content; offsets are shifted back so column numbers match an editor's.
  const bomShift = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const lc = new LineCounter();
  let doc: Document;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false, logLevel: "error" });
  } catch (e) {
    // The parser recurses on nesting; a file nested deeper than its stack is still only a bad file.
    return { ok: false, errors: [{ file, line: 1, column: 1, field: "", message: `YAML error: ${(e as Error).message}` }] };
  }

  if (doc.errors.length > 0) {
    // Only the first errors are located: each location walks the document.
    const first = [...doc.errors].sort((a, b) => a.pos[0] - b.pos[0]).slice(0, MAX_REPORTED_ERRORS + 1);
    const located = first.map((e) => syntaxError(doc, e, file, lc, bomShift));
    return { ok: false, errors: capped(located, doc.errors.length) };
  }
  // Warnings (an unknown tag, a collection used as a key) mean the file does not say what its author thinks.
  const errors: ConfigError[] = doc.warnings.slice(0, MAX_REPORTED_ERRORS + 1).map((w) => {
    const around = containing(doc, w.pos[0]);
    const field = around.path.length === 0 ? "" : formatField(around.path);
    return { file, ...position(lc, w.pos[0], bomShift), field, message: `YAML: ${w.message}` };
  });
  let total = doc.warnings.length;
  // Structural errors do not stop validation: the value is still well defined (the last duplicate wins), and ops fix everything in one pass.
  const structural = structuralErrors(doc, file, lc, bomShift);
  errors.push(...structural.errors);
  total += structural.errors.length;
  if (structural.fatal) return { ok: false, errors: capped(errors, total) };

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    // The YAML library throws for resource limits (alias expansion) and bad aliases rather than reporting them;
    // a bad alias is already among the structural errors, with its position.
    if (errors.length === 0) errors.push({ file, line: 1, column: 1, field: "", message: `YAML error: ${(e as Error).message}` });
    return { ok: false, errors: capped(errors, Math.max(total, errors.length)) };
  }

  const parsed = schema.safeParse(data, { reportInput: true, error: defaultErrorMap });
  if (parsed.success) {
    if (errors.length > 0) return { ok: false, errors: capped(errors, total) };
    const errorAt = (path: readonly (string | number)[], message: string): ConfigError => ({
      file,
      ...position(lc, offsetFor(doc, path, false), bomShift),
      field: formatField(path),
      message,
    });
    return { ok: true, value: parsed.data, hash, errorAt };
  }
  if (doc.contents === null) {
    // Nothing but comments or blank lines: one clear message instead of "got null" at a position that means nothing.
    const first = parsed.error.issues[0];
    const what = first === undefined || first.path.length > 0 ? undefined : expectationOf(first);
    return { ok: false, errors: [{ file, line: 1, column: 1, field: "", message: `the file is empty; expected ${what ?? "content"}` }] };
  }

  const flat: FlatIssue[] = [];
  for (const issue of parsed.error.issues) flatten(issue, [], flat);
  // Locate everything (cheap), but format only what will be shown.
  const located = flat.map((f) => ({ f, offset: offsetFor(doc, f.path, f.atKey) })).sort((a, b) => a.offset - b.offset);
  for (const { f, offset } of located.slice(0, MAX_REPORTED_ERRORS + 1)) {
    errors.push({ file, ...position(lc, offset, bomShift), field: formatField(f.path), message: f.message });
  }
  return { ok: false, errors: capped(errors, total + flat.length) };
}

/** Sorts, keeps the first MAX_REPORTED_ERRORS, and says how many more there were. */
function capped(errors: ConfigError[], total: number): ConfigError[] {
  const sorted = errors.sort(byPosition);
  const all = Math.max(total, sorted.length);
  if (all <= MAX_REPORTED_ERRORS) return sorted;
  const shown = sorted.slice(0, MAX_REPORTED_ERRORS);
  const next = sorted[MAX_REPORTED_ERRORS];
  shown.push({
    file: next?.file ?? shown[0]?.file ?? "",
    line: next?.line ?? 0,
    column: next?.column ?? 0,
    field: "",
    message: `${all - MAX_REPORTED_ERRORS} more errors not shown (fix these first)`,
  });
  return shown;
}

/** Reads and validates a YAML file; an unreadable file is a ConfigError at line 0. */
export function loadYamlFile<T>(file: string, schema: z.ZodType<T>): LoadResult<T> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const reason = err.code === "ENOENT" ? "file not found" : err.code === "EISDIR" ? "is a directory, not a file" : `cannot read file (${err.code ?? err.message})`;
    return { ok: false, errors: [{ file, line: 0, column: 0, field: "", message: reason }] };
  }
  return parseYamlText(text, file, schema);
}
