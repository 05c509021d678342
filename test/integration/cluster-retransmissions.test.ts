/**
 * The real CLI with `--workers 2` on 127.0.0.1: a phone sends each INVITE
 * and REGISTER with two immediate retransmissions (identical bytes), so
 * the shared UDP socket often gives copies of one transaction to both
 * workers, and both forward it to Main on the same branch. Main acts as a
 * server transaction (RFC 3261 §17.2): it answers only the first copy of
 * each branch (100 Trying, then 180 Ringing or 200 OK), to the port it
 * came from, and ignores the later ones. The worker whose copy was ignored
 * hears nothing; when its request timeout fires it must yield to the
 * worker that owns the transaction instead of sending it to the Standby.
 * Every wait is on an event (a packet, a log line) with a generous bound.
 */
import t from "tap";
import { rmSync } from "node:fs";
import { UdpPeer, answer, pbxBehaviour } from "../helpers/edge-live.js";
import { EdgeProcess, WAIT, tempConfig } from "../helpers/edge-process.js";
// A port free for both UDP and TCP: the cluster workers all bind the same one.
import { freePort } from "../helpers/sipp.js";
import { waitFor } from "../helpers/wait.js";

/** Transactions per round (half INVITE, half REGISTER), and copies of each. */
const PER_ROUND = 30;
const COPIES = 3;
/** Rounds at most; they stop once some transactions were forwarded by both workers. */
const MAX_ROUNDS = 10;
const WANT_SPLIT = 3;
const YIELDED = "request timeout yielded: another worker forwarded it first";

type Method = "INVITE" | "REGISTER";

function phoneRequest(method: Method, id: string, phonePort: number): string {
  const ruri = method === "INVITE" ? "sip:200@127.0.0.1" : "sip:127.0.0.1";
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${phonePort};branch=z9hG4bK-${id};rport`,
    "Max-Forwards: 70",
    `From: <sip:${id}@127.0.0.1>;tag=${id}`,
    `To: <${method === "INVITE" ? ruri : `sip:${id}@127.0.0.1`}>`,
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:${id}@127.0.0.1:${phonePort}>`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

const callIdOf = (m: string): string => /\r\nCall-ID: (\S+)/i.exec(m)?.[1] ?? "?";
const topBranchOf = (m: string): string => /\r\nVia: [^\r]*;branch=([^;\r]+)/i.exec(m)?.[1] ?? "?";

t.test("with two workers a retransmission forwarded by the other worker is never retried on the Standby: that worker yields", async (t) => {
  // Main: every copy recorded with the port it came from; the first copy
  // of each branch answered to that port, later copies ignored.
  const copies = new Map<string, number[]>();
  const answeredBranches = new Set<string>();
  const main = await UdpPeer.open((text, p, rinfo) => {
    if (text.startsWith("SIP/2.0") || text.startsWith("OPTIONS ")) return pbxBehaviour(text, p, rinfo);
    const id = callIdOf(text);
    copies.set(id, [...(copies.get(id) ?? []), rinfo.port]);
    const branch = topBranchOf(text);
    if (answeredBranches.has(branch)) return;
    answeredBranches.add(branch);
    p.sock.send(answer(text, "100 Trying"), rinfo.port, rinfo.address);
    p.sock.send(text.startsWith("INVITE ") ? answer(text, "180 Ringing") : answer(text, "200 OK", [`Contact: <sip:${id}@127.0.0.1>`]), rinfo.port, rinfo.address);
  });
  const atStandby: string[] = [];
  const standby = await UdpPeer.open((text, p, rinfo) => {
    if (!text.startsWith("SIP/2.0") && !text.startsWith("OPTIONS ")) atStandby.push(callIdOf(text));
    pbxBehaviour(text, p, rinfo);
  });
  const port = await freePort();
  const { dir, file } = tempConfig("sip-edge-retrans-", [
    // debug: each yield is logged with its Call-ID.
    "log: { level: debug }",
    "listen:",
    `  - { transport: udp, address: 127.0.0.1, port: ${port} }`,
    "targets:",
    `  - { name: main, uri: "sip:127.0.0.1:${main.port}" }`,
    `  - { name: standby, uri: "sip:127.0.0.1:${standby.port}" }`,
    "health: { intervalSeconds: 1, intervalDownSeconds: 1, timeoutMs: 500 }",
    // Short, so the ignored copies' timers fire soon.
    "failover: { requestTimeoutMs: 300 }",
    // Not shedding: a starved edge's 503 Overloaded would read as a failure answer here.
    "overload: { shedAtMs: 0 }",
  ]);
  const edge = EdgeProcess.start(file, ["--workers", "2", "--drain", "1"]);
  const phone = await UdpPeer.open();
  t.teardown(async () => {
    await edge.stop();
    phone.close();
    main.close();
    standby.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const started = await edge.workersStarted(2);
  const workerAt = new Map<number, number>();
  for (const l of started) workerAt.set(Object.values(l.privateUdpPorts as Record<string, number>)[0]!, l.worker!);

  const sentIds: Array<{ id: string; method: Method }> = [];
  /** Final or ringing answer the phone got for a transaction. */
  const phoneGot = (id: string, status: string): number => phone.received.filter((m) => m.startsWith(`SIP/2.0 ${status} `) && callIdOf(m) === id).length;
  const split = (): string[] => sentIds.map((s) => s.id).filter((id) => new Set(copies.get(id) ?? []).size >= 2);
  let rounds = 0;
  while (rounds < MAX_ROUNDS && split().length < WANT_SPLIT) {
    const batch: Array<{ id: string; method: Method }> = [];
    for (let i = 0; i < PER_ROUND; i++) batch.push({ id: `r${rounds}-${i}`, method: i % 2 === 0 ? "INVITE" : "REGISTER" });
    rounds++;
    for (const s of batch) {
      const req = phoneRequest(s.method, s.id, phone.port);
      // The request and its retransmissions, back to back: identical bytes.
      for (let c = 0; c < COPIES; c++) phone.send(req, port);
      sentIds.push(s);
    }
    for (const s of batch) {
      await waitFor(() => phoneGot(s.id, s.method === "INVITE" ? "180" : "200") > 0, { ...WAIT, what: `the phone's answer to ${s.id}` });
    }
  }
  const splitIds = split();
  t.ok(splitIds.length >= 1, `copies of ${splitIds.length} of ${sentIds.length} transactions were forwarded by both workers (${rounds} rounds)`);

  // Each such transaction's ignored worker times out: it yields (a log
  // line) or, broken, sends it to the Standby. Either is the event.
  const yieldedBy = (id: string): number[] => edge.lines.filter((l) => l.msg === YIELDED && l.callId === id).map((l) => l.worker!);
  await waitFor(() => splitIds.every((id) => yieldedBy(id).length > 0 || atStandby.includes(id)), { ...WAIT, what: "every ignored copy's timeout" });

  t.same(atStandby.filter((id) => sentIds.some((s) => s.id === id)), [], "the Standby received none of the phone's transactions");
  for (const id of splitIds) {
    const owner = workerAt.get(copies.get(id)![0]!);
    const ignored = [1, 2].find((w) => w !== owner);
    t.same(yieldedBy(id), [ignored], `${id}: the worker whose copy Main ignored (${ignored}) yielded to the one it answered (${owner})`);
  }
  for (const s of sentIds) {
    if (s.method === "INVITE") {
      t.equal(phoneGot(s.id, "180"), 1, `${s.id}: one 180 Ringing`);
      t.notOk(phone.received.some((m) => /^SIP\/2\.0 [2-6]\d\d /.test(m) && callIdOf(m) === s.id), `${s.id}: no final answer (Main is ringing)`);
    } else {
      t.equal(phoneGot(s.id, "200"), 1, `${s.id}: one 200 OK`);
      t.notOk(phone.received.some((m) => /^SIP\/2\.0 [3-6]\d\d /.test(m) && callIdOf(m) === s.id), `${s.id}: no failure answer`);
    }
  }
});
