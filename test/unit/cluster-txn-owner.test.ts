/**
 * "Who owns this transaction?" across cluster workers: the ownership rule,
 * a worker's questions and answers (src/cluster/txn-owner.ts), and the
 * primary's fan-out (src/cluster/txn-fanout.ts, wired in the Supervisor),
 * with fake worker ports and a fake clock.
 */
import t from "tap";
import { toPrimary, toWorker, type ToPrimary, type ToWorker, type TxnClaim } from "../../src/cluster/messages.js";
import { ProbeLog } from "../../src/cluster/probe-log.js";
import { Supervisor, type WorkerPort } from "../../src/cluster/supervisor.js";
import { CLAIMS_WITHIN_MS, TxnFanOut } from "../../src/cluster/txn-fanout.js";
import { ANSWER_WITHIN_MS, TxnOwnership, hostClockMs, precedes } from "../../src/cluster/txn-owner.js";
import { FakeClock } from "../../src/util/clock.js";
import { Counters } from "../../src/util/counters.js";
import { silentLogger } from "../../src/util/logger.js";

const KEY = "call-1\nz9hG4bK-1";

class FakeWorker implements WorkerPort {
  readonly inbox: ToWorker[] = [];
  constructor(readonly id: number) {}
  send(m: ToWorker): void {
    // Through JSON and validation, as the IPC channel delivers it.
    const v = toWorker(JSON.parse(JSON.stringify(m)));
    if (v === undefined) throw new Error(`the primary sent an invalid message: ${JSON.stringify(m)}`);
    this.inbox.push(v);
  }
  kill(): void {}
  asks(): Array<Extract<ToWorker, { kind: "txn-ask" }>> {
    return this.inbox.filter((m): m is Extract<ToWorker, { kind: "txn-ask" }> => m.kind === "txn-ask");
  }
  owners(): Array<Extract<ToWorker, { kind: "txn-owner" }>> {
    return this.inbox.filter((m): m is Extract<ToWorker, { kind: "txn-owner" }> => m.kind === "txn-owner");
  }
}

t.test("the owner: a worker a target answered, else the first to forward, else the lower id", async (t) => {
  const c = (worker: number, firstAt: number, heard = false): TxnClaim => ({ worker, firstAt, heard });
  t.ok(precedes(c(2, 5), c(1, 6)), "earlier stamp");
  t.notOk(precedes(c(1, 6), c(2, 5)));
  t.ok(precedes(c(1, 5), c(2, 5)), "a tie: the lower id");
  t.notOk(precedes(c(2, 5), c(1, 5)));
  t.ok(precedes(c(2, 9, true), c(1, 1)), "heard beats an earlier stamp");
  t.notOk(precedes(c(1, 1), c(2, 9, true)));
  t.ok(precedes(c(2, 1, true), c(1, 9, true)), "both heard: the stamp decides");
  const a = hostClockMs();
  const b = hostClockMs();
  t.ok(Number.isFinite(a) && b >= a, "the stamp clock moves forward");
});

function worker(o: { self?: number; connected?: () => boolean; maxQuestions?: number } = {}) {
  const clock = new FakeClock();
  const counters = new Counters();
  const sent: ToPrimary[] = [];
  const w = new TxnOwnership({
    self: o.self ?? 1,
    send: (m) => {
      if (o.connected !== undefined && !o.connected()) return false;
      const v = toPrimary(JSON.parse(JSON.stringify(m)));
      if (v === undefined) throw new Error(`the worker sent an invalid message: ${JSON.stringify(m)}`);
      sent.push(v);
      return true;
    },
    clock,
    counters,
    stamp: () => 42,
    ...(o.maxQuestions === undefined ? {} : { maxQuestions: o.maxQuestions }),
  });
  const answers: boolean[] = [];
  const done = (y: boolean): void => {
    answers.push(y);
  };
  return { clock, counters, sent, w, answers, done };
}

t.test("a worker's question: yields only to an earlier owner; at most one answer", async (t) => {
  const { w, sent, answers, done, counters } = worker({ self: 2 });
  t.equal(w.stamp(), 42, "the injected stamp clock");
  w.confirmTimeout(KEY, { firstAt: 100, heard: false }, done);
  t.same(sent, [{ kind: "txn-ask", ref: 1, key: KEY }]);
  t.same(answers, [], "waits for the primary");
  t.equal(w.waiting, 1);
  w.answered(1, { worker: 1, firstAt: 99, heard: false });
  t.same(answers, [true], "worker 1 forwarded it first: yield");
  w.answered(1, { worker: 1, firstAt: 99, heard: false });
  t.same(answers, [true], "a second answer changes nothing");
  t.equal(counters.get("failover.owner-query.late-answer"), 1);

  w.confirmTimeout(KEY, { firstAt: 100, heard: false }, done);
  w.answered(2, { worker: 1, firstAt: 101, heard: false });
  w.confirmTimeout(KEY, { firstAt: 100, heard: false }, done);
  w.answered(3, undefined);
  w.confirmTimeout(KEY, { firstAt: 100, heard: false }, done);
  w.answered(4, { worker: 1, firstAt: 100, heard: false });
  w.confirmTimeout(KEY, { firstAt: 100, heard: false }, done);
  w.answered(5, { worker: 3, firstAt: 100, heard: false });
  w.confirmTimeout(KEY, { firstAt: 100, heard: true }, done);
  w.answered(6, { worker: 1, firstAt: 1, heard: false });
  t.same(answers, [true, false, false, true, false, false], "later: proceed; none: proceed; tie with a lower id: yield; tie with a higher id: proceed; we heard a target: proceed");
  t.equal(w.waiting, 0);
  t.equal(counters.get("failover.owner-query.asked"), 6);
});

t.test("a worker's question: no answer within the bound, no primary, too many out, a key too long: proceed", async (t) => {
  const a = worker();
  a.w.confirmTimeout(KEY, { firstAt: 1, heard: false }, a.done);
  a.clock.advance(ANSWER_WITHIN_MS - 1);
  t.same(a.answers, []);
  a.clock.advance(1);
  t.same(a.answers, [false], "the bound: the timeout fails over");
  t.equal(a.counters.get("failover.owner-query.unanswered"), 1);
  a.w.answered(1, { worker: 2, firstAt: 0, heard: true });
  t.same(a.answers, [false], "the late answer finds nobody");
  t.equal(a.clock.pending, 0, "no timer left");

  let up = false;
  const b = worker({ connected: () => up });
  b.w.confirmTimeout(KEY, { firstAt: 1, heard: false }, b.done);
  t.same(b.answers, [false], "no channel to the primary: at once");
  t.equal(b.counters.get("failover.owner-query.no-primary"), 1);
  t.equal(b.w.waiting, 0);
  up = true;

  const c = worker({ maxQuestions: 2 });
  for (let i = 0; i < 3; i++) c.w.confirmTimeout(`${KEY}${i}`, { firstAt: 1, heard: false }, c.done);
  t.same(c.answers, [false], "the third of two allowed: at once");
  t.equal(c.sent.length, 2);
  t.equal(c.counters.get("failover.owner-query.too-many"), 1);

  const d = worker();
  d.w.confirmTimeout("x".repeat(20_000), { firstAt: 1, heard: false }, d.done);
  t.same(d.answers, [false]);
  t.equal(d.sent.length, 0, "never sent: the primary would drop it");
});

t.test("a worker answers another's question from its soft state; none before the edge is up", async (t) => {
  const { w, sent } = worker({ self: 2 });
  w.asked(7, KEY);
  t.same(sent.at(-1), { kind: "txn-claim", ref: 7, stamp: undefined }, "not attached yet: none");
  const held = new Map([[KEY, { firstAt: 5, heard: true }]]);
  w.attach((k) => held.get(k));
  w.asked(8, KEY);
  t.same(sent.at(-1), { kind: "txn-claim", ref: 8, stamp: { firstAt: 5, heard: true } });
  w.asked(9, "other\nkey");
  t.same(sent.at(-1), { kind: "txn-claim", ref: 9, stamp: undefined });
});

function fanOut(maxOpen?: number) {
  const clock = new FakeClock();
  const f = new TxnFanOut({ clock, ...(maxOpen === undefined ? {} : { maxOpen }) });
  const ws = [1, 2, 3, 4].map((id) => new FakeWorker(id));
  return { clock, f, ws };
}

t.test("fan-out: every other worker is asked; once all have answered, the asker gets the first holder", async (t) => {
  const { f, ws, clock } = fanOut();
  const [w1, w2, w3, w4] = ws as [FakeWorker, FakeWorker, FakeWorker, FakeWorker];
  f.ask(w1, 11, KEY, [w2, w3, w4]);
  for (const w of [w2, w3, w4]) t.same(w.asks(), [{ kind: "txn-ask", ref: 1, key: KEY }], `worker ${w.id} asked`);
  t.same(w1.inbox, [], "not the asker");
  f.claim(3, 1, { firstAt: 20, heard: false });
  f.claim(2, 1, { firstAt: 10, heard: false });
  t.same(w1.inbox, [], "waits for the last one");
  f.claim(4, 1, undefined);
  t.same(w1.owners(), [{ kind: "txn-owner", ref: 11, owner: { worker: 2, firstAt: 10, heard: false } }], "the earliest holder, named by the primary");
  t.equal(f.pending, 0);
  // The bound's timer is left to run out (src/edge/timeout-queue.ts), and finds nothing.
  clock.advance(CLAIMS_WITHIN_MS);
  t.equal(clock.pending, 0, "no timer left");
  t.equal(w1.owners().length, 1, "nothing more for the asker");
  f.claim(2, 1, { firstAt: 1, heard: true });
  t.equal(w1.owners().length, 1, "a late claim changes nothing");

  f.ask(w1, 12, KEY, [w2, w3]);
  f.claim(2, 2, { firstAt: 10, heard: false });
  f.claim(2, 2, { firstAt: 1, heard: true });
  f.claim(4, 2, { firstAt: 1, heard: true });
  f.claim(3, 2, { firstAt: 30, heard: true });
  t.same(w1.owners().at(-1), { kind: "txn-owner", ref: 12, owner: { worker: 3, firstAt: 30, heard: true } }, "a second claim and one from a worker not asked are ignored; heard wins");

  f.ask(w1, 13, KEY, [w2, w3]);
  f.claim(2, 3, undefined);
  f.claim(3, 3, undefined);
  t.same(w1.owners().at(-1), { kind: "txn-owner", ref: 13, owner: undefined }, "nobody holds it: none");
});

t.test("fan-out: a worker that never answers costs only the bound; with none asked, none at once", async (t) => {
  const { f, ws, clock } = fanOut();
  const [w1, w2, w3] = ws as [FakeWorker, FakeWorker, FakeWorker];
  f.ask(w1, 5, KEY, [w2, w3]);
  f.claim(2, 1, { firstAt: 10, heard: false });
  clock.advance(CLAIMS_WITHIN_MS - 1);
  t.same(w1.owners(), []);
  clock.advance(1);
  t.same(w1.owners(), [{ kind: "txn-owner", ref: 5, owner: { worker: 2, firstAt: 10, heard: false } }], "at the bound, what came in");
  t.ok(CLAIMS_WITHIN_MS < ANSWER_WITHIN_MS, "before the asker gives up");
  f.claim(3, 1, { firstAt: 1, heard: false });
  t.equal(w1.owners().length, 1, "answered once");

  f.ask(w1, 6, KEY, []);
  t.same(w1.owners().at(-1), { kind: "txn-owner", ref: 6, owner: undefined }, "no other worker: none at once");
  t.equal(f.pending, 0);
  t.equal(clock.pending, 0);
});

t.test("fan-out: the asker exits (dropped), a worker asked exits (not waited for), too many open (none at once)", async (t) => {
  const { f, ws, clock } = fanOut();
  const [w1, w2, w3] = ws as [FakeWorker, FakeWorker, FakeWorker];
  f.ask(w1, 5, KEY, [w2, w3]);
  f.exited(1);
  t.equal(f.pending, 0, "the asker is gone: nobody to answer");
  f.claim(2, 1, { firstAt: 1, heard: false });
  clock.advance(10_000);
  t.same(w1.inbox, [], "nothing sent to it");

  f.ask(w1, 6, KEY, [w2, w3]);
  f.claim(2, 2, { firstAt: 7, heard: false });
  f.exited(3);
  t.same(w1.owners(), [{ kind: "txn-owner", ref: 6, owner: { worker: 2, firstAt: 7, heard: false } }], "the last one waited for exited: answered now");
  f.ask(w1, 7, KEY, [w3]);
  f.exited(3);
  t.same(w1.owners().at(-1), { kind: "txn-owner", ref: 7, owner: undefined });
  clock.advance(CLAIMS_WITHIN_MS);
  t.equal(clock.pending, 0, "the bound's timer ran out");
  t.equal(w1.owners().length, 2, "and sent nothing more");

  const small = fanOut(1);
  const [s1, s2] = small.ws as [FakeWorker, FakeWorker];
  small.f.ask(s1, 1, KEY, [s2]);
  small.f.ask(s1, 2, KEY, [s2]);
  t.same(s1.owners(), [{ kind: "txn-owner", ref: 2, owner: undefined }], "past the bound on open questions: none at once");
  t.equal(s2.asks().length, 1, "and not fanned out");
});

t.test("supervisor: routes questions and claims, and forgets a worker that exits", async (t) => {
  const clock = new FakeClock();
  const forked: FakeWorker[] = [];
  const sup = new Supervisor({
    workers: 3,
    fork: () => {
      const w = new FakeWorker(forked.length + 1);
      forked.push(w);
      return w;
    },
    clock,
    logger: silentLogger,
    probeLog: new ProbeLog(5),
    drainMs: 5000,
    startTimeoutMs: 30_000,
    killAfterMs: 10_000,
    onDone: () => {},
  });
  sup.start();
  for (const id of [1, 2, 3]) {
    sup.message(id, { kind: "hello" });
    sup.message(id, { kind: "ready", listeners: [] });
  }
  const [w1, w2, w3] = forked as [FakeWorker, FakeWorker, FakeWorker];
  sup.message(2, { kind: "txn-ask", ref: 9, key: KEY });
  t.equal(w1.asks().length, 1);
  t.equal(w3.asks().length, 1);
  t.equal(w2.asks().length, 0, "not the asker");
  const ref = w1.asks()[0]!.ref;
  sup.message(1, { kind: "txn-claim", ref, stamp: { firstAt: 3, heard: false } });
  sup.message(3, { kind: "txn-claim", ref, stamp: { firstAt: "soon", heard: false } });
  t.same(w2.owners(), [], "a malformed claim is ignored: still waiting for worker 3");
  sup.exited(3, 1, null);
  t.same(w2.owners(), [{ kind: "txn-owner", ref: 9, owner: { worker: 1, firstAt: 3, heard: false } }], "worker 3 exited: answered without it");

  sup.message(1, { kind: "txn-ask", ref: 10, key: "" });
  t.equal(w2.asks().length, 0, "a malformed question is ignored");
  sup.message(1, { kind: "txn-ask", ref: 10, key: KEY });
  sup.exited(1, 1, null);
  t.equal(w2.asks().length, 1);
  sup.message(2, { kind: "txn-claim", ref: w2.asks()[0]!.ref, stamp: undefined });
  t.same(w1.owners(), [], "the asker exited: nothing sent to it");
});
