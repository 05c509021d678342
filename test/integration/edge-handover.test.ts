/**
 * A cluster worker's edge in one process, on real sockets on 127.0.0.1,
 * with a fake RemoteFlows in place of the IPC relay: a request from the PBX
 * for a phone connection another worker holds (its tag in the token's flow
 * id) is handed over, fully processed (our Via, our Route popped); a
 * failure the owner reports comes back as 430 Flow Failed, counted; a flow
 * of this worker's that is gone is 430 at once, as before.
 */
import t from "tap";
import { FlowTokenCodec } from "../../src/edge/flow-token.js";
import type { Endpoint } from "../../src/transport/types.js";
import { UdpPeer, portOf, startEdge } from "../helpers/edge-live.js";
import { FakeRemote } from "../helpers/fake-remote-flows.js";
import { waitFor } from "../helpers/wait.js";


// startEdge's flow-token key.
const tokens = new FlowTokenCodec(Buffer.alloc(32, 9));
const PHONE: Endpoint = { transport: "tcp", address: "127.0.0.1", port: 40000 };

function fromPbx(method: string, pbxPort: number, id: string, route: string | undefined, ruri = "sip:1001@127.0.0.1:40000;transport=tcp"): string {
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${pbxPort};branch=z9hG4bK${id};rport`,
    "Max-Forwards: 70",
    ...(route === undefined ? [] : [`Route: <${route}>`]),
    "From: <sip:2001@edge.example.com>;tag=p1",
    `To: <sip:1001@edge.example.com>${method === "INVITE" ? "" : ";tag=ph1"}`,
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:pbx@127.0.0.1:${pbxPort}>`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

t.test("a request for another worker's flow is handed to it; the owner's failure is answered 430", async (t) => {
  const pbx = await UdpPeer.open();
  const remote = new FakeRemote();
  const edge = await startEdge([{ name: "main", uri: `sip:127.0.0.1:${pbx.port}`, priority: 1, acceptsPath: true }], { flowOwner: "1", remoteFlows: remote });
  t.teardown(async () => {
    pbx.close();
    await edge.stop();
  });
  const udp = portOf(edge, "udp");
  const tcp = portOf(edge, "tcp");
  const token = (flowId: string): string => tokens.encode({ ...PHONE, flowId, contactHostport: "" });
  const route = (flowId: string): string => `sip:${token(flowId)}@127.0.0.1:${udp};lr`;

  pbx.send(fromPbx("INVITE", pbx.port, "inv1", route("2.abc123-1")), udp);
  const h = await waitFor(() => remote.got[0], { what: "the INVITE handed over" });
  t.equal(h.owner, "2", "to the worker named in the flow id");
  t.equal(h.flowId, "2.abc123-1");
  t.same(h.dest, PHONE, "towards the phone in the token");
  t.match(h.data, new RegExp(`^INVITE sip:1001@127\\.0\\.0\\.1:40000;transport=tcp SIP/2\\.0\\r\\nVia: SIP/2\\.0/TCP 127\\.0\\.0\\.1:${tcp};branch=z9hG4bK-sE`), "ready to write: our Via on top");
  t.notMatch(h.data, /\r\nRoute:/, "our Route popped");
  t.match(h.data, /\r\nRecord-Route: /, "record-routed like any INVITE to a phone");
  t.equal(edge.transport.stats().handedOver, 1);
  t.equal(edge.counters.get("tx.request.INVITE"), 1, "counted as sent");
  t.notOk(pbx.received.some((m) => m.startsWith("SIP/2.0 430")), "no 430 while the owner says nothing");

  h.fail("flow-gone", "worker 2 holds no flow 2.abc123-1");
  const r430 = await waitFor(() => pbx.received.find((m) => m.startsWith("SIP/2.0 430 ")), { what: "the 430 at the PBX" });
  t.match(r430, /^SIP\/2\.0 430 Flow Failed\r\nVia: SIP\/2\.0\/UDP 127\.0\.0\.1:\d+;branch=z9hG4bKinv1;rport=\d+;received=127\.0\.0\.1\r\n/, "the owner's failure: 430 to the PBX, on the PBX's own Via");
  t.match(r430, /\r\nCall-ID: inv1\r\n/);
  t.equal(edge.counters.get("tx.flow-failed"), 1, "counted as a failed flow");
  t.equal(edge.counters.get("tx.error.flow-gone"), 1);
  t.equal(edge.counters.get("reply.430"), 1);

  // A BYE in alias mode (the token in the Request-URI), and a write failure at the owner.
  const n = pbx.received.length;
  pbx.send(fromPbx("BYE", pbx.port, "bye1", undefined, `sip:1001@127.0.0.1:${udp};alias=${token("2.abc123-1")}`), udp);
  const bye = await waitFor(() => remote.got[1], { what: "the BYE handed over" });
  t.match(bye.data, /^BYE sip:1001@127\.0\.0\.1:40000 SIP\/2\.0\r\n/, "the phone's own Contact back as Request-URI");
  bye.fail("write-failed", "EPIPE");
  t.match(await waitFor(() => pbx.received.slice(n).find((m) => m.includes("Call-ID: bye1")), { what: "the BYE's answer" }), /^SIP\/2\.0 430 Flow Failed\r\n/, "a write failure at the owner is a 430 too");
  t.equal(edge.counters.get("tx.flow-failed"), 2);

  // An ACK is never answered, whatever happens to it.
  pbx.send(fromPbx("ACK", pbx.port, "ack1", route("2.abc123-1")), udp);
  const ack = await waitFor(() => remote.got[2], { what: "the ACK handed over" });
  ack.fail("flow-gone", "gone");
  // Something after the ACK, to know its failure has been dealt with.
  pbx.send(fromPbx("OPTIONS", pbx.port, "opt1", route("1.abc123-9")), udp);
  await waitFor(() => pbx.received.some((m) => m.includes("Call-ID: opt1")), { what: "the OPTIONS answered" });
  t.notOk(pbx.received.some((m) => m.includes("Call-ID: ack1")), "no answer to the ACK");
  t.equal(edge.counters.get("tx.error.flow-gone"), 2, "its failure counted");

  t.equal(remote.got.length, 3, "this worker's own flow was not handed over");
  t.match(pbx.received.find((m) => m.includes("Call-ID: opt1")), /^SIP\/2\.0 430 Flow Failed\r\n/, "one of ours that is gone: 430 at once");
  pbx.send(fromPbx("OPTIONS", pbx.port, "opt2", route("abc123-9")), udp);
  t.match(await waitFor(() => pbx.received.find((m) => m.includes("Call-ID: opt2")), { what: "the untagged flow's answer" }), /^SIP\/2\.0 430 Flow Failed\r\n/, "an untagged flow id (a single process's token): 430");
  t.equal(remote.got.length, 3);
});
