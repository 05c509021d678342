import t from "tap";
import { toPrimary, toWorker } from "../../src/cluster/messages.js";

const dest = { transport: "tcp", address: "127.0.0.1", port: 40000 };
const handOver = { ref: 7, flowId: "2.a1b2c3-f", dest, data: "INVITE sip:1001@127.0.0.1 SIP/2.0\r\n\r\n" };
const failure = { ref: 7, code: "flow-gone", reason: "worker 2 is gone" };

t.test("flow hand-over messages as they are sent", async (t) => {
  t.same(toPrimary({ kind: "flow-handover", owner: 2, ...handOver }), { kind: "flow-handover", owner: 2, ...handOver });
  t.same(toPrimary({ kind: "flow-failed", to: 1, ...failure }), { kind: "flow-failed", to: 1, ...failure });
  t.same(toWorker({ kind: "flow-handover", from: 1, ...handOver }), { kind: "flow-handover", from: 1, ...handOver });
  t.same(toWorker({ kind: "flow-failed", ...failure }), { kind: "flow-failed", ...failure });
  const extra = toWorker({ kind: "flow-handover", from: 1, ...handOver, dest: { ...dest, junk: 1 }, junk: 2 });
  t.same(extra, { kind: "flow-handover", from: 1, ...handOver }, "only the known fields are kept");
  t.equal(toWorker({ kind: "flow-handover", from: 1, ...handOver, data: "\u00ff\u0000" })?.kind, "flow-handover", "any byte, as latin1 text");
});

t.test("a malformed hand-over or failure is ignored, never thrown on", async (t) => {
  const badHandOvers: Array<[string, Record<string, unknown>]> = [
    ["no ref", { ref: undefined }],
    ["ref 0", { ref: 0 }],
    ["fractional ref", { ref: 1.5 }],
    ["ref as text", { ref: "7" }],
    ["empty flow id", { flowId: "" }],
    ["flow id too long", { flowId: "x".repeat(65) }],
    ["flow id not text", { flowId: 12 }],
    ["no dest", { dest: undefined }],
    ["dest not an object", { dest: "tcp:127.0.0.1:1" }],
    ["unknown transport", { dest: { ...dest, transport: "sctp" } }],
    ["empty address", { dest: { ...dest, address: "" } }],
    ["port 0", { dest: { ...dest, port: 0 } }],
    ["port too large", { dest: { ...dest, port: 65536 } }],
    ["port as text", { dest: { ...dest, port: "5060" } }],
    ["empty data", { data: "" }],
    ["data as bytes", { data: [1, 2] }],
  ];
  for (const [what, change] of badHandOvers) {
    t.equal(toPrimary({ kind: "flow-handover", owner: 2, ...handOver, ...change }), undefined, `to the primary: ${what}`);
    t.equal(toWorker({ kind: "flow-handover", from: 1, ...handOver, ...change }), undefined, `to a worker: ${what}`);
  }
  for (const owner of [undefined, 0, -1, 2.5, "2"]) t.equal(toPrimary({ kind: "flow-handover", owner, ...handOver }), undefined, `owner ${String(owner)}`);
  for (const from of [undefined, 0, "1"]) t.equal(toWorker({ kind: "flow-handover", from, ...handOver }), undefined, `from ${String(from)}`);

  const badFailures: Array<[string, Record<string, unknown>]> = [
    ["no ref", { ref: undefined }],
    ["unknown code", { code: "oops" }],
    ["code not text", { code: 430 }],
    ["no reason", { reason: undefined }],
  ];
  for (const [what, change] of badFailures) {
    t.equal(toPrimary({ kind: "flow-failed", to: 1, ...failure, ...change }), undefined, `failure to the primary: ${what}`);
    t.equal(toWorker({ kind: "flow-failed", ...failure, ...change }), undefined, `failure to a worker: ${what}`);
  }
  t.equal(toPrimary({ kind: "flow-failed", ...failure }), undefined, "to the primary a failure names the worker it is for");
  t.equal(toPrimary({ kind: "flow-failed", to: 0, ...failure }), undefined);
  for (const junk of [null, 3, "flow-handover", [], { kind: "flow-handover" }]) {
    t.doesNotThrow(() => toPrimary(junk));
    t.doesNotThrow(() => toWorker(junk));
  }
});

t.test("transaction-owner messages as they are sent; a missing stamp or owner is none", async (t) => {
  const key = "call-1\nz9hG4bK-1";
  t.same(toPrimary({ kind: "txn-ask", ref: 3, key }), { kind: "txn-ask", ref: 3, key });
  t.same(toWorker({ kind: "txn-ask", ref: 3, key }), { kind: "txn-ask", ref: 3, key });
  t.same(toPrimary({ kind: "txn-claim", ref: 3, stamp: { firstAt: 12.5, heard: true } }), { kind: "txn-claim", ref: 3, stamp: { firstAt: 12.5, heard: true } });
  t.same(toPrimary({ kind: "txn-claim", ref: 3 }), { kind: "txn-claim", ref: 3, stamp: undefined }, "no stamp (JSON drops undefined): none");
  t.same(toPrimary({ kind: "txn-claim", ref: 3, stamp: null }), { kind: "txn-claim", ref: 3, stamp: undefined });
  const owner = { worker: 2, firstAt: 12.5, heard: false };
  t.same(toWorker({ kind: "txn-owner", ref: 3, owner }), { kind: "txn-owner", ref: 3, owner });
  t.same(toWorker({ kind: "txn-owner", ref: 3, owner: { ...owner, junk: 1 }, junk: 2 }), { kind: "txn-owner", ref: 3, owner }, "only the known fields are kept");
  t.same(toWorker({ kind: "txn-owner", ref: 3 }), { kind: "txn-owner", ref: 3, owner: undefined });
  t.same(toPrimary({ kind: "txn-ask", ref: 1, key: "k".repeat(16_384) })?.kind, "txn-ask", "the longest key");
});

t.test("a malformed transaction-owner message is ignored, never thrown on", async (t) => {
  const key = "call-1\nz9hG4bK-1";
  for (const [what, m] of [
    ["no ref", { key }],
    ["ref 0", { ref: 0, key }],
    ["ref as text", { ref: "1", key }],
    ["no key", { ref: 1 }],
    ["empty key", { ref: 1, key: "" }],
    ["key too long", { ref: 1, key: "k".repeat(16_385) }],
    ["key not text", { ref: 1, key: 5 }],
  ] as const) {
    t.equal(toPrimary({ kind: "txn-ask", ...m }), undefined, `question to the primary: ${what}`);
    t.equal(toWorker({ kind: "txn-ask", ...m }), undefined, `question to a worker: ${what}`);
  }
  for (const [what, stamp] of [
    ["not an object", 5],
    ["no firstAt", { heard: true }],
    ["firstAt as text", { firstAt: "1", heard: true }],
    ["firstAt not finite", { firstAt: Infinity, heard: true }],
    ["heard not boolean", { firstAt: 1, heard: "yes" }],
    ["no heard", { firstAt: 1 }],
  ] as const) {
    t.equal(toPrimary({ kind: "txn-claim", ref: 1, stamp }), undefined, `claim: ${what}`);
    t.equal(toWorker({ kind: "txn-owner", ref: 1, owner: typeof stamp === "object" ? { worker: 2, ...stamp } : stamp }), undefined, `owner: ${what}`);
  }
  t.equal(toPrimary({ kind: "txn-claim", stamp: { firstAt: 1, heard: true } }), undefined, "claim without ref");
  for (const worker of [undefined, 0, "2", 1.5]) t.equal(toWorker({ kind: "txn-owner", ref: 1, owner: { worker, firstAt: 1, heard: true } }), undefined, `owner worker ${String(worker)}`);
  t.equal(toWorker({ kind: "txn-owner", ref: 0, owner: undefined }), undefined, "owner answer ref 0");
  t.equal(toWorker({ kind: "txn-claim", ref: 1 }), undefined, "a claim is for the primary only");
  t.equal(toPrimary({ kind: "txn-owner", ref: 1 }), undefined, "an owner answer is for workers only");
  for (const junk of [null, 3, "txn-ask", [], { kind: "txn-claim" }, { kind: "txn-owner", ref: 1, owner: [] }]) {
    t.doesNotThrow(() => toPrimary(junk));
    t.doesNotThrow(() => toWorker(junk));
  }
});
