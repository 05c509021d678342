/**
 * OPTIONS prober against fake PBXs on real loopback sockets. Timeouts and
 * retransmissions are driven by a fake clock; replies are awaited as events.
 */
import t from "tap";
import { createSocket, type Socket } from "node:dgram";
import { createServer, type AddressInfo } from "node:net";
import { once } from "node:events";
import { Prober, type ProbeResult, type ProbeTarget } from "../../src/health/prober.js";
import { parse } from "../../src/sip/parse.js";
import { FakeClock, systemClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";

/** A UDP PBX stand-in: `answer` decides the reply (or none) per OPTIONS. */
async function udpPbx(answer: (req: string) => string | undefined): Promise<{ sock: Socket; port: number; received: string[] }> {
  const sock = createSocket("udp4");
  const received: string[] = [];
  sock.on("message", (msg, rinfo) => {
    const text = msg.toString("latin1");
    received.push(text);
    const reply = answer(text);
    if (reply !== undefined) sock.send(reply, rinfo.port, rinfo.address);
  });
  sock.bind(0, "127.0.0.1");
  await once(sock, "listening");
  return { sock, port: (sock.address() as AddressInfo).port, received };
}

function replyTo(req: string, statusLine: string, extra: string[] = []): string {
  const r = parse(req);
  if (!r.ok) throw new Error(r.reason);
  const keep = r.message.headers.filter((h) => ["via", "from", "to", "call-id", "cseq"].includes(h.name)).map((h) => h.raw);
  return [`SIP/2.0 ${statusLine}`, ...keep, ...extra, "Content-Length: 0", "", ""].join("\r\n");
}

function probeOnce(p: Prober, target: ProbeTarget): Promise<ProbeResult> {
  return new Promise((resolve) => p.probe(target, resolve));
}

t.test("UDP: a 200 is matched by branch with an RTT", async (t) => {
  const pbx = await udpPbx((req) => replyTo(req, "200 OK"));
  const prober = new Prober({ clock: systemClock, logger: silentLogger, timeoutMs: 10_000, viaHost: "127.0.0.1", closeStreamAfterTimeouts: 3 });
  const target: ProbeTarget = { name: "main", transport: "udp", address: "127.0.0.1", port: pbx.port, uri: `sip:127.0.0.1:${pbx.port}` };
  const [a, b] = await Promise.all([probeOnce(prober, target), probeOnce(prober, target)]);
  t.match(a, { ok: true, status: 200 });
  t.match(b, { ok: true, status: 200 });
  t.ok(a.rttMs >= 0);
  const req = parse(pbx.received[0]!);
  t.ok(req.ok && req.message.method === "OPTIONS" && req.message.topVia.branch!.startsWith("z9hG4bK-sEp"));
  t.equal(prober.inFlight, 0);
  prober.stop();
  pbx.sock.close();
});

t.test("UDP: 503 with Retry-After is reported with its hold", async (t) => {
  const pbx = await udpPbx((req) => replyTo(req, "503 Service Unavailable", ["Retry-After: 120"]));
  const prober = new Prober({ clock: systemClock, logger: silentLogger, timeoutMs: 10_000, viaHost: "127.0.0.1", closeStreamAfterTimeouts: 3 });
  const r = await probeOnce(prober, { name: "main", transport: "udp", address: "127.0.0.1", port: pbx.port, uri: "sip:127.0.0.1" });
  t.match(r, { ok: true, status: 503, retryAfterSeconds: 120 });
  prober.stop();
  pbx.sock.close();
});

t.test("UDP: silence retransmits (Timer E) and times out; a reply after the timeout is ignored", async (t) => {
  const clock = new FakeClock();
  let arrived = 0;
  let notify: () => void = () => {};
  const pbx = await udpPbx(() => {
    arrived++;
    notify();
    return undefined;
  });
  const waitArrivals = (n: number) =>
    new Promise<void>((resolve) => {
      notify = () => arrived >= n && resolve();
      notify();
    });
  const prober = new Prober({ clock, logger: silentLogger, timeoutMs: 2000, t1Ms: 500, viaHost: "127.0.0.1", closeStreamAfterTimeouts: 3 });
  const results: ProbeResult[] = [];
  prober.probe({ name: "main", transport: "udp", address: "127.0.0.1", port: pbx.port, uri: "sip:127.0.0.1" }, (r) => results.push(r));
  await waitArrivals(1);
  clock.advance(500);
  await waitArrivals(2);
  clock.advance(1000);
  await waitArrivals(3);
  t.same(results, []);
  clock.advance(500);
  t.match(results, [{ ok: false, kind: "timeout" }], "a locally generated timeout");
  t.equal(clock.pending, 0, "no timers left");
  // The PBX answers late: nothing happens.
  pbx.sock.send(replyTo(pbx.received[0]!, "200 OK"), (prober as unknown as { udp: Map<number, Socket> }).udp.get(4)!.address().port, "127.0.0.1");
  t.equal(results.length, 1);
  prober.stop();
  pbx.sock.close();
});

t.test("TCP: reply over the probe connection; refused connection is a transport failure", async (t) => {
  const server = createServer((sock) => {
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end >= 0) {
        sock.write(replyTo(buf.slice(0, end + 4), "200 OK"));
        buf = buf.slice(end + 4);
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  const prober = new Prober({ clock: systemClock, logger: silentLogger, timeoutMs: 10_000, viaHost: "127.0.0.1", closeStreamAfterTimeouts: 3 });
  const target: ProbeTarget = { name: "main", transport: "tcp", address: "127.0.0.1", port, uri: `sip:127.0.0.1:${port};transport=tcp` };
  t.match(await probeOnce(prober, target), { ok: true, status: 200 });
  t.match(await probeOnce(prober, target), { ok: true, status: 200 }, "connection reused");
  prober.stop();
  server.close();
  await once(server, "close");

  const prober2 = new Prober({ clock: systemClock, logger: silentLogger, timeoutMs: 10_000, viaHost: "127.0.0.1", closeStreamAfterTimeouts: 3 });
  t.match(await probeOnce(prober2, { ...target, name: "dead" }), { ok: false, kind: "transport" });
  prober2.stop();
});

t.test("TCP: an open but silent connection is closed after N consecutive timeouts", async (t) => {
  const clock = new FakeClock();
  let conns = 0;
  let gotData: () => void = () => {};
  const server = createServer((sock) => {
    conns++;
    sock.on("data", () => gotData());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  const prober = new Prober({ clock, logger: silentLogger, timeoutMs: 1000, viaHost: "127.0.0.1", closeStreamAfterTimeouts: 2 });
  const target: ProbeTarget = { name: "main", transport: "tcp", address: "127.0.0.1", port, uri: "sip:127.0.0.1;transport=tcp" };
  for (let i = 0; i < 2; i++) {
    const r: ProbeResult[] = [];
    const arrived = new Promise<void>((resolve) => (gotData = resolve));
    prober.probe(target, (x) => r.push(x));
    await arrived;
    clock.advance(1000);
    t.match(r, [{ ok: false, kind: "timeout" }]);
  }
  const arrived = new Promise<void>((resolve) => (gotData = resolve));
  prober.probe(target, () => {});
  await arrived;
  t.equal(conns, 2, "a new connection after two silent timeouts");
  prober.stop();
  server.close();
});
