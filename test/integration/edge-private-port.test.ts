/**
 * A cluster worker's own UDP port (EdgeOptions.udpPrivateSockets), on real
 * sockets on 127.0.0.1: requests towards a target leave from it, while Via,
 * Record-Route and Path name the shared listener; the target's answer, sent
 * back to the source port (RFC 3581), arrives on it and is relayed; requests
 * to phones and responses leave from the shared port. One process has no
 * private socket.
 */
import t from "tap";
import { UDP_IOS } from "../helpers/udp-io.js";
import { UdpPeer, answer, pbxBehaviour, portOf, startEdge } from "../helpers/edge-live.js";
import { waitFor } from "../helpers/wait.js";

interface Rx {
  text: string;
  fromPort: number;
}

/** A UDP peer that records the source port of everything it receives. */
async function recordingPeer(reply?: (text: string, p: UdpPeer, rinfo: { address: string; port: number }) => void): Promise<{ peer: UdpPeer; rx: Rx[] }> {
  const rx: Rx[] = [];
  const peer = await UdpPeer.open((text, p, rinfo) => {
    rx.push({ text, fromPort: rinfo.port });
    reply?.(text, p, rinfo);
  });
  return { peer, rx };
}

function request(method: "INVITE" | "REGISTER", phonePort: number, id: string): string {
  const ruri = method === "INVITE" ? "sip:2001@edge.example.com" : "sip:edge.example.com";
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${phonePort};branch=z9hG4bK${id};rport`,
    "Max-Forwards: 70",
    `From: <sip:1001@edge.example.com>;tag=${id}`,
    `To: <${method === "INVITE" ? ruri : "sip:1001@edge.example.com"}>`,
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:1001@127.0.0.1:${phonePort}>`,
    ...(method === "REGISTER" ? ["Supported: path"] : []),
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

for (const { name: ioName, io } of UDP_IOS) {
  t.test(`${ioName}: with a private UDP port: requests to a target leave from it, Via/Record-Route/Path name the shared port, answers come back through it`, async (t) => {
    const main = await recordingPeer((text, p, rinfo) => {
      if (text.startsWith("INVITE ")) p.sock.send(answer(text, "180 Ringing"), rinfo.port, rinfo.address);
      pbxBehaviour(text, p, rinfo);
    });
    const standby = await recordingPeer(pbxBehaviour);
    const edge = await startEdge(
      [
        { name: "main", uri: `sip:127.0.0.1:${main.peer.port}`, priority: 1, acceptsPath: true },
        { name: "standby", uri: `sip:127.0.0.1:${standby.peer.port}`, priority: 2, acceptsPath: true },
      ],
      { udpPrivateSockets: true, udpIo: io },
    );
    const phone = await recordingPeer();
    t.teardown(async () => {
      phone.peer.close();
      main.peer.close();
      standby.peer.close();
      await edge.stop();
    });
    const shared = portOf(edge, "udp");
    const udpId = edge.listeners.find((l) => l.transport === "udp")!.id;
    const own = edge.transport.privateUdpPorts()[udpId];
    t.ok(own !== undefined && own !== shared, `the UDP listener has a private port (${own}) besides the shared one (${shared})`);
    t.same(Object.keys(edge.transport.privateUdpPorts()), [udpId], "only UDP listeners have one");

    phone.peer.send(request("INVITE", phone.peer.port, "inv1"), shared);
    const inv = await waitFor(() => main.rx.find((r) => r.text.startsWith("INVITE ")), { what: "the INVITE at Main" });
    t.equal(inv.fromPort, own, "the INVITE leaves from the private port");
    const via = /^INVITE [^\r]+\r\nVia: ([^\r]+)\r\n/.exec(inv.text)?.[1];
    t.match(via, new RegExp(`^SIP/2\\.0/UDP 127\\.0\\.0\\.1:${shared};branch=z9hG4bK-sE[^;]+;rport$`), "our Via names the shared port and asks for rport");
    t.match(inv.text, new RegExp(`\\r\\nRecord-Route: <sip:[^@]+@127\\.0\\.0\\.1:${shared};lr>\\r\\n`), "Record-Route names the shared port");
    // Main answered 180 and 200 to the private port: relayed to the phone from the shared one.
    await waitFor(() => phone.rx.some((r) => r.text.startsWith("SIP/2.0 200 OK") && r.text.includes("Call-ID: inv1")), { what: "the 200 at the phone" });
    t.ok(phone.rx.filter((r) => r.text.includes("Call-ID: inv1")).every((r) => r.fromPort === shared), "answers reach the phone from the shared port");
    t.equal(edge.counters.get("rx.response.180"), 1, "the 180 arrived on the private port and was read");

    phone.peer.send(request("REGISTER", phone.peer.port, "reg1"), shared);
    const reg = await waitFor(() => main.rx.find((r) => r.text.startsWith("REGISTER ")), { what: "the REGISTER at Main" });
    t.equal(reg.fromPort, own, "the REGISTER leaves from the private port");
    t.match(reg.text, new RegExp(`^REGISTER [^\\r]+\\r\\nVia: SIP/2\\.0/UDP 127\\.0\\.0\\.1:${shared};branch=z9hG4bK-sE[^;]+;rport\\r\\n`));
    const path = /\r\nPath: <([^>]+)>\r\n/.exec(reg.text)?.[1];
    t.match(path, new RegExp(`^sip:[^@]+@127\\.0\\.0\\.1:${shared};lr$`), "Path names the shared port");
    await waitFor(() => phone.rx.some((r) => r.text.startsWith("SIP/2.0 200 OK") && r.text.includes("Call-ID: reg1")), { what: "the REGISTER's 200 at the phone" });

    // Main calls the phone through the Path: the request reaches the phone from the shared port (its NAT binding).
    main.peer.send(
      [
        "INVITE sip:1001@127.0.0.1 SIP/2.0",
        `Via: SIP/2.0/UDP 127.0.0.1:${main.peer.port};branch=z9hG4bKpbx1;rport`,
        "Max-Forwards: 70",
        `Route: <${path!}>`,
        "From: <sip:2001@edge.example.com>;tag=p1",
        "To: <sip:1001@edge.example.com>",
        "Call-ID: pbx-call-1",
        "CSeq: 1 INVITE",
        `Contact: <sip:pbx@127.0.0.1:${main.peer.port}>`,
        "Content-Length: 0",
        "",
        "",
      ].join("\r\n"),
      shared,
    );
    const toPhone = await waitFor(() => phone.rx.find((r) => r.text.startsWith("INVITE ")), { what: "the PBX's INVITE at the phone" });
    t.equal(toPhone.fromPort, shared, "a request to a phone leaves from the shared port");
    t.equal(standby.rx.filter((r) => !r.text.startsWith("OPTIONS ")).length, 0, "nothing went to the Standby");
    t.equal(edge.counters.get("failover.timeout"), 0, "no failover timeout");
  });

  t.test(`${ioName}: one process (no private socket): requests to a target leave from the shared port`, async (t) => {
    const main = await recordingPeer(pbxBehaviour);
    const edge = await startEdge([{ name: "main", uri: `sip:127.0.0.1:${main.peer.port}`, priority: 1, acceptsPath: true }], { udpIo: io });
    const phone = await recordingPeer();
    t.teardown(async () => {
      phone.peer.close();
      main.peer.close();
      await edge.stop();
    });
    const shared = portOf(edge, "udp");
    t.same(edge.transport.privateUdpPorts(), {}, "no private port");
    phone.peer.send(request("INVITE", phone.peer.port, "one1"), shared);
    const inv = await waitFor(() => main.rx.find((r) => r.text.startsWith("INVITE ")), { what: "the INVITE at Main" });
    t.equal(inv.fromPort, shared, "the INVITE leaves from the shared port");
    await waitFor(() => phone.rx.some((r) => r.text.startsWith("SIP/2.0 200 OK")), { what: "the 200 at the phone" });
  });
}
