import t from "tap";
import { TEST_LIMITS } from "../helpers/transport-limits.js";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { TransportLayer } from "../../src/transport/layer.js";
import type { BoundListener, InboundMessage, ListenerSpec, TlsSettings, TransportError, TransportLimits } from "../../src/transport/types.js";
import { testCerts, untrustedCerts } from "../helpers/certs.js";
import { waitFor } from "../helpers/wait.js";

interface Teardown {
  teardown(fn: () => unknown): void;
}

const LIMITS: TransportLimits = { ...TEST_LIMITS, connectTimeoutMs: 5000 };

const certs = await testCerts();
const TLS: TlsSettings = { cert: certs.cert, key: certs.key, ca: certs.ca };

/** `tls: null` builds a layer with no TLS settings at all. */
async function harness(t: Teardown, listeners: ListenerSpec[], tls: TlsSettings | null = TLS) {
  const clock = new FakeClock();
  const layer = new TransportLayer({ listeners, ...(tls === null ? {} : { tls }), limits: LIMITS, clock, logger: silentLogger });
  const received: InboundMessage[] = [];
  layer.onMessage = (m) => received.push(m);
  const bound = await layer.start();
  t.teardown(() => layer.stop());
  return { layer, clock, bound, received };
}

function sip(tag: string): string {
  return `OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\nCall-ID: ${tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
}

function tlsClient(t: Teardown, port: number, opts: { ca?: string; maxVersion?: "TLSv1.1" | "TLSv1.2" | "TLSv1.3" } = {}) {
  const chunks: Buffer[] = [];
  let closed = false;
  let secure = false;
  const sock: TLSSocket = tlsConnect({ host: "127.0.0.1", port, ca: opts.ca ?? certs.ca, servername: "localhost", ...(opts.maxVersion ? { maxVersion: opts.maxVersion, minVersion: "TLSv1" } : {}) });
  sock.on("secureConnect", () => {
    secure = true;
  });
  sock.on("data", (c: Buffer) => chunks.push(c));
  sock.on("error", () => {});
  sock.on("close", () => {
    closed = true;
  });
  t.teardown(() => {
    sock.destroy();
  });
  return { sock, data: () => Buffer.concat(chunks).toString("latin1"), closed: () => closed, secure: () => secure };
}

t.test("TLS in: round trip with the test certificate", async (t) => {
  const h = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const l = h.bound[0]!;
  t.equal(h.layer.listenerFor("tls", 4), l);
  const c = tlsClient(t, l.port);
  await waitFor(() => c.secure(), { what: "handshake" });
  t.ok(c.sock.authorized, "client trusts the test CA");
  t.equal(c.sock.getProtocol()?.startsWith("TLSv1."), true);
  c.sock.write(sip("in"));
  await waitFor(() => h.received.length === 1);
  const m = h.received[0]!;
  t.equal(m.data.toString("latin1"), sip("in"));
  t.same(m.source, { transport: "tls", address: "127.0.0.1", port: c.sock.localPort });
  t.equal(m.listener, l);
  h.layer.send(m.source, sip("out"), { flowId: m.flowId! });
  await waitFor(() => c.data() === sip("out"));
  c.sock.write("\r\n\r\n");
  await waitFor(() => c.data() === sip("out") + "\r\n", { what: "pong over TLS" });
});

t.test("TLS out: SNI, CA, connection reuse, answer on the same flow", async (t) => {
  const server = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const client = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const dest = { transport: "tls" as const, address: "127.0.0.1", port: server.bound[0]!.port };
  const errors: TransportError[] = [];
  client.layer.send(dest, sip("a"), { servername: "localhost", onError: (e) => errors.push(e) });
  client.layer.send(dest, sip("b"), { servername: "localhost", onError: (e) => errors.push(e) });
  await waitFor(() => server.received.length === 2, { what: "both messages over one TLS connection" });
  t.equal(server.received[0]!.flowId, server.received[1]!.flowId);
  t.equal(server.layer.stats().perTransport["tls"], 1);
  const inbound = server.received[0]!;
  server.layer.send(inbound.source, sip("answer"), { flowId: inbound.flowId! });
  await waitFor(() => client.received.length === 1);
  t.same(client.received[0]!.source, dest);
  t.equal(client.received[0]!.listener, client.bound[0]);
  t.same(errors, []);
});

t.test("TLS out without SNI verifies the IP address in the certificate", async (t) => {
  const server = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const client = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0 }]);
  client.layer.send({ transport: "tls", address: "127.0.0.1", port: server.bound[0]!.port }, sip("ip"));
  await waitFor(() => server.received.length === 1);
  t.equal(client.layer.stats().perTransport["tls"], 1);
});

t.test("an untrusted server certificate is a 'tls' error", async (t) => {
  const other = await untrustedCerts();
  const server = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }], { cert: other.cert, key: other.key });
  const client = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const errors: TransportError[] = [];
  client.layer.send({ transport: "tls", address: "127.0.0.1", port: server.bound[0]!.port }, sip("x"), { servername: "localhost", onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "tls");
  t.same(server.received, []);
  await waitFor(() => client.layer.stats().connections === 0);
});

t.test("verifyPeer false accepts an untrusted server", async (t) => {
  const other = await untrustedCerts();
  const server = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }], { cert: other.cert, key: other.key });
  const client = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }], { ...TLS, verifyPeer: false });
  client.layer.send({ transport: "tls", address: "127.0.0.1", port: server.bound[0]!.port }, sip("x"));
  await waitFor(() => server.received.length === 1);
});

t.test("TLS older than 1.2 is refused", async (t) => {
  const h = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const c = tlsClient(t, h.bound[0]!.port, { maxVersion: "TLSv1.1" });
  await waitFor(() => c.closed(), { what: "handshake refused" });
  t.equal(c.secure(), false);
  t.same(h.received, []);
});

t.test("minVersion TLSv1.3 refuses a TLS 1.2 client", async (t) => {
  const h = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }], { ...TLS, minVersion: "TLSv1.3" });
  const c = tlsClient(t, h.bound[0]!.port, { maxVersion: "TLSv1.2" });
  await waitFor(() => c.closed());
  t.equal(c.secure(), false);
  await waitFor(() => h.layer.stats().dropped["tls-handshake-failed"] === 1);
});

t.test("a client certificate can be required", async (t) => {
  const h = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }], { ...TLS, requireClientCert: true });
  const anonymous = tlsClient(t, h.bound[0]!.port);
  anonymous.sock.on("secureConnect", () => anonymous.sock.write(sip("anon")));
  await waitFor(() => anonymous.closed(), { what: "anonymous client rejected" });
  t.same(h.received, []);
  // Another edge presents the same certificate, signed by the trusted CA.
  const client = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0 }]);
  client.layer.send({ transport: "tls", address: "127.0.0.1", port: h.bound[0]!.port }, sip("mutual"), { servername: "localhost" });
  await waitFor(() => h.received.length === 1, { what: "mutually authenticated message" });
});

t.test("a TLS handshake that never completes is cut at the deadline", async (t) => {
  const h = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const sock = netConnect({ host: "127.0.0.1", port: h.bound[0]!.port });
  let closed = false;
  sock.on("error", () => {});
  sock.on("close", () => {
    closed = true;
  });
  t.teardown(() => {
    sock.destroy();
  });
  await waitFor(() => h.layer.stats().connections === 1, { what: "accepted" });
  h.clock.advance(LIMITS.connectTimeoutMs);
  await waitFor(() => closed, { what: "silent client dropped" });
  t.equal(h.layer.stats().dropped["handshake-timeout"], 1);
  await waitFor(() => h.layer.stats().connections === 0);
});

t.test("outbound TLS towards a server that never answers the handshake times out", async (t) => {
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
  const client = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const errors: TransportError[] = [];
  client.layer.send({ transport: "tls", address: "127.0.0.1", port }, sip("x"), { onError: (e) => errors.push(e) });
  await waitFor(() => held.length === 1, { what: "TCP connected" });
  client.clock.advance(LIMITS.connectTimeoutMs);
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "connect-timeout");
});

t.test("sending TLS with no tls settings uses system trust and fails on the test CA", async (t) => {
  const server = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0 }]);
  const client = await harness(t, [{ transport: "udp", address: "127.0.0.1", port: 0 }], null);
  const errors: TransportError[] = [];
  client.layer.send({ transport: "tls", address: "127.0.0.1", port: server.bound[0]!.port }, sip("x"), { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1);
  t.equal(errors[0]!.code, "tls");
});

t.test("bound listener shape", async (t) => {
  const h = await harness(t, [{ transport: "tls", address: "127.0.0.1", port: 0, advertise: "sip.example.com" }]);
  const l: BoundListener = h.bound[0]!;
  t.match(l, { transport: "tls", address: "127.0.0.1", advertise: "sip.example.com", family: 4, id: `tls:127.0.0.1:${l.port}` });
});
