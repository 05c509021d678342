/**
 * The real CLI with `--workers 2` on 127.0.0.1: both workers serve, one
 * probes, a killed worker is replaced and the prober role moves, and a
 * rolling restart under a steady stream of requests loses none. Every wait
 * is on an event (a log line, a packet) with a generous bound.
 */
import t, { type Test } from "tap";
import { once } from "node:events";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { availableParallelism } from "node:os";
import { UdpPeer, answer, pbxBehaviour } from "../helpers/edge-live.js";
import { EdgeProcess, WAIT, tempConfig } from "../helpers/edge-process.js";
// A port free for both UDP and TCP: the cluster workers all bind the same one.
import { freePort } from "../helpers/sipp.js";
import { waitFor } from "../helpers/wait.js";

function configFile(port: number, mainPort: number, standbyPort: number, level: string, io: "auto" | "dgram"): { dir: string; file: string } {
  return tempConfig("sip-edge-cluster-", [
    `log: { level: ${level} }`,
    "listen:",
    `  - { transport: udp, address: 127.0.0.1, port: ${port} }`,
    `  - { transport: tcp, address: 127.0.0.1, port: ${port} }`,
    "targets:",
    `  - { name: main, uri: "sip:127.0.0.1:${mainPort}" }`,
    `  - { name: standby, uri: "sip:127.0.0.1:${standbyPort}" }`,
    "health: { intervalSeconds: 1, intervalDownSeconds: 1, timeoutMs: 500 }",
    `udp: { io: ${io} }`,
    // Not shedding: a starved edge's 503 Overloaded would read as a lost request here.
    "overload: { shedAtMs: 0 }",
  ]);
}

function options(edgePort: number, callId: string, via: string): string {
  return [
    `OPTIONS sip:127.0.0.1:${edgePort} SIP/2.0`,
    `Via: SIP/2.0/${via};branch=z9hG4bK-${callId};rport`,
    "Max-Forwards: 70",
    "From: <sip:probe@127.0.0.1>;tag=c1",
    `To: <sip:127.0.0.1:${edgePort}>`,
    `Call-ID: ${callId}`,
    "CSeq: 1 OPTIONS",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** Call-IDs answered 200 in what a client received. */
function answered(messages: readonly string[]): Set<string> {
  const ids = new Set<string>();
  for (const m of messages) {
    if (!m.startsWith("SIP/2.0 200 ")) continue;
    const id = /\r\nCall-ID: (\S+)/i.exec(m)?.[1];
    if (id !== undefined) ids.add(id);
  }
  return ids;
}

/** A fake PBX on UDP that answers like pbxBehaviour and records who probes it (From tag = one Prober instance). */
async function fakePbx(): Promise<{ peer: UdpPeer; probers: string[] }> {
  const probers: string[] = [];
  const peer = await UdpPeer.open((text, p, rinfo) => {
    if (text.startsWith("OPTIONS ")) probers.push(/\r\nFrom: [^\r]*;tag=([^;\r]+)/i.exec(text)?.[1] ?? "?");
    pbxBehaviour(text, p, rinfo);
  });
  return { peer, probers };
}

async function setup(t: Test, level: string, drainSeconds: number, io: "auto" | "dgram" = "auto") {
  const main = await fakePbx();
  const standby = await fakePbx();
  const port = await freePort();
  const { dir, file } = configFile(port, main.peer.port, standby.peer.port, level, io);
  const edge = EdgeProcess.start(file, ["--workers", "2", "--drain", String(drainSeconds)]);
  const phone = await UdpPeer.open();
  t.teardown(async () => {
    await edge.stop();
    phone.close();
    main.peer.close();
    standby.peer.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => edge.primary("worker ready").length >= 2, { ...WAIT, what: "two workers ready" });
  return { main, standby, port, edge, phone, file };
}

// auto: the native socket, one per worker in an SO_REUSEPORT group that
// spreads datagrams at random; dgram: node:cluster's one shared socket,
// which hands each datagram to whichever worker reads first.
for (const io of ["auto", "dgram"] as const) {
  t.test(`udp.io ${io}: two workers serve requests, one of them probes, a killed worker is replaced and the prober role moves`, async (t) => {
    const { main, port, edge, phone } = await setup(t, "debug", 1, io);
    t.equal(edge.primary("prober elected").length, 1, "one prober elected");

    // Either way any worker may get a datagram: send batches until both have logged one of ours.
    const servedBy = new Set<number>();
    let sent = 0;
    for (let batch = 0; batch < 200 && servedBy.size < 2; batch++) {
      for (let i = 0; i < 10; i++) phone.send(options(port, `opt-${sent++}`, `UDP 127.0.0.1:${phone.port}`), port);
      await waitFor(() => answered(phone.received).size === sent, { ...WAIT, what: `${sent} OPTIONS answered` });
      for (const l of edge.lines) if (l.msg === "rx" && typeof l.worker === "number" && /opt-/.test(String(l.callId))) servedBy.add(l.worker);
    }
    t.same([...servedBy].sort(), [1, 2], `both workers answered OPTIONS (${sent} sent, all answered 200)`);

    // Probed once per interval: every probe comes from one Prober (one From tag).
    await waitFor(() => main.probers.length >= 4, { ...WAIT, what: "four probes of Main" });
    t.equal(new Set(main.probers).size, 1, "Main is probed by one worker only");

    const prober = edge.primary("prober elected")[0]!.worker!;
    const pid = edge.pidOf(prober);
    t.ok(pid !== undefined, "the prober's pid is in its log lines");
    const before = main.probers.length;
    const oldTag = main.probers[0]!;
    process.kill(pid!, "SIGKILL");
    await edge.line((l) => l.role === "primary" && l.msg === "worker exited: starting another" && l.worker === prober, "the primary to see the prober die");
    await edge.line((l) => l.role === "primary" && l.msg === "prober elected" && l.previous === prober, "another prober elected");
    await waitFor(() => edge.primary("worker ready").length >= 3, { ...WAIT, what: "a replacement worker ready" });
    await waitFor(() => main.probers.slice(before).filter((tag) => tag !== oldTag).length >= 3, { ...WAIT, what: "three probes from the new prober" });
    const after = main.probers.slice(before).filter((tag) => tag !== oldTag);
    t.equal(new Set(after).size, 1, "after the hand-over one worker probes");

    // The survivors still serve.
    const base = sent;
    for (let i = 0; i < 20; i++) phone.send(options(port, `opt-${sent++}`, `UDP 127.0.0.1:${phone.port}`), port);
    await waitFor(() => answered(phone.received).size === sent, { ...WAIT, what: "OPTIONS answered after the crash" });
    t.equal(answered(phone.received).size - base, 20, "requests after the crash all answered");
  });
}

t.test("udp.io auto: each worker reads a native socket of its own; a second edge on the same port is refused instead of joining the group", async (t) => {
  const { port, edge, file } = await setup(t, "info", 1);
  const started = await edge.workersStarted(2);
  t.same(
    started.map((l) => l.udpIo),
    [{ [`udp:127.0.0.1:${port}`]: "native" }, { [`udp:127.0.0.1:${port}`]: "native" }],
    "both workers on the native socket",
  );
  // Each worker's socket is one of an SO_REUSEPORT group, which any process
  // of this user could join: the primary checks the port first.
  const second = EdgeProcess.start(file, ["--workers", "2"]);
  t.teardown(() => second.stop());
  const code = await waitFor(() => second.proc.exitCode ?? undefined, { ...WAIT, what: "the second edge to exit" });
  t.equal(code, 1, "the second edge exits 1");
  t.match(second.stderr, new RegExp(`udp listener 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`), "and says which port is taken");
  t.equal(second.primary("worker ready").length, 0, "without starting a worker");
});

t.test("a rolling restart (SIGUSR2) under a steady stream of requests loses none; open TCP connections drain", async (t) => {
  // debug: the per-message log line says which worker holds the TCP connection.
  const { main, port, edge, phone } = await setup(t, "debug", 4);

  // An open TCP connection, served by one of the first two workers.
  const tcp: Socket = connect(port, "127.0.0.1");
  await once(tcp, "connect");
  const tcpRx: string[] = [];
  let tcpClosed = false;
  tcp.on("data", (d: Buffer) => tcpRx.push(d.toString("latin1")));
  tcp.on("close", () => (tcpClosed = true));
  tcp.on("error", () => {});
  t.teardown(() => {
    tcp.destroy();
  });
  const tcpVia = `TCP 127.0.0.1:${tcp.localPort!}`;
  tcp.write(options(port, "tcp-0", tcpVia));
  await waitFor(() => answered(tcpRx).has("tcp-0"), { ...WAIT, what: "OPTIONS over TCP answered" });
  const owner = (await edge.line((l) => l.msg === "rx" && l.callId === "tcp-0", "the worker that got the TCP request")).worker;

  // A closed loop of requests, a few in flight, bounded in count; it runs
  // until told to stop once the restart is over.
  const MAX = 50_000;
  const WINDOW = 4;
  let sent = 0;
  let stopSending = false;
  const inFlight = (): number => sent - answered(phone.received).size;
  const pump = (): void => {
    while (!stopSending && sent < MAX && inFlight() < WINDOW) phone.send(options(port, `roll-${sent++}`, `UDP 127.0.0.1:${phone.port}`), port);
  };
  phone.sock.on("message", pump);
  pump();
  await waitFor(() => answered(phone.received).size >= 200, { ...WAIT, what: "200 requests answered before the restart" });
  const atSignal = sent;

  edge.signal("SIGUSR2");
  // As soon as the connection's worker drains, the connection is still served.
  await edge.line((l) => l.role === "primary" && l.msg === "worker draining" && l.worker === owner, "the connection's worker to drain");
  tcp.write(options(port, "tcp-1", tcpVia));
  await waitFor(() => answered(tcpRx).has("tcp-1") || tcpClosed, { ...WAIT, what: "OPTIONS over the draining TCP connection" });
  t.ok(answered(tcpRx).has("tcp-1"), "a connection open before the restart is served while its worker drains");

  await edge.line((l) => l.role === "primary" && l.msg === "rolling restart done", "the rolling restart to finish");
  t.same(
    edge.primary("worker draining").map((l) => l.worker).sort(),
    [1, 2],
    "each old worker drained only after its replacement was ready",
  );
  t.same(edge.primary("worker ready").map((l) => l.worker).slice(2), [3, 4], "replacements came up one at a time");

  // Both old workers have been told to stop accepting; a new connection is served.
  const fresh: Socket = connect(port, "127.0.0.1");
  t.teardown(() => {
    fresh.destroy();
  });
  const freshRx: string[] = [];
  fresh.on("data", (d: Buffer) => freshRx.push(d.toString("latin1")));
  fresh.on("error", () => {});
  await once(fresh, "connect");
  fresh.write(options(port, "tcp-2", `TCP 127.0.0.1:${fresh.localPort!}`));
  await waitFor(() => answered(freshRx).has("tcp-2"), { ...WAIT, what: "OPTIONS over a new TCP connection" });
  t.pass("a new connection during the drain is served");

  await waitFor(() => edge.primary("drained worker exited").length >= 2, { ...WAIT, what: "both old workers to exit" });
  await waitFor(() => tcpClosed, { ...WAIT, what: "the old TCP connection to close with its worker" });
  t.pass("the old worker closed its connection when the drain ended");

  stopSending = true;
  await waitFor(() => inFlight() === 0, { ...WAIT, what: "every request in flight to be answered" });
  t.ok(sent > atSignal, `the stream ran through the restart (${sent - atSignal} requests after the signal)`);
  t.equal(answered(phone.received).size, sent, `all ${sent} requests answered, none lost`);

  // The new workers probe Main (once per interval, one prober).
  const n = main.probers.length;
  await waitFor(() => main.probers.length >= n + 2, { ...WAIT, what: "probes after the restart" });
  t.equal(new Set(main.probers.slice(n + 1)).size, 1, "after the restart one worker probes");
  t.equal(edge.primary("worker exited: starting another").length, 0, "no worker crashed");
});

function phoneRequest(method: "INVITE" | "REGISTER", id: string, via: string, contactPort: number): string {
  const ruri = method === "INVITE" ? "sip:200@127.0.0.1" : "sip:127.0.0.1";
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/${via};branch=z9hG4bK-${id};rport`,
    "Max-Forwards: 70",
    `From: <sip:${id}@127.0.0.1>;tag=${id}`,
    `To: <${method === "INVITE" ? ruri : `sip:${id}@127.0.0.1`}>`,
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:${id}@127.0.0.1:${contactPort}${via.startsWith("TCP") ? ";transport=tcp" : ""}>`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

t.test("with two workers every answer reaches the worker that forwarded the request: nothing is retried on the Standby, every TCP phone's REGISTER is answered", async (t) => {
  const N = 200;
  const TCP_PHONES = 40;
  type Seen = { method: string; callId: string; fromPort: number };
  // Main answers at once (INVITE: 100, 180, 200; REGISTER: 200) to the
  // source port of the request (RFC 3581), except "sentinel" requests,
  // which it never answers: their retry on the Standby marks, per worker,
  // that every failover timer armed before it has fired.
  const atMain: Seen[] = [];
  const atStandby: Seen[] = [];
  const seen = (text: string, port: number): Seen => ({ method: /^([A-Z]+) /.exec(text)?.[1] ?? "?", callId: /\r\nCall-ID: (\S+)/i.exec(text)?.[1] ?? "?", fromPort: port });
  const main = await UdpPeer.open((text, p, rinfo) => {
    if (text.startsWith("SIP/2.0") || text.startsWith("OPTIONS ")) return pbxBehaviour(text, p, rinfo);
    const s = seen(text, rinfo.port);
    atMain.push(s);
    if (s.callId.startsWith("sentinel-")) return;
    if (s.method === "INVITE") {
      p.sock.send(answer(text, "100 Trying"), rinfo.port, rinfo.address);
      p.sock.send(answer(text, "180 Ringing"), rinfo.port, rinfo.address);
    }
    pbxBehaviour(text, p, rinfo);
  });
  const standby = await UdpPeer.open((text, p, rinfo) => {
    if (!text.startsWith("SIP/2.0") && !text.startsWith("OPTIONS ")) atStandby.push(seen(text, rinfo.port));
    pbxBehaviour(text, p, rinfo);
  });
  const port = await freePort();
  const { dir, file } = configFile(port, main.port, standby.port, "info", "auto");
  const edge = EdgeProcess.start(file, ["--workers", "2", "--drain", "1"]);
  const phone = await UdpPeer.open();
  const tcps: Socket[] = [];
  t.teardown(async () => {
    for (const s of tcps) s.destroy();
    await edge.stop();
    phone.close();
    main.close();
    standby.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const started = await edge.workersStarted(2);
  const privatePorts = started.map((l) => Object.values(l.privateUdpPorts as Record<string, number>)[0]!);
  t.equal(new Set(privatePorts).size, 2, `each worker has its own UDP port (${privatePorts.join(", ")})`);
  t.notOk(privatePorts.includes(port), "neither is the shared port");

  // UDP phone: N INVITEs, then N REGISTERs, a few in flight at a time.
  for (const method of ["INVITE", "REGISTER"] as const) {
    const WINDOW = 8;
    let sent = 0;
    const ids = (): number => [...answered(phone.received)].filter((id) => id.startsWith(`u${method}-`)).length;
    const pump = (): void => {
      while (sent < N && sent - ids() < WINDOW) phone.send(phoneRequest(method, `u${method}-${sent++}`, `UDP 127.0.0.1:${phone.port}`, phone.port), port);
    };
    phone.sock.on("message", pump);
    pump();
    await waitFor(() => ids() === N, { ...WAIT, what: `${N} UDP ${method}s answered 200` });
    phone.sock.off("message", pump);
    t.equal(ids(), N, `all ${N} UDP ${method}s answered`);
  }

  // TCP phones: one connection each (the primary deals them to both workers), REGISTER over UDP to Main.
  let tcpAnswered = 0;
  for (let i = 0; i < TCP_PHONES; i++) {
    const s = connect(port, "127.0.0.1");
    tcps.push(s);
    s.on("error", () => {});
    await once(s, "connect");
    const rx: string[] = [];
    let closed = false;
    s.on("data", (d: Buffer) => rx.push(d.toString("latin1")));
    s.on("close", () => (closed = true));
    const id = `tREGISTER-${i}`;
    s.write(phoneRequest("REGISTER", id, `TCP 127.0.0.1:${s.localPort!}`, s.localPort!));
    // An answer read by a worker without the connection is lost for good:
    // the first phone left unanswered ends the loop (and fails below).
    const got = await waitFor(() => rx.join("").includes(`Call-ID: ${id}`) || closed, { ...WAIT, what: `an answer on TCP phone ${i}'s connection` }).catch(() => false);
    s.destroy();
    if (!got) break;
    if (/^SIP\/2\.0 200 /m.test(rx.join("")) && atStandby.every((x) => x.callId !== id)) tcpAnswered++;
  }
  t.equal(tcpAnswered, TCP_PHONES, `all ${TCP_PHONES} TCP phones' REGISTERs answered by Main on their connection`);
  const tcpOwners = new Set(atMain.filter((x) => x.callId.startsWith("tREGISTER-")).map((x) => x.fromPort));
  t.equal(tcpOwners.size, 2, "both workers forwarded TCP phones' REGISTERs");

  // Sentinels until each worker has retried one on the Standby: by then every
  // failover timer either worker armed earlier has fired (one duration, FIFO).
  const retriedBy = (): Set<number> => new Set(atStandby.filter((x) => x.callId.startsWith("sentinel-")).map((x) => x.fromPort));
  let sentinels = 0;
  for (let round = 0; round < 20 && retriedBy().size < 2; round++) {
    for (let i = 0; i < 4; i++) phone.send(phoneRequest("INVITE", `sentinel-${sentinels++}`, `UDP 127.0.0.1:${phone.port}`, phone.port), port);
    const want = sentinels;
    await waitFor(() => atStandby.filter((x) => x.callId.startsWith("sentinel-")).length >= want, { ...WAIT, what: "the sentinels retried on the Standby" });
  }
  t.same([...retriedBy()].sort(), [...privatePorts].sort(), `both workers retried a sentinel on the Standby (${sentinels} sent), from their own ports`);

  const byWorker = (prefix: string): number => new Set(atMain.filter((x) => x.callId.startsWith(prefix)).map((x) => x.fromPort)).size;
  t.equal(byWorker("uINVITE-"), 2, "both workers forwarded INVITEs");
  t.equal(byWorker("uREGISTER-"), 2, "both workers forwarded REGISTERs");
  t.ok(atMain.every((x) => privatePorts.includes(x.fromPort)), "every request reached Main from a worker's own port");
  const dup = atStandby.filter((x) => !x.callId.startsWith("sentinel-"));
  t.same(dup, [], `no INVITE or REGISTER also sent to the Standby (${2 * N} UDP, ${TCP_PHONES} TCP)`);
});

t.test("one worker per core by default (and with --workers auto); --workers 1 is one process", async (t) => {
  const main = await fakePbx();
  t.teardown(() => main.peer.close());
  const cores = availableParallelism();
  for (const args of [[], ["--workers", "auto"], ["--workers", "1"]]) {
    const port = await freePort();
    const { dir, file } = configFile(port, main.peer.port, main.peer.port + 1, "info", "auto");
    const edge = EdgeProcess.start(file, args);
    t.teardown(async () => {
      await edge.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const started = await edge.line((l) => l.msg === "edge primary started" || (l.msg === "edge started" && l.worker === undefined), "the edge to start");
    const what = args.join(" ") || "no --workers";
    if (args[1] === "1" || cores === 1) {
      t.equal(started.msg, "edge started", `${what}: a single process, no primary`);
    } else {
      t.match(started, { msg: "edge primary started", workers: cores, why: /one per core/ }, `${what}: ${cores} workers`);
      await waitFor(() => edge.primary("worker ready").length === cores, { ...WAIT, what: "every worker ready" });
      t.ok(edge.lines.some((l) => l.level === 40 && /own UDP port/.test(String(l.msg))), "the known cost is logged");
    }
    await edge.stop();
  }
});

t.test("SIGHUP to the primary: a refused file changes nothing; a restart-only change restarts the workers one by one", async (t) => {
  const main = await fakePbx();
  const standby = await fakePbx();
  const port = await freePort();
  const { dir, file } = configFile(port, main.peer.port, standby.peer.port, "info", "auto");
  const edge = EdgeProcess.start(file, ["--workers", "2", "--drain", "1"]);
  t.teardown(async () => {
    await edge.stop();
    main.peer.close();
    standby.peer.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => edge.primary("worker ready").length >= 2, { ...WAIT, what: "two workers ready" });
  const good = readFileSync(file, "utf8");

  writeFileSync(file, `${good}limits: { maxHeaders: nope }\n`);
  edge.signal("SIGHUP");
  await edge.line((l) => l.role === "primary" && typeof l.msg === "string" && l.msg.startsWith("config refused"), "the primary to refuse the file");
  t.equal(edge.primary("rolling restart started").length, 0, "a refused file restarts nothing");

  writeFileSync(file, `${good}limits: { maxHeaders: 100 }\n`);
  edge.signal("SIGHUP");
  await edge.line((l) => l.role === "primary" && l.msg === "restart-only settings changed: rolling restart", "the primary to see a restart-only change");
  await edge.line((l) => l.role === "primary" && l.msg === "rolling restart done", "the rolling restart to finish");
  await waitFor(() => edge.primary("drained worker exited").length >= 2, { ...WAIT, what: "the old workers to exit" });
  t.same(edge.primary("worker ready").map((l) => l.worker).slice(2), [3, 4], "both workers replaced, one at a time");

  const phone = await UdpPeer.open();
  t.teardown(() => phone.close());
  for (let i = 0; i < 10; i++) phone.send(options(port, `hup-${i}`, `UDP 127.0.0.1:${phone.port}`), port);
  await waitFor(() => answered(phone.received).size === 10, { ...WAIT, what: "OPTIONS answered by the new workers" });
  t.pass("the new workers serve");
});
