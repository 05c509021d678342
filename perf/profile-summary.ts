/**
 * Where the time goes in a V8 CPU profile (`node --cpu-prof`, e.g. from
 * `node dist/perf/load.js --edge-cpu-prof DIR`): self time by function and
 * by category (our modules by directory, Node internals, GC, idle).
 *
 *   node dist/perf/profile-summary.js FILE.cpuprofile [--top 40]
 *
 * It also charges every sample to one phase of the edge's per-message work
 * (parse, rewrite, serialize, routing, soft state, ...): the innermost frame
 * on the sample's stack that starts a phase decides, so a Via parsed while
 * rewriting counts as rewrite and one parsed by parse() as parse.
 *
 * Self time is the time a sample was taken with the function on top of the
 * stack; "(program)" is native code V8 cannot attribute (libuv, syscalls
 * reached without a JS frame), "(garbage collector)" is GC.
 */
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The category a frame's self time is charged to: what a reader of the profile wants to compare. */
export function category(f: CallFrame): string {
  const name = f.functionName;
  const url = f.url;
  if (url === "") {
    if (name === "(idle)" || name === "(program)" || name === "(garbage collector)") return name;
    return `native ${name || "(anonymous)"}`;
  }
  if (url.startsWith("node:")) {
    if (url.includes("dgram")) return "node:dgram";
    if (url.includes("timers")) return "node:timers";
    if (url.includes("crypto")) return "node:crypto";
    if (url.includes("buffer")) return "node:buffer";
    if (url.includes("events")) return "node:events";
    return "node:other";
  }
  const m = /\/(src|perf|node_modules)\/(.*)$/.exec(url);
  if (m === null) return url;
  if (m[1] === "node_modules") return `npm ${m[2]!.split("/")[0]}`;
  return `${m[1]}/${m[2]!.replace(/\.js$/, "")}`;
}

/**
 * Inclusive (total) time per function: its self time plus that of
 * everything it called; a recursive call is counted once, at its outermost frame.
 */
export function inclusive(p: Profile, self: ReadonlyMap<number, number>): Map<string, number> {
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const out = new Map<string, number>();
  const root = p.nodes[0];
  if (root === undefined) return out;
  const keyOf = (n: ProfileNode): string => `${n.callFrame.functionName || "(anonymous)"}  ${category(n.callFrame)}:${n.callFrame.lineNumber + 1}`;
  const onStack = new Map<string, number>();
  const walk = (n: ProfileNode): number => {
    const key = keyOf(n);
    onStack.set(key, (onStack.get(key) ?? 0) + 1);
    let t = self.get(n.id) ?? 0;
    for (const c of n.children ?? []) t += walk(byId.get(c)!);
    const depth = onStack.get(key)! - 1;
    onStack.set(key, depth);
    if (depth === 0) out.set(key, (out.get(key) ?? 0) + t);
    return t;
  };
  walk(root);
  return out;
}

export function selfTimes(p: Profile): Map<number, number> {
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  return self;
}

export function summarize(p: Profile): { totalUs: number; byCategory: Map<string, number>; byFunction: Map<string, number> } {
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  }
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const cat = category(f);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + us);
    const key = `${f.functionName || "(anonymous)"}  ${cat}:${f.lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  }
  return { totalUs: total, byCategory, byFunction };
}

/** The frame that starts a phase, by function name and module (category). */
const PHASES: ReadonlyArray<[phase: string, test: (fn: string, cat: string) => boolean]> = [
  ["UDP send: dgram send and sendto", (fn, cat) => cat === "node:dgram" && (fn === "doSend" || fn === "Socket.send" || fn === "afterSend") || (cat === "src/transport/layer" && (fn === "sendUdp" || fn === "send"))],
  ["UDP receive: dgram onMessage and the transport layer", (fn, cat) => (cat === "node:dgram" && fn === "onMessage") || cat === "src/transport/udp" || (cat === "src/transport/layer" && fn === "onDatagram")],
  ["parse (start line, headers, top Via, From/To check)", (fn, cat) => cat === "src/sip/parse" && fn === "parse"],
  ["rewrite (Via, Max-Forwards, Route, Record-Route, Path, received/rport)", (fn, cat) => (cat === "src/sip/message" && /^(prependVia|removeTopVia|replaceTopVia|setMaxForwards|removeFirstRoute|addRecordRoute|addPath|setHeader|addHeader|fixContentLength|setRequestUri)$/.test(fn)) || (cat === "src/edge/proxy" && fn === "stampTopVia")],
  ["serialize (toString, toBuffer)", (fn, cat) => cat === "src/sip/message" && (fn === "toBuffer" || fn === "toString")],
  ["header reads after parse (get, routes, contacts, option tags)", (fn, cat) => cat === "src/sip/message" && /^(get|getAll|has|listValues|hasOptionTag|routes|recordRoutes|paths|contacts|vias)$/.test(fn)],
  ["routing decision (router, policy, device table)", (fn, cat) => (cat === "src/edge/policy-router" && fn === "route") || (cat.startsWith("src/edge/") && cat.endsWith("router") && fn === "route") || cat.startsWith("src/policy/") || cat.startsWith("src/rules/")],
  ["soft state (lru-cache)", (fn, cat) => cat === "src/edge/soft-state" || cat === "npm lru-cache"],
  ["failover timers", (fn, cat) => cat === "node:timers" || cat === "src/util/clock" || cat === "src/edge/timeout-queue" || (cat === "src/edge/proxy" && (fn === "armRetryTimer" || fn === "cancelRetryTimer"))],
  ["flow token (HMAC)", (fn, cat) => cat === "src/edge/flow-token"],
  ["health from traffic (observer)", (fn, cat) => cat.startsWith("src/health/") || (cat === "src/edge/edge" && fn === "targetOutcome")],
  ["branch (hash96), loop check", (fn, cat) => cat === "src/edge/branch" || (cat === "src/edge/proxy" && fn === "isLoop")],
  ["counters", (fn, cat) => cat === "src/util/counters"],
  ["logging", (fn, cat) => cat === "npm pino" || cat === "npm pino-std-serializers" || cat === "npm sonic-boom"],
  ["GC", (fn) => fn === "(garbage collector)"],
];

/** Self time charged to phases (see PHASES); the rest of src/edge/proxy is "proxy logic", the rest of Node "event loop and other". */
export function phases(p: Profile): Map<string, number> {
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const phaseOf = new Map<number, string>();
  const resolvePhase = (id: number): string => {
    const known = phaseOf.get(id);
    if (known !== undefined) return known;
    let sawProxy = false;
    let out: string | undefined;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      const cat = category(f);
      if (f.functionName === "(idle)") {
        out = "(idle)";
        break;
      }
      if (f.functionName === "(program)") {
        out = "native, not attributed ((program))";
        break;
      }
      const hit = PHASES.find(([, test]) => test(f.functionName, cat));
      // The receive path is the caller of everything: it keeps only what ran
      // in it before the proxy was entered.
      if (hit !== undefined && !(sawProxy && hit[0].startsWith("UDP receive"))) {
        out = hit[0];
        break;
      }
      if (cat.startsWith("src/edge/") || cat.startsWith("src/sip/")) sawProxy = true;
    }
    out ??= sawProxy ? "proxy logic (the rest of src/edge/proxy)" : "event loop, ticks and other";
    phaseOf.set(id, out);
    return out;
  };
  const out = new Map<string, number>();
  for (const [id, us] of selfTimes(p)) {
    const ph = resolvePhase(id);
    out.set(ph, (out.get(ph) ?? 0) + us);
  }
  return out;
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith("--"));
  if (file === undefined) {
    console.error("usage: profile-summary FILE.cpuprofile [--top N]");
    process.exitCode = 1;
    return;
  }
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 40;
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const s = summarize(profile);
  const idle = s.byCategory.get("(idle)") ?? 0;
  const busy = s.totalUs - idle;
  const pct = (us: number): string => ((100 * us) / busy).toFixed(1).padStart(5) + " %";
  console.log(`# ${file}\n# ${(s.totalUs / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(2)} s not idle; shares below are of the non-idle time\n`);
  console.log("## by phase of the per-message work");
  for (const [k, v] of [...phases(profile)].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1])) console.log(`${pct(v)}  ${k}`);
  console.log("\n## by category");
  for (const [k, v] of [...s.byCategory].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1])) console.log(`${pct(v)}  ${k}`);
  console.log(`\n## top ${top} functions (self time)`);
  for (const [k, v] of [...s.byFunction].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
  console.log(`\n## top ${top} functions of src/ (inclusive time: with what they call)`);
  const incl = inclusive(profile, selfTimes(profile));
  for (const [k, v] of [...incl].filter(([k]) => k.includes(" src/")).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
}

main();
