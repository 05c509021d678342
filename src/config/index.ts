import { dirname, resolve } from "node:path";
import { loadYamlFile, parseYamlText, type ConfigError, type LoadResult } from "./load.js";
import { edgeConfigSchema, type EdgeConfig } from "./schema.js";

export { formatConfigError, loadYamlFile, parseYamlText, type ConfigError, type LoadResult } from "./load.js";
export { describeMismatch, expecting, showValue } from "./messages.js";
export { defaultConfigPath, packageRoot, shippedRulesDir } from "./paths.js";
export {
  decodeFlowKey,
  edgeConfigSchema,
  MIN_FLOW_KEY_BYTES,
  TRANSPORTS,
  type EdgeConfig,
  type ListenerConfig,
  type TargetConfig,
  type TlsConfig,
  type TransportName,
} from "./schema.js";
export { checkTlsPem, readTlsPem, type TlsFiles, type TlsPem, type TlsProblem } from "./tls.js";
export { obtainFlowKey, type FlowKeyFs, type FlowKeySettings } from "./flow-key.js";

/**
 * A loaded config is shared by reference between modules and swapped whole
 * on reload (DESIGN.md §5.6), so nobody may change it in place.
 */
function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

function frozen(r: LoadResult<EdgeConfig>): LoadResult<EdgeConfig> {
  if (r.ok) deepFreeze(r.value);
  return r;
}

/**
 * Loads and validates an edge config file. Relative paths inside it resolve
 * against its directory, and come back absolute.
 */
export function loadConfig(file: string): LoadResult<EdgeConfig> {
  return frozen(loadYamlFile(file, edgeConfigSchema(dirname(resolve(file)))));
}

/** Same as `loadConfig` for text already in hand; `file` names it in errors and anchors its relative paths. */
export function parseConfigText(text: string, file: string): LoadResult<EdgeConfig> {
  return frozen(parseYamlText(text, file, edgeConfigSchema(dirname(resolve(file)))));
}

export type ConfigSection = keyof EdgeConfig;

/**
 * Sections a running edge applies in place on reload: the targets, whose
 * router is rebuilt and swapped as one reference (DESIGN.md §5.6). The
 * device table's and the rules' files are re-read on every reload too.
 * Every other section shapes something built once at start (sockets,
 * certificates, the logger, timers, health machines, the policy's clocks,
 * the DNS cache), so a reload that changes one of them is still valid and
 * the caller says a restart is needed for it (a cluster primary does a
 * rolling restart). Before this list, `log`, `health`, `policy`,
 * `failover`, `dns` and `domains` were reported as reloaded and silently
 * kept their old values.
 */
export const LIVE_SECTIONS: readonly ConfigSection[] = Object.freeze(["targets"]);

export type ReloadResult =
  | {
      ok: true;
      value: EdgeConfig;
      hash: string;
      /** Top-level sections whose value differs from `current`, in file order. */
      changed: ConfigSection[];
      /** The subset of `changed` that only takes effect after a restart. */
      restartRequired: ConfigSection[];
    }
  | { ok: false; errors: ConfigError[] };

/**
 * Re-reads the config for a reload (SIGHUP, admin request). All or nothing:
 * on any error the caller gets only the errors and keeps running `current`;
 * on success it gets the whole new config and what changed.
 */
export function reloadConfig(file: string, current: EdgeConfig): ReloadResult {
  const r = loadConfig(file);
  if (!r.ok) return r;
  const changed = (Object.keys(r.value) as ConfigSection[]).filter(
    (k) => JSON.stringify(r.value[k]) !== JSON.stringify(current[k]),
  );
  for (const k of Object.keys(current) as ConfigSection[]) {
    if (!(k in r.value) && !changed.includes(k)) changed.push(k);
  }
  return { ok: true, value: r.value, hash: r.hash, changed, restartRequired: changed.filter((k) => !LIVE_SECTIONS.includes(k)) };
}
