import t from "tap";
import { toPrimary, toWorker, type ToWorker } from "../../src/cluster/messages.js";
import { ProbeLog } from "../../src/cluster/probe-log.js";
import { Supervisor, type WorkerPort } from "../../src/cluster/supervisor.js";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";

class FakeWorker implements WorkerPort {
  readonly inbox: ToWorker[] = [];
  readonly signals: string[] = [];
  constructor(readonly id: number) {}
  send(m: ToWorker): void {
    this.inbox.push(m);
  }
  kill(signal: NodeJS.Signals): void {
    this.signals.push(signal);
  }
  kinds(): string[] {
    return this.inbox.map((m) => (m.kind === "probe" ? `probe:${m.on ? "on" : "off"}` : m.kind));
  }
}

function make(workers = 2, o: { drainMs?: number } = {}) {
  const clock = new FakeClock();
  const forked: FakeWorker[] = [];
  const done: number[] = [];
  const log = new ProbeLog(5);
  const sup = new Supervisor({
    workers,
    fork: () => {
      const w = new FakeWorker(forked.length + 1);
      forked.push(w);
      return w;
    },
    clock,
    logger: silentLogger,
    probeLog: log,
    drainMs: o.drainMs ?? 5000,
    startTimeoutMs: 30_000,
    killAfterMs: 10_000,
    onDone: (c) => done.push(c),
  });
  /** hello + ready, as a worker that starts cleanly says them. */
  const up = (id: number): void => {
    sup.message(id, { kind: "hello" });
    sup.message(id, { kind: "ready", listeners: ["udp:127.0.0.1:5060"] });
  };
  const w = (id: number): FakeWorker => forked[id - 1]!;
  return { clock, forked, done, log, sup, up, w };
}

const ok200 = { ok: true as const, status: 200, rttMs: 1 };

t.test("one prober among the ready workers; only its results are relayed, to every seeded worker", async (t) => {
  const { sup, up, w, forked } = make(2);
  sup.start();
  t.equal(forked.length, 2, "one fork per worker");
  up(1);
  t.same(w(1).kinds(), ["seed", "probe:on"], "the first ready worker probes");
  sup.message(2, { kind: "hello" });
  up(2);
  t.same(w(2).kinds(), ["seed", "seed"], "the second does not probe");
  t.equal(sup.status().prober, 1);

  sup.message(2, { kind: "probe-result", target: "main", result: ok200 });
  t.equal(w(1).inbox.filter((m) => m.kind === "probe-result").length, 0, "a non-prober's result is dropped");
  sup.message(1, { kind: "probe-result", target: "main", result: ok200 });
  t.same(w(2).inbox.at(-1), { kind: "probe-result", target: "main", result: ok200 }, "the prober's result goes to the others");
  t.equal(w(1).inbox.filter((m) => m.kind === "probe-result").length, 0, "not back to the prober");

  sup.message(1, { kind: "nonsense" });
  sup.message(1, "garbage");
  sup.message(99, { kind: "hello" });
  t.equal(sup.status().workers.length, 2, "malformed messages and unknown workers change nothing");
});

t.test("a new worker's seed is the recent probe results", async (t) => {
  const { sup, up, w, clock } = make(1);
  sup.start();
  up(1);
  sup.message(1, { kind: "probe-result", target: "main", result: { ok: false, kind: "timeout" } });
  sup.message(1, { kind: "probe-result", target: "main", result: { ok: true, status: 503, rttMs: 2, retryAfterSeconds: 60 } });
  clock.advance(20_000);
  t.ok(sup.rollingRestart());
  sup.message(2, { kind: "hello" });
  t.same(w(2).inbox[0], {
    kind: "seed",
    results: [
      { target: "main", result: { ok: false, kind: "timeout" } },
      { target: "main", result: { ok: true, status: 503, rttMs: 2, retryAfterSeconds: 40 } },
    ],
  });
});

t.test("the prober dies: another worker probes at once and a replacement starts", async (t) => {
  const { sup, up, w, forked, clock } = make(2);
  sup.start();
  up(1);
  up(2);
  sup.exited(1, null, "SIGKILL");
  t.equal(sup.status().prober, 2, "the survivor was elected");
  t.same(w(2).kinds().at(-1), "probe:on");
  clock.advance(0);
  t.equal(forked.length, 3, "a replacement was forked at once");
  up(3);
  t.equal(sup.status().prober, 2, "the role stays where it is");
  t.same(w(3).kinds(), ["seed"]);
});

t.test("rolling restart: one at a time, the old worker drains only once its replacement is ready, the prober role moves first", async (t) => {
  const { sup, up, w, forked, clock } = make(2, { drainMs: 5000 });
  sup.start();
  up(1);
  up(2);
  t.ok(sup.rollingRestart());
  t.notOk(sup.rollingRestart(), "a second request while one runs is refused");
  t.equal(forked.length, 3, "one replacement at a time");
  t.notOk(w(1).kinds().includes("drain"), "the old worker serves until its replacement is ready");
  up(3);
  t.same(w(3).kinds(), ["seed", "probe:on"], "the replacement took the prober role");
  t.same(w(1).kinds().slice(-2), ["probe:off", "drain"], "then the old one stopped probing and drains");
  t.same(w(1).inbox.at(-1), { kind: "drain", ms: 5000 });
  t.equal(forked.length, 4, "the next step started");
  t.notOk(w(2).kinds().includes("drain"));
  up(4);
  t.same(w(2).kinds().at(-1), "drain");
  t.equal(sup.status().prober, 3, "the role moved once");
  t.notOk(sup.status().rolling, "done");

  sup.exited(1, 0, null);
  t.equal(forked.length, 4, "a drained worker is not replaced");
  clock.advance(5000 + 10_000);
  t.same(w(2).signals, ["SIGKILL"], "a drained worker that does not exit is killed");
  t.same(w(1).signals, [], "one that exited is not");
});

t.test("a replacement that fails to start stops the rolling restart; the old worker keeps serving", async (t) => {
  const { sup, up, w, forked, clock } = make(2);
  sup.start();
  up(1);
  up(2);
  sup.rollingRestart();
  sup.exited(3, 1, null);
  t.notOk(sup.status().rolling);
  t.notOk(w(1).kinds().includes("drain"), "nobody drains");
  t.equal(forked.length, 3, "not retried by the rolling restart");

  // A replacement that hangs is killed at the start deadline.
  sup.rollingRestart();
  clock.advance(30_000);
  t.same(w(4).signals, ["SIGKILL"]);
  sup.exited(4, null, "SIGKILL");
  t.same(sup.status().workers.map((x) => x.phase), ["ready", "ready"]);
});

t.test("workers that keep failing to start are replaced with a growing delay", async (t) => {
  const { sup, up, forked, clock } = make(1);
  sup.start();
  up(1);
  sup.exited(1, 1, null);
  clock.advance(0);
  t.equal(forked.length, 2, "a crash after ready is replaced at once");
  sup.exited(2, 1, null);
  t.equal(forked.length, 2, "a failed start waits");
  clock.advance(999);
  t.equal(forked.length, 2);
  clock.advance(1);
  t.equal(forked.length, 3, "after 1 s");
  sup.exited(3, 1, null);
  clock.advance(1999);
  t.equal(forked.length, 3);
  clock.advance(1);
  t.equal(forked.length, 4, "then after 2 s");
  up(4);
  t.equal(sup.status().prober, 4);
});

t.test("the edge cannot start at all: the other workers are stopped and the primary exits 1", async (t) => {
  const { sup, w, done } = make(2);
  sup.start();
  sup.exited(1, 1, null);
  t.same(w(2).kinds(), ["stop"]);
  t.same(done, []);
  sup.exited(2, 0, null);
  t.same(done, [1]);
});

t.test("stop: every worker is told, killed if it lingers, and the primary exits 0 when all are gone", async (t) => {
  const { sup, up, w, done, clock, forked } = make(2);
  sup.start();
  up(1);
  up(2);
  sup.stop();
  sup.stop();
  t.same(w(1).kinds().at(-1), "stop");
  sup.exited(1, 0, null);
  clock.advance(10_000);
  t.same(w(2).signals, ["SIGKILL"]);
  sup.exited(2, null, "SIGKILL");
  t.same(done, [0]);
  t.equal(forked.length, 2, "nothing replaced while stopping");
  t.notOk(sup.rollingRestart(), "no rolling restart while stopping");
});

t.test("reload goes to the workers that serve", async (t) => {
  const { sup, up, w } = make(2);
  sup.start();
  up(1);
  sup.reload();
  t.same(w(1).kinds().at(-1), "reload");
  t.notOk(w(2).kinds().includes("reload"), "not to one still starting");
});

t.test("ProbeLog keeps the last results per target and ages Retry-After", async (t) => {
  t.throws(() => new ProbeLog(0));
  const log = new ProbeLog(2);
  log.add("main", { ok: false, kind: "timeout" }, 0);
  log.add("main", ok200, 10);
  log.add("main", { ok: true, status: 503, rttMs: 1, retryAfterSeconds: 5 }, 20);
  log.add("standby", ok200, 30);
  t.same(log.replay(2020), [
    { target: "main", result: ok200 },
    { target: "main", result: { ok: true, status: 503, rttMs: 1, retryAfterSeconds: 3 } },
    { target: "standby", result: ok200 },
  ]);
  t.same(log.replay(5020)[1], { target: "main", result: { ok: true, status: 503, rttMs: 1 } }, "an expired hold is a plain 503");
});

t.test("IPC messages are checked before use", async (t) => {
  t.same(toPrimary({ kind: "ready", listeners: ["udp:1"] }), { kind: "ready", listeners: ["udp:1"] });
  t.equal(toPrimary({ kind: "ready", listeners: [1] }), undefined);
  t.equal(toPrimary({ kind: "probe-result", target: "main", result: { ok: true } }), undefined);
  t.equal(toPrimary({ kind: "probe-result", target: "main", result: { ok: false, kind: "boom" } }), undefined);
  t.same(toPrimary({ kind: "probe-result", target: "main", result: ok200 }), { kind: "probe-result", target: "main", result: ok200 });
  t.equal(toPrimary(null), undefined);
  t.equal(toPrimary({ kind: "stop" }), undefined);
  t.same(toWorker({ kind: "drain", ms: 10 }), { kind: "drain", ms: 10 });
  t.equal(toWorker({ kind: "drain", ms: -1 }), undefined);
  t.equal(toWorker({ kind: "probe", on: "yes" }), undefined);
  t.same(toWorker({ kind: "probe", on: false }), { kind: "probe", on: false });
  t.equal(toWorker({ kind: "seed", results: [{ target: "main" }] }), undefined);
  t.same(toWorker({ kind: "seed", results: [] }), { kind: "seed", results: [] });
  t.same(toWorker({ kind: "reload" }), { kind: "reload" });
  t.same(toWorker({ kind: "stop" }), { kind: "stop" });
  t.same(toWorker({ kind: "probe-result", target: "m", result: { ok: false, kind: "transport" } }), { kind: "probe-result", target: "m", result: { ok: false, kind: "transport" } });
  t.equal(toWorker({ kind: "hello" }), undefined);
  t.equal(toWorker(7), undefined);
});

t.test("a message for another worker's flow goes to that worker, whatever its phase; for one that is gone the primary answers", async (t) => {
  const { sup, up, w } = make(2, { drainMs: 5000 });
  sup.start();
  up(1);
  up(2);
  const dest = { transport: "tcp", address: "127.0.0.1", port: 40000 };
  const handOver = { ref: 4, flowId: "2.abc123-1", dest, data: "INVITE" };
  sup.message(1, { kind: "flow-handover", owner: 2, ...handOver });
  t.same(w(2).inbox.at(-1), { kind: "flow-handover", from: 1, ...handOver }, "to the owner, with the sender's id");
  t.notOk(w(1).inbox.some((m) => m.kind.startsWith("flow-")), "nothing back to the sender");

  sup.message(2, { kind: "flow-failed", to: 1, ref: 4, code: "write-failed", reason: "EPIPE" });
  t.same(w(1).inbox.at(-1), { kind: "flow-failed", ref: 4, code: "write-failed", reason: "EPIPE" }, "the owner's failure goes to the sender");

  sup.message(1, { kind: "flow-handover", owner: 9, ...handOver, ref: 5 });
  t.same(w(1).inbox.at(-1), { kind: "flow-failed", ref: 5, code: "flow-gone", reason: "worker 9 is gone" }, "no such worker: the primary answers");

  // A rolling restart: worker 2 drains, and still holds its connections.
  sup.rollingRestart();
  up(3);
  t.equal(sup.status().workers.find((x) => x.id === 1)?.phase, "draining");
  sup.message(3, { kind: "flow-handover", owner: 1, ...handOver, flowId: "1.abc123-1", ref: 6 });
  t.match(w(1).inbox.at(-1), { kind: "flow-handover", from: 3, ref: 6 }, "a draining owner still gets its hand-overs");
  sup.exited(1, 0, null);
  sup.message(3, { kind: "flow-handover", owner: 1, ...handOver, flowId: "1.abc123-1", ref: 7 });
  t.match(w(3).inbox.at(-1), { kind: "flow-failed", ref: 7, code: "flow-gone" }, "once it has exited, its flows are gone");
  const before = w(3).inbox.length;
  sup.message(2, { kind: "flow-failed", to: 1, ref: 8, code: "flow-gone", reason: "x" });
  t.equal(w(3).inbox.length, before, "a failure for a sender that exited goes nowhere");
  sup.message(2, { kind: "flow-handover", owner: 3, ...handOver, data: 5 });
  t.equal(w(3).inbox.length, before, "a malformed hand-over is ignored");
});
