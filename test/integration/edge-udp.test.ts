/**
 * The proxy on real sockets: phone and PBX are UDP sockets on 127.0.0.1.
 */
import t from "tap";
import { UDP_IOS } from "../helpers/udp-io.js";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { UdpPeer, answer, portOf, startEdge } from "../helpers/edge-live.js";
import { waitFor } from "../helpers/wait.js";

function invite(branch: string, callId: string): string {
  return [
    "INVITE sip:2001@edge.example.com SIP/2.0",
    `Via: SIP/2.0/UDP 127.0.0.1:5999;branch=${branch};rport`,
    "Max-Forwards: 70",
    "From: <sip:1001@edge.example.com>;tag=ph1",
    "To: <sip:2001@edge.example.com>",
    `Call-ID: ${callId}`,
    "CSeq: 1 INVITE",
    "Contact: <sip:1001@127.0.0.1:5999>",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

for (const { name: ioName, io } of UDP_IOS) {
  t.test(`${ioName}: INVITE through the edge to Main and the answers back to the phone`, async (t) => {
    const pbx = await UdpPeer.open((text, p, rinfo) => {
      if (text.startsWith("INVITE")) {
        p.sock.send(answer(text, "180 Ringing"), rinfo.port, rinfo.address);
        p.sock.send(answer(text, "200 OK"), rinfo.port, rinfo.address);
      }
    });
    const edge = await startEdge([{ name: "main", uri: `sip:127.0.0.1:${pbx.port}`, priority: 1, acceptsPath: true }], { udpIo: io });
    const phone = await UdpPeer.open();
    t.teardown(async () => {
      phone.close();
      pbx.close();
      await edge.stop();
    });
    const udp = portOf(edge, "udp");
    phone.send(invite("z9hG4bKlive1", "live-1"), udp);
    const atPbx = await pbx.nth(1);
    t.match(atPbx, new RegExp(`^INVITE sip:2001@edge\\.example\\.com SIP/2\\.0\\r\\nVia: SIP/2\\.0/UDP 127\\.0\\.0\\.1:${udp};branch=z9hG4bK-sE`));
    t.match(atPbx, new RegExp(`\\r\\nVia: SIP/2\\.0/UDP 127\\.0\\.0\\.1:5999;branch=z9hG4bKlive1;rport=${phone.port};received=127\\.0\\.0\\.1\\r\\n`));
    t.match(atPbx, /\r\nRecord-Route: <sip:[^@]+@127\.0\.0\.1:\d+;lr>\r\n/);
    t.match(atPbx, /\r\nMax-Forwards: 69\r\n/);
    const ringing = await phone.nth(1);
    t.match(ringing, /^SIP\/2\.0 180 Ringing\r\nVia: SIP\/2\.0\/UDP 127\.0\.0\.1:5999;branch=z9hG4bKlive1;/, "our Via removed");
    t.match(await phone.nth(2), /^SIP\/2\.0 200 OK\r\n/);
    t.equal(edge.counters.get("tx.response.200"), 1);
  });

  t.test(`${ioName}: OPTIONS to the edge is answered locally, with the request's bytes as they came`, async (t) => {
    const edge = await startEdge([{ name: "main", uri: "sip:127.0.0.1:9", priority: 1 }], { udpIo: io });
    const phone = await UdpPeer.open();
    t.teardown(async () => {
      phone.close();
      await edge.stop();
    });
    const udp = portOf(edge, "udp");
    phone.send(
      [`OPTIONS sip:127.0.0.1:${udp} SIP/2.0`, "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt", "Max-Forwards: 70", "From: <sip:a@b>;tag=1", "To: <sip:127.0.0.1>", "Call-ID: o1", "CSeq: 1 OPTIONS", "Content-Length: 0", "", ""].join("\r\n"),
      udp,
    );
    t.match(await phone.nth(1), /^SIP\/2\.0 200 OK\r\n/);

    // Regression: UTF-8 in a display name was encoded twice in the edge's own answers.
    // The UTF-8 bytes of "Jürgen" and "Zoë", as UdpPeer's latin1 text: one character per byte.
    const from = `From: "${Buffer.from("Jürgen", "utf8").toString("latin1")}" <sip:a@b>;tag=1`;
    const to = `To: "${Buffer.from("Zoë", "utf8").toString("latin1")}" <sip:127.0.0.1>`;
    phone.send([`OPTIONS sip:127.0.0.1:${udp} SIP/2.0`, "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt8", "Max-Forwards: 70", from, to, "Call-ID: o8", "CSeq: 1 OPTIONS", "Content-Length: 0", "", ""].join("\r\n"), udp);
    const answer = await phone.nth(2);
    t.match(answer, /^SIP\/2\.0 200 OK\r\n/);
    t.ok(answer.includes(`\r\n${from}\r\n`), "From byte for byte");
    t.ok(answer.includes(`\r\n${to};tag=`), "To byte for byte, with our tag");
  });

  t.test(`${ioName}: every RFC 4475 message sent to a running edge: it stays up, forwards the valid, answers or drops the rest`, async (t) => {
    const pbx = await UdpPeer.open();
    const edge = await startEdge([{ name: "main", uri: `sip:127.0.0.1:${pbx.port}`, priority: 1, acceptsPath: true }], { udpIo: io });
    const phone = await UdpPeer.open();
    t.teardown(async () => {
      phone.close();
      pbx.close();
      await edge.stop();
    });
    const udp = portOf(edge, "udp");
    const dir = join(import.meta.dirname, "..", "fixtures", "conformance", "rfc4475");
    const files = readdirSync(dir).filter((f) => f.endsWith(".dat")).sort();
    for (const f of files) phone.send(readFileSync(join(dir, f), "latin1"), udp);
    // A probe at the end: when its answer is back, every earlier datagram was handled.
    phone.send(
      [`OPTIONS sip:127.0.0.1:${udp} SIP/2.0`, "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKlast", "Max-Forwards: 70", "From: <sip:a@b>;tag=1", "To: <sip:127.0.0.1>", "Call-ID: last", "CSeq: 1 OPTIONS", "Content-Length: 0", "", ""].join("\r\n"),
      udp,
    );
    await waitFor(() => phone.received.some((r) => r.includes("Call-ID: last")));
    const c = edge.counters.snapshot();
    const parseDrops = Object.entries(c).filter(([k]) => k.startsWith("drop.parse.")).reduce((a, [, v]) => a + v, 0);
    t.ok(parseDrops >= 20, `malformed messages counted by reason (${parseDrops})`);
    t.ok((c["reply.400"] ?? 0) >= 15, "400 answers to malformed requests");
    t.equal(c["reply.505"], 1, "505 for SIP/7.0");
    t.equal(c["reply.483"], 1, "483 for Max-Forwards 0");
    t.equal(c["reply.416"] ?? 0, 2, "416 for unknown Request-URI schemes");
    t.equal(c["reply.420"], 1, "420 for Proxy-Require");
    await waitFor(() => pbx.received.length >= 10);
    t.ok(pbx.received.every((m) => m.includes(";branch=z9hG4bK-sE")), "everything forwarded carries our Via");
    t.notOk(pbx.received.some((m) => m.includes("INVITE sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.15")), "the trailing octets of dblreq are never forwarded");
  });
}
