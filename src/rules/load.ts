import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { parseYamlText, sha256Hex, type ConfigError } from "../config/load.js";
import { compileTable, type ValidatedFile } from "./compile.js";
import { rulesFileSchema, matchesAll, listOf, type CrossContext, type RulesFileSpec } from "./schema.js";
import type { RulesTable } from "./types.js";

/**
 * Reading and validating a set of rules files into a table. Validation is
 * whole: every error of every file is reported (file, line, column, field,
 * what was expected), and a table is built only when there are none.
 *
 * Two passes: each file alone against the schema, then, once every file's
 * groups, carriers and rules are known, each file again with the reference
 * checks (a rule in one file may route to a group defined in another).
 * Running the second pass through the same YAML loader means reference
 * errors get the same exact positions as schema errors.
 */

export interface RulesSource {
  /** As the user gave it; used in errors and in `explain`. */
  readonly file: string;
  readonly text: string;
}

export interface CompileOptions {
  /** Target names from the edge config: group members and carrier targets must be among them. */
  readonly knownTargets: ReadonlySet<string>;
  /** Device classes from the device table; `deviceClass:` is not checked when absent. */
  readonly knownDeviceClasses?: ReadonlySet<string> | undefined;
  /** Version number the table gets (the store counts loads); 1 when absent. */
  readonly version?: number;
  /** Wall-clock ms of the load; 0 when absent. */
  readonly loadedAt?: number;
}

export type RulesResult = { ok: true; table: RulesTable } | { ok: false; errors: ConfigError[] };

export const RULES_FILE = "rules.yaml";
export const RULES_DIR = "rules.d";

/**
 * The rules files of a directory: `rules.yaml`, then every `*.yaml` of
 * `rules.d/` in name order (so `10-inbound.yaml` comes before `90-default.yaml`).
 */
export function rulesFilesIn(dir: string): string[] {
  const files = [join(dir, RULES_FILE)];
  const sub = join(dir, RULES_DIR);
  let names: string[] = [];
  try {
    if (existsSync(sub) && statSync(sub).isDirectory()) names = readdirSync(sub);
  } catch {
    names = [];
  }
  for (const n of names.filter((n) => /\.ya?ml$/i.test(n)).sort()) files.push(join(sub, n));
  return files;
}

/** Reads every file; an unreadable one is an error at line 0, like the config loader's. */
export function readRulesSources(files: readonly string[]): { ok: true; sources: RulesSource[] } | { ok: false; errors: ConfigError[] } {
  const sources: RulesSource[] = [];
  const errors: ConfigError[] = [];
  for (const file of files) {
    try {
      sources.push({ file, text: readFileSync(file, "utf8") });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const message = code === "ENOENT" ? "file not found" : code === "EISDIR" ? "is a directory, not a file" : `cannot read file (${code ?? String(e)})`;
      errors.push({ file, line: 0, column: 0, field: "", message });
    }
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, sources };
}

/** One hash over the whole set: file names (order matters) and texts. */
export function sourcesHash(sources: readonly RulesSource[]): string {
  return sha256Hex(sources.map((s) => `${s.file}\u0000${sha256Hex(s.text)}`).join("\n"));
}

/** 1-based line of each item of the top-level `rules` list. */
function ruleLines(text: string): number[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  const root = doc.contents;
  if (!isMap(root)) return [];
  const pair = root.items.find((p) => isScalar(p.key) && p.key.value === "rules");
  if (pair === undefined || !isSeq(pair.value)) return [];
  return pair.value.items.map((item) => {
    const range = (item as { range?: [number, number, number] } | null)?.range;
    return range === undefined ? 0 : lc.linePos(range[0]).line;
  });
}

function contexts(specs: readonly RulesFileSpec[], files: readonly string[], o: CompileOptions): CrossContext[] {
  const groups = new Map<string, { file: string; field: string }>();
  const carriers = new Map<string, { file: string; field: string; hasSources: boolean }>();
  specs.forEach((s, i) => {
    for (const g of Object.keys(s.groups ?? {})) if (!groups.has(g)) groups.set(g, { file: files[i]!, field: `groups.${g}` });
    for (const [c, spec] of Object.entries(s.carriers ?? {})) {
      if (!carriers.has(c)) carriers.set(c, { file: files[i]!, field: `carriers.${c}`, hasSources: spec.sources !== undefined });
    }
  });
  let lastWithRules = -1;
  specs.forEach((s, i) => {
    if ((s.rules ?? []).length > 0) lastWithRules = i;
  });
  const out: CrossContext[] = [];
  const rulesBefore = new Map<string, { file: string; field: string }>();
  const carrierTargetsBefore = new Map<string, string>();
  let matchAllBefore: { file: string; field: string } | undefined;
  specs.forEach((s, i) => {
    const file = files[i]!;
    out.push({
      file,
      knownTargets: o.knownTargets,
      knownDeviceClasses: o.knownDeviceClasses,
      groups,
      carriers,
      rulesBefore: new Map(rulesBefore),
      carrierTargetsBefore: new Map(carrierTargetsBefore),
      matchAllBefore,
      holdsLastRule: i === lastWithRules,
      noRulesAnywhere: lastWithRules < 0 && i === 0,
    });
    (s.rules ?? []).forEach((r, j) => {
      if (!rulesBefore.has(r.name)) rulesBefore.set(r.name, { file, field: `rules[${j}]` });
      if (matchAllBefore === undefined && matchesAll(r)) matchAllBefore = { file, field: `rules[${j}]` };
    });
    for (const [c, spec] of Object.entries(s.carriers ?? {})) {
      for (const t of listOf(spec.targets)) if (!carrierTargetsBefore.has(t)) carrierTargetsBefore.set(t, c);
    }
  });
  return out;
}

/** Validates and compiles rules texts. Never throws for bad input. */
export function compileRules(sources: readonly RulesSource[], o: CompileOptions): RulesResult {
  if (sources.length === 0) throw new Error("rules: no rules files given");
  const errors: ConfigError[] = [];
  const specs: RulesFileSpec[] = [];
  for (const s of sources) {
    const r = parseYamlText(s.text, s.file, rulesFileSchema());
    if (r.ok) specs.push(r.value);
    else errors.push(...r.errors);
  }
  if (errors.length > 0) return { ok: false, errors };

  const files = sources.map((s) => s.file);
  const cx = contexts(specs, files, o);
  const validated: ValidatedFile[] = [];
  sources.forEach((s, i) => {
    const r = parseYamlText(s.text, s.file, rulesFileSchema(cx[i]));
    if (!r.ok) errors.push(...r.errors);
    else validated.push({ file: s.file, hash: r.hash, spec: r.value, ruleLines: ruleLines(s.text) });
  });
  if (errors.length > 0) return { ok: false, errors };
  const table = compileTable(validated, { version: o.version ?? 1, hash: sourcesHash(sources), loadedAt: o.loadedAt ?? 0 });
  return { ok: true, table };
}

/** Reads, validates and compiles rules files. */
export function loadRules(files: readonly string[], o: CompileOptions): RulesResult {
  const read = readRulesSources(files);
  return read.ok ? compileRules(read.sources, o) : read;
}
