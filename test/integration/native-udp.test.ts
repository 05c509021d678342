/**
 * The native UDP socket (native/udp/sip_udp.c through
 * src/transport/native-udp.ts) on real loopback sockets: what it reads
 * and sends, its SO_REUSEPORT group, and leaving the group while draining.
 * .ci/run builds the addon with --required, so in CI these always run.
 */
import t, { type Test } from "tap";
import { Writable } from "node:stream";
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import { NativeUdpSocket, nativeUdp } from "../../src/transport/native-udp.js";
import { udpIo } from "../../src/main.js";
import { createLogger } from "../../src/util/logger.js";
import { waitFor } from "../helpers/wait.js";

const WAIT = { timeoutMs: 10_000 };
const { binding, error } = nativeUdp();
/** Without the addon the first test fails with the reason and the rest are skipped. */
const skip = binding === undefined ? (error ?? "not built") : false;

/** What the native socket read: the datagram as text, one character per byte. */
interface Got {
  data: string;
  address: string;
  port: number;
}

/** What a dgram client read. */
interface Rx {
  data: Buffer;
  address: string;
  port: number;
}

function open(t: Test, family: 4 | 6, address: string, port = 0, group = 0): { sock: NativeUdpSocket; port: number; got: Got[]; errors: number[] } {
  const got: Got[] = [];
  const errors: number[] = [];
  const sock = new NativeUdpSocket(binding!, family, (data, addr, p) => got.push({ data, address: addr, port: p }), (e) => errors.push(e));
  const bound = sock.bind(address, port, group, 1 << 20);
  t.teardown(() => sock.close());
  return { sock, port: bound, got, errors };
}

async function client(t: Test, type: "udp4" | "udp6", address: string): Promise<Socket & { rx: Rx[] }> {
  const c = createSocket(type) as Socket & { rx: Rx[] };
  c.rx = [];
  c.on("message", (data, r) => c.rx.push({ data, address: r.address, port: r.port }));
  c.bind(0, address);
  await once(c, "listening");
  t.teardown(() => c.close());
  return c;
}

t.test("the addon is built", async (t) => {
  t.ok(binding !== undefined, error ?? "loaded");
});

t.test("reads datagrams with their sender, and sends Buffers and strings back", { skip }, async (t) => {
  const s = open(t, 4, "127.0.0.1");
  const c = await client(t, "udp4", "127.0.0.1");
  c.send("OPTIONS one", s.port, "127.0.0.1");
  await waitFor(() => s.got.length === 1, { ...WAIT, what: "the first datagram" });
  t.equal(s.got[0]!.data, "OPTIONS one");
  t.equal(s.got[0]!.address, "127.0.0.1");
  t.equal(s.got[0]!.port, c.address().port);

  // Many more, so the receive area is reused: the first copy must not change.
  for (let i = 0; i < 100; i++) c.send(`datagram ${i} ${"x".repeat(i * 10)}`, s.port, "127.0.0.1");
  await waitFor(() => s.got.length === 101, { ...WAIT, what: "100 more datagrams" });
  t.equal(s.got[0]!.data, "OPTIONS one", "a datagram kept past later batches is intact (its text was made from the area)");
  t.same(
    s.got.slice(1).map((g) => g.data),
    Array.from({ length: 100 }, (_, i) => `datagram ${i} ${"x".repeat(i * 10)}`),
    "every datagram, in order, byte for byte",
  );

  t.equal(s.sock.send(Buffer.from("SIP/2.0 200 OK"), c.address().port, "127.0.0.1"), 0);
  t.equal(s.sock.send("a string", c.address().port, "127.0.0.1"), 0);
  await waitFor(() => c.rx.length === 2, { ...WAIT, what: "both sends" });
  t.same(c.rx.map((g) => g.data.toString()), ["SIP/2.0 200 OK", "a string"]);
  t.equal(c.rx[0]!.port, s.port, "sent from the bound port (RFC 3581: answers leave where requests came in)");

  const big = Buffer.alloc(65_000, 0x41);
  t.equal(s.sock.send(big, c.address().port, "127.0.0.1"), 0, "a datagram near the UDP maximum");
  await waitFor(() => c.rx.length === 3, { ...WAIT, what: "the large datagram" });
  t.equal(c.rx[2]!.data.length, 65_000);
  c.send(big, s.port, "127.0.0.1");
  await waitFor(() => s.got.length === 102, { ...WAIT, what: "the large datagram read" });
  t.ok(Buffer.from(s.got[101]!.data, "latin1").equals(big), "a 65,000-byte datagram is read whole");

  // Every byte value comes through as the character of that code (latin1),
  // which is how the parser reads a message; UTF-8 is not decoded.
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const utf8 = Buffer.from("INFO é €", "utf8");
  c.send(all, s.port, "127.0.0.1");
  c.send(utf8, s.port, "127.0.0.1");
  c.send(Buffer.alloc(0), s.port, "127.0.0.1");
  await waitFor(() => s.got.length === 105, { ...WAIT, what: "the byte-value datagrams" });
  t.ok(Buffer.from(s.got[102]!.data, "latin1").equals(all), "bytes 0x00-0xff, one character each");
  t.equal(s.got[103]!.data.length, utf8.length, "UTF-8 text: one character per byte");
  t.ok(Buffer.from(s.got[103]!.data, "latin1").equals(utf8));
  t.equal(s.got[104]!.data, "", "an empty datagram is an empty text");
  t.same(s.errors, []);
});

t.test("IPv6: a v6 sender by its text, a v4 sender on a dual-stack socket as plain IPv4", { skip }, async (t) => {
  const s6 = open(t, 6, "::1");
  const c6 = await client(t, "udp6", "::1");
  c6.send("v6", s6.port, "::1");
  await waitFor(() => s6.got.length === 1, { ...WAIT, what: "the v6 datagram" });
  t.equal(s6.got[0]!.address, "::1");
  t.equal(s6.sock.send("back", c6.address().port, "::1"), 0);
  await waitFor(() => c6.rx.length === 1, { ...WAIT, what: "the v6 answer" });

  const dual = open(t, 6, "::");
  const c4 = await client(t, "udp4", "127.0.0.1");
  c4.send("v4 to ::", dual.port, "127.0.0.1");
  await waitFor(() => dual.got.length === 1, { ...WAIT, what: "the v4 datagram on the dual-stack socket" });
  t.equal(dual.got[0]!.address, "127.0.0.1", "not ::ffff:127.0.0.1");
  t.equal(dual.sock.send("plain", c4.address().port, "127.0.0.1"), 0, "a plain IPv4 destination from a v6 socket");
  t.equal(dual.sock.send("mapped", c4.address().port, "::ffff:127.0.0.1"), 0, "and a v4-mapped one");
  await waitFor(() => c4.rx.length === 2, { ...WAIT, what: "both answers over v4" });
  t.same(c4.rx.map((g) => g.data.toString()), ["plain", "mapped"]);
});

t.test("sends made while a batch is handled are held and go out together at its end, in order, failures told", { skip }, async (t) => {
  const c = await client(t, "udp4", "127.0.0.1");
  const failures: Array<{ i: number; errno: unknown }> = [];
  const sock: NativeUdpSocket = new NativeUdpSocket(binding!, 4, (data, address, port) => {
    if (data !== "go") return;
    // 100: more than one flush holds (SEND_BATCH), so the area fills and is sent mid-batch.
    for (let i = 0; i < 100; i++) t.equal(sock.send(`answer ${i}`, port, address, () => t.fail(`answer ${i} failed`)), 0);
    // Broadcast without SO_BROADCAST: held (the address is valid), refused by the kernel at flush.
    t.equal(sock.send("refused", 9, "255.255.255.255", (err) => failures.push({ i: 100, errno: (err as Error & { errno?: number }).errno })), 0, "held: the failure is not known yet");
    t.equal(sock.send("last", port, address), 0);
  }, () => {});
  const port = sock.bind("127.0.0.1", 0, 0, 1 << 20);
  t.teardown(() => sock.close());
  c.send("go", port, "127.0.0.1");
  await waitFor(() => c.rx.length === 101, { ...WAIT, what: "all 101 answers" });
  t.same(c.rx.map((g) => g.data.toString()), [...Array.from({ length: 100 }, (_, i) => `answer ${i}`), "last"], "all of them, in the order sent");
  t.same(failures, [{ i: 100, errno: 13 }], "the held send the kernel refused is told (EACCES), the others are not");
  t.equal(sock.send("now", 9, "255.255.255.255"), 13, "outside a batch the same send fails at once");
});

t.test("errors come back as values: bind in use, a bad destination, a closed socket", { skip }, async (t) => {
  const s = open(t, 4, "127.0.0.1");
  const other = new NativeUdpSocket(binding!, 4, () => {}, () => {});
  t.throws(() => other.bind("127.0.0.1", s.port, 0, 0), { message: /bind: Address already in use/, code: "98" });
  t.throws(() => other.bind("not-an-address", 0, 0, 0), { message: /IP literal/ });
  t.equal(s.sock.send("x", 0, "127.0.0.1"), 22, "port 0: EINVAL");
  t.equal(s.sock.send("x", 5060, "example.com"), 22, "not a literal: EINVAL");
  s.sock.close();
  t.equal(s.sock.send("x", 5060, "127.0.0.1"), 9, "closed: EBADF");
  s.sock.close();
  t.pass("closing twice is harmless");
});

t.test("an SO_REUSEPORT group spreads one sender's datagrams over its sockets; a plain bind is refused", { skip }, async (t) => {
  const a = open(t, 4, "127.0.0.1", 0, 2);
  const b = open(t, 4, "127.0.0.1", a.port, 2);
  const plain = new NativeUdpSocket(binding!, 4, () => {}, () => {});
  t.throws(() => plain.bind("127.0.0.1", a.port, 0, 0), { code: "98" }, "a second edge without the group cannot take the port");
  const c = await client(t, "udp4", "127.0.0.1");
  for (let i = 0; i < 200; i++) c.send(`d${i}`, a.port, "127.0.0.1");
  await waitFor(() => a.got.length + b.got.length === 200, { ...WAIT, what: "all 200 datagrams" });
  t.ok(a.got.length > 0 && b.got.length > 0, `both sockets got some from one source port (${a.got.length} / ${b.got.length})`);

  // Draining: the socket leaves the group's share; what is queued is still read.
  t.equal(a.sock.quiesce(), 0);
  const before = a.got.length;
  for (let i = 0; i < 200; i++) c.send(`e${i}`, a.port, "127.0.0.1");
  await waitFor(() => a.got.length + b.got.length === 400, { ...WAIT, what: "200 more datagrams" });
  t.equal(a.got.length, before, "a quiesced socket gets no new datagrams; the rest of the group gets them all");
  t.equal(a.sock.send("still sends", c.address().port, "127.0.0.1"), 0, "a quiesced socket can still send");
  await waitFor(() => c.rx.length === 1, { ...WAIT, what: "the send from the quiesced socket" });
});

t.test("udp.io: auto falls back to dgram without the addon and says why; native refuses to start", async (t) => {
  const lines: string[] = [];
  const logger = createLogger(
    "warn",
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
  const missing = { error: "native/build/sip_udp.node is not built" };
  t.same(udpIo("auto", 2, logger, missing), { kind: "dgram" });
  const warned = lines.map((l) => JSON.parse(l) as { msg: string; reason: string });
  t.match(warned, [{ msg: /not available, using dgram/, reason: /not built/ }], "one warning, with the reason");
  t.throws(() => udpIo("native", 2, logger, missing), { message: /udp.io is native, but .*not built/ });
  t.same(udpIo("dgram", 2, logger, missing), { kind: "dgram" });
  if (binding !== undefined) t.same(udpIo("auto", 3, logger, { binding }), { kind: "native", group: 3 });
});
