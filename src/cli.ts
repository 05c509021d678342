#!/usr/bin/env node
/**
 * The sip-edge command line: start, check, explain.
 */
import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import { Command, InvalidArgumentError } from "commander";
import { startPrimary } from "./cluster/primary.js";
import { startSingle } from "./cluster/single.js";
import { startWorker } from "./cluster/worker.js";
import { DEFAULT_WORKERS, workerCount, type WorkersOption } from "./cluster/worker-count.js";
import { defaultConfigPath, formatConfigError, loadConfig } from "./config/index.js";
import { loadDeviceTable } from "./main.js";
import { dryRun } from "./rules/dry-run.js";
import { tuneHeap } from "./util/heap.js";

// Before anything allocates much (src/util/heap.ts says why).
tuneHeap();

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number of at least 1");
  return n;
}

function workersOption(v: string): WorkersOption {
  return v === "auto" ? "auto" : positiveInt(v);
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("expected a number of seconds, 0 or more");
  return n;
}

const program = new Command()
  .name("sip-edge")
  .description("SIP edge proxy and load balancer in front of a Main and a Standby PBX")
  .showHelpAfterError();

program
  .command("start", { isDefault: true })
  .description("run the edge")
  .option("-c, --config <file>", "config file", defaultConfigPath())
  .option(
    "-w, --workers <n|auto>",
    "worker processes sharing the listeners (auto, the default: one per core); 1 runs the edge in this process, with no primary; see the README for what more than one costs",
    workersOption,
    DEFAULT_WORKERS,
  )
  .option("--drain <seconds>", "rolling restart (SIGUSR2): how long a replaced worker keeps serving before it exits", seconds, 32)
  .action(async (o: { config: string; workers: WorkersOption; drain: number }) => {
    // A cluster worker runs this same command line; it is told what to do by the primary.
    if (cluster.isWorker) return startWorker(o.config);
    const cfg = loadConfig(o.config);
    // An invalid config is reported by the single-process start below, as before.
    const n = cfg.ok
      ? workerCount(o.workers, availableParallelism(), { listenerTransports: cfg.value.listen.map((l) => l.transport), targets: cfg.value.targets.length })
      : { workers: 1, why: "config refused", warnings: [] };
    if (n.workers > 1) return startPrimary({ configPath: o.config, workers: n.workers, drainSeconds: o.drain, why: n.why, warnings: n.warnings });
    await startSingle(o.config);
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

await program.parseAsync(process.argv);
