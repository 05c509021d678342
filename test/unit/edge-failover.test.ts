/**
 * Per-request serial failover (DESIGN.md §2.1, issue 4): no answer in time,
 * a transport error, or 408/500/503/504 moves an INVITE/REGISTER to the next
 * target before the caller hears anything; never after a provisional from
 * beyond the target, never on other final answers. Driven by a fake clock.
 */
import t from "tap";
import type { TargetOutcome } from "../../src/edge/proxy.js";
import type { Target } from "../../src/edge/targets.js";
import { MAIN, PHONE, branchOf, makeEdge, sip, viasOf } from "../helpers/edge-harness.js";

const STANDBY = { transport: "udp", address: "10.0.0.2", port: 5080 } as const;

const INVITE = sip([
  "INVITE sip:2001@edge.example.com SIP/2.0",
  "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKfo1;rport",
  "Max-Forwards: 70",
  "From: <sip:1001@edge.example.com>;tag=f1",
  "To: <sip:2001@edge.example.com>",
  "Call-ID: fo-call-1",
  "CSeq: 1 INVITE",
  "Content-Length: 0",
]);

function response(status: string, forwarded: string, toTag = "t9", method = "INVITE"): string {
  return sip([
    `SIP/2.0 ${status}`,
    ...viasOf(forwarded),
    "From: <sip:1001@edge.example.com>;tag=f1",
    `To: <sip:2001@edge.example.com>;tag=${toTag}`,
    "Call-ID: fo-call-1",
    `CSeq: 1 ${method}`,
    "Content-Length: 0",
  ]);
}

function setup() {
  const outcomes: [string, TargetOutcome, number | undefined][] = [];
  const e = makeEdge({ observer: { targetOutcome: (tg: Target, o: TargetOutcome, st?: number) => outcomes.push([tg.name, o, st]) } });
  return { ...e, outcomes };
}

t.test("no answer within the request timeout: the INVITE goes to Standby on a new branch", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  t.same(first.dest, MAIN);
  e.clock.advance(999);
  t.equal(e.transport.sent.length, 0, "nothing before the timeout");
  e.clock.advance(1);
  const second = e.transport.take();
  t.same(second.dest, STANDBY);
  t.equal(branchOf(second.data), `${branchOf(first.data)}.1`);
  t.equal(second.data.replace(branchOf(second.data), "B"), first.data.replace(branchOf(first.data), "B"), "same request otherwise");
  t.same(e.outcomes, [["main", "timeout", undefined]]);
  t.equal(e.counters.get("failover.retry.timeout"), 1);

  // A retransmission from the phone now follows the attempt in use.
  e.deliver(INVITE, PHONE);
  const re = e.transport.take();
  t.same(re.dest, STANDBY);
  t.equal(branchOf(re.data), branchOf(second.data));

  // CANCEL follows the branch actually in use.
  e.deliver(INVITE.replace(/^INVITE/, "CANCEL").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"), PHONE);
  const c = e.transport.take();
  t.same(c.dest, STANDBY);
  t.equal(branchOf(c.data), branchOf(second.data));

  // Standby answers: the phone hears only Standby.
  e.deliver(response("180 Ringing", second.data), STANDBY);
  t.same(e.transport.take().dest, PHONE);
  e.clock.advance(10_000);
  t.equal(e.transport.sent.length, 0, "no further attempts after a provisional");
});

t.test("503 from Main is absorbed and ACKed; the INVITE goes to Standby", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  e.deliver(response("503 Service Unavailable", first.data), MAIN);
  const ack = e.transport.take();
  t.same(ack.dest, MAIN);
  t.equal(
    ack.data,
    sip([
      "ACK sip:2001@edge.example.com SIP/2.0",
      viasOf(first.data)[0]!,
      "Max-Forwards: 70",
      "From: <sip:1001@edge.example.com>;tag=f1",
      "To: <sip:2001@edge.example.com>;tag=t9",
      "Call-ID: fo-call-1",
      "CSeq: 1 ACK",
      "Content-Length: 0",
    ]),
    "hop-by-hop ACK for the absorbed 503 (RFC 3261 §17.1.1.3)",
  );
  const second = e.transport.take();
  t.same(second.dest, STANDBY);
  t.equal(e.transport.sent.length, 0, "the phone heard nothing of the 503");
  t.same(e.outcomes, [["main", "failure-response", 503]]);

  // A late 200 from Main is still relayed (a forked answer); a late 503 is absorbed and ACKed.
  e.deliver(response("503 Service Unavailable", first.data), MAIN);
  t.same(e.transport.take().dest, MAIN, "ACK for the retransmitted 503");
  t.equal(e.transport.sent.length, 0);
  e.deliver(response("200 OK", first.data, "late"), MAIN);
  t.same(e.transport.take().dest, PHONE);
});

t.test("never after a provisional from beyond the target; never on 486", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  e.deliver(response("180 Ringing", first.data), MAIN);
  t.same(e.transport.take().dest, PHONE);
  e.deliver(response("503 Service Unavailable", first.data), MAIN);
  t.match(e.transport.take(), { dest: PHONE, data: /^SIP\/2\.0 503 / }, "relayed, not retried");
  e.clock.advance(5000);
  t.equal(e.transport.sent.length, 0);

  const e2 = setup();
  e2.deliver(INVITE, PHONE);
  const f2 = e2.transport.take();
  e2.deliver(response("486 Busy Here", f2.data), MAIN);
  t.match(e2.transport.take(), { dest: PHONE, data: /^SIP\/2\.0 486 / });
  e2.clock.advance(5000);
  t.equal(e2.transport.sent.length, 0, "no retry, no timer left");
});

t.test("100 Trying stops the timer, but a later 503 still moves the request", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  e.deliver(response("100 Trying", first.data), MAIN);
  t.same(e.transport.take().dest, PHONE);
  e.clock.advance(5000);
  t.equal(e.transport.sent.length, 0, "no timeout failover after 100");
  e.deliver(response("500 Server Internal Error", first.data), MAIN);
  t.same(e.transport.take().dest, MAIN, "ACK");
  t.same(e.transport.take().dest, STANDBY, "retried");
});

t.test("regression: a retransmission after 100 Trying does not arm the timer again", async (t) => {
  // A REGISTER's retransmissions go on after a 100 (RFC 3261 §17.1.2.2):
  // each one used to re-arm the failover timer the 100 had stopped, so a
  // target that answered 100 and took over a second for its 200 also got
  // the REGISTER sent to the Standby.
  const e = setup();
  const register = INVITE.replace(/^INVITE/, "REGISTER").replace("CSeq: 1 INVITE", "CSeq: 1 REGISTER");
  e.deliver(register, PHONE);
  const first = e.transport.take();
  t.same(first.dest, MAIN);
  e.deliver(response("100 Trying", first.data, "t9", "REGISTER"), MAIN);
  t.same(e.transport.take().dest, PHONE);
  e.deliver(register, PHONE);
  t.same(e.transport.take().dest, MAIN, "the retransmission follows the attempt");
  e.clock.advance(5000);
  t.equal(e.transport.sent.length, 0, "and no timeout moves it to the Standby");
  t.equal(e.counters.get("failover.retry.timeout"), 0);
});

t.test("a transport error moves the request at once", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  first.onError!({ code: "connect-refused", reason: "refused", dest: first.dest });
  t.same(e.transport.take().dest, STANDBY);
  t.same(e.outcomes, [["main", "transport-error", undefined]]);
});

t.test("every candidate failing: the last target's own answer, or the caller's own timer", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  e.transport.take();
  e.clock.advance(1000);
  t.same(e.transport.take().dest, STANDBY);
  e.clock.advance(60_000);
  t.equal(e.transport.sent.length, 0, "no timer on the last candidate: the phone's Timer B decides");
  t.equal(e.clock.pending, 0, "no timer left behind");

  const e2 = setup();
  e2.deliver(INVITE, PHONE);
  const a = e2.transport.take();
  e2.deliver(response("503 Service Unavailable", a.data), MAIN);
  e2.transport.take(); // ACK
  const b = e2.transport.take();
  e2.deliver(response("503 Service Unavailable", b.data), STANDBY);
  const last = e2.transport.take();
  t.same(last.dest, PHONE);
  t.match(last.data, /^SIP\/2\.0 503 Service Unavailable\r\n/, "Standby's own 503 reaches the phone");
});

t.test("REGISTER fails over the same way; its 503 needs no ACK", async (t) => {
  const e = setup();
  const reg = sip([
    "REGISTER sip:edge.example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKr1;rport",
    "Max-Forwards: 70",
    "From: <sip:1001@edge.example.com>;tag=f1",
    "To: <sip:1001@edge.example.com>",
    "Call-ID: fo-call-1",
    "CSeq: 1 REGISTER",
    "Contact: <sip:1001@192.168.1.20:5062>",
    "Content-Length: 0",
  ]);
  e.deliver(reg, PHONE);
  const first = e.transport.take();
  e.deliver(response("503 Service Unavailable", first.data, "x", "REGISTER"), MAIN);
  t.same(e.transport.take().dest, STANDBY);
  t.equal(e.transport.sent.length, 0);
});

t.test("regression: the caller's retransmissions do not push the failover timer back", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  t.same(e.transport.take().dest, MAIN);
  e.clock.advance(500);
  e.deliver(INVITE, PHONE); // Timer A retransmission
  t.same(e.transport.take().dest, MAIN);
  e.clock.advance(500);
  t.same(e.transport.take().dest, STANDBY, "failover 1 s after the first send");
});

t.test("a target that sent 100 Trying and then went down hands its pending INVITE to the next one", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  e.deliver(response("100 Trying", first.data), MAIN);
  t.same(e.transport.take().dest, PHONE);
  e.clock.advance(10_000);
  t.equal(e.transport.sent.length, 0, "no timeout after 100");
  e.proxy.targetDown("main");
  const second = e.transport.take();
  t.same(second.dest, STANDBY);
  t.equal(branchOf(second.data), `${branchOf(first.data)}.1`);
  e.proxy.targetDown("main");
  t.equal(e.transport.sent.length, 0, "only once");
  e.deliver(response("180 Ringing", second.data), STANDBY);
  e.proxy.targetDown("standby");
  t.equal(e.transport.sent.length, 1, "a transaction with a provisional from beyond its target never moves");
});

t.test("regression: a finished transaction is trimmed in place, not deleted (lru-cache delete() is O(max) when the cache empties)", async (t) => {
  const e = setup();
  const reg = INVITE.replace(/INVITE/g, "REGISTER");
  e.deliver(reg, PHONE);
  const fwd = e.transport.take();
  t.ok(e.softState.get("fo-call-1", "z9hG4bKfo1")?.retry, "failover state while waiting");
  e.deliver(response("200 OK", fwd.data, "x", "REGISTER"), MAIN);
  const st = e.softState.get("fo-call-1", "z9hG4bKfo1");
  t.ok(st, "entry kept for the LRU to evict");
  t.equal(st?.retry, undefined, "no failover state left");
  t.equal(e.softState.size, 1);
  // The failover timeouts share one clock timer (src/edge/timeout-queue.ts),
  // which may stay armed until the cancelled deadline passes: it must find
  // nothing to do then, and leave no timer after it.
  t.same(e.transport.take().dest, PHONE, "the 200 relayed");
  e.clock.advance(1000);
  t.equal(e.transport.sent.length, 0, "the cancelled timeout sends nothing");
  t.equal(e.clock.pending, 0, "no timer left");
});

t.test("one process: a finished transaction is forgotten, so finished REGISTERs do not fill the soft state", async (t) => {
  const e = setup();
  const reg = INVITE.replace(/INVITE/g, "REGISTER");
  // Another transaction in the soft state: the last entry is always left (above).
  e.deliver(reg.replace(/fo-call-1/g, "fo-call-other"), PHONE);
  e.transport.take();
  e.deliver(reg, PHONE);
  const fwd = e.transport.take();
  t.equal(e.softState.size, 2);
  e.deliver(response("200 OK", fwd.data, "x", "REGISTER"), MAIN);
  t.same(e.transport.take().dest, PHONE, "the 200 relayed");
  t.equal(e.softState.get("fo-call-1", "z9hG4bKfo1"), undefined, "the finished REGISTER is gone");
  t.equal(e.softState.size, 1);
  // A retransmission the phone sent before it saw the 200 is routed afresh, to the same target.
  e.deliver(reg, PHONE);
  const again = e.transport.take();
  t.same(again.dest, MAIN);
  t.equal(branchOf(again.data), branchOf(fwd.data), "with the same branch, so Main sees a retransmission");
});

t.test("regression: the 503 that takes Main down is absorbed, not relayed, while the INVITE goes on to Standby once", async (t) => {
  // The edge's health hears each outcome synchronously; the failure that
  // reaches downAfter makes it call targetDown() before the proxy has
  // decided what to do with the response that caused it.
  const holder: { e?: ReturnType<typeof makeEdge> } = {};
  const e = makeEdge({ observer: { targetOutcome: (tg: Target, o: TargetOutcome) => (o === "failure-response" ? holder.e?.proxy.targetDown(tg.name) : undefined) } });
  holder.e = e;
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  e.deliver(response("503 Service Unavailable", first.data), MAIN);
  const sent = e.transport.sent.splice(0);
  t.same(
    sent.map((s) => [s.dest, s.data.slice(0, s.data.indexOf(" "))]),
    [
      [STANDBY, "INVITE"],
      [MAIN, "ACK"],
    ],
    "the INVITE moved to Standby (by targetDown) and the 503 was ACKed",
  );
  t.notOk(sent.some((s) => s.dest.address === PHONE.address && s.dest.port === PHONE.port), "the phone heard nothing of the 503");
  e.deliver(response("200 OK", sent[0]!.data), STANDBY);
  t.same(e.transport.take().dest, PHONE, "Standby's answer reaches the phone");
});
