/**
 * sip-edge and Kamailio side by side under the same SIPp load (a benchmark,
 * not a test).
 *
 *   npm run build && node dist/perf/side-by-side.js [--rates 500,1000,2000,4000]
 *     [--registers 2000,5000,10000] [--repeats 3] [--step-seconds 10]
 *     [--transport udp|tcp] [--edge-workers N] [--json FILE] [--trace FILE]
 *
 * Both proxies run at once in front of the same two SIPp PBXs (Kamailio with
 * perf/kamailio/kamailio.cfg, one worker per transport; sip-edge from dist/,
 * with the config and assumptions described in perf/load.ts). Each step of the
 * ladder is run through one proxy and then the other, the order swapped on
 * every repeat, so machine noise hits both alike; after all repeats it prints
 * the median of each figure per proxy and step, and the ratios
 * sip-edge / Kamailio of CPU per call and per REGISTER (below 1: the edge
 * spends less), and of the same CPU without its kernel part ("user": the
 * proxies' own code; the kernel part, system calls and the loopback
 * delivery of what each sends, is paid for the same datagrams by both).
 * Every process it starts is stopped by PID; a watchdog ends the run if a
 * step hangs. --trace FILE writes the per-second trace of
 * perf/load.ts (perf/lib/trace.ts) for both proxies, the PBXs and each
 * step's phone; the edge's drop and shed counts are printed at the end.
 */
import { writeFileSync } from "node:fs";
import { Command, Option } from "commander";
import type { SippTransport } from "../test/helpers/sipp.js";
import { startProxy } from "./lib/proxies.js";
import type { ProxyKind, ProxyUnderTest } from "./lib/proxies.js";
import { edgeCountersLine, fmt, median, STEP_HEADER, stepRow, streamTable, table } from "./lib/report.js";
import { LoadTrace } from "./lib/trace.js";
import { machineInfo, startRun } from "./lib/run.js";
import { positiveInt, rates } from "./lib/args.js";
import { runStep, stepTimeoutS, warmUp } from "./lib/steps.js";
import type { StepKind, StepResult } from "./lib/steps.js";

interface Options {
  rates: number[];
  registers: number[];
  repeats: number;
  stepSeconds: number;
  transport: SippTransport;
  edgeWorkers?: number;
  json?: string;
  trace?: string;
}

const PROXIES: readonly ProxyKind[] = ["edge", "kamailio"];

interface Step {
  kind: StepKind;
  rate: number;
}

function medianOf(rs: readonly StepResult[], pick: (r: StepResult) => number | undefined): number | undefined {
  return median(rs.map(pick).filter((v): v is number => v !== undefined));
}

function summarize(results: readonly StepResult[], ladder: readonly Step[]): string {
  const rows: string[][] = [];
  const ratios: string[][] = [];
  for (const s of ladder) {
    const per = new Map<ProxyKind, StepResult[]>();
    for (const p of PROXIES) per.set(p, results.filter((r) => r.proxy === p && r.kind === s.kind && r.targetRate === s.rate));
    for (const p of PROXIES) {
      const rs = per.get(p) ?? [];
      rows.push([
        p,
        s.kind === "call" ? "calls" : "REGISTER",
        String(s.rate),
        fmt(medianOf(rs, (r) => r.achievedRate)),
        String(rs.reduce((n, r) => n + r.failed, 0)),
        fmt(medianOf(rs, (r) => r.cpuUsPerOp), 1),
        fmt(medianOf(rs, (r) => r.kernelUsPerOp), 1),
        fmt(medianOf(rs, (r) => r.cpuCores), 2),
        fmt(medianOf(rs, (r) => r.pssMiB), 1),
        fmt(medianOf(rs, (r) => r.p50Ms)),
        fmt(medianOf(rs, (r) => r.p99Ms)),
      ]);
    }
    const edge = medianOf(per.get("edge") ?? [], (r) => r.cpuUsPerOp);
    const kam = medianOf(per.get("kamailio") ?? [], (r) => r.cpuUsPerOp);
    // The proxies' own code: CPU outside the kernel, whose share (the same
    // datagrams' system calls and loopback delivery) is a floor for both.
    const user = (p: ProxyKind): number | undefined => medianOf(per.get(p) ?? [], (r) => (r.cpuUsPerOp === undefined || r.kernelUsPerOp === undefined ? undefined : r.cpuUsPerOp - r.kernelUsPerOp));
    const edgeUser = user("edge");
    const kamUser = user("kamailio");
    const edgeRate = medianOf(per.get("edge") ?? [], (r) => r.achievedRate);
    const kamRate = medianOf(per.get("kamailio") ?? [], (r) => r.achievedRate);
    const failed = (p: ProxyKind): number => (per.get(p) ?? []).reduce((n, r) => n + r.failed, 0);
    ratios.push([
      s.kind === "call" ? "calls" : "REGISTER",
      String(s.rate),
      `${failed("edge")} / ${failed("kamailio")}`,
      fmt(edge, 1),
      fmt(kam, 1),
      edge === undefined || kam === undefined || kam === 0 ? "-" : (edge / kam).toFixed(2),
      `${fmt(edgeUser, 1)} / ${fmt(kamUser, 1)}`,
      edgeUser === undefined || kamUser === undefined || kamUser <= 0 ? "-" : (edgeUser / kamUser).toFixed(2),
      edgeRate === undefined || kamRate === undefined || kamRate === 0 ? "-" : (edgeRate / kamRate).toFixed(2),
    ]);
  }
  return [
    "## Medians",
    "",
    table(["proxy", "load", "target/s", "achieved/s", "failed (all runs)", "proxy CPU µs/op", "of it kernel", "proxy cores", "PSS MiB", "p50 ms", "p99 ms"], rows),
    "",
    "## sip-edge / Kamailio",
    "",
    // A step with failures measured an overload, not the cost of the work: its
    // ratio is shown but does not compare like with like.
    table(["load", "target/s", "failed edge / Kamailio", "edge CPU µs/op", "Kamailio CPU µs/op", "CPU ratio edge/Kamailio", "user µs/op edge / Kamailio", "user ratio", "achieved-rate ratio"], ratios),
  ].join("\n");
}

async function main(): Promise<void> {
  const o = new Command()
    .name("side-by-side")
    .description("the same SIPp ladder through sip-edge and Kamailio, alternating; see the header of perf/side-by-side.ts")
    .option("--rates <list>", "call rates (calls/s), comma separated", rates, [500, 1000, 2000, 4000])
    .option("--registers <list>", "REGISTER rates (/s), comma separated", rates, [2000, 5000, 10000])
    .option("--repeats <n>", "runs of the whole ladder per proxy; the median is reported", positiveInt, 3)
    .option("--step-seconds <n>", "length of each step at its target rate", positiveInt, 10)
    .addOption(new Option("--transport <t>", "phone transport").choices(["udp", "tcp"]).default("udp"))
    .option("--edge-workers <n>", "sip-edge --workers", positiveInt)
    .option("--json <file>", "also write every step's result as JSON")
    .option("--trace <file>", "write a per-second trace of CPU and UDP drops per process (perf/lib/trace.ts)")
    .parse()
    .opts<Options>();

  const ladder: Step[] = [...o.rates.map((rate) => ({ kind: "call" as const, rate })), ...o.registers.map((rate) => ({ kind: "register" as const, rate }))];
  const steps = ladder.length * o.repeats * PROXIES.length;
  const boundS = 180 + (steps + 40) * stepTimeoutS(o.stepSeconds);
  const run = await startRun(boundS);
  const results: StepResult[] = [];
  const proxies = new Map<ProxyKind, ProxyUnderTest>();
  const trace = o.trace === undefined ? undefined : new LoadTrace(o.trace);
  try {
    for (const kind of PROXIES) proxies.set(kind, await startProxy(kind, run.pbxs, run.workDir, o.edgeWorkers === undefined ? {} : { workers: o.edgeWorkers }));
    const settlePids = [...run.pbxPids, ...[...proxies.values()].flatMap((p) => (p.child === undefined ? [] : [p.child.pid]))];
    trace?.watchRun(run, proxies.values());
    const base = { transport: o.transport, workDir: run.workDir, started: run.started, settlePids, ...(trace === undefined ? {} : { trace }) };
    for (const p of proxies.values()) await warmUp(p, base);
    console.log(`# SIPp side by side: sip-edge and Kamailio, ${o.transport}, ${o.stepSeconds} s steps, ${o.repeats} repeats\n# ${machineInfo()}\n`);
    const out = streamTable(["run", ...STEP_HEADER]);
    console.log(out.head);
    for (let rep = 0; rep < o.repeats; rep++) {
      for (const s of ladder) {
        const order = rep % 2 === 0 ? PROXIES : [...PROXIES].reverse();
        for (const kind of order) {
          const proxy = proxies.get(kind);
          if (proxy === undefined) continue;
          const r = await runStep(proxy, { ...base, kind: s.kind, rate: s.rate, stepSeconds: o.stepSeconds });
          results.push(r);
          console.log(out.row([String(rep + 1), ...stepRow(r)]));
        }
      }
    }
  } finally {
    trace?.close();
    for (const p of proxies.values()) await p.stop();
    await run.finish();
  }
  console.log("\n" + summarize(results, ladder));
  const edgeOutput = proxies.get("edge")?.child?.output;
  const counts = edgeOutput === undefined ? undefined : edgeCountersLine(edgeOutput);
  if (counts !== undefined) console.log(`\n${counts}`);
  if (o.json !== undefined) writeFileSync(o.json, JSON.stringify({ machine: machineInfo(), date: new Date().toISOString(), options: o, results }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
