/**
 * SIPp load ladder through one proxy (a benchmark, not a test).
 *
 *   npm run build && node dist/perf/load.js [--proxy edge|kamailio|none]
 *     [--rates 500,1000,2000,4000] [--registers 2000,5000,10000]
 *     [--step-seconds 10] [--transport udp|tcp] [--edge-workers N] [--json FILE]
 *     [--edge-cpu-prof DIR] [--edge-rules N] [--edge-overload on|off] [--edge-shed-at MS]
 *     [--edge-udp-io auto|native|dgram] [--edge-soft-state-max N] [--trace FILE]
 *     [--hog-seconds N [--hog-at S]]
 *
 * Starts two SIPp PBXs (test/sipp/pbx.xml: Main and Standby), the proxy under
 * test, then SIPp phones at each rate of the ladder (test/sipp/phone-call.xml,
 * then phone-register.xml), rate × step-seconds calls per step, loopback only.
 * Per step it prints the achieved rate, failed calls, the proxy's CPU µs per
 * call or REGISTER (utime+stime of its whole process tree from /proc, and
 * the stime part of it apart: "of it kernel"), its
 * memory (largest PSS sum sampled, and peak RSS), and SIPp's response time
 * p50/p99. Every process it starts is stopped by PID; a watchdog ends the
 * run if a step hangs.
 *
 * --edge-cpu-prof DIR runs the edge under `node --cpu-prof`; its profile
 * (warm-up and every step) lands in DIR when the run stops it.
 *
 * --edge-overload off runs the edge without overload control (no 503
 * shedding, no deferred timeouts; src/edge/overload.ts), to compare what
 * happens past its ceiling. After the run the script prints how often the
 * edge started shedding (its warn log lines).
 *
 * --trace FILE writes one JSON line per second (perf/lib/trace.ts): the CPU
 * of the proxy, each PBX and the step's phone, and the datagrams the kernel
 * dropped on each of their UDP sockets, to find where a failing step loses
 * its messages.
 *
 * --hog-seconds N runs a busy loop (one process, one core) for N seconds
 * beside every measured step, starting --hog-at S (default 5) seconds into
 * it: the CPU a noisy neighbour or the hypervisor takes, on demand, to see
 * whether the proxy recovers once it ends.
 *
 * --proxy none sends the phones straight to the Main PBX: the baseline of
 * what SIPp and the machine do without a proxy.
 *
 * Assumption for --proxy edge: `dist/src/cli.js start --config FILE [--workers N]`
 * runs sip-edge with the YAML config of proxy-rules/edge.yaml's shape; this
 * script writes one (perf/lib/proxies.ts edgeConfigYaml: log level warn, UDP
 * and TCP listeners on 127.0.0.1 at a free port, targets main and standby at
 * the SIPp PBX ports, an inline flow-token key, admin on an ephemeral
 * loopback port, 2 s probe interval) and waits until both listeners are bound.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { Command, Option } from "commander";
import { startProxy } from "./lib/proxies.js";
import type { ProxyKind, ProxyUnderTest } from "./lib/proxies.js";
import { STEP_HEADER, edgeCountersLine, stepRow, streamTable } from "./lib/report.js";
import { machineInfo, startRun } from "./lib/run.js";
import { positiveInt, rates } from "./lib/args.js";
import { rulesFileText } from "./lib/rules-text.js";
import { LoadTrace } from "./lib/trace.js";
import { runStep, stepTimeoutS, warmUp } from "./lib/steps.js";
import type { StepResult } from "./lib/steps.js";
import type { SippTransport } from "../test/helpers/sipp.js";

interface Options {
  proxy: ProxyKind;
  rates: number[];
  registers: number[];
  stepSeconds: number;
  transport: SippTransport;
  edgeWorkers?: number;
  edgeCpuProf?: string;
  edgeRules?: number;
  edgeOverload: "on" | "off";
  edgeShedAt?: number;
  edgeUdpIo?: "auto" | "native" | "dgram";
  edgeSoftStateMax?: number;
  json?: string;
  trace?: string;
  hogSeconds?: number;
  hogAt: number;
}

async function main(): Promise<void> {
  const o = new Command()
    .name("load")
    .description("SIPp load ladder through one proxy; see the header of perf/load.ts")
    .addOption(new Option("--proxy <kind>", "proxy under test").choices(["edge", "kamailio", "none"]).default("edge"))
    .option("--rates <list>", "call rates (calls/s), comma separated", rates, [500, 1000, 2000, 4000])
    .option("--registers <list>", "REGISTER rates (/s), comma separated", rates, [2000, 5000, 10000])
    .option("--step-seconds <n>", "length of each step at its target rate", positiveInt, 10)
    .addOption(new Option("--transport <t>", "phone transport").choices(["udp", "tcp"]).default("udp"))
    .option("--edge-workers <n>", "sip-edge --workers", positiveInt)
    .option("--edge-cpu-prof <dir>", "run the edge under node --cpu-prof, profiles written to this directory")
    .option("--edge-rules <n>", "route through the rules engine: n mixed rules, every call tried against all of them (perf/lib/rules-text.ts)", positiveInt)
    .addOption(new Option("--edge-overload <on|off>", "overload control of the edge (src/edge/overload.ts)").choices(["on", "off"]).default("on"))
    .option("--edge-shed-at <ms>", "with overload on: overload.shedAtMs of the edge", positiveInt)
    .option("--edge-soft-state-max <n>", "softState.maxEntries of the edge", positiveInt)
    .addOption(new Option("--edge-udp-io <io>", "udp.io of the edge (src/transport/udp.ts)").choices(["auto", "native", "dgram"]))
    .option("--json <file>", "also write the results as JSON")
    .option("--hog-seconds <n>", "a busy loop of this many seconds beside every measured step", positiveInt)
    .option("--hog-at <s>", "seconds into the step the busy loop starts", positiveInt, 5)
    .option("--trace <file>", "write a per-second trace of CPU and UDP drops per process (perf/lib/trace.ts)")
    .parse()
    .opts<Options>();

  const steps = o.rates.length + o.registers.length;
  const boundS = 120 + (steps + 20) * stepTimeoutS(o.stepSeconds);
  const run = await startRun(boundS);
  const results: StepResult[] = [];
  let proxy: ProxyUnderTest | undefined;
  const trace = o.trace === undefined ? undefined : new LoadTrace(o.trace);
  try {
    proxy = await startProxy(o.proxy, run.pbxs, run.workDir, {
      ...(o.edgeWorkers === undefined ? {} : { workers: o.edgeWorkers }),
      ...(o.edgeCpuProf === undefined ? {} : { cpuProfDir: resolve(o.edgeCpuProf) }),
      ...(o.edgeRules === undefined ? {} : { rulesYaml: rulesFileText(o.edgeRules, "mixed") }),
      overload: o.edgeOverload,
      ...(o.edgeShedAt === undefined ? {} : { shedAtMs: o.edgeShedAt }),
      ...(o.edgeUdpIo === undefined ? {} : { udpIo: o.edgeUdpIo }),
      ...(o.edgeSoftStateMax === undefined ? {} : { softStateMax: o.edgeSoftStateMax }),
    });
    const settlePids = [...run.pbxPids, ...(proxy.child === undefined ? [] : [proxy.child.pid])];
    trace?.watchRun(run, [proxy]);
    const base = { transport: o.transport, workDir: run.workDir, started: run.started, settlePids, ...(trace === undefined ? {} : { trace }) };
    await warmUp(proxy, base);
    const hogText = o.hogSeconds === undefined ? "" : `, a ${o.hogSeconds} s busy loop ${o.hogAt} s into each step`;
    console.log(`# SIPp load: proxy ${o.proxy}, ${o.transport}, ${o.stepSeconds} s steps${hogText}\n# ${machineInfo()}\n`);
    const out = streamTable(STEP_HEADER);
    console.log(out.head);
    const ladder = [...o.rates.map((rate) => ({ kind: "call" as const, rate })), ...o.registers.map((rate) => ({ kind: "register" as const, rate }))];
    for (const s of ladder) {
      const hog = o.hogSeconds === undefined ? {} : { hog: { seconds: o.hogSeconds, atS: o.hogAt } };
      const r = await runStep(proxy, { ...base, kind: s.kind, rate: s.rate, stepSeconds: o.stepSeconds, ...hog });
      results.push(r);
      console.log(out.row(stepRow(r)));
    }
  } finally {
    trace?.close();
    await proxy?.stop();
    await run.finish();
  }
  if (proxy?.child !== undefined) {
    // Each start and end of shedding, as the edge logged it (wait, loop utilization, share).
    const lines = proxy.child.output.split("\n").filter((l) => l.includes('"module":"overload"'));
    const episodes = lines.filter((l) => l.includes('"msg":"overload: ')).length;
    console.log(`\n# edge overload control ${o.edgeOverload}: started shedding ${episodes} time(s) (warn log lines)`);
    for (const l of lines.slice(0, 40)) {
      try {
        const j = JSON.parse(l) as { time?: number; shedding?: boolean; queueDelayMs?: number; busy?: number };
        console.log(`#   ${new Date(j.time ?? 0).toISOString().slice(11, 23)} ${j.shedding === true ? "start" : "end  "} wait ${Math.round(j.queueDelayMs ?? 0)} ms, loop busy ${(j.busy ?? 0).toFixed(2)}`);
      } catch {
        // Not a JSON line (a stray write to stdout): ignore it.
      }
    }
  }
  if (proxy?.child !== undefined) {
    const counts = edgeCountersLine(proxy.child.output);
    if (counts !== undefined) console.log(counts);
  }
  if (o.json !== undefined) writeFileSync(o.json, JSON.stringify({ machine: machineInfo(), date: new Date().toISOString(), options: o, results }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
