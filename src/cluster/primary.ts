/**
 * The primary of a multi-worker edge (DESIGN.md §2.9): `node:cluster`
 * wiring and signals around the Supervisor. It serves no SIP itself; the
 * workers share the TCP listeners through it, and the UDP ones too unless
 * they use the native socket, where each worker binds its own on the port
 * (SO_REUSEPORT, src/transport/udp.ts).
 */
import cluster, { type Worker } from "node:cluster";
import { createSocket } from "node:dgram";
import { availableParallelism } from "node:os";
import { formatConfigError, loadConfig, obtainFlowKey, reloadConfig, type EdgeConfig } from "../config/index.js";
import { loadDeviceTable } from "../main.js";
import { nativeUdp } from "../transport/native-udp.js";
import { systemClock } from "../util/clock.js";
import { createLogger, type Logger } from "../util/logger.js";
import { WORKERS_ENV, type ToWorker } from "./messages.js";
import { ProbeLog } from "./probe-log.js";
import { Supervisor, type WorkerPort } from "./supervisor.js";

export interface PrimaryOptions {
  configPath: string;
  workers: number;
  /** How long a replaced worker keeps serving in a rolling restart. */
  drainSeconds: number;
  /** How the worker count was chosen, for the start log line. */
  why: string;
  /** What is known to go wrong with several workers and this config (src/cluster/worker-count.ts). */
  warnings: readonly string[];
}

/** A replacement that is not listening after this long is given up on. */
const START_TIMEOUT_MS = 30_000;
/** Grace after a stop or the end of a drain before a worker is killed. */
const KILL_AFTER_MS = 10_000;

/** Validates everything a worker would refuse, so a bad config fails once here instead of N times in a respawn loop. */
function loadOrExit(configPath: string): EdgeConfig {
  const r = loadConfig(configPath);
  if (!r.ok) {
    for (const e of r.errors) console.error(formatConfigError(e));
    process.exit(1);
  }
  const dt = loadDeviceTable(r.value.policy.deviceTable);
  if (!dt.ok) {
    for (const e of dt.errors) console.error(e);
    process.exit(1);
  }
  try {
    // Created here, before any worker exists: N workers starting at once
    // would otherwise each race to create the key file.
    obtainFlowKey(r.value);
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  }
  return r.value;
}

/**
 * With the native socket each worker joins an SO_REUSEPORT group on the
 * UDP port, which would also let it join a group another edge (a second
 * start by mistake) already holds and split the traffic with it silently.
 * A plain bind first, closed again at once, fails instead while anyone
 * holds the port, as a one-process edge's bind does.
 */
async function udpPortsFree(config: EdgeConfig): Promise<string | undefined> {
  if (config.udp.io === "dgram" || nativeUdp().binding === undefined) return undefined;
  for (const l of config.listen) {
    if (l.transport !== "udp" || l.port === 0) continue;
    const s = createSocket(l.address.includes(":") ? "udp6" : "udp4");
    const err = await new Promise<Error | undefined>((resolve) => {
      s.once("error", resolve);
      s.bind({ address: l.address, port: l.port, exclusive: true }, () => resolve(undefined));
    });
    s.close();
    if (err !== undefined) return `udp listener ${l.address}:${l.port}: ${err.message}`;
  }
  return undefined;
}

function portOf(w: Worker, log: Logger): WorkerPort {
  return {
    id: w.id,
    send(m: ToWorker) {
      // With a callback a send on a closed channel reports here instead of
      // emitting 'error' on the worker, which would take the primary down.
      if (!w.isConnected()) return;
      w.send(m, undefined, (err: Error | null) => {
        if (err !== null) log.debug({ worker: w.id, err: err.message }, "message to worker not delivered");
      });
    },
    kill(signal) {
      w.process.kill(signal);
    },
  };
}

export function startPrimary(o: PrimaryOptions): void {
  let config = loadOrExit(o.configPath);
  const log = createLogger(config.log.level).child({ role: "primary" });
  const sup = new Supervisor({
    workers: o.workers,
    clock: systemClock,
    logger: log,
    probeLog: new ProbeLog(config.health.downAfter + config.health.upAfter),
    drainMs: o.drainSeconds * 1000,
    startTimeoutMs: START_TIMEOUT_MS,
    killAfterMs: KILL_AFTER_MS,
    fork: () => {
      // The workers' UDP sockets form one SO_REUSEPORT group of this size (src/transport/udp.ts).
      const w = cluster.fork({ [WORKERS_ENV]: String(o.workers) });
      w.on("message", (m: unknown) => sup.message(w.id, m));
      w.on("error", (err: Error) => log.warn({ worker: w.id, err: err.message }, "worker channel error"));
      return portOf(w, log);
    },
    onDone: (code) => {
      log.info({ code }, "edge primary stopped");
      process.exit(code);
    },
  });
  cluster.on("exit", (w, code, signal) => sup.exited(w.id, code, signal));
  process.on("SIGTERM", () => sup.stop());
  process.on("SIGINT", () => sup.stop());
  process.on("SIGUSR2", () => sup.rollingRestart());
  process.on("SIGHUP", () => {
    // Checked here first: a refused file changes nothing anywhere, and a
    // change to a restart-only section restarts the workers one by one
    // instead of being logged as "needs a restart" N times.
    const nr = reloadConfig(o.configPath, config);
    if (!nr.ok) {
      for (const e of nr.errors) log.error({ file: e.file, line: e.line, column: e.column, field: e.field }, `config refused: ${formatConfigError(e)}`);
      return;
    }
    if (nr.restartRequired.length > 0) {
      log.info({ sections: nr.restartRequired }, "restart-only settings changed: rolling restart");
      if (sup.rollingRestart()) config = nr.value;
      return;
    }
    config = nr.value;
    sup.reload();
  });
  log.info({ workers: o.workers, why: o.why, cores: availableParallelism(), drainSeconds: o.drainSeconds }, "edge primary started");
  for (const w of o.warnings) log.warn(`with ${o.workers} workers: ${w}`);
  void udpPortsFree(config).then((problem) => {
    if (problem === undefined) return sup.start();
    log.error(problem);
    console.error(problem);
    process.exit(1);
  });
}
