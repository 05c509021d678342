import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { formatConfigError, loadYamlFile } from "../config/load.js";
import type { DeviceTable } from "../policy/device-table.js";
import { defaultConfigPath, shippedRulesDir } from "../config/paths.js";
import { edgeConfigSchema } from "../config/schema.js";
import { explain, OFFLINE_VIEW, parseMessageText, parseSource, type ExplainView, type Explanation } from "./explain.js";
import { loadRules, rulesFilesIn } from "./load.js";
import { RULE_TRANSPORTS, type RuleTransport } from "./schema.js";

/**
 * `sip-edge explain` without a running edge: load the rules of a directory
 * (with the target names of the edge config next to them), read a message
 * from a file, and explain it with every target presumed usable unless a
 * view says otherwise. Every problem comes back as a message to print.
 */

export interface DryRunOptions {
  readonly messageFile: string;
  /** `IP:PORT`; 127.0.0.1:5060 when absent. */
  readonly source?: string | undefined;
  /** udp when absent. */
  readonly transport?: string | undefined;
  /** The edge port the request arrives on; the transport's default (5060, or 5061 for TLS) when absent. */
  readonly localPort?: number | undefined;
  /** Directory with rules.yaml (and rules.d/); the shipped proxy-rules/ when absent. */
  readonly rulesDir?: string | undefined;
  /**
   * Edge config naming the targets: `<rulesDir>/edge.yaml` when it exists,
   * else the shipped default config.
   */
  readonly edgeConfig?: string | undefined;
  readonly view?: ExplainView | undefined;
  /**
   * The device table (`proxy-rules/devices.yaml`, compiled by the policy
   * module): when given, a request whose rule sets no device class is shown
   * with the class the table gives it.
   */
  readonly deviceTable?: Pick<DeviceTable, "classify"> | undefined;
}

export type DryRunResult = { ok: true; text: string; explanation: Explanation } | { ok: false; messages: string[] };

function isTransport(t: string): t is RuleTransport {
  return (RULE_TRANSPORTS as readonly string[]).includes(t);
}

/** Target names of an edge config file. */
export function targetNamesOf(configFile: string): { ok: true; names: Set<string> } | { ok: false; messages: string[] } {
  const r = loadYamlFile(configFile, edgeConfigSchema(dirname(resolve(configFile))));
  if (!r.ok) return { ok: false, messages: r.errors.map(formatConfigError) };
  return { ok: true, names: new Set(r.value.targets.map((t) => t.name)) };
}

export function dryRun(o: DryRunOptions): DryRunResult {
  const transport = (o.transport ?? "udp").toLowerCase();
  if (!isTransport(transport)) return { ok: false, messages: [`--transport: expected one of ${RULE_TRANSPORTS.join(", ")}, got ${JSON.stringify(o.transport)}`] };
  const source = parseSource(o.source ?? "127.0.0.1:5060");
  if (!source.ok) return { ok: false, messages: [`--source: ${source.reason}`] };
  const localPort = o.localPort ?? (transport === "tls" || transport === "wss" ? 5061 : 5060);

  const rulesDir = o.rulesDir ?? shippedRulesDir();
  const besideRules = join(rulesDir, "edge.yaml");
  const configFile = o.edgeConfig ?? (existsSync(besideRules) ? besideRules : defaultConfigPath());
  const targets = targetNamesOf(configFile);
  if (!targets.ok) return { ok: false, messages: targets.messages };

  const rules = loadRules(rulesFilesIn(rulesDir), { knownTargets: targets.names });
  if (!rules.ok) return { ok: false, messages: rules.errors.map(formatConfigError) };

  let text: string;
  try {
    text = readFileSync(o.messageFile, "latin1");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, messages: [`${o.messageFile}: ${code === "ENOENT" ? "file not found" : `cannot read file (${code ?? String(e)})`}`] };
  }
  const m = parseMessageText(text);
  if (!m.ok) return { ok: false, messages: [`${o.messageFile}: ${m.reason}`] };
  const table = o.deviceTable;
  const base = o.view ?? OFFLINE_VIEW;
  const view: ExplainView =
    table === undefined || base.deviceClassOf !== undefined
      ? base
      : { ...base, usable: (t) => base.usable(t), deviceClassOf: (r) => table.classify({ userAgent: r.userAgent, source: r.sourceAddress, aor: r.aor }).name };
  const explanation = explain(rules.table, m.message, { source: { address: source.address, port: source.port }, transport, localPort }, view);
  return { ok: true, text: explanation.text, explanation };
}
