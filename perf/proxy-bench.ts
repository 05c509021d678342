/**
 * Proxy core micro-benchmark: the CPU the edge spends on the SIP side of one
 * call and one registration, without sockets. One core, one process.
 *
 *   npm run bench:proxy
 *   ALLOC=1 node dist/perf/proxy-bench.js   # heap allocated per call instead
 *   ROUTER=policy node dist/perf/proxy-bench.js   # through the Main/Standby
 *     failover policy and the shipped device table (proxy-rules/devices.yaml),
 *     as the edge routes with a Main and a Standby; default: priority order
 *   ONLY=calls|registrations node dist/perf/proxy-bench.js   # one of the
 *     two (a --cpu-prof of one kind of traffic)
 *   VIAS=line node dist/perf/proxy-bench.js   # the PBX answers with its
 *     Vias on one line, `Via: ours, the phone's`, as SIPp does; default: a
 *     line each
 *
 * Two builds compared in one process, turn about: perf/proxy-ab.ts.
 *
 * A "call" is the seven messages a proxy handles for INVITE/100/180/200/ACK/
 * BYE/200 (the 100 is the PBX's, relayed); a "registration" is REGISTER and
 * its 200. Each message goes through Proxy.onMessage exactly as the transport
 * layer would hand it over; sends go to a counting stub.
 */
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PerformanceObserver } from "node:perf_hooks";
import { FlowTokenCodec } from "../src/edge/flow-token.js";
import { EdgeIdentity } from "../src/edge/identity.js";
import type { Endpoint, Listener, TransportPort } from "../src/edge/ports.js";
import { DEFAULT_FAILOVER, Proxy } from "../src/edge/proxy.js";
import { PolicyRouter } from "../src/edge/policy-router.js";
import { PriorityRouter, type Router } from "../src/edge/router.js";
import { SoftState } from "../src/edge/soft-state.js";
import { literalResolver, makeTarget } from "../src/edge/targets.js";
import { shippedRulesDir } from "../src/config/index.js";
import { loadDeviceTable } from "../src/main.js";
import { resolveHealthOptions } from "../src/health/options.js";
import { TargetHealth } from "../src/health/target-health.js";
import { FailoverPolicy } from "../src/policy/failover.js";
import { systemClock } from "../src/util/clock.js";
import { Counters } from "../src/util/counters.js";
import { silentLogger } from "../src/util/logger.js";
import { fmt, median } from "./lib/report.js";

const UDP: Listener = { id: "udp", transport: "udp", address: "192.0.2.1", port: 5060, advertise: "192.0.2.1", family: 4 };
let last = "";
let sent = 0;
const transport: TransportPort = {
  listenerFor: () => UDP,
  send: (_d: Endpoint, data: Buffer | string) => {
    sent++;
    last = typeof data === "string" ? data : data.toString("latin1");
    return true;
  },
  hasFlow: () => true,
};
const targets = [makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1, acceptsPath: true }), makeTarget({ name: "standby", uri: "sip:10.0.0.2:5080", priority: 2, acceptsPath: true })];
const router: Router = process.env.ROUTER === "policy" ? policyRouter() : new PriorityRouter(targets);

/** The router of a Main/Standby pair, both up, with the shipped device table. */
function policyRouter(): Router {
  const ho = resolveHealthOptions();
  const [main, standby] = targets.map((t) => new TargetHealth(t.name, ho, systemClock)) as [TargetHealth, TargetHealth];
  for (const h of [main, standby]) h.traffic({ outcome: "response", status: 200 });
  const loaded = loadDeviceTable(join(shippedRulesDir(), "devices.yaml"));
  if (!loaded.ok) throw new Error(loaded.errors.join("\n"));
  const policy = new FailoverPolicy({ main, standby, table: loaded.table, clock: systemClock, options: {}, onEvent: () => {} });
  return new PolicyRouter(policy, targets, systemClock, silentLogger);
}
const proxy = new Proxy({
  transport,
  identity: new EdgeIdentity([UDP], ["pbx.example.com"]),
  router: () => router,
  targets: () => targets,
  resolver: literalResolver,
  flowTokens: new FlowTokenCodec(Buffer.alloc(32, 1)),
  softState: new SoftState({ maxEntries: 200_000, ttlMs: 180_000 }),
  counters: new Counters(),
  logger: silentLogger,
  clock: systemClock,
  failover: { ...DEFAULT_FAILOVER, requestTimeoutMs: 60_000 },
});
const PHONE: Endpoint = { transport: "udp", address: "198.51.100.7", port: 5062 };
const MAIN: Endpoint = { transport: "udp", address: "10.0.0.1", port: 5070 };
// A datagram as the UDP transport hands it over: text, one character per byte.
const deliver = (text: string, source: Endpoint): void => proxy.onMessage({ data: text, source, listener: UDP });

const sdp = "v=0\r\no=a 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
function invite(i: number): string {
  return `INVITE sip:2001@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK${i}x;rport\r\nMax-Forwards: 70\r\nFrom: "Alice" <sip:1001@pbx.example.com>;tag=a${i}\r\nTo: <sip:2001@pbx.example.com>\r\nCall-ID: c${i}@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@198.51.100.7:5062>\r\nUser-Agent: Bench\r\nContent-Type: application/sdp\r\nContent-Length: ${sdp.length}\r\n\r\n${sdp}`;
}
/** VIAS=line: a response's Vias on one line, `Via: ours, the phone's`, as SIPp answers (`[last_Via:]`). */
const VIAS_ON_ONE_LINE = process.env.VIAS === "line";
function respond(req: string, status: string, withSdp: boolean): string {
  const lines = req.split("\r\n");
  let keep = lines.filter((l) => /^(Via|From|Call-ID|CSeq|Record-Route):/.test(l));
  if (VIAS_ON_ONE_LINE) {
    const vias = keep.filter((l) => l.startsWith("Via: ")).map((l) => l.slice(5));
    keep = [`Via: ${vias.join(", ")}`, ...keep.filter((l) => !l.startsWith("Via: "))];
  }
  const to = lines.find((l) => l.startsWith("To:"))!;
  const body = withSdp ? sdp : "";
  return `SIP/2.0 ${status}\r\n${keep.join("\r\n")}\r\n${to};tag=b\r\nContact: <sip:2001@10.0.0.1:5070>\r\n${withSdp ? "Content-Type: application/sdp\r\n" : ""}Content-Length: ${body.length}\r\n\r\n${body}`;
}

export function oneCall(i: number): void {
  deliver(invite(i), PHONE);
  const fwd = last;
  deliver(respond(fwd, "100 Trying", false), MAIN);
  deliver(respond(fwd, "180 Ringing", false), MAIN);
  deliver(respond(fwd, "200 OK", true), MAIN);
  const rr = /Record-Route: <([^>]+)>/.exec(fwd)![1];
  const inDialog = (m: string, cseq: number) =>
    `${m} sip:2001@10.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK${i}${m};rport\r\nMax-Forwards: 70\r\nRoute: <${rr}>\r\nFrom: "Alice" <sip:1001@pbx.example.com>;tag=a${i}\r\nTo: <sip:2001@pbx.example.com>;tag=b\r\nCall-ID: c${i}@198.51.100.7\r\nCSeq: ${cseq} ${m}\r\nContent-Length: 0\r\n\r\n`;
  deliver(inDialog("ACK", 1), PHONE);
  deliver(inDialog("BYE", 2), PHONE);
  deliver(respond(last, "200 OK", false), MAIN);
}

export function oneRegistration(i: number): void {
  deliver(
    `REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK${i}r;rport\r\nMax-Forwards: 70\r\nFrom: <sip:${i}@pbx.example.com>;tag=r${i}\r\nTo: <sip:${i}@pbx.example.com>\r\nCall-ID: r${i}@198.51.100.7\r\nCSeq: 1 REGISTER\r\nContact: <sip:${i}@198.51.100.7:5062>;expires=3600\r\nSupported: path\r\nUser-Agent: Bench\r\nContent-Length: 0\r\n\r\n`,
    PHONE,
  );
  deliver(respond(last, "200 OK", false), MAIN);
}

function bench(name: string, fn: (i: number) => void, seconds = 3): number {
  let i = 0;
  const warm = performance.now() + 500;
  while (performance.now() < warm) fn(i++);
  // CPU time, not wall time: other processes on the machine then change
  // the result much less (they still cost cache and frequency).
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  const end = start + seconds * 1000;
  let n = 0;
  let now = start;
  while (now < end) {
    for (let k = 0; k < 200; k++) fn(i++);
    n += 200;
    now = performance.now();
  }
  const cpu = process.cpuUsage(cpu0);
  const usPer = (cpu.user + cpu.system) / n;
  console.log(`${name.padEnd(24)} ${usPer.toFixed(2).padStart(8)} µs CPU each  (${Math.round(n / ((now - start) / 1000)).toLocaleString("en-US")}/s on one core)`);
  return usPer;
}

/**
 * Heap allocated per call and per registration, harness included (its
 * message strings are the same for every build, so an A/B difference is the
 * proxy's). Counted, not timed: with the young generation fixed at 1 MiB
 * every scavenge follows ~1 MiB of allocation, and the count does not move
 * with the machine's speed, which on a shared VM drifts by tens of percent
 * within minutes (perf/RESULTS.md).
 */
async function allocation(): Promise<void> {
  let scavenges = 0;
  const obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) if ((e as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
  });
  obs.observe({ entryTypes: ["gc"] });
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));
  for (const [name, fn, n] of [
    ["call (7 messages)", oneCall, 100_000],
    ["registration (2 msgs)", oneRegistration, 300_000],
  ] as const) {
    for (let i = 0; i < 20_000; i++) fn(i);
    await settle();
    scavenges = 0;
    for (let i = 0; i < n; i++) fn(1_000_000 + i);
    await settle();
    console.log(`${name.padEnd(24)} ${((scavenges * 1024 * 1024) / n).toFixed(0).padStart(8)} bytes allocated each  (${scavenges} scavenges of 1 MiB over ${n.toLocaleString("en-US")})`);
  }
  obs.disconnect();
}

// Run, unless imported (perf/proxy-ab.ts drives two builds' oneCall and oneRegistration).
const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (!isMain) {
  // imported: nothing to run
} else if (process.env.ALLOC === "1") {
  if (!process.execArgv.includes("--max-semi-space-size=1")) {
    // V8 reads the young generation's size only at start: run again with it fixed.
    execFileSync(process.execPath, ["--max-semi-space-size=1", "--min-semi-space-size=1", ...process.execArgv, process.argv[1]!], { stdio: "inherit" });
  } else {
    await allocation();
  }
} else {
  const rounds = Number(process.env.ROUNDS ?? 3);
  const calls: number[] = [];
  const regs: number[] = [];
  const only = process.env.ONLY;
  for (let r = 0; r < rounds; r++) {
    if (only !== "registrations") calls.push(bench("call (7 messages)", oneCall));
    if (only !== "calls") regs.push(bench("registration (2 msgs)", oneRegistration));
  }
  console.log(`\nmedian of ${rounds}: ${fmt(median(calls), 2)} µs per call, ${fmt(median(regs), 2)} µs per registration (node ${process.version}); ${sent} messages sent`);
}
