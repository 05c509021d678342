#!/usr/bin/env node
/**
 * The sip-edge command line: start, check, explain.
 */
import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import { Command, InvalidArgumentError } from "commander";
import { defaultConfigPath, formatConfigError, loadConfig } from "./config/index.js";
import type { ProbeReport } from "./health/target-health.js";
import { ConfigRefused, loadDeviceTable, run, type Running } from "./main.js";
import { dryRun } from "./rules/dry-run.js";
import { createLogger } from "./util/logger.js";

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number of at least 1");
  return n;
}

/** Messages between the primary and its workers. */
type WorkerMessage = { kind: "probe-result"; target: string; result: ProbeReport } | { kind: "reload" };

const program = new Command()
  .name("sip-edge")
  .description("SIP edge proxy and load balancer in front of a Main and a Standby PBX")
  .showHelpAfterError();

program
  .command("start", { isDefault: true })
  .description("run the edge")
  .option("-c, --config <file>", "config file", defaultConfigPath())
  .option("-w, --workers <n>", "worker processes, one per core (default: 1; 'auto' is not accepted, give a number)", positiveInt, 1)
  .action(async (o: { config: string; workers: number }) => {
    if (o.workers > 1 && cluster.isPrimary) return startPrimary(o.config, o.workers);
    await startWorker(o.config);
  });

program
  .command("check")
  .description("validate a config file and the device table it names; exit 1 with file:line:column errors")
  .option("-c, --config <file>", "config file", defaultConfigPath())
  .action((o: { config: string }) => {
    const r = loadConfig(o.config);
    if (!r.ok) {
      for (const e of r.errors) console.error(formatConfigError(e));
      process.exitCode = 1;
      return;
    }
    const dt = loadDeviceTable(r.value.policy.deviceTable);
    if (!dt.ok) {
      for (const e of dt.errors) console.error(e);
      process.exitCode = 1;
      return;
    }
    console.log(`${o.config}: ok (sha256 ${r.hash.slice(0, 12)}, ${r.value.targets.length} targets, ${dt.table.classes.length} device classes)`);
  });

program
  .command("explain")
  .description("dry-run a SIP message against the rules: which rule matches, where it would go now, and why")
  .requiredOption("-m, --message <file>", "a file holding one SIP request")
  .option("-s, --source <ip:port>", "where the request comes from", "127.0.0.1:5060")
  .option("-t, --transport <t>", "udp | tcp | tls | ws | wss", "udp")
  .option("-r, --rules <dir>", "directory with rules.yaml (default: the shipped proxy-rules/)")
  .option("-c, --config <file>", "edge config naming the targets (default: <rules dir>/edge.yaml, else the shipped one)")
  .action((o: { message: string; source: string; transport: string; rules?: string; config?: string }) => {
    const cfgPath = o.config ?? defaultConfigPath();
    const cfg = loadConfig(cfgPath);
    const table = cfg.ok ? loadDeviceTable(cfg.value.policy.deviceTable) : undefined;
    const r = dryRun({
      messageFile: o.message,
      source: o.source,
      transport: o.transport,
      rulesDir: o.rules,
      edgeConfig: o.config,
      deviceTable: table?.ok === true ? table.table : undefined,
    });
    if (!r.ok) {
      for (const m of r.messages) console.error(m);
      process.exitCode = 1;
      return;
    }
    console.log(r.text);
  });

/**
 * The primary of a multi-worker edge: forks the workers, lets the first one
 * probe and relays its results to the others, restarts a worker that dies,
 * and on SIGHUP reloads the workers one by one (DESIGN.md §2.9).
 */
function startPrimary(configPath: string, n: number): void {
  const r = loadConfig(configPath);
  if (!r.ok) {
    for (const e of r.errors) console.error(formatConfigError(e));
    process.exit(1);
  }
  const log = createLogger(r.value.log.level).child({ role: "primary" });
  let prober: number | undefined;
  let stopping = false;
  const fork = (): void => {
    const w = cluster.fork({ SIP_EDGE_PROBE: prober === undefined ? "active" : "follower" });
    if (prober === undefined) prober = w.id;
    w.on("message", (msg: WorkerMessage) => {
      if (msg.kind !== "probe-result") return;
      for (const other of Object.values(cluster.workers ?? {})) if (other !== undefined && other.id !== w.id) other.send(msg);
    });
  };
  for (let i = 0; i < n; i++) fork();
  cluster.on("exit", (w, code, signal) => {
    if (stopping) return;
    log.error({ worker: w.id, code, signal }, "worker exited; starting another");
    if (w.id === prober) prober = undefined;
    fork();
  });
  const stop = (): void => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("SIGHUP", () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.send({ kind: "reload" } satisfies WorkerMessage);
  });
  log.info({ workers: n, cores: availableParallelism() }, "edge primary started");
}

async function startWorker(configPath: string): Promise<void> {
  const mode = process.env.SIP_EDGE_PROBE === "follower" ? "follower" : "active";
  let running: Running;
  try {
    running = await run(configPath, {
      probe: {
        mode,
        ...(cluster.isWorker && mode === "active" ? { onResult: (target: string, result: ProbeReport) => process.send?.({ kind: "probe-result", target, result } satisfies WorkerMessage) } : {}),
      },
    });
  } catch (e) {
    if (e instanceof ConfigRefused) {
      for (const line of e.errors) console.error(line);
    } else {
      console.error(e instanceof Error ? e.message : String(e));
    }
    process.exit(1);
  }
  if (cluster.isWorker) {
    process.on("message", (msg: WorkerMessage) => {
      if (msg.kind === "probe-result") running.edge.applyProbeResult(msg.target, msg.result);
      else if (msg.kind === "reload") running.reload();
    });
  }
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await running.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  process.on("SIGHUP", () => running.reload());
}

await program.parseAsync(process.argv);
