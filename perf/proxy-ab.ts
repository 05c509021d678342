/**
 * Two builds' proxy core compared in one process, turn about: the
 * in-process benchmark of perf/proxy-bench.ts (same messages, same stub
 * transport), loaded once from this checkout and once from another built
 * checkout, and run in short alternating turns. Each turn's CPU time is
 * charged to the build that ran it, so a drift of the machine's speed
 * (tens of percent within minutes on a shared VM, perf/RESULTS.md) hits
 * both builds alike instead of whichever happened to run in the slow
 * minute. Prints per build the median µs per call and per registration,
 * the ratio of the medians, and the median of the ratios of turns run
 * side by side (the steadier of the two).
 *
 *   node dist/perf/proxy-ab.js --before /tmp/ab-before [--turns 40] [--turn-ms 250]
 *
 * The other checkout must be built (`npm run build`) and have a
 * perf/proxy-bench.ts that exports oneCall and oneRegistration (copy this
 * one over before building an older commit). ROUTER=policy applies to both.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Command } from "commander";
import { fmt, median } from "./lib/report.js";
import { positiveInt } from "./lib/args.js";

interface Bench {
  oneCall(i: number): void;
  oneRegistration(i: number): void;
}

const o = new Command()
  .requiredOption("--before <dir>", "the other checkout, built")
  .option("--turns <n>", "turns per build and kind of traffic", positiveInt, 40)
  .option("--turn-ms <n>", "length of one turn", positiveInt, 250)
  .parse()
  .opts<{ before: string; turns: number; turnMs: number }>();

const builds: [string, Bench][] = [
  ["before", (await import(pathToFileURL(resolve(o.before, "dist", "perf", "proxy-bench.js")).href)) as Bench],
  ["after", (await import(new URL("./proxy-bench.js", import.meta.url).href)) as Bench],
];

/** Runs `fn` for about `ms` of wall time; returns CPU µs per run. */
function turn(fn: (i: number) => void, start: number, ms: number): { us: number; n: number } {
  const cpu0 = process.cpuUsage();
  const end = performance.now() + ms;
  let n = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 50; k++) fn(start + n + k);
    n += 50;
  }
  const cpu = process.cpuUsage(cpu0);
  return { us: (cpu.user + cpu.system) / n, n };
}

for (const kind of ["call", "registration"] as const) {
  const per = new Map<string, number[]>(builds.map(([name]) => [name, []]));
  const next = new Map<string, number>(builds.map(([name]) => [name, 0]));
  // Warm-up: both builds' code optimized before anything counts.
  for (const [name, b] of builds) next.set(name, turn(kind === "call" ? b.oneCall : b.oneRegistration, 0, 1000).n);
  for (let t = 0; t < o.turns; t++) {
    // Who goes first alternates, so neither always runs after the other's garbage.
    const order = t % 2 === 0 ? builds : [...builds].reverse();
    for (const [name, b] of order) {
      const r = turn(kind === "call" ? b.oneCall : b.oneRegistration, next.get(name)!, o.turnMs);
      next.set(name, next.get(name)! + r.n);
      per.get(name)!.push(r.us);
    }
  }
  // Each turn's ratio to the other build's turn beside it: the two ran
  // within a fraction of a second, on the same machine state.
  const b0 = per.get("before")!;
  const a0 = per.get("after")!;
  const pairRatio = median(a0.map((x, i) => x / b0[i]!));
  const before = median(per.get("before")!);
  const after = median(per.get("after")!);
  const spread = (v: number[]) => {
    const s = [...v].sort((a, b) => a - b);
    return `${fmt(s[Math.floor(s.length / 4)], 2)}-${fmt(s[Math.floor((3 * s.length) / 4)], 2)}`;
  };
  console.log(
    `${kind.padEnd(13)} before ${fmt(before, 2)} µs (IQR ${spread(per.get("before")!)})  after ${fmt(after, 2)} µs (IQR ${spread(per.get("after")!)})  after/before ${before === undefined || after === undefined ? "-" : (after / before).toFixed(3)}, median of turn pairs ${fmt(pairRatio, 3)}`,
  );
}
console.log(`(${o.turns} turns of ${o.turnMs} ms per build and kind, node ${process.version}, ROUTER=${process.env.ROUTER ?? "priority"})`);
