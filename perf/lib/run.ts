/**
 * What both load scripts share: a scratch directory, the two SIPp PBXs
 * (Main and Standby), a watchdog that ends the run whatever happens, and
 * cleanup of every process the run started, by PID, on exit or interrupt.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { findSipp, startSipp } from "../../test/helpers/sipp.js";
import type { SippProcess } from "../../test/helpers/sipp.js";
import { killStartedChildren } from "./child.js";
import type { Pbxs } from "./proxies.js";
import { LOAD_BUFF_SIZE } from "./steps.js";

export interface RunContext {
  workDir: string;
  pbxs: Pbxs;
  /** The PIDs of the two PBX processes. */
  pbxPids: number[];
  /** Every SIPp process of the run (PBXs and phones), stopped by PID at the end. */
  started: SippProcess[];
  finish(): Promise<void>;
}

/**
 * Starts the PBXs and arms the watchdog: after `boundS` seconds the run is
 * ended (processes killed, exit code 2) even if a step hangs.
 */
export async function startRun(boundS: number, keepWorkDir = false): Promise<RunContext> {
  if (findSipp() === undefined) throw new Error("sipp is not installed (Debian package sip-tester)");
  const workDir = mkdtempSync(join(tmpdir(), "sip-edge-load-"));
  const started: SippProcess[] = [];
  const killAll = (): void => {
    for (const p of started) p.kill("SIGKILL");
    killStartedChildren();
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: stopping the processes this run started`);
    killAll();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const watchdog = setTimeout(() => {
    console.error(`watchdog: the run exceeded its bound of ${boundS} s; stopping`);
    killAll();
    process.exit(2);
  }, boundS * 1000);

  const pbxOpts = { scenario: "pbx.xml", transport: "udp" as const, timeoutS: boundS + 60, buffSize: LOAD_BUFF_SIZE, workDir };
  const main = await startSipp(pbxOpts);
  started.push(main);
  const standby = await startSipp(pbxOpts);
  started.push(standby);

  return {
    workDir,
    pbxs: { main: main.port, standby: standby.port },
    pbxPids: [main.pid, standby.pid],
    started,
    async finish() {
      clearTimeout(watchdog);
      for (const p of started) await p.stop(5_000).catch(() => undefined);
      killStartedChildren();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      if (!keepWorkDir) rmSync(workDir, { recursive: true, force: true });
    },
  };
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.split("\n").find((l) => l.trim() !== "")?.trim() ?? "?";
}

/** One paragraph naming the machine and the tools, for RESULTS.md. */
export function machineInfo(): string {
  let os = "";
  try {
    os = /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "";
  } catch {
    os = "";
  }
  const c = cpus();
  return [
    `${c.length} × ${c[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${os} (Linux ${release()})`,
    `Node ${process.version}, ${firstLine("sipp", ["-v"])}, ${firstLine("sh", ["-c", "PATH=$PATH:/usr/sbin kamailio -v"])}`,
  ].join("; ");
}
