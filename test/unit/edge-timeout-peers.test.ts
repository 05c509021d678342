/**
 * A request timeout with peers (ProxyDeps.peers, a cluster worker): before
 * failing over, the proxy asks whether another worker owns the
 * transaction. Yielding sends nothing and only counts; not yielding is the
 * failover as before; an answer that finds the transaction moved on does
 * nothing. Driven by a fake clock and a fake set of peers.
 */
import t from "tap";
import type { OverloadGate } from "../../src/edge/overload.js";
import type { TargetOutcome, TxnPeers, TxnStamp } from "../../src/edge/proxy.js";
import { makeTarget, type Target } from "../../src/edge/targets.js";
import { MAIN, PHONE, branchOf, makeEdge, sip, viasOf } from "../helpers/edge-harness.js";

const STANDBY = { transport: "udp", address: "10.0.0.2", port: 5080 } as const;
const THIRD = { transport: "udp", address: "10.0.0.3", port: 5090 } as const;
const KEY = "tp-call-1\nz9hG4bKtp1";

const INVITE = sip([
  "INVITE sip:2001@edge.example.com SIP/2.0",
  "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKtp1;rport",
  "Max-Forwards: 70",
  "From: <sip:1001@edge.example.com>;tag=f1",
  "To: <sip:2001@edge.example.com>",
  "Call-ID: tp-call-1",
  "CSeq: 1 INVITE",
  "Content-Length: 0",
]);

function response(status: string, forwarded: string): string {
  return sip([`SIP/2.0 ${status}`, ...viasOf(forwarded), "From: <sip:1001@edge.example.com>;tag=f1", "To: <sip:2001@edge.example.com>;tag=t9", "Call-ID: tp-call-1", "CSeq: 1 INVITE", "Content-Length: 0"]);
}

/** Main, Standby and a third target, so a failover still has a candidate left. */
function threeTargets(): Target[] {
  return [
    makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1, acceptsPath: true }),
    makeTarget({ name: "standby", uri: "sip:10.0.0.2:5080", priority: 2, acceptsPath: true }),
    makeTarget({ name: "third", uri: "sip:10.0.0.3:5090", priority: 3, acceptsPath: true }),
  ];
}

interface Question {
  key: string;
  mine: TxnStamp;
  done: (yieldToPeer: boolean) => void;
}

/** Peers that record each question; the test answers it. `answerAtOnce` answers inside the call. */
class FakePeers implements TxnPeers {
  readonly questions: Question[] = [];
  stamps = 0;
  answerAtOnce: boolean | undefined;
  stamp(): number {
    return 1000 + this.stamps++;
  }
  confirmTimeout(key: string, mine: TxnStamp, done: (yieldToPeer: boolean) => void): void {
    this.questions.push({ key, mine, done });
    if (this.answerAtOnce !== undefined) done(this.answerAtOnce);
  }
}

function setup(o: { targets?: Target[]; overload?: OverloadGate } = {}) {
  const peers = new FakePeers();
  const outcomes: [string, TargetOutcome][] = [];
  const e = makeEdge({ peers, observer: { targetOutcome: (tg, oc) => outcomes.push([tg.name, oc]) }, ...o });
  return { ...e, peers, outcomes };
}

t.test("another worker forwarded it first: the timeout yields, nothing is sent, it is counted", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  t.same(first.dest, MAIN);
  t.same(e.proxy.transactionStamp(KEY), { firstAt: 1000, heard: false }, "stamped when first forwarded");
  e.clock.advance(1000);
  t.equal(e.peers.questions.length, 1, "the timeout asks the peers");
  t.same(e.peers.questions[0]!.key, KEY);
  t.same(e.peers.questions[0]!.mine, { firstAt: 1000, heard: false });
  t.equal(e.transport.sent.length, 0, "nothing sent while the question is out");
  t.equal(e.counters.get("failover.timeout"), 0);

  e.peers.questions[0]!.done(true);
  t.equal(e.transport.sent.length, 0, "no Standby attempt, no 408 to the phone");
  t.equal(e.counters.get("failover.timeout-yielded"), 1);
  t.equal(e.counters.get("failover.timeout"), 0);
  t.same(e.outcomes, [], "no timeout held against Main: it answered the owner");

  e.clock.advance(60_000);
  t.equal(e.transport.sent.length, 0, "no timer left");
  e.deliver(INVITE, PHONE);
  const re = e.transport.take();
  t.same(re.dest, MAIN, "a later retransmission still goes where the INVITE went");
  t.equal(branchOf(re.data), branchOf(first.data));
  e.clock.advance(60_000);
  t.equal(e.peers.questions.length, 1, "and arms no failover again");
  t.equal(e.transport.sent.length, 0);
  t.same(e.proxy.transactionStamp(KEY), { firstAt: 1000, heard: false }, "the stamp stays for the owner's questions");
});

t.test("no other worker owns it: the Standby attempt as before, the next timeout asks again", async (t) => {
  const e = setup({ targets: threeTargets() });
  e.deliver(INVITE, PHONE);
  const first = e.transport.take();
  e.clock.advance(1000);
  e.peers.questions[0]!.done(false);
  const second = e.transport.take();
  t.same(second.dest, STANDBY);
  t.equal(branchOf(second.data), `${branchOf(first.data)}.1`);
  t.equal(e.counters.get("failover.timeout"), 1);
  t.equal(e.counters.get("failover.retry.timeout"), 1);
  t.same(e.outcomes, [["main", "timeout"]]);

  e.clock.advance(999);
  t.equal(e.peers.questions.length, 1, "the new attempt has its own full timeout");
  e.clock.advance(1);
  t.equal(e.peers.questions.length, 2, "its timeout asks again");
  t.same(e.peers.questions[1]!.mine, { firstAt: 1000, heard: false }, "with the first stamp");
  e.peers.questions[1]!.done(false);
  t.same(e.transport.take().dest, THIRD);
  t.equal(e.peers.stamps, 1, "one stamp per transaction");
});

t.test("an answer given at once acts at once", async (t) => {
  const e = setup();
  e.peers.answerAtOnce = false;
  e.deliver(INVITE, PHONE);
  e.transport.take();
  e.clock.advance(1000);
  t.same(e.transport.take().dest, STANDBY);

  const y = setup();
  y.peers.answerAtOnce = true;
  y.deliver(INVITE, PHONE);
  y.transport.take();
  y.clock.advance(1000);
  t.equal(y.transport.sent.length, 0);
  t.equal(y.counters.get("failover.timeout-yielded"), 1);
});

t.test("a retransmission while the question is out arms no second timer", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  e.transport.take();
  e.clock.advance(1000);
  e.deliver(INVITE, PHONE);
  t.same(e.transport.take().dest, MAIN, "forwarded as before");
  e.clock.advance(5000);
  t.equal(e.peers.questions.length, 1, "one question");
  t.equal(e.transport.sent.length, 0);
  e.peers.questions[0]!.done(false);
  t.same(e.transport.take().dest, STANDBY, "one failover");
  t.equal(e.transport.sent.length, 0);
});

t.test("the transaction moved on while the question was out: the answer does nothing", async (t) => {
  await t.test("a 180 settled it", async (t) => {
    const e = setup();
    e.deliver(INVITE, PHONE);
    const first = e.transport.take();
    e.clock.advance(1000);
    e.deliver(response("180 Ringing", first.data), MAIN);
    t.same(e.transport.take().dest, PHONE);
    e.peers.questions[0]!.done(false);
    t.equal(e.transport.sent.length, 0, "no Standby attempt after the ringing");
    t.equal(e.counters.get("failover.timeout"), 0);
    t.same(e.proxy.transactionStamp(KEY), { firstAt: 1000, heard: true }, "heard: a target answered it here");
  });
  await t.test("a 100 Trying showed Main alive", async (t) => {
    const e = setup();
    e.deliver(INVITE, PHONE);
    const first = e.transport.take();
    e.clock.advance(1000);
    e.deliver(response("100 Trying", first.data), MAIN);
    e.transport.sent.length = 0;
    e.peers.questions[0]!.done(false);
    t.equal(e.transport.sent.length, 0);
    e.clock.advance(10_000);
    t.equal(e.transport.sent.length, 0, "no timer after the 100");
    t.equal(e.peers.questions.length, 1);
  });
  await t.test("health sent it to the next target", async (t) => {
    const e = setup({ targets: threeTargets() });
    e.deliver(INVITE, PHONE);
    e.transport.take();
    e.clock.advance(1000);
    e.proxy.targetDown("main");
    t.same(e.transport.take().dest, STANDBY, "moved at once by health");
    e.peers.questions[0]!.done(false);
    t.equal(e.transport.sent.length, 0, "the stale answer moves nothing");
    e.clock.advance(1000);
    t.equal(e.peers.questions.length, 2, "the Standby attempt's own timeout asks");
    e.peers.questions[0]!.done(true);
    t.equal(e.counters.get("failover.timeout-yielded"), 0, "a stale yield is not counted either");
    e.peers.questions[1]!.done(false);
    t.same(e.transport.take().dest, THIRD);
  });
  await t.test("a 503 moved it", async (t) => {
    const e = setup();
    e.deliver(INVITE, PHONE);
    const first = e.transport.take();
    e.clock.advance(1000);
    e.deliver(response("503 Service Unavailable", first.data), MAIN);
    t.same(e.transport.take().dest, MAIN, "the ACK of the absorbed 503");
    t.same(e.transport.take().dest, STANDBY);
    e.peers.questions[0]!.done(true);
    t.equal(e.transport.sent.length, 0);
    t.equal(e.counters.get("failover.timeout-yielded"), 0);
    t.same(e.proxy.transactionStamp(KEY), { firstAt: 1000, heard: true }, "heard, and the retry keeps the stamp");
  });
});

t.test("the overload deferral comes first; the question follows it", async (t) => {
  let behind = true;
  const gate = { options: { maxTimeoutDeferrals: 2 }, behind: () => behind, shed: () => false, dropUnread: () => false, retryAfter: [] } as unknown as OverloadGate;
  const e = setup({ overload: gate });
  e.deliver(INVITE, PHONE);
  e.transport.take();
  e.clock.advance(1000);
  t.equal(e.counters.get("failover.timeout-deferred"), 1);
  t.equal(e.peers.questions.length, 0, "no question while the edge is behind");
  behind = false;
  e.clock.advance(1000);
  t.equal(e.peers.questions.length, 1, "asked once the deferral is over");
  e.peers.questions[0]!.done(false);
  t.same(e.transport.take().dest, STANDBY);
});

t.test("with peers a finished transaction stays, trimmed, so a worker that asks later is told who owns it", async (t) => {
  const e = setup();
  e.deliver(INVITE, PHONE);
  const fwd = e.transport.take();
  e.deliver(response("200 OK", fwd.data), MAIN);
  t.same(e.transport.take().dest, PHONE, "the 200 relayed");
  const st = e.softState.getByKey(KEY);
  t.ok(st, "kept");
  t.equal(st?.retry, undefined, "no failover state");
  t.same(e.proxy.transactionStamp(KEY), { firstAt: 1000, heard: true }, "an asking worker learns this one owns it");
});

t.test("one process: nothing stamped, no question", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  e.transport.take();
  t.equal(e.proxy.transactionStamp(KEY), undefined);
  t.notOk("firstAt" in e.softState.getByKey(KEY)!, "no stamp field at all");
  e.clock.advance(1000);
  t.same(e.transport.take().dest, STANDBY, "the failover at the timeout, synchronously");
});
