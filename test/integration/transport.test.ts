import t from "tap";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server, type Socket } from "node:net";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { TransportLayer, type TransportLayerOptions } from "../../src/transport/layer.js";
import type { BoundListener, InboundMessage, ListenerSpec, TransportError, TransportLimits } from "../../src/transport/types.js";
import { TEST_LIMITS } from "../helpers/transport-limits.js";
import { waitFor, waitForEvent } from "../helpers/wait.js";

/** The part of a tap test the helpers need. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

async function canBind(address: string): Promise<boolean> {
  const probe = createSocket("udp6");
  const ok = await new Promise<boolean>((resolve) => {
    probe.once("error", () => resolve(false));
    probe.bind(0, address, () => resolve(true));
  });
  probe.close();
  return ok;
}

const hasLoopbackV6 = await canBind("::1");
const hasWildcardV6 = await canBind("::");

const LIMITS = TEST_LIMITS;

interface Harness {
  layer: TransportLayer;
  clock: FakeClock;
  bound: BoundListener[];
  received: InboundMessage[];
  closed: Array<{ flowId: string; reason: string }>;
}

async function harness(t: Teardown, listeners: ListenerSpec[], limits: Partial<TransportLimits> = {}, extra: Partial<TransportLayerOptions> = {}): Promise<Harness> {
  const clock = new FakeClock();
  const layer = new TransportLayer({ listeners, limits: { ...LIMITS, ...limits }, clock, logger: silentLogger, ...extra });
  const received: InboundMessage[] = [];
  const closed: Array<{ flowId: string; reason: string }> = [];
  layer.onMessage = (m) => received.push(m);
  layer.onFlowClosed = (flowId, reason) => closed.push({ flowId, reason });
  const bound = await layer.start();
  t.teardown(() => layer.stop());
  return { layer, clock, bound, received, closed };
}

function sip(body = "", callId = "c1"): string {
  return `OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-${callId}\r\nCall-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

function udpClient(t: Teardown, type: "udp4" | "udp6" = "udp4", address = "127.0.0.1"): Promise<{ sock: UdpSocket; got: Buffer[]; port: number }> {
  const sock = createSocket(type);
  const got: Buffer[] = [];
  sock.on("message", (m) => got.push(m));
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  return new Promise((resolve) => sock.bind(0, address, () => resolve({ sock, got, port: sock.address().port })));
}

function tcpClient(t: Teardown, port: number, host = "127.0.0.1"): Promise<{ sock: Socket; data: () => string; closed: () => boolean }> {
  const sock = connect({ port, host });
  const chunks: Buffer[] = [];
  let isClosed = false;
  sock.on("data", (c: Buffer) => chunks.push(c));
  sock.on("error", () => {});
  sock.on("close", () => {
    isClosed = true;
  });
  t.teardown(() => {
    sock.destroy();
  });
  return new Promise((resolve) =>
    sock.once("connect", () => resolve({ sock, data: () => Buffer.concat(chunks).toString("latin1"), closed: () => isClosed })),
  );
}

/** A TCP peer that records what every accepted connection receives. */
async function tcpPeer(t: Teardown): Promise<{ server: Server; port: number; conns: Socket[]; data: () => string }> {
  const conns: Socket[] = [];
  const chunks: Buffer[] = [];
  const server = createServer((s) => {
    conns.push(s);
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.teardown(() => {
    for (const c of conns) c.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  return { server, port, conns, data: () => Buffer.concat(chunks).toString("latin1") };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const addr = s.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test("configuration errors throw", async (t) => {
  const base = { limits: LIMITS, clock: new FakeClock(), logger: silentLogger };
  t.throws(() => new TransportLayer({ ...base, listeners: [{ transport: "udp", address: "localhost", port: 0 }] }), /IP literal/);
  t.throws(() => new TransportLayer({ ...base, listeners: [{ transport: "udp", address: "127.0.0.1", port: 70000 }] }), /out of range/);
  t.throws(() => new TransportLayer({ ...base, listeners: [{ transport: "tls", address: "127.0.0.1", port: 0 }] }), /tls settings/);
  t.throws(() => new TransportLayer({ ...base, listeners: [{ transport: "sctp" as "udp", address: "127.0.0.1", port: 0 }] }), /unknown transport/);
  t.throws(() => new TransportLayer({ ...base, limits: { ...LIMITS, maxConnections: 0 }, listeners: [] }), /maxConnections/);
});

t.test("a port already in use fails start and releases what was bound", async (t) => {
  const first = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const taken = first.bound[0]!.port;
  const second = new TransportLayer({
    listeners: [
      { transport: "udp", address: "127.0.0.1", port: 0 },
      { transport: "tcp", address: "127.0.0.1", port: taken },
    ],
    limits: LIMITS,
    clock: new FakeClock(),
    logger: silentLogger,
  });
  await t.rejects(second.start(), /EADDRINUSE/);
  t.same(second.stats().connections, 0);
  await t.rejects(second.start(), /already started/);
});

t.test("UDP in and out", async (t) => {
  const h = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0, advertise: "edge.example.com" }], {}, { udpSocketBufferBytes: 1 << 20 });
  const l = h.bound[0]!;
  t.match(l, { transport: "udp", address: "127.0.0.1", family: 4, advertise: "edge.example.com" });
  t.ok(l.port > 0);
  t.equal(h.layer.listenerFor("udp", 4), l);
  t.equal(h.layer.listenerFor("udp", 6), undefined);
  t.equal(h.layer.listenerFor("tcp", 4), undefined);

  const c = await udpClient(t);
  c.sock.send(sip("hello"), l.port, "127.0.0.1");
  await waitFor(() => h.received.length === 1, { what: "datagram" });
  const m = h.received[0]!;
  t.equal(m.data.toString("latin1"), sip("hello"));
  t.same(m.source, { transport: "udp", address: "127.0.0.1", port: c.port });
  t.equal(m.listener, l);
  t.equal(m.flowId, undefined);

  t.equal(h.layer.send(m.source, sip("", "reply")), true);
  await waitFor(() => c.got.length === 1, { what: "reply datagram" });
  t.equal(c.got[0]!.toString("latin1"), sip("", "reply"));
});

t.test("UDP keepalives are counted, oversize and empty datagrams dropped", async (t) => {
  const h = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0 }], { maxMessageBytes: 1000 });
  const port = h.bound[0]!.port;
  const c = await udpClient(t);
  c.sock.send("\r\n\r\n", port, "127.0.0.1");
  c.sock.send("\r\n", port, "127.0.0.1");
  c.sock.send(Buffer.alloc(1500, 0x41), port, "127.0.0.1");
  c.sock.send(Buffer.alloc(0), port, "127.0.0.1");
  c.sock.send(sip("after"), port, "127.0.0.1");
  await waitFor(() => h.received.length === 1 && h.layer.stats().keepalives === 2 && h.layer.stats().dropped["udp-oversize"] === 1 && h.layer.stats().dropped["udp-empty"] === 1, {
    what: "all datagrams accounted for",
  });
  t.equal(h.received[0]!.data.toString("latin1"), sip("after"));
  t.same(c.got, [], "nothing answered");
});

t.test("UDP send errors are reported, never thrown", async (t) => {
  const h = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0 }]);
  const errors: TransportError[] = [];
  t.equal(h.layer.send({ transport: "udp", address: "127.0.0.1", port: 0 }, "x", { onError: (e) => errors.push(e) }), true);
  t.equal(h.layer.send({ transport: "udp", address: "not-an-ip", port: 5060 }, "x", { onError: (e) => errors.push(e) }), true);
  t.equal(h.layer.send({ transport: "udp", address: "::1", port: 5060 }, "x", { onError: (e) => errors.push(e) }), true);
  t.equal(h.layer.send({ transport: "udp", address: "127.0.0.1", port: 0 }, "x"), true, "no callback: counted only");
  t.same(errors, [], "reported after send returns");
  await waitFor(() => errors.length === 3);
  t.same(
    errors.map((e) => e.code),
    ["write-failed", "write-failed", "no-listener"],
  );
  t.equal(errors[2]!.dest.address, "::1");
  t.equal(h.layer.stats().dropped["bad-destination"], 3);
});

t.test("TCP in, reply on the flow, and reuse of the inbound connection", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const l = h.bound[0]!;
  t.equal(h.layer.listenerFor("tcp", 4), l);
  const c = await tcpClient(t, l.port);
  const msg = sip("body\r\n\r\nmore");
  // Split across writes: the framer reassembles.
  c.sock.write(msg.slice(0, 20));
  c.sock.write(msg.slice(20) + sip("", "second"));
  await waitFor(() => h.received.length === 2, { what: "two framed messages" });
  const m = h.received[0]!;
  t.equal(m.data.toString("latin1"), msg);
  t.equal(h.received[1]!.data.toString("latin1"), sip("", "second"));
  t.same(m.source, { transport: "tcp", address: "127.0.0.1", port: c.sock.localPort });
  t.equal(m.listener, l);
  t.type(m.flowId, "string");
  t.equal(h.received[1]!.flowId, m.flowId);
  t.ok(h.layer.hasFlow(m.flowId!));
  t.equal(h.layer.stats().perTransport["tcp"], 1);

  t.equal(h.layer.send(m.source, sip("", "r1"), { flowId: m.flowId! }), true);
  // Without a flow id the inbound connection is reused for its source (RFC 3261 §18.2.2).
  t.equal(h.layer.send(m.source, sip("", "r2")), true);
  await waitFor(() => c.data() === sip("", "r1") + sip("", "r2"), { what: "both replies" });
  t.equal(h.layer.stats().connections, 1, "no second connection");

  c.sock.write("\r\n\r\n");
  await waitFor(() => c.data().endsWith("\r\n\r\n\r\n"), { what: "pong" });
  t.equal(c.data(), sip("", "r1") + sip("", "r2") + "\r\n", "a ping gets a single CRLF");
  t.equal(h.layer.stats().keepalives, 1);
});

t.test("send to a closed flow returns false; onFlowClosed reports it", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const c = await tcpClient(t, h.bound[0]!.port);
  c.sock.write(sip());
  await waitFor(() => h.received.length === 1);
  const m = h.received[0]!;
  c.sock.end();
  await waitFor(() => !h.layer.hasFlow(m.flowId!), { what: "flow gone" });
  t.equal(h.layer.send(m.source, "x", { flowId: m.flowId! }), false);
  t.equal(h.layer.send(m.source, "x", { flowId: "no-such-flow" }), false);
  t.same(
    h.closed.map((c) => c.flowId),
    [m.flowId],
  );
  t.equal(h.layer.closeFlow(m.flowId!, "again"), false);
  await waitFor(() => h.layer.stats().connections === 0, { what: "budget released" });
});

t.test("outbound TCP: two sends, one connection; the answer comes back on that flow", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const peer = await tcpPeer(t);
  const dest = { transport: "tcp" as const, address: "127.0.0.1", port: peer.port };
  const errors: TransportError[] = [];
  t.equal(h.layer.send(dest, sip("", "a"), { onError: (e) => errors.push(e) }), true);
  t.equal(h.layer.send(dest, Buffer.from(sip("", "b"))), true);
  await waitFor(() => peer.data() === sip("", "a") + sip("", "b"), { what: "both messages at the peer" });
  t.equal(peer.conns.length, 1, "connection reused");
  t.equal(h.layer.stats().perTransport["tcp"], 1);

  peer.conns[0]!.write(sip("", "answer"));
  await waitFor(() => h.received.length === 1, { what: "answer" });
  const m = h.received[0]!;
  t.same(m.source, dest);
  t.equal(m.listener, h.bound[0], "outbound traffic belongs to the TCP listener");
  t.type(m.flowId, "string");
  t.equal(h.layer.send(dest, sip("", "c"), { flowId: m.flowId! }), true);
  await waitFor(() => peer.data().endsWith(sip("", "c")));
  t.equal(peer.conns.length, 1);
  t.same(errors, []);

  t.equal(h.layer.closeFlow(m.flowId!, "test"), true);
  await waitFor(() => h.layer.stats().connections === 0);
  h.layer.send(dest, sip("", "d"));
  await waitFor(() => peer.conns.length === 2, { what: "a new connection after close" });
});

t.test("outbound connections leave from the listener's own address", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.2", port: 0 }]);
  const peer = await tcpPeer(t);
  h.layer.send({ transport: "tcp", address: "127.0.0.1", port: peer.port }, sip());
  await waitFor(() => peer.conns.length === 1);
  t.equal(peer.conns[0]!.remoteAddress, "127.0.0.2");
});

t.test("connect-refused is reported through onError", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const port = await freePort();
  const errors: TransportError[] = [];
  t.equal(h.layer.send({ transport: "tcp", address: "127.0.0.1", port }, sip(), { onError: (e) => errors.push(e) }), true);
  await waitFor(() => errors.length === 1, { what: "refusal" });
  t.equal(errors[0]!.code, "connect-refused");
  t.same(errors[0]!.dest, { transport: "tcp", address: "127.0.0.1", port });
  await waitFor(() => h.layer.stats().connections === 0);
  t.equal(h.closed.length, 1);
});

t.test("connect-timeout fires on the injected clock", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }], { connectTimeoutMs: 500 });
  const peer = await tcpPeer(t);
  const errors: TransportError[] = [];
  h.layer.send({ transport: "tcp", address: "127.0.0.1", port: peer.port }, sip(), { onError: (e) => errors.push(e) });
  h.layer.send({ transport: "tcp", address: "127.0.0.1", port: peer.port }, sip(), { onError: (e) => errors.push(e) });
  // The connect cannot complete before this synchronous code yields, so the
  // deadline passes first: both queued messages fail.
  h.clock.advance(499);
  t.same(errors, []);
  h.clock.advance(1);
  await waitFor(() => errors.length === 2);
  t.same(
    errors.map((e) => e.code),
    ["connect-timeout", "connect-timeout"],
  );
  t.equal(h.layer.stats().connections, 0);
  t.match(h.closed[0]!.reason, /connect-timeout/);
});

t.test("idle connections close on the injected clock; traffic keeps them open", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }], { idleTimeoutMs: 1000 });
  const c = await tcpClient(t, h.bound[0]!.port);
  c.sock.write(sip());
  await waitFor(() => h.received.length === 1);
  const flowId = h.received[0]!.flowId!;
  h.clock.advance(600);
  c.sock.write(sip("", "keep"));
  await waitFor(() => h.received.length === 2);
  h.clock.advance(600);
  t.ok(h.layer.hasFlow(flowId), "activity at 600 ms restarted the idle period");
  h.clock.advance(400);
  t.notOk(h.layer.hasFlow(flowId), "idle for 1000 ms");
  await waitFor(() => c.closed(), { what: "client sees the close" });
  t.match(h.closed[0]!.reason, /idle/);
  t.equal(h.layer.stats().dropped["idle-timeout"], 1);
});

t.test("limits per source and in total", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }], { maxConnectionsPerSource: 2, maxConnections: 3 });
  const port = h.bound[0]!.port;
  const a = await tcpClient(t, port);
  const b = await tcpClient(t, port);
  await waitFor(() => h.layer.stats().connections === 2);
  const extra = await tcpClient(t, port);
  await waitFor(() => extra.closed(), { what: "third connection from one source refused" });
  t.equal(h.layer.stats().dropped["per-source-limit"], 1);
  t.notOk(a.closed() || b.closed());

  // One more outbound connection reaches the total limit; the next fails with "limit".
  const peer = await tcpPeer(t);
  h.layer.send({ transport: "tcp", address: "127.0.0.1", port: peer.port }, sip());
  await waitFor(() => peer.conns.length === 1);
  const peer2 = await tcpPeer(t);
  const errors: TransportError[] = [];
  h.layer.send({ transport: "tcp", address: "127.0.0.1", port: peer2.port }, sip(), { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "limit");
  t.equal(h.layer.stats().dropped["max-connections"], 1);
  t.equal(h.layer.stats().connections, 3);
});

t.test("a framing error closes the connection and is counted", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const c = await tcpClient(t, h.bound[0]!.port);
  c.sock.write(sip("", "ok") + "OPTIONS sip:x SIP/2.0\r\nCall-ID: no-length\r\n\r\n" + sip("", "never"));
  await waitFor(() => c.closed(), { what: "connection closed" });
  t.equal(h.received.length, 1, "the message before the error was delivered");
  t.equal(h.layer.stats().dropped["framing-content-length-missing"], 1);
  t.match(h.closed[0]!.reason, /framing error/);
});

t.test("a stream buffer overflow closes the connection", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }], { maxMessageBytes: 1000, maxStreamBufferBytes: 200 });
  const c = await tcpClient(t, h.bound[0]!.port);
  c.sock.write(`OPTIONS sip:x SIP/2.0\r\nContent-Length: 500\r\n\r\n${"x".repeat(300)}`);
  await waitFor(() => c.closed());
  t.equal(h.layer.stats().dropped["framing-buffer-overflow"], 1);
});

t.test("a handler that throws is contained", async (t) => {
  const h = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0 }]);
  let calls = 0;
  h.layer.onMessage = () => {
    calls++;
    throw new Error("handler bug");
  };
  const c = await udpClient(t);
  c.sock.send(sip(), h.bound[0]!.port, "127.0.0.1");
  c.sock.send(sip(), h.bound[0]!.port, "127.0.0.1");
  await waitFor(() => calls === 2);
  t.equal(h.layer.stats().dropped["handler-threw"], 2);
});

t.test("an error callback that throws is contained", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const port = await freePort();
  h.layer.send({ transport: "tcp", address: "127.0.0.1", port }, sip(), {
    onError: () => {
      throw new Error("callback bug");
    },
  });
  await waitFor(() => h.layer.stats().dropped["error-callback-threw"] === 1);
  t.pass("still running");
});

t.test("stop closes every connection and later sends report 'stopped'", async (t) => {
  const h = await harness(t, [
    { transport: "tcp", address: "127.0.0.1", port: 0 },
    { transport: "udp", address: "127.0.0.1", port: 0 },
  ]);
  const c = await tcpClient(t, h.bound[0]!.port);
  c.sock.write(sip());
  await waitFor(() => h.received.length === 1);
  await h.layer.stop();
  await waitFor(() => c.closed());
  t.equal(h.layer.hasFlow(h.received[0]!.flowId!), false);
  const errors: TransportError[] = [];
  h.layer.send({ transport: "udp", address: "127.0.0.1", port: 9 }, "x", { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "stopped");
  await h.layer.stop();
  t.equal(h.clock.pending, 0, "no timer left behind");
});

t.test("no handler set: messages are counted", async (t) => {
  const clock = new FakeClock();
  const layer = new TransportLayer({ listeners: [{ transport: "udp", address: "127.0.0.1", port: 0 }], limits: LIMITS, clock, logger: silentLogger });
  const [l] = await layer.start();
  t.teardown(() => layer.stop());
  const c = await udpClient(t);
  c.sock.send(sip(), l!.port, "127.0.0.1");
  await waitFor(() => layer.stats().dropped["no-handler"] === 1);
  t.same(layer.listeners, [l]);
});

t.test("write queue limit while connecting", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }], { maxWriteQueueBytes: 1000 });
  const peer = await tcpPeer(t);
  const errors: TransportError[] = [];
  const dest = { transport: "tcp" as const, address: "127.0.0.1", port: peer.port };
  h.layer.send(dest, "a".repeat(600), { onError: (e) => errors.push(e) });
  h.layer.send(dest, "b".repeat(600), { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "limit");
  await waitFor(() => peer.data().length === 600);
  t.equal(h.layer.stats().dropped["write-queue-full"], 1);
});

t.test("IPv6 on ::1", { skip: hasLoopbackV6 ? false : "::1 is not available on this machine" }, async (t) => {
  const h = await harness(t, [
    { transport: "udp", address: "::1", port: 0 },
    { transport: "tcp", address: "::1", port: 0 },
  ]);
  const [u, tc] = h.bound as [BoundListener, BoundListener];
  t.equal(u.family, 6);
  t.equal(u.advertise, "::1");
  t.equal(u.id, `udp:[::1]:${u.port}`);
  t.equal(h.layer.listenerFor("udp", 6), u);
  t.equal(h.layer.listenerFor("udp", 4), undefined, "::1 is not dual-stack");

  const c = await udpClient(t, "udp6", "::1");
  c.sock.send(sip("v6"), u.port, "::1");
  await waitFor(() => h.received.length === 1);
  t.same(h.received[0]!.source, { transport: "udp", address: "::1", port: c.port });
  h.layer.send(h.received[0]!.source, sip("", "back"));
  await waitFor(() => c.got.length === 1);

  const tcp = await tcpClient(t, tc.port, "::1");
  tcp.sock.write(sip("", "v6tcp"));
  await waitFor(() => h.received.length === 2);
  t.same(h.received[1]!.source, { transport: "tcp", address: "::1", port: tcp.sock.localPort });
  h.layer.send(h.received[1]!.source, sip("", "tcpback"));
  await waitFor(() => tcp.data() === sip("", "tcpback"));
});

t.test("dual-stack :: listener serves IPv4 peers with plain IPv4 addresses", { skip: hasWildcardV6 ? false : "IPv6 is not available on this machine" }, async (t) => {
  const h = await harness(t, [{ transport: "udp", address: "::", port: 0, advertise: "192.0.2.10" }]);
  const u = h.bound[0]!;
  t.equal(h.layer.listenerFor("udp", 4), u);
  const c = await udpClient(t);
  c.sock.send(sip("v4 via v6"), u.port, "127.0.0.1");
  await waitFor(() => h.received.length === 1);
  t.same(h.received[0]!.source, { transport: "udp", address: "127.0.0.1", port: c.port });
  h.layer.send(h.received[0]!.source, sip("", "mapped"));
  await waitFor(() => c.got.length === 1, { what: "reply through the dual-stack socket" });
});

t.test("waitForEvent helper", async (t) => {
  const h = await harness(t, [{ transport: "tcp", address: "127.0.0.1", port: 0 }]);
  const sock = connect({ port: h.bound[0]!.port, host: "127.0.0.1" });
  t.teardown(() => {
    sock.destroy();
  });
  await waitForEvent(sock, "connect");
  await t.rejects(waitForEvent(sock, "never", { timeoutMs: 10 }), /timed out/);
});
