/**
 * The real CLI with `--workers 2` on 127.0.0.1: TCP phones register through
 * the edge to a fake UDP PBX (half with Path, half with a Contact alias),
 * the primary deals their connections to both workers, and then the PBX
 * calls every phone and hangs up (INVITE, ACK, BYE, each routed by the
 * phone's flow token). Whichever worker reads a request from the shared UDP
 * socket, it reaches the phone: the reader hands it to the worker holding
 * the connection when that is the other one. Evidence per worker comes from
 * its debug log lines. Every wait is on an event, with a generous bound.
 */
import t, { type Test } from "tap";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { StreamFramer } from "../../src/sip/framer.js";
import { UdpPeer, answer, pbxBehaviour } from "../helpers/edge-live.js";
import { EdgeProcess, WAIT, tempConfig, type LogLine } from "../helpers/edge-process.js";
// A port free for both UDP and TCP: the cluster workers all bind the same one.
import { freePort } from "../helpers/sipp.js";
import { waitFor } from "../helpers/wait.js";

const PHONES = 16;
/** Rounds of calls at most; they stop once each worker has handed a request over to the other. */
const MAX_ROUNDS = 20;

/** A TCP phone: registers, answers INVITE and BYE with 200, records everything it receives. */
class Phone {
  readonly rx: string[] = [];
  closed = false;
  private constructor(
    readonly n: number,
    readonly sock: Socket,
    readonly withPath: boolean,
  ) {
    const framer = new StreamFramer({ maxMessageBytes: 65535, maxBufferBytes: 262144 });
    sock.on("data", (d: Buffer) => {
      for (const ev of framer.push(d)) {
        if (ev.kind !== "message") continue;
        const text = ev.data.toString("latin1");
        this.rx.push(text);
        if (text.startsWith("INVITE ") || text.startsWith("BYE ")) sock.write(answer(text, "200 OK", [`Contact: <sip:${this.aor}@127.0.0.1:${this.port};transport=tcp>`], `ph${n}`));
      }
    });
    sock.on("close", () => (this.closed = true));
    sock.on("error", () => {});
  }

  static async open(n: number, edgePort: number, withPath: boolean): Promise<Phone> {
    const sock = connect(edgePort, "127.0.0.1");
    await once(sock, "connect");
    return new Phone(n, sock, withPath);
  }

  get aor(): string {
    return `phone${this.n}`;
  }

  get port(): number {
    return this.sock.localPort!;
  }

  register(): void {
    this.sock.write(
      [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        `Via: SIP/2.0/TCP 127.0.0.1:${this.port};branch=z9hG4bK-reg${this.n};rport`,
        "Max-Forwards: 70",
        `From: <sip:${this.aor}@127.0.0.1>;tag=r${this.n}`,
        `To: <sip:${this.aor}@127.0.0.1>`,
        `Call-ID: reg-${this.n}`,
        "CSeq: 1 REGISTER",
        `Contact: <sip:${this.aor}@127.0.0.1:${this.port};transport=tcp>`,
        ...(this.withPath ? ["Supported: path"] : []),
        "Expires: 600",
        "Content-Length: 0",
        "",
        "",
      ].join("\r\n"),
    );
  }

  /** Requests of a method and Call-ID this phone received. */
  got(method: string, callId: string): number {
    return this.rx.filter((m) => m.startsWith(`${method} `) && m.includes(`\r\nCall-ID: ${callId}\r\n`)).length;
  }
}

/** Where the PBX sends a request for a phone: the phone's registration as the PBX stored it. */
interface Binding {
  /** Path mode: the Route the PBX puts on requests to the phone (RFC 3327). */
  route: string | undefined;
  /** The Request-URI: the phone's Contact, or in alias mode the edge's rewritten one. */
  ruri: string;
}

function pbxRequest(method: "INVITE" | "ACK" | "BYE", pbxPort: number, b: Binding, callId: string, toTag: string | undefined): string {
  const cseq = method === "BYE" ? 2 : 1;
  return [
    `${method} ${b.ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${pbxPort};branch=z9hG4bK-${method}-${callId};rport`,
    "Max-Forwards: 70",
    ...(b.route === undefined ? [] : [`Route: <${b.route}>`]),
    "From: <sip:2000@127.0.0.1>;tag=pbx",
    `To: <sip:phone@127.0.0.1>${toTag === undefined ? "" : `;tag=${toTag}`}`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} ${method}`,
    `Contact: <sip:pbx@127.0.0.1:${pbxPort}>`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

function callIdOf(m: string): string | undefined {
  return /\r\nCall-ID: (\S+)/i.exec(m)?.[1];
}

/**
 * A fake UDP PBX that records each REGISTER and answers REGISTER and
 * OPTIONS, and the CLI with two workers in front of it (debug log: the
 * per-message lines say which worker read what and who handed what over).
 */
async function flowsEdge(t: Test, acceptsPath: boolean) {
  const registers = new Map<string, string>();
  const pbx = await UdpPeer.open((text, p, rinfo) => {
    if (text.startsWith("REGISTER ")) registers.set(callIdOf(text)!, text);
    // The phones' answers to our calls are only recorded.
    if (!text.startsWith("SIP/2.0")) pbxBehaviour(text, p, rinfo);
  });
  const port = await freePort();
  const { dir, file } = tempConfig("sip-edge-flows-", [
    "log: { level: debug }",
    "listen:",
    `  - { transport: udp, address: 127.0.0.1, port: ${port} }`,
    `  - { transport: tcp, address: 127.0.0.1, port: ${port} }`,
    "targets:",
    `  - { name: main, uri: "sip:127.0.0.1:${pbx.port}", acceptsPath: ${acceptsPath} }`,
    "health: { intervalSeconds: 1, intervalDownSeconds: 1, timeoutMs: 500 }",
  ]);
  const edge = EdgeProcess.start(file, ["--workers", "2", "--drain", "1"]);
  const phones: Phone[] = [];
  t.teardown(async () => {
    for (const p of phones) p.sock.destroy();
    await edge.stop();
    pbx.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => edge.primary("worker ready").length >= 2, { ...WAIT, what: "two workers ready" });
  return { registers, pbx, port, edge, phones };
}

t.test("with two workers every PBX request to a TCP phone reaches it, whichever worker reads it: none answered 430", async (t) => {
  // Path only for phones that say they support it; the others' Contacts get an alias.
  const { registers, pbx, port, edge, phones } = await flowsEdge(t, false);
  t.notOk(edge.lines.some((l) => l.level === 40 && /430/.test(String(l.msg))), "no warning of 430s for stream phones");

  // Register every phone; the primary deals the connections round-robin.
  const bindings = new Map<Phone, Binding>();
  for (let n = 0; n < PHONES; n++) {
    const phone = await Phone.open(n, port, n % 2 === 0);
    phones.push(phone);
    phone.register();
  }
  for (const phone of phones) {
    const ok = await waitFor(() => phone.rx.find((m) => m.startsWith("SIP/2.0 ") && callIdOf(m) === `reg-${phone.n}`), { ...WAIT, what: `phone ${phone.n}'s REGISTER answered` });
    t.match(ok, /^SIP\/2\.0 200 OK\r\n/, `phone ${phone.n} registered`);
    const reg = registers.get(`reg-${phone.n}`)!;
    const path = /\r\nPath: <([^>]+)>\r\n/.exec(reg)?.[1];
    const contact = /\r\nContact: <([^>]+)>\r\n/.exec(reg)?.[1];
    t.ok(contact !== undefined, `phone ${phone.n}: the PBX has its Contact`);
    if (phone.withPath) t.ok(path !== undefined, `phone ${phone.n}: Path`);
    else t.match(contact, /;alias=/, `phone ${phone.n}: Contact alias`);
    bindings.set(phone, { route: path, ruri: contact! });
  }

  /** Which worker read a message, from its "rx" line (the rx line of a REGISTER names the connection's worker). */
  const readers = (start: RegExp, callId: string): number[] =>
    edge.lines.filter((l) => l.msg === "rx" && l.callId === callId && start.test(String(l.start))).map((l) => l.worker!);
  const owner = new Map<Phone, number>();
  for (const phone of phones) {
    const w = await waitFor(() => readers(/^REGISTER /, `reg-${phone.n}`)[0], { ...WAIT, what: `the rx line of phone ${phone.n}'s REGISTER` });
    owner.set(phone, w);
  }
  const owners = [...owner.values()];
  t.same([...new Set(owners)].sort(), [1, 2], `both workers hold phone connections (${owners.filter((w) => w === 1).length} and ${owners.filter((w) => w === 2).length})`);

  const handedBy = (w: number): LogLine[] => edge.lines.filter((l) => l.worker === w && l.msg === "flow handed over");
  let rounds = 0;
  let calls = 0;
  while (rounds < MAX_ROUNDS && !(handedBy(1).length > 0 && handedBy(2).length > 0)) {
    rounds++;
    // Every phone gets a call: INVITE, then ACK and BYE once the phone's 200 is at the PBX.
    await Promise.all(
      phones.map(async (phone) => {
        const b = bindings.get(phone)!;
        const id = `call-${rounds}-${phone.n}`;
        calls++;
        pbx.send(pbxRequest("INVITE", pbx.port, b, id, undefined), port);
        const ok = await waitFor(() => pbx.received.find((m) => m.startsWith("SIP/2.0 ") && !m.startsWith("SIP/2.0 1") && callIdOf(m) === id && / INVITE\r\n/.test(m)), { ...WAIT, what: `the answer to ${id}` });
        t.match(ok, /^SIP\/2\.0 200 OK\r\n/, `${id}: the phone answered the INVITE`);
        const toTag = /\r\nTo: [^\r]*;tag=([^;\r]+)/.exec(ok)?.[1];
        pbx.send(pbxRequest("ACK", pbx.port, b, id, toTag), port);
        pbx.send(pbxRequest("BYE", pbx.port, b, id, toTag), port);
        const byeOk = await waitFor(() => pbx.received.find((m) => m.startsWith("SIP/2.0 ") && callIdOf(m) === id && / BYE\r\n/.test(m)), { ...WAIT, what: `the answer to ${id}'s BYE` });
        t.match(byeOk, /^SIP\/2\.0 200 OK\r\n/, `${id}: the phone answered the BYE`);
        await waitFor(() => phone.got("ACK", id) === 1, { ...WAIT, what: `${id}'s ACK at the phone` });
      }),
    );
  }
  t.ok(handedBy(1).length > 0 && handedBy(2).length > 0, `each worker handed requests over to the other (${handedBy(1).length} and ${handedBy(2).length}, ${rounds} rounds of ${PHONES} calls)`);

  for (const phone of phones) {
    for (let r = 1; r <= rounds; r++) {
      const id = `call-${r}-${phone.n}`;
      t.same([phone.got("INVITE", id), phone.got("ACK", id), phone.got("BYE", id)], [1, 1, 1], `${id}: INVITE, ACK and BYE each reached the phone once`);
    }
  }
  t.equal(pbx.received.filter((m) => m.startsWith("SIP/2.0 430")).length, 0, "no 430 Flow Failed");
  t.notOk(phones.some((p) => p.closed), "no phone connection closed");

  // Per worker: every request it read for a phone of the other's was
  // handed over, and written there. Log lines come in on their own pipe,
  // possibly after the packets they tell of: wait for them, bounded.
  const requests = phones.flatMap((phone) => Array.from({ length: rounds }, (_, i) => ["INVITE", "ACK", "BYE"].map((method) => ({ phone, method, id: `call-${i + 1}-${phone.n}` }))).flat());
  await waitFor(() => requests.every((q) => readers(new RegExp(`^${q.method} `), q.id).length >= 1), { ...WAIT, what: "the rx line of every request" }).catch(() => false);
  let readByOther = 0;
  const expectedBy = new Map<number, number>([
    [1, 0],
    [2, 0],
  ]);
  for (const q of requests) {
    const who = readers(new RegExp(`^${q.method} `), q.id);
    t.equal(who.length, 1, `${q.id} ${q.method}: read by one worker`);
    if (who[0] !== undefined && who[0] !== owner.get(q.phone)) {
      readByOther++;
      expectedBy.set(who[0], expectedBy.get(who[0])! + 1);
    }
  }
  const writtenBy = (w: number): number => edge.lines.filter((l) => l.worker === w && l.msg === "handed-over message sent on its flow").length;
  const counts = (): number[] => [handedBy(1).length, handedBy(2).length, writtenBy(2), writtenBy(1)];
  const expected = [expectedBy.get(1)!, expectedBy.get(2)!, expectedBy.get(1)!, expectedBy.get(2)!];
  await waitFor(() => counts().every((c, i) => c >= expected[i]!), { ...WAIT, what: "every hand-over's log lines" }).catch(() => false);
  t.same(counts(), expected, `worker 1 handed over exactly the ${expected[0]} requests it read for worker 2's phones and worker 2 wrote each; worker 2 handed over the ${expected[1]} it read for worker 1's, and worker 1 wrote each`);
  t.ok(handedBy(1).every((l) => l.owner === 2) && handedBy(2).every((l) => l.owner === 1), "each to the other worker");
  t.equal(edge.lines.filter((l) => l.msg === "flow hand-over failed" || l.msg === "handed-over message not sent").length, 0, "no hand-over failed");
  t.ok(readByOther > 0, `${readByOther} of ${calls * 3} requests were read by the worker without the connection`);
  t.equal(edge.primary("worker exited: starting another").length, 0, "no worker crashed");
});

t.test("a phone whose worker died: the PBX's requests for it are answered 430 Flow Failed, whichever worker reads them; the other worker's phones still get theirs", async (t) => {
  const { registers, pbx, port, edge, phones } = await flowsEdge(t, true);
  const owner = new Map<Phone, number>();
  // Phones until each worker holds one (the primary deals connections round-robin).
  for (let n = 0; n < 20 && new Set(owner.values()).size < 2; n++) {
    const phone = await Phone.open(n, port, true);
    phones.push(phone);
    phone.register();
    await waitFor(() => phone.rx.some((m) => m.startsWith("SIP/2.0 200 ")), { ...WAIT, what: `phone ${n} registered` });
    const rx = await waitFor(() => edge.lines.find((l) => l.msg === "rx" && l.callId === `reg-${n}`), { ...WAIT, what: `the rx line of phone ${n}'s REGISTER` });
    owner.set(phone, rx.worker!);
  }
  t.equal(new Set(owner.values()).size, 2, "each worker holds a phone connection");
  const victim = [...owner.entries()].find(([, w]) => w === 1)![0];
  const survivor = [...owner.entries()].find(([, w]) => w === 2)![0];
  const binding = (p: Phone): Binding => {
    const reg = registers.get(`reg-${p.n}`)!;
    return { route: /\r\nPath: <([^>]+)>\r\n/.exec(reg)![1], ruri: /\r\nContact: <([^>]+)>\r\n/.exec(reg)![1]! };
  };

  const pid = edge.pidOf(1);
  t.ok(pid !== undefined, "worker 1's pid is in its log lines");
  process.kill(pid!, "SIGKILL");
  await edge.line((l) => l.role === "primary" && l.msg === "worker exited: starting another" && l.worker === 1, "the primary to see worker 1 die");
  await waitFor(() => edge.primary("worker ready").length >= 3, { ...WAIT, what: "a replacement worker ready" });
  await waitFor(() => victim.closed, { ...WAIT, what: "the dead worker's connection to close" });

  // Enough requests that the survivor and the replacement both read some.
  const N = 24;
  for (let i = 0; i < N; i++) pbx.send(pbxRequest("INVITE", pbx.port, binding(victim), `dead-${i}`, undefined), port);
  const answers = await waitFor(() => {
    const a = pbx.received.filter((m) => m.startsWith("SIP/2.0 ") && callIdOf(m)?.startsWith("dead-"));
    return a.length >= N && a;
  }, { ...WAIT, what: `answers to the ${N} INVITEs for the dead worker's phone` });
  t.ok(answers.every((m) => m.startsWith("SIP/2.0 430 Flow Failed\r\n")), `all ${N} answered 430 Flow Failed`);
  const readBy = new Set(edge.lines.filter((l) => l.msg === "rx" && String(l.callId).startsWith("dead-")).map((l) => l.worker));
  t.ok(readBy.size >= 1 && [...readBy].every((w) => w === 2 || w === 3), `read by the live workers (${[...readBy].join(", ")})`);
  const gone = (): number => edge.lines.filter((l) => l.msg === "flow hand-over failed" && l.code === "flow-gone" && /worker 1 is gone/.test(String(l.reason))).length;
  await waitFor(() => gone() >= N, { ...WAIT, what: "the hand-over failures' log lines" }).catch(() => false);
  t.equal(gone(), N, "each was handed over and the primary answered that worker 1 is gone");

  const id = "alive-1";
  pbx.send(pbxRequest("INVITE", pbx.port, binding(survivor), id, undefined), port);
  const ok = await waitFor(() => pbx.received.find((m) => m.startsWith("SIP/2.0 ") && callIdOf(m) === id), { ...WAIT, what: "the answer to the surviving worker's phone" });
  t.match(ok, /^SIP\/2\.0 200 OK\r\n/, "the surviving worker's phone still gets its calls");
});
