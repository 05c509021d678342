/**
 * Overload control (src/edge/overload.ts, src/transport/queue-delay.ts):
 * the probe's wire form, the per-socket delay estimate, the gate's
 * hysteresis, and what the proxy sheds and what it never sheds, with a
 * queue delay the test sets and a fake clock.
 */
import t from "tap";
import { BUSY_UTILIZATION, OverloadGate, SHED_STEP_DOWN, SHED_STEP_DRIFT, SHED_STEP_UP, type OverloadStatus } from "../../src/edge/overload.js";
import { FakeClock } from "../../src/util/clock.js";
import { DelayEstimate, PROBE_BYTES, decodeProbe, encodeProbe } from "../../src/transport/queue-delay.js";
import { MAIN, PHONE, makeEdge, sip } from "../helpers/edge-harness.js";

const OPTIONS = { shedAtMs: 100, resumeAtMs: 20, retryAfterSeconds: 2, maxTimeoutDeferrals: 2, probeIntervalMs: 50, shedMethods: new Set(["INVITE"]) };

t.test("probe wire form: round trip, and nothing else is taken for one", async (t) => {
  const b = encodeProbe(0xdeadbeef, 1234.5);
  t.equal(b.length, PROBE_BYTES);
  t.same(decodeProbe(b), { tag: 0xdeadbeef, stampMs: 1234.5 });
  t.equal(decodeProbe(Buffer.concat([b, Buffer.from("x")])), undefined, "longer");
  t.equal(decodeProbe(b.subarray(0, PROBE_BYTES - 1)), undefined, "shorter");
  const wrongMagic = Buffer.from(b);
  wrongMagic[1] = 0x72;
  t.equal(decodeProbe(wrongMagic), undefined, "second byte");
  const notNul = Buffer.from(b);
  notNul[0] = 0x49; // 'I', as in INVITE
  t.equal(decodeProbe(notNul), undefined, "first byte");
  t.equal(decodeProbe(encodeProbe(1, Number.NaN)), undefined, "a stamp that is not a number");
});

t.test("delay estimate: the last probe's wait; silence counts only once probes came back, and only where no one else reads", async (t) => {
  const d = new DelayEstimate(500, true);
  t.equal(d.estimate(10_000), 0, "no probe back yet: no estimate, however long (a host whose probes never return)");
  d.sample(10_000, 10_040);
  t.equal(d.estimate(10_040), 40);
  t.equal(d.estimate(10_540), 40, "silence up to staleAfterMs is normal");
  t.equal(d.estimate(10_541), 501, "then the silence is the wait (the queue is dropping probes)");
  d.sample(10_600, 10_600);
  t.equal(d.estimate(10_600), 0);
  d.sample(11_000, 10_990);
  t.equal(d.estimate(10_990), 0, "a stamp ahead of now is no wait");

  const shared = new DelayEstimate(500, false);
  shared.sample(0, 70);
  t.equal(shared.estimate(60_000), 70, "a socket other workers read: only samples count");
});

/**
 * A gate with a queue delay the test sets. With `shedAll` the random draw
 * always sheds when the share is above 0 (the proxy tests); otherwise the
 * draws come from a fixed cycle, so a share of 0.3 sheds 3 of every 10.
 */
function gate(initialMs = 0, shedAll = false, methods: readonly string[] = ["INVITE"], drop: readonly string[] = []) {
  let delay = initialMs;
  let busy = 1;
  const changes: OverloadStatus[] = [];
  const clock = new FakeClock();
  let i = 0;
  const random = shedAll ? () => 0 : () => (i++ % 10) / 10 + 0.05;
  const g = new OverloadGate({ ...OPTIONS, shedMethods: new Set(methods), dropMethods: new Set(drop) }, () => delay, clock, () => busy, (c) => changes.push(c), random);
  // The probe rounds, as the edge wires them (TransportLayer.onQueueProbe).
  const round = (): void => {
    g.tick();
    clock.setTimer(OPTIONS.probeIntervalMs, round);
  };
  clock.setTimer(OPTIONS.probeIntervalMs, round);
  // Shedding starts on the first interval over shedAtMs.
  if (shedAll && initialMs >= OPTIONS.shedAtMs) clock.advance(50);
  return { g, changes, clock, set: (ms: number) => (delay = ms), setBusy: (u: number) => (busy = u) };
}

function shedOf(g: OverloadGate, n: number): number {
  let k = 0;
  for (let j = 0; j < n; j++) if (g.shed("INVITE")) k++;
  return k;
}

t.test("gate: the shed share rises per interval over shedAtMs, holds in between, falls at resumeAtMs", async (t) => {
  const { g, changes, clock, set } = gate();
  t.equal(shedOf(g, 10), 0);
  set(150);
  t.equal(shedOf(g, 10), 0, "no decision before an interval has passed");
  clock.advance(50);
  t.equal(shedOf(g, 10), 1, "one interval over: 10 %");
  t.same(changes, [{ shedding: true, shedShare: SHED_STEP_UP, queueDelayMs: 150, busy: 1 }], "the start is reported once");
  clock.advance(50);
  t.equal(shedOf(g, 10), 1, "no second step before the 150 ms queued ahead of the first could be read");
  clock.advance(50);
  clock.advance(50);
  t.equal(shedOf(g, 10), 2, "then one step, however long the stretch: 20 %");
  clock.advance(150);
  t.equal(shedOf(g, 10), 3);
  set(60);
  clock.advance(50 * 5);
  t.equal(g.status().shedShare.toFixed(2), (0.3 - 5 * SHED_STEP_DRIFT).toFixed(2), "between resumeAtMs and shedAtMs the share drifts down slowly");
  t.ok(g.behind(), "and timeouts are not trusted");
  set(20);
  t.notOk(g.behind());
  clock.advance(50);
  t.equal(g.status().shedShare.toFixed(2), (0.2 - SHED_STEP_DOWN).toFixed(2), "at resumeAtMs it falls faster");
  clock.advance(50 * 3);
  t.same(g.status(), { shedding: false, shedShare: 0, queueDelayMs: 20, busy: 1 });
  t.equal(shedOf(g, 10), 0);
  t.same(changes[1], { shedding: false, shedShare: 0, queueDelayMs: 20, busy: 1 }, "the end is reported once");
  t.equal(changes.length, 2);

  set(10_000);
  for (let k = 0; k < 20; k++) {
    clock.advance(10_000);
    g.shed("INVITE");
  }
  t.equal(g.status().shedShare, 1, "at most everything");
  t.equal(shedOf(g, 10), 10);
  set(0);
  const before = changes.length;
  clock.advance(50 * 20);
  g.tick();
  t.same(changes.slice(before), [{ shedding: false, shedShare: 0, queueDelayMs: 0, busy: 1 }], "with no request to ask, the probe round's tick ends shedding (and logs it) on time");
  t.same(g.retryAfter, ["Retry-After: 2"]);

  let delay = 10_000;
  const c2 = new FakeClock();
  const never = new OverloadGate({ ...OPTIONS, shedAtMs: 0 }, () => delay, c2, () => 1);
  c2.advance(1000);
  t.notOk(never.shed("INVITE"), "shedAtMs 0: never sheds");
  t.ok(never.behind(), "yet timeouts still wait");
  delay = 0;
  t.same(never.status(), { shedding: false, shedShare: 0, queueDelayMs: 0, busy: 0 });
});

t.test("gate: a long wait while the edge's own loop is not busy (other processes have the CPU) sheds nothing; timeouts still wait", async (t) => {
  const { g, clock, set, setBusy } = gate();
  set(500);
  setBusy(BUSY_UTILIZATION - 0.01);
  for (let k = 0; k < 10; k++) {
    clock.advance(50);
    t.notOk(g.shed("INVITE"));
  }
  t.equal(g.status().shedShare, 0);
  t.ok(g.behind());
  setBusy(BUSY_UTILIZATION);
  clock.advance(50);
  g.shed("INVITE");
  t.equal(g.status().shedShare, SHED_STEP_UP, "busy and behind: it sheds");
});

const INVITE = sip([
  "INVITE sip:2001@edge.example.com SIP/2.0",
  "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKov1;rport",
  "Max-Forwards: 70",
  "From: <sip:1001@edge.example.com>;tag=f1",
  "To: <sip:2001@edge.example.com>",
  "Call-ID: ov-call-1",
  "CSeq: 1 INVITE",
  "Content-Length: 0",
]);

function request(method: string, opts: { callId?: string; toTag?: string; branch?: string } = {}): string {
  return INVITE.replace(/^INVITE/, method)
    .replace("CSeq: 1 INVITE", `CSeq: 1 ${method}`)
    .replace("Call-ID: ov-call-1", `Call-ID: ${opts.callId ?? "ov-call-1"}`)
    .replace("branch=z9hG4bKov1", `branch=${opts.branch ?? "z9hG4bKov1"}`)
    .replace("To: <sip:2001@edge.example.com>", `To: <sip:2001@edge.example.com>${opts.toTag === undefined ? "" : `;tag=${opts.toTag}`}`);
}

function status(data: string): string {
  return data.split("\r\n")[0]!;
}

t.test("dropUnread: only while shedding, only a request that starts with a listed method and a space, with the share", async (t) => {
  const { g, set, clock } = gate(150, false, ["INVITE"], ["REGISTER"]);
  const reg = request("REGISTER");
  t.equal(g.status().shedShare, 0);
  t.notOk(g.dropUnread(reg), "not shedding: nothing is dropped");
  clock.advance(50);
  t.equal(g.status().shedShare, SHED_STEP_UP);
  const dropped = Array.from({ length: 10 }, () => g.dropUnread(reg)).filter(Boolean).length;
  t.equal(dropped, 1, "a share of 0.1 drops 1 in 10");
  const all = gate(150, true, ["INVITE"], ["REGISTER"]);
  t.ok(all.g.dropUnread(reg));
  t.notOk(all.g.dropUnread(request("INVITE")), "INVITE is not listed");
  t.notOk(all.g.dropUnread("REGISTERX sip:a SIP/2.0\r\n"), "a longer token is another method");
  t.notOk(all.g.dropUnread("REGISTER "), "nothing after the method: not a request to drop unread");
  t.notOk(all.g.dropUnread("SIP/2.0 200 OK\r\n"), "a response");
  t.notOk(gate(150, true).g.dropUnread(reg), "no dropMethods: nothing");
  set(0);
});

t.test("proxy: while shedding, a REGISTER from a phone over UDP is dropped unread; one from a target or over TCP is not", async (t) => {
  const { g } = gate(150, true, ["INVITE"], ["REGISTER"]);
  const e = makeEdge({ overload: g });
  e.deliver(request("REGISTER", { callId: "drop-1", branch: "z9hG4bKd1" }), PHONE);
  t.equal(e.transport.sent.length, 0, "no answer, nothing forwarded");
  t.equal(e.counters.get("drop.overload.unread"), 1);
  t.equal(e.counters.get("rx.request.REGISTER"), 0, "dropped before it was parsed");
  e.deliver(request("REGISTER", { callId: "drop-2", branch: "z9hG4bKd2" }), { ...PHONE, transport: "tcp" });
  t.equal(e.transport.sent.length, 1, "over TCP it is forwarded: the phone would not retransmit it");
  e.transport.sent.length = 0;
  e.deliver(request("REGISTER", { callId: "drop-3", branch: "z9hG4bKd3" }), MAIN);
  t.equal(e.counters.get("drop.overload.unread"), 1, "a request from a target is never dropped unread");
});

t.test("proxy: while shedding, a new request from a phone gets 503 with Retry-After and goes nowhere", async (t) => {
  const { g, set, clock } = gate(150, true);
  const e = makeEdge({ overload: g });
  e.deliver(INVITE, PHONE);
  const r = e.transport.take();
  t.same(r.dest, PHONE);
  t.equal(status(r.data), "SIP/2.0 503 Overloaded");
  t.match(r.data, /\r\nRetry-After: 2\r\n/);
  t.equal(e.transport.sent.length, 0, "nothing went to a target");
  t.equal(e.counters.get("reject.overload"), 1);

  // The phone's ACK of that 503 ends at the edge (it was the UAS): no target ever saw the INVITE.
  const toTag = /\r\nTo: [^\r]*;tag=([^;\r]+)/.exec(r.data)![1]!;
  e.deliver(request("ACK", { toTag }), PHONE);
  t.equal(e.transport.sent.length, 0, "the ACK of our own 503 is absorbed");
  t.equal(e.counters.get("absorb.ack.own-answer"), 1);
  e.deliver(request("ACK", { toTag: toTag + "x" }), PHONE);
  t.equal(e.counters.get("absorb.ack.own-answer"), 1, "a To tag that only starts like ours is not ours");
  e.transport.sent.length = 0;

  e.deliver(request("REGISTER", { callId: "reg-1", branch: "z9hG4bKreg1" }), PHONE);
  t.same(e.transport.take().dest, MAIN, "a REGISTER is not shed by default: refusing one costs nearly what forwarding it does");
  t.notOk(g.shed("SUBSCRIBE"), "nor any method not listed");

  const regs = gate(150, true, ["INVITE", "REGISTER"]);
  const e2 = makeEdge({ overload: regs.g });
  e2.deliver(request("REGISTER", { callId: "reg-2", branch: "z9hG4bKreg2" }), PHONE);
  t.equal(status(e2.transport.take().data), "SIP/2.0 503 Overloaded", "with REGISTER in shedMethods it is");

  set(0);
  clock.advance(60_000);
  e.deliver(request("INVITE", { callId: "ov-call-2", branch: "z9hG4bKov2" }), PHONE);
  t.same(e.transport.take().dest, MAIN, "forwarded again once the queue is back");
});

t.test("proxy: never shed while shedding: in-dialog requests, CANCEL, ACK, retransmissions, requests from a target, OPTIONS to the edge", async (t) => {
  const g = gate(0, true);
  const e = makeEdge({ overload: g.g });
  // A call set up before the overload: its INVITE is forwarded and remembered.
  e.deliver(INVITE, PHONE);
  t.same(e.transport.take().dest, MAIN);
  g.set(5_000);
  for (let k = 0; k < 10; k++) {
    g.clock.advance(5_000);
    g.g.shed("INVITE");
  }
  t.equal(g.g.status().shedShare, 1, "shedding every new request");

  e.deliver(INVITE, PHONE);
  t.same(e.transport.take().dest, MAIN, "a retransmission of a forwarded INVITE follows it");
  e.deliver(request("CANCEL"), PHONE);
  t.same(e.transport.take().dest, MAIN, "CANCEL");
  e.deliver(request("ACK", { toTag: "t9" }), PHONE);
  t.same(e.transport.take().dest, MAIN, "the ACK of a non-2xx answer");

  const bye = sip([
    "BYE sip:2001@10.0.0.1:5070 SIP/2.0",
    "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKbye1;rport",
    "Route: <sip:192.0.2.1;lr>",
    "Max-Forwards: 70",
    "From: <sip:1001@edge.example.com>;tag=f1",
    "To: <sip:2001@edge.example.com>;tag=t9",
    "Call-ID: ov-call-0",
    "CSeq: 2 BYE",
    "Content-Length: 0",
  ]);
  e.deliver(bye, PHONE);
  const sent = e.transport.take();
  t.same(sent.dest, MAIN, "an in-dialog BYE follows its route");
  t.match(status(sent.data), /^BYE /);

  const fromPbx = sip([
    "INVITE sip:1001@198.51.100.7:5062 SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKpbx1;rport",
    "Max-Forwards: 70",
    "From: <sip:2001@edge.example.com>;tag=p1",
    "To: <sip:1001@edge.example.com>",
    "Call-ID: from-pbx-1",
    "CSeq: 1 INVITE",
    "Content-Length: 0",
  ]);
  e.deliver(fromPbx, MAIN);
  t.same(e.transport.take().dest, PHONE, "a PBX's request is never shed");

  const ping = sip([
    "OPTIONS sip:edge.example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKka1;rport",
    "Max-Forwards: 70",
    "From: <sip:1001@edge.example.com>;tag=k1",
    "To: <sip:edge.example.com>",
    "Call-ID: ka-1",
    "CSeq: 1 OPTIONS",
    "Content-Length: 0",
  ]);
  e.deliver(ping, PHONE);
  t.equal(status(e.transport.take().data), "SIP/2.0 200 OK", "the edge still answers its keepalive OPTIONS");
  t.equal(e.counters.get("reject.overload"), 0);
  t.equal(e.transport.sent.length, 0);
});

t.test("proxy: a timeout while the edge is behind is put off, at most maxTimeoutDeferrals times", async (t) => {
  const { g, set } = gate();
  const e = makeEdge({ overload: g });
  e.deliver(INVITE, PHONE);
  t.same(e.transport.take().dest, MAIN);
  set(60); // behind (over resumeAtMs), not shedding
  e.clock.advance(1000);
  t.equal(e.transport.sent.length, 0, "no failover while our queue may hold the answer");
  t.equal(e.counters.get("failover.timeout-deferred"), 1);
  set(0);
  e.clock.advance(1000);
  const second = e.transport.take();
  t.same(second.dest, { transport: "udp", address: "10.0.0.2", port: 5080 }, "the queue is empty and still no answer: Standby");
  t.equal(e.counters.get("failover.timeout"), 1);

  // Behind for good: each attempt waits at most 1 + maxTimeoutDeferrals timeouts.
  const b = gate(60);
  const e2 = makeEdge({ overload: b.g });
  e2.deliver(INVITE, PHONE);
  t.same(e2.transport.take().dest, MAIN);
  e2.clock.advance(2000);
  t.equal(e2.transport.sent.length, 0);
  e2.clock.advance(1000);
  t.same(e2.transport.take().dest, { transport: "udp", address: "10.0.0.2", port: 5080 }, "after two deferrals the timeout counts");
  t.equal(e2.counters.get("failover.timeout-deferred"), 2);
  e2.clock.advance(60_000);
  t.equal(e2.transport.sent.length, 0, "on the last candidate the caller's own timers decide, as without overload control");
  t.equal(e2.counters.get("failover.timeout-deferred"), 2);
});
