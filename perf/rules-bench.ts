/**
 * Rules micro-benchmark (issue 5): the cost of matching and deciding one
 * request against 1, 10, 100 and 1,000 rules with the matching rule last
 * (just above the default: every other rule is tried and fails first, the
 * worst case for first-match), and the CPU of a whole call through the proxy
 * core when its router is the rules engine. One core, one process, no
 * sockets. Times are CPU time of this process (process.cpuUsage), so other
 * load on the machine stretches them less than wall time would; rounds
 * alternate between the configurations so drift hits all of them alike.
 *
 *   npx tsc -p tsconfig.build.json && node dist/perf/rules-bench.js
 *
 * Two rule mixes, `prefix` (a dial plan) and `mixed` (six kinds of
 * condition): perf/lib/rules-text.ts.
 */
import { FlowTokenCodec } from "../src/edge/flow-token.js";
import { EdgeIdentity } from "../src/edge/identity.js";
import type { Endpoint, Listener, TransportPort } from "../src/edge/ports.js";
import { DEFAULT_FAILOVER, Proxy } from "../src/edge/proxy.js";
import { PriorityRouter, type Router } from "../src/edge/router.js";
import { RulesRouter } from "../src/edge/rules-router.js";
import { SoftState } from "../src/edge/soft-state.js";
import { literalResolver, makeTarget, type Target } from "../src/edge/targets.js";
import { decide } from "../src/rules/decide.js";
import { MessageInput } from "../src/rules/input.js";
import { compileRules } from "../src/rules/load.js";
import type { RoutingView, RulesTable } from "../src/rules/types.js";
import { parse } from "../src/sip/parse.js";
import { systemClock } from "../src/util/clock.js";
import { Counters } from "../src/util/counters.js";
import { silentLogger } from "../src/util/logger.js";
import { prefixOf, rulesFileText, type Mix } from "./lib/rules-text.js";

/** n rules: n - 2 that fail, the one that matches, the default. */
function rulesTable(n: number, mix: Mix): RulesTable {
  const text = rulesFileText(n, mix, true);
  const r = compileRules([{ file: `bench-${mix}-${n}.yaml`, text }], { knownTargets: new Set(["main", "standby"]) });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.table;
}

/** The called number that only the matching rule of an n-rule table takes. */
const calledFor = (n: number): string => `${prefixOf(Math.max(0, n - 2))}5555`;

const sdp = "v=0\r\no=a 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
function invite(i: number, called = "2001"): string {
  return (
    `INVITE sip:${called}@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK${i}x;rport\r\nMax-Forwards: 70\r\n` +
    `From: "Alice" <sip:1001@pbx.example.com>;tag=a${i}\r\nTo: <sip:${called}@pbx.example.com>\r\nCall-ID: c${i}@198.51.100.7\r\nCSeq: 1 INVITE\r\n` +
    `Contact: <sip:1001@198.51.100.7:5062>\r\nUser-Agent: Bench/1.0\r\nContent-Type: application/sdp\r\nContent-Length: ${sdp.length}\r\n\r\n${sdp}`
  );
}

const ALL_UP: RoutingView = { usable: () => true };
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** CPU µs of this process per call of `fn`, after a warm-up, over about `seconds` of CPU. */
function time(fn: (i: number) => void, seconds: number): number {
  let i = 0;
  const warm = performance.now() + 300;
  while (performance.now() < warm) fn(i++);
  const cpu = (): number => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const start = cpu();
  const budget = seconds * 1e6;
  let n = 0;
  let used = 0;
  while (used < budget) {
    for (let k = 0; k < 500; k++) fn(i++);
    n += 500;
    used = cpu() - start;
  }
  return used / n;
}

// ---------------------------------------------------------------------------
// 1. decide() per request.

const input = new MessageInput();
const source: Endpoint = { transport: "udp", address: "198.51.100.7", port: 5062 };
let sink = 0;
let routed = 0;
let wrong = 0;

const rounds = Number(process.env.ROUNDS ?? 5);
const sizes = [1, 10, 100, 1000];
const configs = (["prefix", "mixed"] as const).flatMap((mix) =>
  sizes.map((n) => {
    const parsed = parse(invite(0, calledFor(n)));
    if (!parsed.ok) throw new Error(parsed.reason);
    const message = parsed.message;
    const tbl = rulesTable(n, mix);
    const expected = n >= 2 ? "hit" : "default";
    const check = decide(tbl, input.set(message, source, "udp", 5060), ALL_UP);
    if (check.rule.name !== expected) throw new Error(`${mix} ${n}: matched ${check.rule.name}, not ${expected}`);
    return { label: `${mix} ${n}`, mix, n, run: () => (sink += decide(tbl, input.set(message, source, "udp", 5060), ALL_UP).rule.index), samples: [] as number[] };
  }),
);
for (let r = 0; r < rounds; r++) for (const c of configs) c.samples.push(time(c.run, 0.5));
console.log(`decide() per request, the matching rule last (CPU, median of ${rounds} rounds):`);
for (const c of configs) {
  const us = median(c.samples);
  console.log(`  ${c.mix.padEnd(7)} ${String(c.n).padStart(5)} rules  ${us.toFixed(3).padStart(9)} µs  (${Math.round(1e6 / us).toLocaleString("en-US")}/s)`);
}

// ---------------------------------------------------------------------------
// 2. A whole call through the proxy core, routed by the rules engine.

const UDP: Listener = { id: "udp", transport: "udp", address: "192.0.2.1", port: 5060, advertise: "192.0.2.1", family: 4 };
let last = "";
const transport: TransportPort = {
  listenerFor: () => UDP,
  send: (_d: Endpoint, data: Buffer | string) => {
    last = typeof data === "string" ? data : data.toString("latin1");
    return true;
  },
  hasFlow: () => true,
};
const targets: Target[] = [
  makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1, acceptsPath: true }),
  makeTarget({ name: "standby", uri: "sip:10.0.0.2:5080", priority: 2, acceptsPath: true }),
];

/** The rules engine as the proxy's router, as the edge wires it. */
function rulesRouter(tbl: RulesTable): Router {
  return new RulesRouter({
    rules: () => tbl,
    targets,
    usable: () => true,
    onDecision: (_t, d) => {
      // Sanity: every call must end on the rule meant for it.
      routed++;
      if (d.rule.name !== "hit" && d.rule.name !== "default") wrong++;
    },
  });
}

function proxyWith(router: Router): Proxy {
  return new Proxy({
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
}

const MAIN: Endpoint = { transport: "udp", address: "10.0.0.1", port: 5070 };
function respond(req: string, status: string, withSdp: boolean): string {
  const lines = req.split("\r\n");
  const keep = lines.filter((l) => /^(Via|From|Call-ID|CSeq|Record-Route):/.test(l));
  const to = lines.find((l) => l.startsWith("To:"))!;
  const body = withSdp ? sdp : "";
  return `SIP/2.0 ${status}\r\n${keep.join("\r\n")}\r\n${to};tag=b\r\nContact: <sip:2001@10.0.0.1:5070>\r\n${withSdp ? "Content-Type: application/sdp\r\n" : ""}Content-Length: ${body.length}\r\n\r\n${body}`;
}

/** INVITE/100/180/200/ACK/BYE/200: seven messages, one routing decision. */
function call(p: Proxy, i: number, called: string): void {
  const deliver = (text: string, from: Endpoint): void => p.onMessage({ data: text, source: from, listener: UDP });
  deliver(invite(i, called), source);
  const fwd = last;
  deliver(respond(fwd, "100 Trying", false), MAIN);
  deliver(respond(fwd, "180 Ringing", false), MAIN);
  deliver(respond(fwd, "200 OK", true), MAIN);
  const rr = /Record-Route: <([^>]+)>/.exec(fwd)![1];
  const inDialog = (m: string, cseq: number): string =>
    `${m} sip:2001@10.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK${i}${m};rport\r\nMax-Forwards: 70\r\nRoute: <${rr}>\r\n` +
    `From: "Alice" <sip:1001@pbx.example.com>;tag=a${i}\r\nTo: <sip:2001@pbx.example.com>;tag=b\r\nCall-ID: c${i}@198.51.100.7\r\nCSeq: ${cseq} ${m}\r\nContent-Length: 0\r\n\r\n`;
  deliver(inDialog("ACK", 1), source);
  deliver(inDialog("BYE", 2), source);
  deliver(respond(last, "200 OK", false), MAIN);
}

const routers: Array<{ label: string; router: Router; called: string; samples: number[] }> = [
  { label: "priority router (no rules)", router: new PriorityRouter(targets), called: "2001", samples: [] },
  { label: "rules, 1 rule", router: rulesRouter(rulesTable(1, "mixed")), called: calledFor(1), samples: [] },
  { label: "rules, 100 rules (mixed)", router: rulesRouter(rulesTable(100, "mixed")), called: calledFor(100), samples: [] },
  { label: "rules, 1000 rules (mixed)", router: rulesRouter(rulesTable(1000, "mixed")), called: calledFor(1000), samples: [] },
  { label: "rules, 1000 rules (dial plan)", router: rulesRouter(rulesTable(1000, "prefix")), called: calledFor(1000), samples: [] },
];
const proxies = routers.map((r) => proxyWith(r.router));
// Every call needs its own Call-ID and branch: a repeated one is a
// retransmission to the proxy, answered from its soft state without routing.
let callNo = 0;
for (let r = 0; r < rounds; r++) {
  routers.forEach((c, k) => c.samples.push(time(() => call(proxies[k]!, callNo++, c.called), 1)));
}
console.log(`\nproxy core CPU per call (7 messages, one routing decision; median of ${rounds} rounds):`);
const callUs: Record<string, number> = {};
for (const c of routers) {
  const us = median(c.samples);
  callUs[c.label] = us;
  console.log(`  ${c.label.padEnd(30)} ${us.toFixed(2).padStart(8)} µs  (${Math.round(1e6 / us).toLocaleString("en-US")} calls/s on one core)`);
}
const one = callUs["rules, 1 rule"]!;
const hundred = callUs["rules, 100 rules (mixed)"]!;
console.log(`\ncalls/s with 100 rules against 1 rule: ${((one / hundred - 1) * 100).toFixed(1)}%  (node ${process.version}, ${process.arch}; checksum ${sink % 7}, ${routed} calls routed by rules, ${wrong} by another rule)`);
