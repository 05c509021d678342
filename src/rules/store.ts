import { watch, type FSWatcher } from "node:fs";
import { basename, dirname, join } from "node:path";
import { formatConfigError, type ConfigError } from "../config/load.js";
import type { Clock, TimerHandle } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import { compileRules, readRulesSources, sourcesHash, RULES_DIR } from "./load.js";
import type { RulesTable } from "./types.js";

/**
 * The rules in force. `current()` is one reference: a request takes it once
 * and keeps it to the end, so a reload never changes the rules under a
 * request in flight. `reload()` reads and validates the files whole; on any
 * error the old table stays and the error is logged once (the same broken
 * content is not logged again on the next attempt) and kept for status.
 * Runtime state (health, breakers, device timers) lives elsewhere and is
 * untouched by a swap.
 */

export interface RulesStoreOptions {
  /** The files to read, asked again on each reload (a new file in rules.d/ is picked up). */
  readonly files: () => readonly string[];
  /** Target names the rules may use; asked on each reload. */
  readonly knownTargets: () => ReadonlySet<string>;
  /** Device classes the rules may set; not checked when absent. */
  readonly knownDeviceClasses?: () => ReadonlySet<string>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Quiet time after the last file event before reloading; 250 ms when absent. */
  readonly debounceMs?: number;
  /** Called with each new table after it is in force. */
  readonly onSwap?: (table: RulesTable, previous: RulesTable) => void;
}

export interface RulesLoadError {
  /** Wall-clock ms of the failed attempt (the first one, for repeats of the same content). */
  readonly at: number;
  /** Hash of the content that failed. */
  readonly hash: string;
  readonly errors: readonly ConfigError[];
  /** `file:line:column: field: message`, one per error. */
  readonly messages: readonly string[];
}

export type ReloadResult =
  | { readonly ok: true; readonly changed: boolean; readonly version: number; readonly hash: string }
  | { readonly ok: false; readonly version: number; readonly errors: readonly ConfigError[]; readonly messages: readonly string[] };

export interface RulesStatus {
  readonly version: number;
  readonly hash: string;
  readonly loadedAt: number;
  readonly files: readonly string[];
  readonly rules: number;
  readonly lastError: RulesLoadError | undefined;
  readonly reloads: { readonly ok: number; readonly failed: number; readonly unchanged: number };
  /** Whether the files are watched, and how many change events were seen (each restarts the debounce). */
  readonly watch: { readonly active: boolean; readonly events: number };
}

export type OpenResult = { ok: true; store: RulesStore } | { ok: false; errors: ConfigError[]; messages: string[] };

const DEFAULT_DEBOUNCE_MS = 250;

type Built =
  | { readonly ok: true; readonly unchanged: true; readonly hash: string }
  | { readonly ok: true; readonly unchanged: false; readonly table: RulesTable; readonly hash: string }
  | { readonly ok: false; readonly errors: ConfigError[]; readonly hash: string };

export class RulesStore {
  private table: RulesTable;
  private lastErr: RulesLoadError | undefined;
  private readonly counts = { ok: 0, failed: 0, unchanged: 0 };
  private readonly watchers = new Map<string, FSWatcher>();
  private watching = false;
  private watchEvents = 0;
  private debounce: TimerHandle | undefined;
  private closed = false;

  private constructor(
    private readonly o: RulesStoreOptions,
    first: RulesTable,
  ) {
    this.table = first;
  }

  /** The first load; the edge cannot start without good rules, so errors are returned, not kept. */
  static open(o: RulesStoreOptions): OpenResult {
    const r = RulesStore.build(o, 1);
    if (!r.ok) return { ok: false, errors: r.errors, messages: r.errors.map(formatConfigError) };
    if (r.unchanged) throw new Error("rules: first load compared against a previous hash");
    o.logger.info({ version: 1, hash: r.table.hash, rules: r.table.rules.length, files: r.table.files.map((f) => f.file) }, "rules loaded");
    return { ok: true, store: new RulesStore(o, r.table) };
  }

  private static build(o: RulesStoreOptions, version: number, skipHash?: string): Built {
    const read = readRulesSources(o.files());
    if (!read.ok) return { ok: false as const, errors: read.errors, hash: "" };
    const hash = sourcesHash(read.sources);
    if (hash === skipHash) return { ok: true as const, unchanged: true as const, hash };
    const r = compileRules(read.sources, {
      knownTargets: o.knownTargets(),
      knownDeviceClasses: o.knownDeviceClasses?.(),
      version,
      loadedAt: o.clock.wallNow(),
    });
    return r.ok ? { ok: true as const, unchanged: false as const, table: r.table, hash } : { ok: false as const, errors: r.errors, hash };
  }

  /** The table in force; hold on to it for the whole request. */
  current(): RulesTable {
    return this.table;
  }

  get version(): number {
    return this.table.version;
  }

  get hash(): string {
    return this.table.hash;
  }

  get lastError(): RulesLoadError | undefined {
    return this.lastErr;
  }

  /**
   * Reads the files again; swaps the table only when they are valid and
   * changed. `force` rebuilds unchanged files too (the edge config's targets
   * changed, so the same rules may now be wrong, or compile differently).
   */
  reload(reason = "request", force = false): ReloadResult {
    if (this.watching && !this.closed) this.refreshWatch();
    const old = this.table;
    const r = RulesStore.build(this.o, old.version + 1, force ? undefined : old.hash);
    if (!r.ok) {
      this.counts.failed++;
      const messages = r.errors.map(formatConfigError);
      const errorHash = r.hash === "" ? messages.join("\n") : r.hash;
      // The same broken content (an editor saving twice, a watcher and a
      // SIGHUP) is reported once, not once per attempt.
      if (this.lastErr?.hash !== errorHash) {
        this.lastErr = Object.freeze({ at: this.o.clock.wallNow(), hash: errorHash, errors: Object.freeze(r.errors), messages: Object.freeze(messages) });
        this.o.logger.error({ reason, keptVersion: old.version, errors: messages }, "rules reload failed; the running rules stay in force");
      }
      return { ok: false, version: old.version, errors: r.errors, messages };
    }
    // Valid content (changed or not) means the last error no longer applies.
    this.lastErr = undefined;
    if (r.unchanged) {
      this.counts.unchanged++;
      return { ok: true, changed: false, version: old.version, hash: old.hash };
    }
    this.table = r.table;
    this.counts.ok++;
    this.o.logger.info({ reason, version: r.table.version, previous: old.version, hash: r.table.hash, rules: r.table.rules.length }, "rules reloaded");
    this.o.onSwap?.(r.table, old);
    return { ok: true, changed: true, version: r.table.version, hash: r.table.hash };
  }

  /**
   * Reloads after the files change. Directories are watched rather than
   * files: editors save by writing a new file and renaming it over the old
   * one, which ends a watch on the old file. Events are debounced on the
   * injected clock, so a burst of writes is one reload. A `rules.d/` created
   * later is noticed in its parent and watched from the next reload on.
   */
  watch(): void {
    if (this.closed || this.watching) return;
    this.watching = true;
    this.refreshWatch();
  }

  /** Directories to watch now, each with the names in it that matter (undefined: every *.yaml). */
  private watchTargets(): Map<string, Set<string> | undefined> {
    const files = this.o.files();
    const dirs = new Map<string, Set<string> | undefined>();
    const first = files[0];
    const sub = first === undefined ? undefined : join(dirname(first), RULES_DIR);
    if (sub !== undefined) dirs.set(sub, undefined);
    for (const f of files) {
      const d = dirname(f);
      if (d === sub) continue;
      if (!dirs.has(d)) dirs.set(d, new Set(sub !== undefined && dirname(sub) === d ? [RULES_DIR] : []));
      dirs.get(d)!.add(basename(f));
    }
    return dirs;
  }

  private refreshWatch(): void {
    for (const [dir, names] of this.watchTargets()) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          const name = filename === null ? undefined : filename.toString();
          if (name === undefined || (names === undefined ? /\.ya?ml$/i.test(name) : names.has(name))) {
            this.watchEvents++;
            this.schedule();
          }
        });
        w.on("error", (e) => this.o.logger.warn({ dir, error: e.message }, "rules watch failed; reload by request still works"));
        this.watchers.set(dir, w);
      } catch (e) {
        // A missing rules.d/ is normal; anything else is worth a line.
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.o.logger.warn({ dir, error: (e as Error).message }, "cannot watch rules directory");
      }
    }
  }

  /** True while a debounced reload is pending. */
  get reloadPending(): boolean {
    return this.debounce !== undefined;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.debounce !== undefined) this.o.clock.clearTimer(this.debounce);
    this.debounce = this.o.clock.setTimer(this.o.debounceMs ?? DEFAULT_DEBOUNCE_MS, () => {
      this.debounce = undefined;
      this.reload("file change");
    });
  }

  status(): RulesStatus {
    const t = this.table;
    return Object.freeze({
      version: t.version,
      hash: t.hash,
      loadedAt: t.loadedAt,
      files: t.files.map((f) => f.file),
      rules: t.rules.length,
      lastError: this.lastErr,
      reloads: { ...this.counts },
      watch: { active: this.watchers.size > 0, events: this.watchEvents },
    });
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    if (this.debounce !== undefined) this.o.clock.clearTimer(this.debounce);
    this.debounce = undefined;
  }
}
