import t from "tap";
import { TEST_LIMITS } from "../helpers/transport-limits.js";
import { request } from "node:http";
import { connect as netConnect } from "node:net";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { TransportLayer } from "../../src/transport/layer.js";
import type { InboundMessage, ListenerSpec, TlsSettings, TransportError, TransportLimits } from "../../src/transport/types.js";
import { testCerts } from "../helpers/certs.js";
import { waitFor, waitForEvent } from "../helpers/wait.js";

interface Teardown {
  teardown(fn: () => unknown): void;
}

const LIMITS: TransportLimits = { ...TEST_LIMITS, connectTimeoutMs: 5000 };

const certs = await testCerts();
const TLS: TlsSettings = { cert: certs.cert, key: certs.key, ca: certs.ca };

async function harness(t: Teardown, listeners: ListenerSpec[]) {
  const clock = new FakeClock();
  const layer = new TransportLayer({ listeners, tls: TLS, limits: LIMITS, clock, logger: silentLogger });
  const received: InboundMessage[] = [];
  const closed: string[] = [];
  layer.onMessage = (m) => received.push(m);
  layer.onFlowClosed = (_id, reason) => closed.push(reason);
  const bound = await layer.start();
  t.teardown(() => layer.stop());
  return { layer, clock, bound, received, closed };
}

function sip(tag: string): string {
  return `OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\nCall-ID: ${tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
}

interface Client {
  ws: WebSocket;
  got: Array<{ data: Buffer; binary: boolean }>;
  closed: () => boolean;
}

function wsClient(t: Teardown, url: string, protocols: string[] = ["sip"]): Client {
  const ws = new WebSocket(url, protocols, { ca: certs.ca });
  const got: Array<{ data: Buffer; binary: boolean }> = [];
  let closed = false;
  ws.on("message", (data: RawData, binary: boolean) => got.push({ data: data as Buffer, binary }));
  ws.on("error", () => {});
  ws.on("close", () => {
    closed = true;
  });
  t.teardown(() => ws.terminate());
  return { ws, got, closed: () => closed };
}

t.test("WS in: subprotocol sip, one message per frame, reply on the flow", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const l = h.bound[0]!;
  t.equal(h.layer.listenerFor("ws", 4), l);
  const c = wsClient(t, `ws://127.0.0.1:${l.port}/`);
  await waitForEvent(c.ws, "open");
  t.equal(c.ws.protocol, "sip");
  c.ws.send(sip("text"));
  c.ws.send(Buffer.from(sip("binary")), { binary: true });
  await waitFor(() => h.received.length === 2);
  const m = h.received[0]!;
  t.equal(m.data.toString("latin1"), sip("text"));
  t.equal(h.received[1]!.data.toString("latin1"), sip("binary"));
  t.equal(m.source.transport, "ws");
  t.equal(m.source.address, "127.0.0.1");
  t.equal(m.listener, l);
  t.equal(m.flowId, h.received[1]!.flowId);
  t.equal(h.layer.stats().perTransport["ws"], 1);

  h.layer.send(m.source, sip("reply"), { flowId: m.flowId! });
  h.layer.send(m.source, Buffer.from(sip("reuse")));
  const notUtf8 = Buffer.concat([Buffer.from(sip("bin").replace("Content-Length: 0", "Content-Length: 2")), Buffer.from([0xff, 0xfe])]);
  h.layer.send(m.source, notUtf8, { flowId: m.flowId! });
  await waitFor(() => c.got.length === 3);
  t.equal(c.got[0]!.data.toString(), sip("reply"));
  t.equal(c.got[0]!.binary, false, "UTF-8 goes in a text frame");
  t.equal(c.got[1]!.data.toString(), sip("reuse"));
  t.equal(c.got[2]!.binary, true, "non-UTF-8 goes in a binary frame (RFC 7118 §5.1)");
  t.same(c.got[2]!.data, notUtf8);

  c.ws.send("\r\n\r\n");
  await waitFor(() => c.got.length === 4);
  t.equal(c.got[3]!.data.toString(), "\r\n", "CRLFCRLF keepalive answered");
  c.ws.send("\r\n");
  await waitFor(() => h.layer.stats().keepalives === 2);
  t.equal(h.received.length, 2, "keepalives are not messages");

  c.ws.close();
  await waitFor(() => !h.layer.hasFlow(m.flowId!));
  t.equal(h.layer.send(m.source, "x", { flowId: m.flowId! }), false);
});

t.test("WS without the sip subprotocol is refused", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const port = h.bound[0]!.port;
  const none = wsClient(t, `ws://127.0.0.1:${port}/`, []);
  const other = wsClient(t, `ws://127.0.0.1:${port}/`, ["chat"]);
  await waitFor(() => none.closed() && other.closed());
  t.equal(h.layer.stats().dropped["ws-no-sip-subprotocol"], 2);
  await waitFor(() => h.layer.stats().connections === 0);
});

t.test("plain HTTP gets 426", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: h.bound[0]!.port, path: "/", agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
  t.equal(status, 426);
  t.equal(h.layer.stats().dropped["ws-not-upgrade"], 1);
});

t.test("an oversize WebSocket message closes the connection", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const c = wsClient(t, `ws://127.0.0.1:${h.bound[0]!.port}/`);
  await waitForEvent(c.ws, "open");
  c.ws.send("x".repeat(LIMITS.maxMessageBytes + 1));
  await waitFor(() => c.closed());
  t.same(h.received, []);
});

t.test("WSS in with the test certificate", async (t) => {
  const h = await harness(t, [{ transport: "wss", address: "127.0.0.1", port: 0 }]);
  const c = wsClient(t, `wss://localhost:${h.bound[0]!.port}/`);
  await waitForEvent(c.ws, "open");
  c.ws.send(sip("secure"));
  await waitFor(() => h.received.length === 1);
  const m = h.received[0]!;
  t.equal(m.source.transport, "wss");
  h.layer.send(m.source, sip("secure-reply"), { flowId: m.flowId! });
  await waitFor(() => c.got.length === 1);
  t.equal(c.got[0]!.data.toString(), sip("secure-reply"));
});

t.test("WS and WSS out: layer to layer, answer on the same flow", async (t) => {
  for (const transport of ["ws", "wss"] as const) {
    const server = await harness(t, [{ transport, address: "127.0.0.1", port: 0 }]);
    const client = await harness(t, [{ transport, address: "127.0.0.1", port: 0 }]);
    const dest = { transport, address: "127.0.0.1", port: server.bound[0]!.port };
    const errors: TransportError[] = [];
    client.layer.send(dest, sip("a"), { servername: "localhost", onError: (e) => errors.push(e) });
    client.layer.send(dest, sip("b"), { servername: "localhost", onError: (e) => errors.push(e) });
    await waitFor(() => server.received.length === 2, { what: `${transport} messages` });
    t.equal(server.received[0]!.flowId, server.received[1]!.flowId, `${transport}: one connection`);
    const m = server.received[0]!;
    server.layer.send(m.source, sip("answer"), { flowId: m.flowId! });
    await waitFor(() => client.received.length === 1);
    t.same(client.received[0]!.source, dest);
    t.equal(client.received[0]!.data.toString(), sip("answer"));
    t.same(errors, []);
  }
});

t.test("WS out to a server that does not speak sip is a ws-protocol error", async (t) => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: () => false });
  await waitForEvent(wss, "listening");
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    return new Promise<void>((r) => wss.close(() => r()));
  });
  const addr = wss.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const errors: TransportError[] = [];
  h.layer.send({ transport: "ws", address: "127.0.0.1", port }, sip("x"), { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "ws-protocol");
});

t.test("WS out: connection refused", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const { createServer } = await import("node:net");
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const addr = s.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  const errors: TransportError[] = [];
  h.layer.send({ transport: "ws", address: "127.0.0.1", port }, sip("x"), { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "connect-refused");
  await waitFor(() => h.layer.stats().connections === 0);
});

t.test("an upgrade that never comes is cut at the deadline", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const sock = netConnect({ host: "127.0.0.1", port: h.bound[0]!.port });
  let closed = false;
  sock.on("error", () => {});
  sock.on("close", () => {
    closed = true;
  });
  t.teardown(() => {
    sock.destroy();
  });
  await waitFor(() => h.layer.stats().connections === 1);
  h.clock.advance(LIMITS.connectTimeoutMs);
  await waitFor(() => closed);
  t.equal(h.layer.stats().dropped["handshake-timeout"], 1);
});

t.test("idle WebSocket connections close on the injected clock", async (t) => {
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const c = wsClient(t, `ws://127.0.0.1:${h.bound[0]!.port}/`);
  await waitForEvent(c.ws, "open");
  await waitFor(() => h.layer.stats().perTransport["ws"] === 1);
  h.clock.advance(LIMITS.idleTimeoutMs);
  await waitFor(() => c.closed());
  t.match(h.closed[0]!, /idle/);
});

t.test("WS out: a server that never answers the upgrade times out", async (t) => {
  const { createServer } = await import("node:net");
  const held: import("node:net").Socket[] = [];
  const mute = createServer((s) => {
    held.push(s);
    s.on("error", () => {});
  });
  await new Promise<void>((r) => mute.listen(0, "127.0.0.1", () => r()));
  t.teardown(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => mute.close(() => r()));
  });
  const addr = mute.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  const h = await harness(t, [{ transport: "ws", address: "127.0.0.1", port: 0 }]);
  const errors: TransportError[] = [];
  h.layer.send({ transport: "ws", address: "127.0.0.1", port }, sip("x"), { onError: (e) => errors.push(e) });
  await waitFor(() => held.length === 1, { what: "TCP connected" });
  h.clock.advance(LIMITS.connectTimeoutMs);
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "connect-timeout");
  await waitFor(() => h.layer.stats().connections === 0);
  t.equal(h.layer.stats().dropped["ws-error"], undefined, "the abort of our own handshake is not an error");
});
