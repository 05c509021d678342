/**
 * The transport layer's seam to other cluster workers' flows (RemoteFlows),
 * on a real TCP listener on 127.0.0.1 with a fake seam: flow ids carry the
 * owner tag, a flow of another owner is handed over and its failure comes
 * back through onError, and everything else behaves as in one process.
 */
import t, { type Test } from "tap";
import { TEST_LIMITS } from "../helpers/transport-limits.js";
import { connect, type Socket } from "node:net";
import { once } from "node:events";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { TransportLayer, type TransportLayerOptions } from "../../src/transport/layer.js";
import type { Endpoint, InboundMessage, TransportError } from "../../src/transport/types.js";
import { FakeRemote } from "../helpers/fake-remote-flows.js";
import { waitFor } from "../helpers/wait.js";

const LIMITS = TEST_LIMITS;
const MSG = "OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
const DEST: Endpoint = { transport: "tcp", address: "127.0.0.1", port: 40000 };


async function layer(t: Test, extra: Partial<TransportLayerOptions>) {
  const l = new TransportLayer({ listeners: [{ transport: "tcp", address: "127.0.0.1", port: 0 }], limits: LIMITS, clock: new FakeClock(), logger: silentLogger, ...extra });
  const received: InboundMessage[] = [];
  l.onMessage = (m) => received.push(m);
  const bound = await l.start();
  t.teardown(() => l.stop());
  return { l, received, port: bound[0]!.port };
}

async function phone(t: Test, port: number): Promise<{ sock: Socket; data: () => string }> {
  const sock = connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  sock.on("error", () => {});
  t.teardown(() => {
    sock.destroy();
  });
  await once(sock, "connect");
  return { sock, data: () => Buffer.concat(chunks).toString("latin1") };
}

t.test("a worker's flows carry its tag and are written locally; another worker's flow is handed to it", async (t) => {
  const remote = new FakeRemote();
  const { l, received, port } = await layer(t, { flowOwner: "3", remoteFlows: remote });
  const p = await phone(t, port);
  p.sock.write(MSG);
  const m = await waitFor(() => received[0], { what: "the phone's message" });
  t.match(m.flowId, /^3\./, "the flow id names this worker");
  t.ok(l.send(m.source, MSG, { flowId: m.flowId! }), "its own flow: sent");
  await waitFor(() => p.data() === MSG, { what: "the message on the phone's connection" });
  t.equal(remote.got.length, 0, "nothing handed over for a flow held here");

  const errors: TransportError[] = [];
  t.ok(l.send(DEST, MSG, { flowId: "5.abcdef-1", onError: (e) => errors.push(e) }), "another worker's flow: handed over, send returns true");
  t.same(remote.got.map(({ owner, flowId, dest, data }) => ({ owner, flowId, dest, data })), [{ owner: "5", flowId: "5.abcdef-1", dest: DEST, data: MSG }], "to the owner named in the id, with the destination and the bytes");
  t.equal(l.stats().handedOver, 1, "counted");
  t.same(errors, [], "no error while the owner says nothing");

  remote.got[0]!.fail("flow-gone", "no such flow in worker 5");
  t.same(errors, [{ code: "flow-gone", reason: "no such flow in worker 5", dest: DEST }], "the owner's failure reaches onError with the destination");
  t.equal(l.stats().dropped["handover-failed"], 1, "and is counted as a drop");

  // A failure report must not reach the caller's exceptions into the seam.
  t.ok(l.send(DEST, MSG, { flowId: "5.abcdef-2", onError: () => { throw new Error("caller bug"); } }));
  t.doesNotThrow(() => remote.got[1]!.fail("write-failed", "EPIPE"));
  t.equal(l.stats().dropped["error-callback-threw"], 1, "a throwing callback is caught and counted");
  t.ok(l.send(DEST, MSG, { flowId: "5.abcdef-3" }), "without onError too");
  t.doesNotThrow(() => remote.got[2]!.fail("flow-gone", "gone"));
});

t.test("a flow that is gone here, or names no owner that can be asked, is gone: send returns false", async (t) => {
  const remote = new FakeRemote();
  const { l } = await layer(t, { flowOwner: "3", remoteFlows: remote });
  t.notOk(l.send(DEST, MSG, { flowId: "3.abcdef-9" }), "ours, closed or never opened");
  t.notOk(l.send(DEST, MSG, { flowId: "abcdef-9" }), "an untagged id (a single process's token)");
  t.notOk(l.send(DEST, MSG, { flowId: "tcp-17" }), "garbage");
  t.equal(remote.got.length, 0, "none of them handed over");
  await l.stop();
  t.notOk(l.send(DEST, MSG, { flowId: "5.abcdef-1" }), "after stop nothing is handed over");
  t.equal(remote.got.length, 0);
  t.equal(l.stats().handedOver, 0);
});

t.test("one process (no tag, no seam) works as before", async (t) => {
  const { l, received, port } = await layer(t, {});
  const p = await phone(t, port);
  p.sock.write(MSG);
  const m = await waitFor(() => received[0], { what: "the phone's message" });
  t.match(m.flowId, /^[0-9a-f]{6}-[0-9a-z]+$/, "an untagged flow id");
  t.ok(l.send(m.source, MSG, { flowId: m.flowId! }));
  t.notOk(l.send(DEST, MSG, { flowId: "5.abcdef-1" }), "a tagged id without a seam: gone");
});

t.test("a tag is only what flow ids can carry", async (t) => {
  t.throws(() => new TransportLayer({ listeners: [], limits: LIMITS, clock: new FakeClock(), logger: silentLogger, flowOwner: "w.1" }), /owner tag/);
});
