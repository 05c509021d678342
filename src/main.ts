/**
 * Composition root: turns a validated config into a running edge, and owns
 * the process concerns (signals, reload, shutdown). Nothing below src/edge
 * knows about files or signals.
 */
import { isIP } from "node:net";
import type { Logger } from "pino";
import { formatConfigError, loadConfig, obtainFlowKey, reloadConfig, type EdgeConfig } from "./config/index.js";
import { loadYamlFile } from "./config/load.js";
import { Edge, type EdgeOptions } from "./edge/edge.js";
import type { TxnPeers } from "./edge/proxy.js";
import type { ProbeReport } from "./health/target-health.js";
import type { Target, TargetResolver } from "./edge/targets.js";
import { compileDeviceTable, deviceTableSchema, type DeviceTable } from "./policy/device-table.js";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { RulesRouter } from "./edge/rules-router.js";
import { CarrierBreakers, callOutcome } from "./rules/carrier-breakers.js";
import { RULES_FILE, rulesFilesIn } from "./rules/load.js";
import { RulesStore } from "./rules/store.js";
import { SipResolver, nodeDnsBackend } from "./transport/dns.js";
import { nativeUdp } from "./transport/native-udp.js";
import type { RemoteFlows } from "./transport/types.js";
import type { UdpIo } from "./transport/udp.js";
import { systemClock, type Clock } from "./util/clock.js";
import type { Counters } from "./util/counters.js";
import { createLogger } from "./util/logger.js";

/** Loads the device table a config names; errors come back formatted with file:line:column. */
export function loadDeviceTable(file: string): { ok: true; table: DeviceTable } | { ok: false; errors: string[] } {
  const r = loadYamlFile(file, deviceTableSchema);
  if (!r.ok) return { ok: false, errors: r.errors.map(formatConfigError) };
  return { ok: true, table: compileDeviceTable(r.value) };
}

/**
 * Which UDP I/O the config asks for and this machine has. `native` without
 * the addon refuses to start (the operator asked for it by name); `auto`
 * falls back to dgram and says why once.
 */
export function udpIo(io: EdgeConfig["udp"]["io"], group: number, logger: Logger, addon: ReturnType<typeof nativeUdp> = nativeUdp()): UdpIo {
  if (io === "dgram") return { kind: "dgram" };
  const { binding, error } = addon;
  if (binding !== undefined) return { kind: "native", group };
  if (io === "native") throw new ConfigRefused([`udp.io is native, but the native UDP socket cannot be loaded: ${error}`]);
  logger.warn({ reason: error }, "udp.io auto: the native UDP socket is not available, using dgram");
  return { kind: "dgram" };
}

/** Maps the YAML config onto the edge's options (all validation already done by the schema). */
export function edgeOptions(cfg: EdgeConfig, table: DeviceTable, flowKey: Buffer, clock: Clock, logger: Logger, resolver?: TargetResolver): EdgeOptions {
  return {
    listeners: cfg.listen.map((l) => ({ transport: l.transport, address: l.address, port: l.port, ...(l.advertise === undefined ? {} : { advertise: l.advertise }) })),
    domains: [...cfg.domains],
    targets: cfg.targets.map((t) => ({ name: t.name, uri: t.uri, priority: t.priority, acceptsPath: t.acceptsPath })),
    ...(cfg.tls === undefined
      ? {}
      : {
          tls: {
            cert: readFileSync(cfg.tls.cert, "utf8"),
            key: readFileSync(cfg.tls.key, "utf8"),
            ...(cfg.tls.ca === undefined ? {} : { ca: readFileSync(cfg.tls.ca, "utf8") }),
            minVersion: cfg.tls.minVersion,
            verifyPeer: cfg.tls.verifyPeer,
            requireClientCert: cfg.tls.requireClientCert,
          },
        }),
    transportLimits: {
      maxMessageBytes: cfg.limits.maxMessageBytes,
      maxStreamBufferBytes: cfg.limits.maxStreamBufferBytes,
      maxConnections: cfg.limits.maxConnections,
      maxConnectionsPerSource: cfg.limits.maxConnectionsPerSource,
      connectTimeoutMs: cfg.limits.connectTimeoutMs,
      idleTimeoutMs: cfg.limits.idleTimeoutSeconds * 1000,
    },
    udpSocketBufferBytes: cfg.limits.udpSocketBufferBytes,
    parseLimits: {
      maxMessageBytes: cfg.limits.maxMessageBytes,
      maxHeaders: cfg.limits.maxHeaders,
      maxVias: cfg.limits.maxVias,
      maxHeaderLineBytes: cfg.limits.maxHeaderLineBytes,
    },
    softState: { maxEntries: cfg.softState.maxEntries, ttlMs: cfg.softState.ttlSeconds * 1000 },
    flowKey,
    failover: { requestTimeoutMs: cfg.failover.requestTimeoutMs, retryOn: new Set(cfg.failover.retryOn) },
    overload: {
      shedAtMs: cfg.overload.shedAtMs,
      resumeAtMs: cfg.overload.resumeAtMs,
      retryAfterSeconds: cfg.overload.retryAfterSeconds,
      maxTimeoutDeferrals: cfg.overload.maxTimeoutDeferrals,
      probeIntervalMs: cfg.overload.probeIntervalMs,
      shedMethods: new Set(cfg.overload.shedMethods),
      dropMethods: new Set(cfg.overload.dropMethods),
    },
    health: {
      options: {
        failuresToDown: cfg.health.downAfter,
        successesToUp: cfg.health.upAfter,
        intervalUpMs: cfg.health.intervalSeconds * 1000,
        intervalDownMs: cfg.health.intervalDownSeconds * 1000,
        probeTimeoutMs: cfg.health.timeoutMs,
        aliveCodes: cfg.health.alive,
        passiveFailureCodes: [...cfg.failover.retryOn],
      },
      closeStreamAfterTimeouts: cfg.health.closeStreamAfterTimeouts,
    },
    policy: {
      options: {
        holdDownSeconds: cfg.policy.holdDownSeconds,
        failbackStableSeconds: cfg.policy.failbackStableSeconds,
        graceSeconds: cfg.policy.graceSeconds,
        failbackMode: cfg.policy.failbackMode,
      },
      table,
    },
    clock,
    logger,
    ...(resolver === undefined ? {} : { resolver }),
  };
}

/** A TargetResolver over the RFC 3263 resolver: IP literals at once, names from its cache. */
function dnsResolver(cfg: EdgeConfig, clock: Clock, logger: Logger): { resolver: TargetResolver; stop: () => void } {
  const dns = new SipResolver({
    backend: nodeDnsBackend(),
    clock,
    logger: logger.child({ module: "dns" }),
    srvTtlMs: cfg.dns.srvTtlSeconds * 1000,
    minTtlMs: cfg.dns.minTtlSeconds * 1000,
    maxTtlMs: cfg.dns.maxTtlSeconds * 1000,
    negativeTtlMs: cfg.dns.negativeTtlSeconds * 1000,
    onEvent: (e) => (e.kind === "failed" ? logger.warn(e, `dns ${e.name}: ${e.reason}${e.usingStale ? " (using the last good answer)" : ""}`) : logger.info(e, `dns ${e.name}: ${e.kind}`)),
  });
  return {
    resolver: {
      endpoint(t) {
        if (isIP(t.host) !== 0) return { transport: t.transport, address: t.host, port: t.port ?? (t.transport === "tls" || t.transport === "wss" ? 5061 : 5060) };
        return dns.lookup({ host: t.host, port: t.port, transport: t.transport })?.[0];
      },
    },
    stop: () => dns.stop(),
  };
}

export interface Running {
  edge: Edge;
  config: EdgeConfig;
  /** The edge's logger, for process-level events (a cluster worker's drain). */
  readonly logger: Logger;
  /** The routing rules in force (version, hash, reload counts); undefined without rules.yaml. */
  readonly rules: RulesStore | undefined;
  /** Every carrier's breaker (state, trips, history); undefined without rules.yaml. */
  readonly breakers: CarrierBreakers | undefined;
  stop(): Promise<void>;
  reload(): boolean;
}

/**
 * Starts an edge from a config file. Throws (with every error formatted as
 * file:line:column: field: message) when the config is invalid.
 */
export interface RunOptions {
  clock?: Clock;
  logger?: Logger;
  /** Worker mode (see src/cluster/): who probes, where probe results go, and the results to start from. */
  probe?: {
    mode: "active" | "follower";
    onResult?: (target: string, result: ProbeReport) => void;
    seed?: ReadonlyArray<{ target: string; result: ProbeReport }>;
  };
  /** Fields on every log line of this edge (a cluster worker's id). */
  logBindings?: Record<string, unknown>;
  /** A cluster worker: requests towards targets leave from a UDP port of its own (EdgeOptions.udpPrivateSockets). */
  udpPrivateSockets?: boolean;
  /** A cluster worker: how many workers share each UDP port (UdpIo.group, with the native socket). */
  udpGroup?: number;
  /** A cluster worker: flow ids tagged with its id, other workers' flows reached through `remoteFlows` (EdgeOptions). */
  flowOwner?: string;
  remoteFlows?: RemoteFlows;
  /** A cluster worker: the other workers, asked before a request timeout fails over (EdgeOptions.txnPeers). */
  txnPeers?: TxnPeers;
  /** Counters the edge counts into, shared with the caller (EdgeOptions.counters). */
  counters?: Counters;
}

export async function run(configPath: string, opts: RunOptions = {}): Promise<Running> {
  const r = loadConfig(configPath);
  if (!r.ok) throw new ConfigRefused(r.errors.map(formatConfigError));
  let config = r.value;
  const base = opts.logger ?? createLogger(config.log.level);
  const logger = opts.logBindings === undefined ? base : base.child(opts.logBindings);
  const clock = opts.clock ?? systemClock;
  const dt = loadDeviceTable(config.policy.deviceTable);
  if (!dt.ok) throw new ConfigRefused(dt.errors);
  const flowKey = obtainFlowKey(config);
  const dns = dnsResolver(config, clock, logger);
  const eo = edgeOptions(config, dt.table, flowKey, clock, logger, dns.resolver);
  if (opts.udpPrivateSockets === true) eo.udpPrivateSockets = true;
  eo.udpIo = udpIo(config.udp.io, opts.udpGroup ?? 0, logger);
  if (opts.flowOwner !== undefined) eo.flowOwner = opts.flowOwner;
  if (opts.remoteFlows !== undefined) eo.remoteFlows = opts.remoteFlows;
  if (opts.txnPeers !== undefined) eo.txnPeers = opts.txnPeers;
  if (opts.counters !== undefined) eo.counters = opts.counters;

  // Routing rules (proxy-rules/rules.yaml and rules.d/ beside the config):
  // when present, the rules engine decides first and hands Main/Standby
  // groups to the failover policy. A bad rules file refuses to start; on
  // reload it is refused and the running rules stay.
  let rules: RulesStore | undefined;
  let breakers: CarrierBreakers | undefined;
  const rulesDir = dirname(configPath);
  if (existsSync(join(rulesDir, RULES_FILE))) {
    // Breaker state is runtime state: it survives every rules reload, which
    // only updates the settings, adds new carriers and drops removed ones.
    const cb = new CarrierBreakers(clock, logger.child({ module: "breakers" }));
    const opened = RulesStore.open({
      files: () => rulesFilesIn(rulesDir),
      knownTargets: () => new Set(config.targets.map((t) => t.name)),
      knownDeviceClasses: () => new Set(dt.table.classes.map((c) => c.name)),
      clock,
      logger: logger.child({ module: "rules" }),
      onSwap: (table) => cb.configure(table.carriers),
    });
    if (!opened.ok) throw new ConfigRefused(opened.messages);
    const store = opened.store;
    rules = store;
    breakers = cb;
    cb.configure(store.current().carriers);
    // Every answer from a carrier target feeds its carrier's breaker; the
    // table in force says which carrier owns the target.
    eo.onTargetOutcome = (t, outcome, status) => {
      const o = callOutcome(outcome, status);
      if (o !== undefined) cb.recordTarget(store.current(), t.name, o);
    };
    eo.breakerJudges = (t) => store.current().carrierOfTarget.has(t.name);
    // The Main/Standby pair is read from the targets each router is built
    // over (start and every reload), so a reload that renames or reorders
    // targets never leaves the rules comparing against the old pair.
    const pbxPair = (targets: readonly Target[]): string[] => [...targets].sort((a, b) => a.priority - b.priority).slice(0, 2).map((t) => t.name);
    eo.wrapRouter = (inner, targets, usable) =>
      new RulesRouter({ rules: () => store.current(), targets, usable, breakers: cb, pbx: targets.length >= 2 ? { router: inner, targets: pbxPair(targets) } : undefined, logger: logger.child({ module: "rules" }) });
  }
  if (opts.probe !== undefined && eo.health !== undefined) {
    eo.health.mode = opts.probe.mode;
    if (opts.probe.onResult !== undefined) eo.health.onProbeResult = opts.probe.onResult;
    if (opts.probe.seed !== undefined) eo.health.seed = opts.probe.seed;
  }
  const edge = await Edge.start(eo);
  rules?.watch();
  return {
    edge,
    logger,
    get config() {
      return config;
    },
    rules,
    breakers,
    async stop() {
      rules?.close();
      breakers?.close();
      dns.stop();
      await edge.stop();
      // What this process did, for the last look before it is gone (drops and sheds by reason among them).
      logger.info({ counters: edge.counters.snapshot() }, "stopped: counters since start");
    },
    reload() {
      // A bad file never replaces a good one: the running config stays.
      const nr = reloadConfig(configPath, config);
      if (!nr.ok) {
        for (const e of nr.errors) logger.error({ file: e.file, line: e.line, column: e.column, field: e.field }, `config refused: ${formatConfigError(e)}`);
        return false;
      }
      const ndt = loadDeviceTable(nr.value.policy.deviceTable);
      if (!ndt.ok) {
        for (const e of ndt.errors) logger.error(`device table refused: ${e}`);
        return false;
      }
      edge.policy?.setDeviceTable(ndt.table);
      edge.replaceRouting(nr.value.targets.map((t) => ({ name: t.name, uri: t.uri, priority: t.priority, acceptsPath: t.acceptsPath })));
      if (nr.restartRequired.length > 0) logger.warn({ sections: nr.restartRequired }, "these config sections change only at restart");
      config = nr.value;
      logger.info({ changed: nr.changed, hash: nr.hash }, "config reloaded");
      // The rules are checked again against the new targets; a bad set is
      // refused (and logged by the store) and the running rules stay.
      return rules?.reload("SIGHUP", true).ok ?? true;
    },
  };
}

export class ConfigRefused extends Error {
  constructor(readonly errors: readonly string[]) {
    super(`config refused:\n${errors.join("\n")}`);
    this.name = "ConfigRefused";
  }
}
