/**
 * Two builds of sip-edge side by side under the same SIPp load: the CPU per
 * call and per REGISTER of a hot-path change, before and after (a
 * benchmark, not a test).
 *
 *   git worktree add /tmp/edge-before <commit> && (cd /tmp/edge-before && npm ci && npm run build)
 *   (both checkouts need the native socket built, or neither: it refuses one of each)
 *   npm run build && node dist/perf/edge-ab.js --before /tmp/edge-before [--rates 2000]
 *     [--registers 5000] [--repeats 5] [--step-seconds 10]
 *     [--before-node-args '--max-semi-space-size=2'] [--after-node-args ...]
 *
 * With `--before .` and node args on one side it compares one build under
 * two V8 settings.
 *
 * Both edges run at once in front of the same two SIPp PBXs, as
 * perf/side-by-side.ts runs sip-edge and Kamailio: each step goes through
 * one build and then the other, the order swapped on every repeat, after
 * the proxies and PBXs have gone quiet, so a busy machine hits both alike.
 * It prints every step and then the medians and the ratio after/before.
 * The "before" checkout must have dist/src/cli.js built. Loopback only;
 * every process is stopped by PID; a watchdog bounds the run.
 */
import { Command } from "commander";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { repoRoot } from "./lib/paths.js";
import { startEdge } from "./lib/proxies.js";
import type { ProxyUnderTest } from "./lib/proxies.js";
import { fmt, median, STEP_HEADER, stepRow, streamTable, table } from "./lib/report.js";
import { machineInfo, startRun } from "./lib/run.js";
import { positiveInt, rates, words } from "./lib/args.js";
import { runStep, stepTimeoutS, warmUp } from "./lib/steps.js";
import type { StepKind, StepResult } from "./lib/steps.js";

interface Options {
  before: string;
  rates: number[];
  registers: number[];
  repeats: number;
  stepSeconds: number;
  beforeNodeArgs: string[];
  afterNodeArgs: string[];
}

type Build = "before" | "after";

const BUILDS: readonly Build[] = ["before", "after"];

async function main(): Promise<void> {
  const o = new Command()
    .name("edge-ab")
    .description("two sip-edge builds under the same SIPp ladder, alternating; see the header of perf/edge-ab.ts")
    .requiredOption("--before <dir>", "checkout of the build to compare against (with dist/ built)")
    .option("--rates <list>", "call rates (calls/s), comma separated", rates, [2000])
    .option("--registers <list>", "REGISTER rates (/s), comma separated", rates, [5000])
    .option("--repeats <n>", "runs of the ladder per build; the median is reported", positiveInt, 5)
    .option("--step-seconds <n>", "length of each step at its target rate", positiveInt, 10)
    .option("--before-node-args <args>", "options for node running the before build, space separated (V8 flags)", words, [])
    .option("--after-node-args <args>", "options for node running the after build, space separated", words, [])
    .parse()
    .opts<Options>();

  // Without its native socket an edge runs on Node's dgram (udp.io auto),
  // at about twice the CPU per message: that, not the change, would be measured.
  const withNative = (root: string) => existsSync(join(root, "native", "build", "sip_udp.node"));
  if (withNative(resolve(o.before)) !== withNative(repoRoot())) {
    throw new Error(`only one of the two checkouts has native/build/sip_udp.node: run \`node scripts/build-native.mjs\` in ${withNative(resolve(o.before)) ? "this one" : o.before}`);
  }
  const ladder: { kind: StepKind; rate: number }[] = [...o.rates.map((rate) => ({ kind: "call" as const, rate })), ...o.registers.map((rate) => ({ kind: "register" as const, rate }))];
  const boundS = 180 + (ladder.length * o.repeats * 2 + 40) * stepTimeoutS(o.stepSeconds);
  const run = await startRun(boundS);
  const results: { build: Build; r: StepResult }[] = [];
  const edges = new Map<Build, ProxyUnderTest>();
  try {
    edges.set("before", await startEdge(run.pbxs, run.workDir, { root: resolve(o.before), nodeArgs: o.beforeNodeArgs }));
    edges.set("after", await startEdge(run.pbxs, run.workDir, { nodeArgs: o.afterNodeArgs }));
    const settlePids = [...run.pbxPids, ...[...edges.values()].flatMap((p) => (p.child === undefined ? [] : [p.child.pid]))];
    const base = { transport: "udp" as const, workDir: run.workDir, started: run.started, settlePids };
    for (const e of edges.values()) await warmUp(e, base);
    const flags = (a: string[]) => (a.length === 0 ? "" : ` node ${a.join(" ")}`);
    console.log(`# SIPp A/B: sip-edge before (${o.before}${flags(o.beforeNodeArgs)}) and after (this checkout${flags(o.afterNodeArgs)}), ${o.stepSeconds} s steps, ${o.repeats} repeats\n# ${machineInfo()}\n`);
    const out = streamTable(["run", "build", ...STEP_HEADER]);
    console.log(out.head);
    for (let rep = 0; rep < o.repeats; rep++) {
      for (const s of ladder) {
        for (const build of rep % 2 === 0 ? BUILDS : [...BUILDS].reverse()) {
          const r = await runStep(edges.get(build)!, { ...base, kind: s.kind, rate: s.rate, stepSeconds: o.stepSeconds });
          results.push({ build, r });
          console.log(out.row([String(rep + 1), build, ...stepRow(r)]));
        }
      }
    }
  } finally {
    for (const e of edges.values()) await e.stop();
    await run.finish();
  }
  const rows: string[][] = [];
  for (const s of ladder) {
    const per = (b: Build) => results.filter((x) => x.build === b && x.r.kind === s.kind && x.r.targetRate === s.rate).map((x) => x.r);
    const cpu = (b: Build) => median(per(b).map((r) => r.cpuUsPerOp).filter((v): v is number => v !== undefined));
    const failed = (b: Build) => per(b).reduce((n, r) => n + r.failed, 0);
    const before = cpu("before");
    const after = cpu("after");
    rows.push([
      s.kind === "call" ? "calls" : "REGISTER",
      String(s.rate),
      `${failed("before")} / ${failed("after")}`,
      fmt(before, 1),
      fmt(after, 1),
      before === undefined || after === undefined ? "-" : (after / before).toFixed(2),
      per("before").map((r) => fmt(r.cpuUsPerOp, 0)).join(", "),
      per("after").map((r) => fmt(r.cpuUsPerOp, 0)).join(", "),
    ]);
  }
  console.log("\n" + table(["load", "target/s", "failed before / after", "before CPU µs/op", "after CPU µs/op", "after/before", "before, each run", "after, each run"], rows));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
