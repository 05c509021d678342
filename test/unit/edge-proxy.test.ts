/**
 * Forwarding rules of the proxy core (RFC 3261 §16, RFC 3581, RFC 3327,
 * RFC 5626), asserted on the exact bytes the edge sends.
 */
import t from "tap";
import { deriveBranch } from "../../src/edge/branch.js";
import { isMulticastV4 } from "../../src/edge/proxy.js";
import { PriorityRouter } from "../../src/edge/router.js";
import { makeTarget } from "../../src/edge/targets.js";
import { parse } from "../../src/sip/parse.js";
import { MAIN, PHONE, makeEdge, sip, viasOf } from "../helpers/edge-harness.js";

const INVITE = sip([
  "INVITE sip:2001@edge.example.com SIP/2.0",
  "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKabc123;rport",
  "Max-Forwards: 70",
  "From: <sip:1001@edge.example.com>;tag=aa1",
  "To: <sip:2001@edge.example.com>",
  "Call-ID: call-1@192.168.1.20",
  "CSeq: 1 INVITE",
  "Contact: <sip:1001@192.168.1.20:5062>",
  "Content-Length: 0",
]);

function branchOf(text: string): string {
  const r = parse(text);
  if (!r.ok) throw new Error(r.reason);
  return deriveBranch(r.message);
}

t.test("INVITE from a phone goes to Main with our Via, rport/received, Max-Forwards-1 and Record-Route", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  const s = e.transport.take();
  t.same(s.dest, MAIN);
  const branch = branchOf(INVITE);
  const token = e.flowTokens.encode({ transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "" });
  t.equal(
    s.data,
    sip([
      "INVITE sip:2001@edge.example.com SIP/2.0",
      `Via: SIP/2.0/UDP 192.0.2.1:5060;branch=${branch};rport`,
      "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKabc123;rport=5062;received=198.51.100.7",
      `Record-Route: <sip:${token}@192.0.2.1:5060;lr>`,
      "Max-Forwards: 69",
      "From: <sip:1001@edge.example.com>;tag=aa1",
      "To: <sip:2001@edge.example.com>",
      "Call-ID: call-1@192.168.1.20",
      "CSeq: 1 INVITE",
      "Contact: <sip:1001@192.168.1.20:5062>",
      "Content-Length: 0",
    ]),
  );
  t.equal(e.transport.sent.length, 0);
});

t.test("a retransmission gets the same branch; a new transaction another", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  e.deliver(INVITE, PHONE);
  const a = e.transport.take().data;
  const b = e.transport.take().data;
  t.equal(a, b, "byte-identical retransmission");
  e.deliver(INVITE.replace("z9hG4bKabc123", "z9hG4bKother"), PHONE);
  const c = e.transport.take().data;
  t.not(c.split("\r\n")[1], a.split("\r\n")[1]);
});

t.test("Max-Forwards: absent is added as 70 (RFC 3261 §16.6 step 3); zero gets 483", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE.replace("Max-Forwards: 70\r\n", ""), PHONE);
  t.match(e.transport.take().data, /\r\nMax-Forwards: 70\r\n/);
  e.deliver(INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0"), PHONE);
  const r = e.transport.take();
  t.same(r.dest, PHONE);
  t.match(r.data, /^SIP\/2\.0 483 Too Many Hops\r\n/);
  t.match(r.data, /\r\nTo: <sip:2001@edge\.example\.com>;tag=se/);
  t.match(r.data, /\r\nVia: SIP\/2\.0\/UDP 192\.168\.1\.20:5062;branch=z9hG4bKabc123;rport=5062;received=198\.51\.100\.7\r\n/);
});

t.test("OPTIONS to the edge itself is answered 200 locally", async (t) => {
  const e = makeEdge();
  e.deliver(
    sip([
      "OPTIONS sip:192.0.2.1:5060 SIP/2.0",
      "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKopt1",
      "Max-Forwards: 70",
      "From: <sip:1001@edge.example.com>;tag=o1",
      "To: <sip:192.0.2.1>",
      "Call-ID: opt-1",
      "CSeq: 7 OPTIONS",
      "Content-Length: 0",
    ]),
    PHONE,
  );
  const r = e.transport.take();
  t.same(r.dest, PHONE);
  t.match(r.data, /^SIP\/2\.0 200 OK\r\n/);
  t.match(r.data, /\r\nCSeq: 7 OPTIONS\r\n/);
  t.match(r.data, /\r\nAllow: INVITE, ACK/);
  t.equal(e.transport.sent.length, 0, "not forwarded");
});

t.test("OPTIONS to another URI is forwarded, never Record-Routed", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE.replace(/INVITE/g, "OPTIONS"), PHONE);
  const s = e.transport.take();
  t.same(s.dest, MAIN);
  t.notMatch(s.data, /Record-Route/);
});

const REGISTER = sip([
  "REGISTER sip:edge.example.com SIP/2.0",
  "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKreg1;rport",
  "Max-Forwards: 70",
  "From: <sip:1001@edge.example.com>;tag=r1",
  "To: <sip:1001@edge.example.com>",
  "Call-ID: reg-1",
  "CSeq: 1 REGISTER",
  "Contact: <sip:1001@192.168.1.20:5062;transport=udp>;expires=300",
  "Supported: path",
  "Content-Length: 0",
]);

t.test("REGISTER with Supported: path gets a Path with the flow token, no Record-Route", async (t) => {
  const e = makeEdge();
  e.deliver(REGISTER, PHONE);
  const s = e.transport.take();
  const token = e.flowTokens.encode({ transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "" });
  t.match(s.data, `\r\nPath: <sip:${token}@192.0.2.1:5060;lr>\r\n`);
  t.notMatch(s.data, /Record-Route/);
  t.match(s.data, /\r\nContact: <sip:1001@192\.168\.1\.20:5062;transport=udp>;expires=300\r\n/, "Contact untouched");
});

t.test("REGISTER to a PBX without Path support and no Supported: path gets an aliased Contact, undone in the 200", async (t) => {
  const targets = [makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1, acceptsPath: false })];
  const e = makeEdge({ targets });
  e.deliver(REGISTER.replace("Supported: path\r\n", ""), PHONE);
  const s = e.transport.take();
  t.notMatch(s.data, /\r\nPath:/);
  const m = /\r\nContact: <sip:1001@192\.0\.2\.1:5060;alias=([^>]+)>;expires=300\r\n/.exec(s.data);
  t.ok(m, "Contact points at the edge with an alias token");
  const decoded = e.flowTokens.decode(m![1]!);
  t.same(decoded, { ok: true, flow: { transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "192.168.1.20:5062" } });

  // The PBX's 200 lists the binding as it stored it; the phone sees its own Contact.
  const ourVia = /\r\n(Via: [^\r]+)\r\n/.exec(s.data)![1]!;
  const phoneVia = "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKreg1;rport=5062;received=198.51.100.7";
  e.deliver(
    sip([
      "SIP/2.0 200 OK",
      ourVia,
      phoneVia,
      "From: <sip:1001@edge.example.com>;tag=r1",
      "To: <sip:1001@edge.example.com>;tag=pbx",
      "Call-ID: reg-1",
      "CSeq: 1 REGISTER",
      `Contact: <sip:1001@192.0.2.1:5060;alias=${m![1]}>;expires=300`,
      "Content-Length: 0",
    ]),
    MAIN,
  );
  const r = e.transport.take();
  t.same(r.dest, PHONE);
  t.match(r.data, /\r\nContact: <sip:1001@192\.168\.1\.20:5062>;expires=300\r\n/);

  // A call from the PBX to that binding reaches the phone with its own URI.
  e.deliver(
    sip([
      `INVITE sip:1001@192.0.2.1:5060;alias=${m![1]} SIP/2.0`,
      "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKpbx1",
      "Max-Forwards: 70",
      "From: <sip:2001@edge.example.com>;tag=p1",
      "To: <sip:1001@edge.example.com>",
      "Call-ID: pbx-call-1",
      "CSeq: 1 INVITE",
      "Content-Length: 0",
    ]),
    MAIN,
  );
  const inv = e.transport.take();
  t.same(inv.dest, PHONE);
  t.match(inv.data, /^INVITE sip:1001@192\.168\.1\.20:5062 SIP\/2\.0\r\n/);
});

t.test("responses: our Via removed, sent to the next Via's received/rport", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  const fwd = e.transport.take().data;
  const vias = fwd.split("\r\n").filter((l) => l.startsWith("Via:"));
  const resp = sip([
    "SIP/2.0 180 Ringing",
    ...vias,
    "From: <sip:1001@edge.example.com>;tag=aa1",
    "To: <sip:2001@edge.example.com>;tag=bb2",
    "Call-ID: call-1@192.168.1.20",
    "CSeq: 1 INVITE",
    "Content-Length: 0",
  ]);
  e.deliver(resp, MAIN);
  const r = e.transport.take();
  t.same(r.dest, PHONE, "received/rport win over sent-by");
  t.equal(r.data, resp.replace(`${vias[0]}\r\n`, ""), "only our Via line removed");
});

t.test("responses whose top Via is not ours, or that fail to parse, are dropped and counted", async (t) => {
  const e = makeEdge();
  e.deliver(
    sip(["SIP/2.0 200 OK", "Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKforeign", "From: <sip:a@b>;tag=1", "To: <sip:a@b>;tag=2", "Call-ID: x", "CSeq: 1 INVITE", "Content-Length: 0"]),
    MAIN,
  );
  e.deliver("SIP/2.0 999999 Nope\r\n\r\n", MAIN);
  t.equal(e.transport.sent.length, 0);
  t.equal(e.counters.get("drop.response.not-our-via"), 1);
  t.equal(e.counters.get("drop.parse.bad-status-code"), 1);
});

t.test("a response is relayed as its UAS wrote it: From/To unchecked, our Via taken off unread", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  const vias = viasOf(e.transport.take().data);
  // The PBX mangled our Via (a broken received) and sent a From that does
  // not parse: neither is the edge's to judge, the phone gets the answer.
  const ours = `${vias[0]!};received=[not-an-address`;
  const resp = sip(["SIP/2.0 180 Ringing", ours, vias[1]!, 'From: "unterminated <sip:1001@edge.example.com>;tag=aa1', "To: <sip:2001@edge.example.com>;tag=bb2", "Call-ID: call-1@192.168.1.20", "CSeq: 1 INVITE", "Content-Length: 0"]);
  e.deliver(resp, MAIN);
  const r = e.transport.take();
  t.same(r.dest, PHONE);
  t.equal(r.data, resp.replace(`${ours}\r\n`, ""), "only our Via line removed");
  t.equal(e.counters.get("drop.parse.bad-via"), 0);
  t.equal(e.counters.get("drop.parse.bad-from-to"), 0);
});

t.test("a response whose next Via does not parse is dropped and counted, not sent back to the edge", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  const ours = viasOf(e.transport.take().data)[0]!;
  // The phone's Via broken: on a line of its own, and as a second value on ours.
  for (const viaLines of [[ours, "Via: SIP/2.0/UDP [192.168.1.20:5062;branch=z9hG4bKabc123"], [`${ours}, SIP/2.0/UDP bad host;branch=z9hG4bKx`]]) {
    e.deliver(sip(["SIP/2.0 180 Ringing", ...viaLines, "From: <sip:1001@edge.example.com>;tag=aa1", "To: <sip:2001@edge.example.com>;tag=bb2", "Call-ID: call-1@192.168.1.20", "CSeq: 1 INVITE", "Content-Length: 0"]), MAIN);
  }
  t.equal(e.transport.sent.length, 0, "nothing sent anywhere");
  t.equal(e.counters.get("drop.response.bad-next-via"), 2, "a line of its own, and a second value on our line");
});

t.test("a malformed request is answered 400 with the parse reason", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), PHONE);
  const r = e.transport.take();
  t.match(r.data, /^SIP\/2\.0 400 Bad Request \(CSeq method does not match the request method\)\r\n/);
  t.same(r.dest, PHONE);
  t.equal(e.counters.get("drop.parse.cseq-method-mismatch"), 1);
});

t.test("Proxy-Require gets 420 with Unsupported; unknown URI scheme gets 416", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nProxy-Require: foo, bar"), PHONE);
  const r = e.transport.take();
  t.match(r.data, /^SIP\/2\.0 420 Bad Extension\r\n/);
  t.match(r.data, /\r\nUnsupported: foo, bar\r\n/);
  e.deliver(INVITE.replace("INVITE sip:2001@edge.example.com", "INVITE nobody:opaque"), PHONE);
  t.match(e.transport.take().data, /^SIP\/2\.0 416 Unsupported URI Scheme\r\n/);
});

t.test("a request that already carries our Via for this transaction is a loop: 482", async (t) => {
  const e = makeEdge();
  e.deliver(INVITE, PHONE);
  const looped = e.transport.take().data;
  e.deliver(looped, PHONE);
  t.match(e.transport.take().data, /^SIP\/2\.0 482 Loop Detected\r\n/);
});

t.test("CANCEL and the ACK of a non-2xx follow the INVITE's target even if routing changed", async (t) => {
  let useStandby = false;
  const targets = [makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1 }), makeTarget({ name: "standby", uri: "sip:10.0.0.2:5080", priority: 2 })];
  const e = makeEdge({ targets, router: new PriorityRouter(targets, (tg) => (useStandby ? tg.name === "standby" : true)) });
  e.deliver(INVITE, PHONE);
  const inv = e.transport.take();
  t.same(inv.dest, MAIN);
  useStandby = true;
  const cancel = INVITE.replace(/^INVITE/, "CANCEL").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
  e.deliver(cancel, PHONE);
  const c = e.transport.take();
  t.same(c.dest, MAIN, "CANCEL to Main");
  t.equal(/branch=([^;]+);rport\r\n/.exec(c.data)![1], /branch=([^;]+);rport\r\n/.exec(inv.data)![1], "CANCEL has the INVITE's branch");
  t.notMatch(c.data, /Record-Route/);
  const ack = INVITE.replace(/^INVITE/, "ACK").replace("CSeq: 1 INVITE", "CSeq: 1 ACK").replace("To: <sip:2001@edge.example.com>", "To: <sip:2001@edge.example.com>;tag=x");
  e.deliver(ack, PHONE);
  t.same(e.transport.take().dest, MAIN, "non-2xx ACK to Main");
  e.deliver(INVITE.replace("z9hG4bKabc123", "z9hG4bKnew"), PHONE);
  t.same(e.transport.take().dest.address, "10.0.0.2", "a new INVITE follows the new routing");
});

/** The PBX's in-dialog BYE to the phone, routed by our flow token (Path/Record-Route). */
function byeFromPbx(token: string): string {
  return sip([
    "BYE sip:1001@192.168.1.20:5062 SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKbye1",
    "Max-Forwards: 70",
    `Route: <sip:${token}@192.0.2.1:5060;lr>`,
    "From: <sip:2001@edge.example.com>;tag=bb2",
    "To: <sip:1001@edge.example.com>;tag=aa1",
    "Call-ID: call-1@192.168.1.20",
    "CSeq: 2 BYE",
    "Content-Length: 0",
  ]);
}

t.test("a request from the PBX with our Path/Record-Route token goes to the phone's flow", async (t) => {
  const e = makeEdge();
  const token = e.flowTokens.encode({ transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "" });
  const bye = byeFromPbx(token);
  e.deliver(bye, MAIN);
  const s = e.transport.take();
  t.same(s.dest, PHONE);
  t.notMatch(s.data, /\r\nRoute:/, "our Route popped");
  t.match(s.data, /^BYE sip:1001@192\.168\.1\.20:5062 SIP\/2\.0\r\nVia: SIP\/2\.0\/UDP 192\.0\.2\.1:5060;branch=z9hG4bK-sE/);

  e.deliver(bye.replace(token, token.slice(0, -3) + "AAA"), MAIN);
  t.match(e.transport.take().data, /^SIP\/2\.0 403 Invalid Flow Token\r\n/, "a token that fails the HMAC gets 403");
});

t.test("a request for a TCP flow that no longer exists gets 430 Flow Failed", async (t) => {
  const e = makeEdge();
  const token = e.flowTokens.encode({ transport: "tcp", address: PHONE.address, port: 40000, flowId: "tcp-17", contactHostport: "" });
  e.deliver(
    sip([
      "INVITE sip:1001@192.168.1.20:5062;transport=tcp SIP/2.0",
      "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKinv9",
      "Max-Forwards: 70",
      `Route: <sip:${token}@192.0.2.1:5060;transport=tcp;lr>`,
      "From: <sip:2001@edge.example.com>;tag=p9",
      "To: <sip:1001@edge.example.com>",
      "Call-ID: pbx-call-9",
      "CSeq: 1 INVITE",
      "Content-Length: 0",
    ]),
    MAIN,
  );
  const r = e.transport.take();
  t.same(r.dest, MAIN);
  t.match(r.data, /^SIP\/2\.0 430 Flow Failed\r\n/);
  t.equal(e.counters.get("tx.flow-failed"), 1);
});

t.test("double Record-Route when the request leaves on another transport", async (t) => {
  const targets = [makeTarget({ name: "main", uri: "sip:10.0.0.1:5070;transport=tcp", priority: 1 })];
  const e = makeEdge({ targets });
  e.deliver(INVITE, PHONE);
  const s = e.transport.take();
  t.same(s.dest, { transport: "tcp", address: "10.0.0.1", port: 5070 });
  const rr = s.data.split("\r\n").filter((l) => l.startsWith("Record-Route:"));
  t.equal(rr.length, 2);
  t.equal(rr[0], "Record-Route: <sip:192.0.2.1:5060;transport=tcp;lr>", "upper entry faces the PBX");
  t.match(rr[1]!, /^Record-Route: <sip:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+@192\.0\.2\.1:5060;lr>$/, "lower entry faces the phone and carries its flow");
  t.match(s.data, /\r\nVia: SIP\/2\.0\/TCP 192\.0\.2\.1:5060;branch=/);
});

t.test("a transport error towards the only target answers 503 at once", async (t) => {
  const e = makeEdge({ targets: [makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1 })] });
  e.deliver(INVITE, PHONE);
  const s = e.transport.take();
  s.onError!({ code: "connect-refused", reason: "refused", dest: s.dest });
  const r = e.transport.take();
  t.same(r.dest, PHONE);
  t.match(r.data, /^SIP\/2\.0 503 Next Hop Failed\r\n/);
  t.match(r.data, /\r\nVia: SIP\/2\.0\/UDP 192\.168\.1\.20:5062;branch=z9hG4bKabc123;rport=5062;received=198\.51\.100\.7\r\n/);
  t.notMatch(r.data, /sE/, "our own Via is not in the answer");
});

t.test("regression: the caller's in-dialog request is not sent back to it by its own Record-Route token", async (t) => {
  const e = makeEdge();
  const token = e.flowTokens.encode({ transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "" });
  e.deliver(
    sip([
      "ACK sip:pbx@10.0.0.2:5080 SIP/2.0",
      "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKack2",
      "Max-Forwards: 70",
      `Route: <sip:${token}@192.0.2.1:5060;lr>`,
      "From: <sip:1001@edge.example.com>;tag=aa1",
      "To: <sip:2001@edge.example.com>;tag=bb2",
      "Call-ID: call-rr",
      "CSeq: 1 ACK",
      "Content-Length: 0",
    ]),
    PHONE,
  );
  const s = e.transport.take();
  t.same(s.dest, { transport: "udp", address: "10.0.0.2", port: 5080 }, "follows the Request-URI to the PBX of the dialog (Standby here), not the router");
  t.notMatch(s.data, /\r\nRoute:/);
});

t.test("an in-dialog request towards a PBX that is down gets 408 at once; ACK is never answered", async (t) => {
  const e = makeEdge({ isDown: (tg) => tg.name === "main" });
  const token = e.flowTokens.encode({ transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "" });
  const inDialog = (method: string) =>
    sip([
      `${method} sip:pbx@10.0.0.1:5070 SIP/2.0`,
      `Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK${method}`,
      "Max-Forwards: 70",
      `Route: <sip:${token}@192.0.2.1:5060;lr>`,
      "From: <sip:1001@edge.example.com>;tag=aa1",
      "To: <sip:2001@edge.example.com>;tag=bb2",
      "Call-ID: call-down",
      `CSeq: 2 ${method}`,
      "Content-Length: 0",
    ]);
  e.deliver(inDialog("BYE"), PHONE);
  t.match(e.transport.take(), { dest: PHONE, data: /^SIP\/2\.0 408 Target Down\r\n/ });
  e.deliver(inDialog("ACK"), PHONE);
  t.same(e.transport.take().dest, MAIN, "ACK is forwarded (never answered)");
});

t.test("requests towards a target ask for the worker's own UDP port; Via, Record-Route and Path still name the shared listener; requests to a phone and responses do not", async (t) => {
  const e = makeEdge();
  const branch = branchOf(INVITE);
  const token = e.flowTokens.encode({ transport: "udp", address: PHONE.address, port: PHONE.port, flowId: "", contactHostport: "" });
  e.deliver(INVITE, PHONE);
  const inv = e.transport.take();
  t.match(inv, { dest: MAIN, fromPrivatePort: true }, "INVITE to Main: from the private port");
  t.equal(inv.data.split("\r\n")[1], `Via: SIP/2.0/UDP 192.0.2.1:5060;branch=${branch};rport`, "our Via names the shared listener and asks for rport");
  t.match(inv.data, `\r\nRecord-Route: <sip:${token}@192.0.2.1:5060;lr>\r\n`, "Record-Route names the shared listener");

  // The answer (arriving on either socket) goes to the phone from the shared one.
  const vias = inv.data.split("\r\n").filter((l) => l.startsWith("Via:"));
  e.deliver(sip(["SIP/2.0 180 Ringing", ...vias, "From: <sip:1001@edge.example.com>;tag=aa1", "To: <sip:2001@edge.example.com>;tag=bb2", "Call-ID: call-1@192.168.1.20", "CSeq: 1 INVITE", "Content-Length: 0"]), MAIN);
  t.match(e.transport.take(), { dest: PHONE, fromPrivatePort: false }, "a response: the shared port");

  // CANCEL follows the INVITE to its target, from the private port too.
  e.deliver(INVITE.replace(/^INVITE/, "CANCEL").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"), PHONE);
  const c = e.transport.take();
  t.match(c, { dest: MAIN, fromPrivatePort: true }, "CANCEL to Main: from the private port");
  t.equal(c.data.split("\r\n")[1], inv.data.split("\r\n")[1], "the CANCEL's Via is the INVITE's (RFC 3261 §9.1), whichever worker sends it");

  e.deliver(REGISTER, PHONE);
  const reg = e.transport.take();
  t.match(reg, { dest: MAIN, fromPrivatePort: true }, "REGISTER to Main: from the private port");
  t.match(reg.data, /^REGISTER [^\r]+\r\nVia: SIP\/2\.0\/UDP 192\.0\.2\.1:5060;branch=z9hG4bK-sE[^;]+;rport\r\n/);
  t.match(reg.data, `\r\nPath: <sip:${token}@192.0.2.1:5060;lr>\r\n`, "Path names the shared listener");

  // From the PBX to the phone (flow token): the phone's NAT binding is on the shared port.
  e.deliver(byeFromPbx(token), MAIN);
  t.match(e.transport.take(), { dest: PHONE, fromPrivatePort: false }, "a request to a phone: the shared port");

  e.deliver(INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0"), PHONE);
  t.match(e.transport.take(), { dest: PHONE, fromPrivatePort: false, data: /^SIP\/2\.0 483 / }, "a local reply: the shared port");
});

t.test("a transport error relaying a response is counted and nothing else: no health outcome, no retry, no answer", async (t) => {
  const outcomes: string[] = [];
  const e = makeEdge({ observer: { targetOutcome: (_tg, o) => outcomes.push(o) } });
  e.deliver(INVITE, PHONE);
  const inv = e.transport.take();
  const vias = inv.data.split("\r\n").filter((l) => l.startsWith("Via:"));
  const ringing = sip(["SIP/2.0 180 Ringing", ...vias, "From: <sip:1001@edge.example.com>;tag=aa1", "To: <sip:2001@edge.example.com>;tag=bb2", "Call-ID: call-1@192.168.1.20", "CSeq: 1 INVITE", "Content-Length: 0"]);
  for (let i = 0; i < 2; i++) {
    e.deliver(ringing, MAIN);
    const r = e.transport.take();
    t.same(r.dest, PHONE);
    r.onError!({ code: "send-failed", reason: "gone", dest: r.dest });
  }
  t.equal(e.counters.get("tx.error.send-failed"), 2);
  t.equal(e.transport.sent.length, 0, "nothing sent after the errors");
  t.same(outcomes, [], "a response's error says nothing about the target");
});

t.test("a ';tag=' inside the To URI or display name is no To tag: the INVITE is initial, Record-Routed, and a local answer adds our tag", async (t) => {
  // Regression: the dialog check was a regex over the whole To value.
  for (const to of ["To: <sip:2001@edge.example.com;tag=uri-param>", 'To: "x;tag=y" <sip:2001@edge.example.com>']) {
    const e = makeEdge();
    e.deliver(INVITE.replace("To: <sip:2001@edge.example.com>", to), PHONE);
    t.match(e.transport.take().data, /\r\nRecord-Route: </, `${to}: Record-Routed`);
    e.deliver(INVITE.replace("To: <sip:2001@edge.example.com>", to).replace("Max-Forwards: 70", "Max-Forwards: 0"), PHONE);
    const r = e.transport.take().data;
    t.match(r, /^SIP\/2\.0 483 /);
    t.ok(r.includes(`\r\n${to};tag=se`), `${to}: the 483 carries our To tag`);
  }
  // A real To tag, with LWS and in upper case, is one.
  const e = makeEdge();
  e.deliver(INVITE.replace("To: <sip:2001@edge.example.com>", "To: <sip:2001@edge.example.com> ; TAG = b7"), PHONE);
  t.notMatch(e.transport.take().data, /Record-Route/, "in-dialog: not Record-Routed");
});

t.test("isMulticastV4 says what /^2(2[4-9]|3[0-9])\\./ said (it replaced it on the response path)", async (t) => {
  const re = /^2(2[4-9]|3[0-9])\./;
  let n = 0;
  for (let a = 0; a < 256; a++)
    for (const rest of [".0.0.1", ".255.255.255", "", ".", "x"]) {
      const s = `${a}${rest}`;
      if (isMulticastV4(s) !== re.test(s)) t.fail(s);
      n++;
    }
  for (const s of ["2", "22", "224", "2240.0.0.1", "::1", "2001:db8::1", "224.example.com"]) t.equal(isMulticastV4(s), re.test(s), s);
  t.ok(isMulticastV4("239.255.255.250") && !isMulticastV4("240.0.0.1") && !isMulticastV4("223.1.1.1"), `${n} compared`);
});
