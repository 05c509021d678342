import t from "tap";
import { FlowRelay, type FlowSender } from "../../src/cluster/flow-relay.js";
import { toPrimary, toWorker, type ToPrimary, type ToWorker } from "../../src/cluster/messages.js";
import { ProbeLog } from "../../src/cluster/probe-log.js";
import { Supervisor, type WorkerPort } from "../../src/cluster/supervisor.js";
import type { Endpoint, SendOptions, TransportErrorCode } from "../../src/transport/types.js";
import { FakeClock } from "../../src/util/clock.js";
import { Counters } from "../../src/util/counters.js";
import { silentLogger } from "../../src/util/logger.js";

const DEST: Endpoint = { transport: "tcp", address: "127.0.0.1", port: 40000 };

interface Failure {
  code: TransportErrorCode;
  reason: string;
}

function relay(o: { self?: number; connected?: () => boolean; maxPending?: number } = {}) {
  const clock = new FakeClock();
  const counters = new Counters();
  const toPrimaryBox: ToPrimary[] = [];
  const r = new FlowRelay({
    self: o.self ?? 1,
    send: (m) => {
      if (o.connected !== undefined && !o.connected()) return false;
      toPrimaryBox.push(m);
      return true;
    },
    clock,
    counters,
    ...(o.maxPending === undefined ? {} : { maxPending: o.maxPending }),
  });
  const failures: Failure[] = [];
  const onFailure = (code: TransportErrorCode, reason: string): void => {
    failures.push({ code, reason });
  };
  return { clock, counters, sent: toPrimaryBox, r, failures, onFailure };
}

/** A transport layer stand-in: the flows it holds, what was written, and a way to fail a write later. */
class FakeTransport implements FlowSender {
  readonly writes: Array<{ dest: Endpoint; data: Buffer; opts: SendOptions | undefined }> = [];
  constructor(readonly flows: Set<string>) {}
  send(dest: Endpoint, data: Buffer | string, opts?: SendOptions): boolean {
    if (opts?.flowId === undefined || !this.flows.has(opts.flowId)) return false;
    this.writes.push({ dest, data: Buffer.isBuffer(data) ? data : Buffer.from(data), opts });
    return true;
  }
}

t.test("the sender: one message to the primary per hand-over, a failure report reaches the caller once", async (t) => {
  const { r, sent, failures, onFailure, counters } = relay();
  const bytes = Buffer.from([0x49, 0x4e, 0x56, 0x0d, 0x0a, 0x00, 0xc3, 0xa9, 0xff]);
  r.send("2", "2.abc123-1", DEST, bytes, onFailure);
  t.equal(sent.length, 1);
  const m = sent[0]!;
  t.match(m, { kind: "flow-handover", owner: 2, ref: 1, flowId: "2.abc123-1", dest: DEST });
  t.same(toPrimary(JSON.parse(JSON.stringify(m))), m, "it survives JSON (the IPC channel) and validation unchanged");
  t.same(Buffer.from((m as { data: string }).data, "latin1"), bytes, "every byte arrives as it was, 0x00 and 0xff included");
  // Text is one character per byte (src/transport/bytes.ts): "é" in UTF-8 is these two.
  r.send("2", "2.abc123-1", DEST, "\u00c3\u00a9", onFailure);
  t.same(Buffer.from((sent[1] as { data: string }).data, "latin1"), Buffer.from("é", "utf8"), "a text goes as its bytes, one per character");
  t.equal(counters.get("flow.handover.out"), 2);
  t.equal(r.waiting, 2);

  r.failed({ ref: 1, code: "flow-gone", reason: "no flow" });
  t.same(failures, [{ code: "flow-gone", reason: "no flow" }], "the first hand-over's failure");
  t.equal(counters.get("flow.handover.out.failed.flow-gone"), 1);
  r.failed({ ref: 1, code: "write-failed", reason: "twice" });
  t.equal(failures.length, 1, "a second report for the same hand-over changes nothing");
  t.equal(counters.get("flow.handover.out.late-report"), 1, "and is counted");
  t.equal(r.waiting, 1);
});

t.test("the sender: bounded in time and in number", async (t) => {
  const { r, clock, failures, onFailure, counters } = relay({ maxPending: 2 });
  r.send("2", "2.abc123-1", DEST, "x", onFailure);
  clock.advance(1999);
  t.equal(r.waiting, 1, "still waiting just before the bound");
  r.failed({ ref: 1, code: "write-failed", reason: "EPIPE" });
  t.equal(failures.length, 1, "a report inside the bound reaches the caller");

  r.send("2", "2.abc123-1", DEST, "x", onFailure);
  clock.advance(2000);
  t.equal(r.waiting, 0, "silence for the bound means written: nothing kept");
  t.equal(clock.pending, 0, "and no timer left");
  r.failed({ ref: 2, code: "write-failed", reason: "late" });
  t.equal(failures.length, 1, "a report after the bound reaches nobody");
  t.equal(counters.get("flow.handover.out.late-report"), 1);

  for (let i = 0; i < 3; i++) r.send("2", "2.abc123-1", DEST, "x", onFailure);
  t.equal(r.waiting, 2, "never more than maxPending waiting");
  t.equal(counters.get("flow.handover.out.untracked"), 1, "the oldest stopped waiting, counted");
  r.failed({ ref: 3, code: "flow-gone", reason: "oldest" });
  t.equal(failures.length, 1, "its report finds nobody");
  r.failed({ ref: 5, code: "flow-gone", reason: "newest" });
  t.same(failures.at(-1), { code: "flow-gone", reason: "newest" }, "the newest still hears");
});

t.test("the sender: no channel to the primary, or an owner tag that is not a worker id: the flow is gone, reported after send returns", async (t) => {
  const { r, sent, failures, onFailure, counters } = relay({ connected: () => false });
  r.send("2", "2.abc123-1", DEST, "x", onFailure);
  r.send("w2", "w2.abc123-1", DEST, "x", onFailure);
  t.same(failures, [], "not inside send()");
  await Promise.resolve();
  t.same(failures.map((f) => f.code), ["flow-gone", "flow-gone"]);
  t.match(failures[0]!.reason, /no channel/);
  t.match(failures[1]!.reason, /no worker is tagged w2/);
  t.equal(counters.get("flow.handover.out.failed.flow-gone"), 2);
  t.equal(counters.get("flow.handover.out"), 0, "nothing was handed over");
  t.equal(sent.length, 0);
  t.equal(r.waiting, 0);
});

t.test("the owner: writes on its flow, reports only failures, with the sender's ref", async (t) => {
  const { r, sent, counters } = relay({ self: 2 });
  const h = { from: 1, ref: 9, flowId: "2.abc123-1", dest: DEST, data: "INV\u00ff" };
  r.deliver(h);
  t.same(sent, [{ kind: "flow-failed", to: 1, ref: 9, code: "flow-gone", reason: "worker 2 holds no flow 2.abc123-1" }], "before the edge is up: not here");

  const tr = new FakeTransport(new Set(["2.abc123-1", "3.abc123-1"]));
  r.attach(tr, silentLogger);
  sent.length = 0;
  r.deliver(h);
  t.equal(tr.writes.length, 1, "written");
  t.same(tr.writes[0]!.dest, DEST);
  t.same(tr.writes[0]!.data, Buffer.from([0x49, 0x4e, 0x56, 0xff]), "the bytes as sent");
  t.equal(tr.writes[0]!.opts?.flowId, "2.abc123-1", "on that flow");
  t.same(sent, [], "success is not reported");

  tr.writes[0]!.opts!.onError!({ code: "write-failed", reason: "EPIPE", dest: DEST });
  t.same(sent, [{ kind: "flow-failed", to: 1, ref: 9, code: "write-failed", reason: "EPIPE" }], "a write that fails later is reported");
  sent.length = 0;

  r.deliver({ ...h, ref: 10, flowId: "2.abc123-2" });
  t.match(sent, [{ kind: "flow-failed", to: 1, ref: 10, code: "flow-gone" }], "a flow it does not hold (closed)");
  sent.length = 0;
  r.deliver({ ...h, ref: 11, flowId: "3.abc123-1" });
  t.match(sent, [{ kind: "flow-failed", to: 1, ref: 11, code: "flow-gone" }], "another worker's id is never passed on again");
  t.equal(tr.writes.length, 1, "so nothing more was written");
  t.equal(counters.get("flow.handover.in"), 4);
  t.equal(counters.get("flow.handover.in.failed.flow-gone"), 3);
  t.equal(counters.get("flow.handover.in.failed.write-failed"), 1);
  for (const m of [...sent]) t.ok(toPrimary(JSON.parse(JSON.stringify(m))), "its reports pass validation");
});

// Every message goes through JSON and validation, as over the IPC channel,
// and is delivered later (queued), as IPC is.
t.test("worker to primary to owner and back, through the Supervisor", async (t) => {
  const clock = new FakeClock();
  const relays = new Map<number, { r: FlowRelay; failures: Failure[]; counters: Counters }>();
  const inFlight: Array<() => void> = [];
  const ports: WorkerPort[] = [];
  const sup: Supervisor = new Supervisor({
    workers: 2,
    fork: () => {
      const id = ports.length + 1;
      const counters = new Counters();
      const r = new FlowRelay({
        self: id,
        send: (m) => {
          inFlight.push(() => sup.message(id, JSON.parse(JSON.stringify(m))));
          return true;
        },
        clock,
        counters,
      });
      relays.set(id, { r, failures: [], counters });
      const port: WorkerPort = {
        id,
        send: (m: ToWorker) => {
          const v = toWorker(JSON.parse(JSON.stringify(m)));
          if (v?.kind === "flow-handover") inFlight.push(() => r.deliver(v));
          else if (v?.kind === "flow-failed") inFlight.push(() => r.failed(v));
        },
        kill: () => {},
      };
      ports.push(port);
      return port;
    },
    clock,
    logger: silentLogger,
    probeLog: new ProbeLog(3),
    drainMs: 1000,
    startTimeoutMs: 30_000,
    killAfterMs: 10_000,
    onDone: () => {},
  });
  const drain = (): void => {
    while (inFlight.length > 0) inFlight.shift()!();
  };
  sup.start();
  for (const id of [1, 2]) {
    sup.message(id, { kind: "hello" });
    sup.message(id, { kind: "ready", listeners: [] });
  }
  const owner = new FakeTransport(new Set(["2.abc123-1"]));
  relays.get(2)!.r.attach(owner, silentLogger);
  relays.get(1)!.r.attach(new FakeTransport(new Set()), silentLogger);
  const w1 = relays.get(1)!;
  const onFailure = (code: TransportErrorCode, reason: string): void => {
    w1.failures.push({ code, reason });
  };

  w1.r.send("2", "2.abc123-1", DEST, "INVITE", onFailure);
  drain();
  t.equal(owner.writes.length, 1, "worker 2 wrote worker 1's hand-over on its flow");
  t.equal(owner.writes[0]!.data.toString(), "INVITE");
  t.same(w1.failures, [], "no failure");

  w1.r.send("2", "2.abc123-7", DEST, "BYE", onFailure);
  drain();
  t.same(w1.failures.map((f) => f.code), ["flow-gone"], "a flow worker 2 does not hold: worker 1 hears it");
  t.equal(w1.r.waiting, 1, "only the first still waits, until its bound");

  w1.r.send("5", "5.abc123-1", DEST, "BYE", onFailure);
  drain();
  t.same(w1.failures.at(-1), { code: "flow-gone", reason: "worker 5 is gone" }, "an owner that does not exist: the primary answers");
  clock.advance(2000);
  t.equal(w1.r.waiting, 0);
});
