import t from "tap";
import { createSocket } from "node:dgram";
import { FakeClock } from "../../src/util/clock.js";
import { SipResolver, nodeDnsBackend, orderSrv, type AddressRecord, type DnsBackend, type DnsEvent, type SipResolverOptions, type SrvRecord } from "../../src/transport/dns.js";

/** A DNS stub: answers from tables, or fails with a code; records every query. */
class StubDns implements DnsBackend {
  a = new Map<string, AddressRecord[]>();
  aaaa = new Map<string, AddressRecord[]>();
  srv = new Map<string, SrvRecord[]>();
  /** name -> error code for every query of that name. */
  fail = new Map<string, string>();
  queries: string[] = [];

  resolve4(host: string): Promise<AddressRecord[]> {
    return this.answer(`A ${host}`, host, this.a);
  }
  resolve6(host: string): Promise<AddressRecord[]> {
    return this.answer(`AAAA ${host}`, host, this.aaaa);
  }
  resolveSrv(name: string): Promise<SrvRecord[]> {
    return this.answer(`SRV ${name}`, name, this.srv);
  }
  count(q: string): number {
    return this.queries.filter((x) => x === q).length;
  }
  private answer<T>(q: string, name: string, table: Map<string, T[]>): Promise<T[]> {
    this.queries.push(q);
    const code = this.fail.get(name);
    if (code !== undefined) return Promise.reject(Object.assign(new Error(`${q}: ${code}`), { code }));
    const recs = table.get(name);
    if (recs === undefined) return Promise.reject(Object.assign(new Error(`${q}: no data`), { code: "ENODATA" }));
    return Promise.resolve(recs);
  }
}

/** Lets pending stub answers settle (they are already-resolved promises). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

function setup(opts: Partial<SipResolverOptions> = {}) {
  const dns = new StubDns();
  const clock = new FakeClock();
  const events: DnsEvent[] = [];
  const r = new SipResolver({ backend: dns, clock, onEvent: (e) => events.push(e), ...opts });
  return { dns, clock, events, r };
}

t.test("IP literals resolve synchronously without DNS", async (t) => {
  const { dns, r } = setup();
  t.same(r.lookup({ host: "192.0.2.1", transport: "udp" }), [{ transport: "udp", address: "192.0.2.1", port: 5060 }]);
  t.same(r.lookup({ host: "[2001:db8::1]", port: 5080, transport: "tcp" }), [{ transport: "tcp", address: "2001:db8::1", port: 5080 }]);
  t.same(r.lookup({ host: "2001:db8::2", transport: "tls" }), [{ transport: "tls", address: "2001:db8::2", port: 5061 }]);
  t.same(await r.resolve({ host: "192.0.2.1", transport: "wss" }), [{ transport: "wss", address: "192.0.2.1", port: 5061 }]);
  t.same(dns.queries, []);
  t.same(r.status(), []);
});

t.test("an explicit port means A/AAAA only (RFC 3263 §4.2)", async (t) => {
  const { dns, r } = setup();
  dns.a.set("pbx.example.com", [{ address: "192.0.2.10", ttl: 300 }]);
  dns.aaaa.set("pbx.example.com", [{ address: "2001:db8::10", ttl: 300 }]);
  t.equal(r.lookup({ host: "PBX.example.com", port: 5070, transport: "udp" }), undefined, "first lookup starts the queries");
  await settle();
  t.same(r.lookup({ host: "pbx.example.com", port: 5070, transport: "udp" }), [
    { transport: "udp", address: "192.0.2.10", port: 5070 },
    { transport: "udp", address: "2001:db8::10", port: 5070 },
  ]);
  t.same(dns.queries.sort(), ["A pbx.example.com", "AAAA pbx.example.com"]);
});

t.test("SRV by transport, ordered by priority and weight, then A/AAAA of each target", async (t) => {
  const { dns, r } = setup({ random: () => 0, families: [4] });
  dns.srv.set("_sip._tcp.example.com", [
    { name: "backup.example.com", port: 5080, priority: 20, weight: 0 },
    { name: "b.example.com", port: 5062, priority: 10, weight: 30 },
    { name: "a.example.com", port: 5060, priority: 10, weight: 70 },
  ]);
  dns.a.set("a.example.com", [{ address: "192.0.2.1", ttl: 60 }]);
  dns.a.set("b.example.com", [{ address: "192.0.2.2", ttl: 60 }]);
  dns.a.set("backup.example.com", [{ address: "192.0.2.3", ttl: 60 }, { address: "192.0.2.4", ttl: 60 }]);
  const eps = await r.resolve({ host: "example.com", transport: "tcp" });
  t.same(eps, [
    { transport: "tcp", address: "192.0.2.2", port: 5062 },
    { transport: "tcp", address: "192.0.2.1", port: 5060 },
    { transport: "tcp", address: "192.0.2.3", port: 5080 },
    { transport: "tcp", address: "192.0.2.4", port: 5080 },
  ]);
  t.same(r.lookup({ host: "example.com", transport: "tcp" }), eps, "now answered from the cache");
  t.equal(dns.count("SRV _sip._tcp.example.com"), 1);
});

t.test("SRV service names per transport", async (t) => {
  const { dns, r } = setup({ families: [4] });
  dns.a.set("example.com", [{ address: "192.0.2.9", ttl: 60 }]);
  await r.resolve({ host: "example.com", transport: "udp" });
  await r.resolve({ host: "example.com", transport: "tls" });
  await r.resolve({ host: "example.com", transport: "ws" });
  t.ok(dns.queries.includes("SRV _sip._udp.example.com"));
  t.ok(dns.queries.includes("SRV _sips._tcp.example.com"));
  t.notOk(dns.queries.some((q) => q.startsWith("SRV") && q.includes("_ws")), "no SRV for WebSocket");
  t.same(await r.resolve({ host: "example.com", transport: "tls" }), [{ transport: "tls", address: "192.0.2.9", port: 5061 }], "no SRV: host and default port");
  t.same(await r.resolve({ host: "example.com", transport: "ws" }), [{ transport: "ws", address: "192.0.2.9", port: 5060 }]);
});

t.test("orderSrv follows RFC 2782", async (t) => {
  const recs: SrvRecord[] = [
    { name: "c", port: 3, priority: 2, weight: 10 },
    { name: "z", port: 9, priority: 1, weight: 0 },
    { name: "a", port: 1, priority: 1, weight: 60 },
    { name: "b", port: 2, priority: 1, weight: 40 },
  ];
  t.same(
    orderSrv(recs, () => 0).map((r) => r.name),
    ["z", "a", "b", "c"],
    "a draw of 0 picks the zero-weight record",
  );
  t.same(
    orderSrv(recs, () => 0.5).map((r) => r.name),
    ["a", "b", "z", "c"],
    "50 of 100 falls in a's share",
  );
  t.same(
    orderSrv(recs, () => 0.99).map((r) => r.name),
    ["b", "a", "z", "c"],
    "the top of the range falls in b's share",
  );
  t.same(orderSrv([], Math.random), []);
  // Weighted draw: over many runs the heavier record comes first more often.
  let seed = 1;
  const rand = (): number => {
    seed = (seed * 16807) % 2147483647;
    return (seed - 1) / 2147483646;
  };
  let aFirst = 0;
  for (let i = 0; i < 2000; i++) if (orderSrv(recs, rand)[0]!.name === "a") aFirst++;
  t.ok(aFirst > 1000 && aFirst < 1400, `a first in ${aFirst} of 2000 (expected about 1200)`);
});

t.test("a SRV target of '.' means no service", async (t) => {
  const { dns, r } = setup();
  dns.srv.set("_sip._udp.none.example", [{ name: ".", port: 0, priority: 0, weight: 0 }]);
  t.same(await r.resolve({ host: "none.example", transport: "udp" }), []);
});

t.test("one family answered is used without waiting for the other", async (t) => {
  const { dns, r } = setup({ families: [6, 4] });
  dns.aaaa.set("v6.example", [{ address: "2001:db8::5", ttl: 60 }]);
  dns.a.set("v6.example", [{ address: "192.0.2.5", ttl: 60 }]);
  await r.resolve({ host: "v6.example", port: 5060, transport: "udp" });
  t.same(
    r.lookup({ host: "v6.example", port: 5060, transport: "udp" })!.map((e) => e.address),
    ["2001:db8::5", "192.0.2.5"],
    "family preference order",
  );
  dns.fail.set("only-a.example", "ESERVFAIL");
  t.same(await r.resolve({ host: "only-a.example", port: 5060, transport: "udp" }), [], "nothing usable");
});

t.test("TTL: refreshed in the background before expiry, changes picked up", async (t) => {
  const { dns, clock, r, events } = setup({ families: [4] });
  dns.a.set("pbx.example", [{ address: "192.0.2.1", ttl: 100 }]);
  const target = { host: "pbx.example", port: 5060, transport: "udp" as const };
  await r.resolve(target);
  t.equal(dns.count("A pbx.example"), 1);
  t.same(events, [{ kind: "changed", type: "A", name: "pbx.example", records: ["192.0.2.1"] }]);
  t.equal(r.status()[0]!.state, "fresh");
  t.equal(r.status()[0]!.expiresAt! - r.status()[0]!.fetchedAt!, 100_000);

  dns.a.set("pbx.example", [{ address: "192.0.2.2", ttl: 100 }]);
  clock.advance(79_999);
  r.lookup(target);
  t.equal(dns.count("A pbx.example"), 1, "not yet");
  clock.advance(1);
  t.equal(dns.count("A pbx.example"), 2, "refresh at 80% of the TTL");
  await settle();
  t.same(r.lookup(target)!.map((e) => e.address), ["192.0.2.2"]);
  t.same(events[1], { kind: "changed", type: "A", name: "pbx.example", records: ["192.0.2.2"] });

  // An unchanged answer emits nothing.
  clock.advance(80_000);
  await settle();
  t.equal(dns.count("A pbx.example"), 3);
  t.equal(events.length, 2);
});

t.test("TTLs are clamped; SRV uses the configured TTL", async (t) => {
  const { dns, clock, r } = setup({ families: [4], minTtlMs: 10_000, maxTtlMs: 60_000, srvTtlMs: 30_000, refreshAt: 1 });
  dns.a.set("zero.example", [{ address: "192.0.2.1", ttl: 0 }]);
  dns.a.set("long.example", [{ address: "192.0.2.2", ttl: 86_400 }]);
  dns.srv.set("_sip._udp.srv.example", [{ name: "zero.example", port: 5060, priority: 0, weight: 0 }]);
  await r.resolve({ host: "zero.example", port: 1, transport: "udp" });
  await r.resolve({ host: "long.example", port: 1, transport: "udp" });
  await r.resolve({ host: "srv.example", transport: "udp" });
  const ttl = (name: string): number => {
    const s = r.status().find((e) => e.name === name)!;
    return s.expiresAt! - s.fetchedAt!;
  };
  t.equal(ttl("zero.example"), 10_000);
  t.equal(ttl("long.example"), 60_000);
  t.equal(ttl("_sip._udp.srv.example"), 30_000);
  clock.advance(30_000);
  t.equal(dns.count("SRV _sip._udp.srv.example"), 2);
});

t.test("DNS failure keeps the last good answer and says so", async (t) => {
  const { dns, clock, r, events } = setup({ families: [4], retryMs: 1000, maxRetryMs: 4000 });
  dns.a.set("pbx.example", [{ address: "192.0.2.1", ttl: 10 }]);
  const target = { host: "pbx.example", port: 5060, transport: "udp" as const };
  await r.resolve(target);
  dns.fail.set("pbx.example", "ETIMEOUT");
  clock.advance(8_000);
  await settle();
  t.same(r.lookup(target)!.map((e) => e.address), ["192.0.2.1"], "still the last good answer");
  const st = r.status()[0]!;
  t.equal(st.state, "stale");
  t.equal(st.failures, 1);
  t.equal(st.lastError?.code, "ETIMEOUT");
  t.match(events.at(-1), { kind: "failed", type: "A", name: "pbx.example", code: "ETIMEOUT", usingStale: true });

  // Retries back off: 1 s, 2 s, 4 s, 4 s.
  const before = dns.count("A pbx.example");
  clock.advance(1000);
  await settle();
  clock.advance(2000);
  await settle();
  clock.advance(4000);
  await settle();
  clock.advance(3999);
  await settle();
  t.equal(dns.count("A pbx.example"), before + 3);
  clock.advance(1);
  t.equal(dns.count("A pbx.example"), before + 4);
  await settle();
  t.equal(r.status()[0]!.failures, 5);

  dns.fail.delete("pbx.example");
  clock.advance(4000);
  await settle();
  t.equal(r.status()[0]!.state, "fresh");
  t.equal(r.status()[0]!.failures, 0);
  t.match(events.at(-1), { kind: "recovered", type: "A", name: "pbx.example" });
});

t.test("failure with no earlier answer, and stale answers that are too old", async (t) => {
  const { dns, clock, r, events } = setup({ families: [4], retryMs: 1000, maxStaleMs: 60_000 });
  dns.fail.set("down.example", "ECONNREFUSED");
  t.same(await r.resolve({ host: "down.example", port: 5060, transport: "udp" }), []);
  t.equal(r.status()[0]!.state, "failed");
  t.match(events[0], { kind: "failed", usingStale: false });

  dns.a.set("old.example", [{ address: "192.0.2.7", ttl: 10 }]);
  const target = { host: "old.example", port: 5060, transport: "udp" as const };
  await r.resolve(target);
  dns.fail.set("old.example", "ESERVFAIL");
  for (let i = 0; i < 200 && (r.lookup(target)?.length ?? 0) > 0; i++) {
    clock.advance(1000);
    await settle();
  }
  t.same(r.lookup(target), [], "dropped once older than maxStaleMs");
  t.equal(r.status().find((s) => s.name === "old.example")!.state, "failed");
  t.ok(clock.now() >= 60_000);
});

t.test("SRV failure without an answer falls back to the host's A records", async (t) => {
  const { dns, r } = setup({ families: [4] });
  dns.fail.set("_sip._udp.flaky.example", "ETIMEOUT");
  dns.a.set("flaky.example", [{ address: "192.0.2.8", ttl: 60 }]);
  t.same(await r.resolve({ host: "flaky.example", transport: "udp" }), [{ transport: "udp", address: "192.0.2.8", port: 5060 }]);
});

t.test("negative answers are cached for negativeTtlMs", async (t) => {
  const { dns, clock, r } = setup({ families: [4], negativeTtlMs: 20_000, refreshAt: 1 });
  dns.fail.set("nx.example", "ENOTFOUND");
  t.same(await r.resolve({ host: "nx.example", port: 5060, transport: "udp" }), []);
  t.equal(r.status()[0]!.state, "negative");
  clock.advance(19_999);
  t.equal(dns.count("A nx.example"), 1);
  clock.advance(1);
  t.equal(dns.count("A nx.example"), 2);
  await settle();
});

t.test("answers nobody uses are dropped instead of refreshed", async (t) => {
  const { dns, clock, r } = setup({ families: [4], idleMs: 30_000, refreshAt: 1 });
  dns.a.set("once.example", [{ address: "192.0.2.1", ttl: 20 }]);
  await r.resolve({ host: "once.example", port: 5060, transport: "udp" });
  clock.advance(20_000);
  await settle();
  t.equal(dns.count("A once.example"), 2, "used 20 s ago: refreshed");
  clock.advance(20_000);
  await settle();
  t.equal(dns.count("A once.example"), 2, "idle for 40 s: dropped");
  t.same(r.status(), []);
  t.equal(clock.pending, 0);
});

t.test("cache hits keep entries in use", async (t) => {
  const { dns, clock, r } = setup({ families: [4], idleMs: 30_000, refreshAt: 1 });
  dns.a.set("busy.example", [{ address: "192.0.2.1", ttl: 20 }]);
  const target = { host: "busy.example", port: 5060, transport: "udp" as const };
  await r.resolve(target);
  for (let i = 0; i < 6; i++) {
    clock.advance(10_000);
    r.lookup(target);
    await settle();
  }
  t.equal(dns.count("A busy.example"), 4, "refreshed every 20 s while looked up");
});

t.test("the cache is bounded", async (t) => {
  const { dns, clock, r } = setup({ families: [4], maxEntries: 2 });
  for (const n of ["a", "b", "c"]) dns.a.set(`${n}.example`, [{ address: "192.0.2.1", ttl: 60 }]);
  await r.resolve({ host: "a.example", port: 1, transport: "udp" });
  clock.advance(1);
  await r.resolve({ host: "b.example", port: 1, transport: "udp" });
  clock.advance(1);
  await r.resolve({ host: "c.example", port: 1, transport: "udp" });
  t.same(
    r
      .status()
      .map((s) => s.name)
      .sort(),
    ["b.example", "c.example"],
  );
});

t.test("stop clears every timer and ignores late answers", async (t) => {
  const { dns, clock, r } = setup({ families: [4] });
  dns.a.set("x.example", [{ address: "192.0.2.1", ttl: 60 }]);
  await r.resolve({ host: "x.example", port: 1, transport: "udp" });
  r.lookup({ host: "y.example", port: 1, transport: "udp" });
  t.ok(clock.pending > 0);
  r.stop();
  await settle();
  t.equal(clock.pending, 0);
  t.equal(r.status().find((s) => s.name === "y.example")!.state, "pending");
});

t.test("an event handler that throws is contained", async (t) => {
  const dns = new StubDns();
  dns.a.set("e.example", [{ address: "192.0.2.1", ttl: 60 }]);
  const r = new SipResolver({
    backend: dns,
    clock: new FakeClock(),
    families: [4],
    onEvent: () => {
      throw new Error("handler bug");
    },
  });
  t.same(await r.resolve({ host: "e.example", port: 1, transport: "udp" }), [{ transport: "udp", address: "192.0.2.1", port: 1 }]);
  r.stop();
});

t.test("bad options throw", async (t) => {
  const base = { backend: new StubDns(), clock: new FakeClock() };
  t.throws(() => new SipResolver({ ...base, refreshAt: 0 }));
  t.throws(() => new SipResolver({ ...base, families: [] }));
  t.throws(() => new SipResolver({ ...base, maxEntries: 0 }));
});

t.test("nodeDnsBackend turns a dead name server into a rejected query", async (t) => {
  // A loopback port with nothing behind it: the query fails fast, nothing leaves the machine.
  const sock = createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  const port = sock.address().port;
  await new Promise<void>((r) => sock.close(() => r()));
  const backend = nodeDnsBackend({ servers: [`127.0.0.1:${port}`], timeoutMs: 200, tries: 1 });
  await t.rejects(backend.resolve4("pbx.example"));
  await t.rejects(backend.resolve6("pbx.example"));
  await t.rejects(backend.resolveSrv("_sip._udp.pbx.example"));
  t.ok(nodeDnsBackend());
});
