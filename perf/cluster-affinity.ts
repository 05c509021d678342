/**
 * Does an answer reach the worker that forwarded its request? (a measurement, not a test)
 *
 *   npm run build && node dist/perf/cluster-affinity.js [--workers 2] [--count 300]
 *
 * Runs `sip-edge start --workers 1` and then `--workers N` on 127.0.0.1 in
 * front of two fake UDP PBXs that answer at once (INVITE: 100, 180, 200;
 * REGISTER: 200), sends `count` requests one every 5 ms from a UDP phone
 * (INVITE, REGISTER) and from TCP phones (REGISTER, one connection each),
 * and counts what the phone got and what the Standby got. With one process
 * the Standby gets nothing; every request the Standby gets was retried there
 * by a worker that never read its answer (README, "Workers"). Bounded: at
 * most 2,000 requests per case, a watchdog ends the run after 5 minutes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { freePort, isBound } from "../test/helpers/sipp.js";
import { repoRoot } from "./lib/paths.js";

const HOST = "127.0.0.1";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** The edge of the case running now, for the watchdog to end. */
let current: ChildProcess | undefined;

function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 2000) throw new InvalidArgumentError("expected a whole number from 1 to 2000");
  return n;
}

/** A PBX stand-in: answers every request at once and counts requests by method. */
async function fakePbx(): Promise<{ sock: Socket; port: number; got: Map<string, number> }> {
  const sock = createSocket("udp4");
  const got = new Map<string, number>();
  sock.on("message", (m, r) => {
    const text = m.toString("latin1");
    if (text.startsWith("SIP/2.0")) return;
    const method = text.slice(0, text.indexOf(" "));
    got.set(method, (got.get(method) ?? 0) + 1);
    const keep = text.split("\r\n").filter((l) => /^(Via|From|Call-ID|CSeq):/i.test(l));
    const to = /^To: .*$/im.exec(text)?.[0] ?? "To: <sip:x@x>";
    const reply = (status: string): void => {
      sock.send(`SIP/2.0 ${status}\r\n${keep.join("\r\n")}\r\n${to};tag=pbx\r\nContent-Length: 0\r\n\r\n`, r.port, r.address);
    };
    if (method === "INVITE") {
      reply("100 Trying");
      reply("180 Ringing");
    }
    reply("200 OK");
  });
  sock.bind(0, HOST);
  await once(sock, "listening");
  return { sock, port: sock.address().port, got };
}

function request(method: "INVITE" | "REGISTER", i: number, transport: "UDP" | "TCP", localPort: number): string {
  const ruri = method === "INVITE" ? `sip:200@${HOST}` : `sip:${HOST}`;
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/${transport} ${HOST}:${localPort};branch=z9hG4bK-aff${method}${i};rport`,
    "Max-Forwards: 70",
    `From: <sip:u${i}@${HOST}>;tag=a${i}`,
    `To: <${method === "INVITE" ? ruri : `sip:u${i}@${HOST}`}>`,
    `Call-ID: aff-${method}-${transport}-${i}`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:u${i}@${HOST}:${localPort}${transport === "TCP" ? ";transport=tcp" : ""}>`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** Final (2xx) answers per Call-ID in what a phone received. */
function finals(chunks: readonly string[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const c of chunks.join("").split(/(?=SIP\/2\.0 )/)) {
    if (!c.startsWith("SIP/2.0 200 ")) continue;
    const id = /\r\nCall-ID: (\S+)/i.exec(c)?.[1];
    if (id !== undefined) n.set(id, (n.get(id) ?? 0) + 1);
  }
  return n;
}

async function runCase(workers: number, n: number): Promise<string[]> {
  const main = await fakePbx();
  const standby = await fakePbx();
  const port = await freePort(HOST);
  const dir = mkdtempSync(join(tmpdir(), "sip-edge-affinity-"));
  const config = join(dir, "edge.yaml");
  writeFileSync(
    config,
    [
      "log: { level: warn }",
      "listen:",
      `  - { transport: udp, address: ${HOST}, port: ${port} }`,
      `  - { transport: tcp, address: ${HOST}, port: ${port} }`,
      "targets:",
      `  - { name: main, uri: "sip:${HOST}:${main.port}", acceptsPath: true }`,
      `  - { name: standby, uri: "sip:${HOST}:${standby.port}", acceptsPath: true }`,
      `flowToken: { key: "${"5a".repeat(32)}" }`,
      "",
    ].join("\n"),
  );
  const edge: ChildProcess = (current = spawn(process.execPath, [join(repoRoot(), "dist", "src", "cli.js"), "start", "--workers", String(workers), "--config", config], { stdio: "ignore" }));
  const rows: string[] = [];
  try {
    for (let i = 0; i < 500 && !(isBound("udp", HOST, port) && isBound("tcp", HOST, port)); i++) await sleep(20);
    // Every worker listening: the primary binds once, so wait a little for the last fork.
    await sleep(1500);
    const phone = createSocket("udp4");
    phone.bind(0, HOST);
    await once(phone, "listening");
    const rx: string[] = [];
    phone.on("message", (m) => rx.push(m.toString("latin1")));
    for (const method of ["INVITE", "REGISTER"] as const) {
      const before = standby.got.get(method) ?? 0;
      rx.length = 0;
      for (let i = 0; i < n; i++) {
        phone.send(request(method, i, "UDP", phone.address().port), port, HOST);
        await sleep(5);
      }
      // The request timeout (1 s) passes, so every retry on the Standby has happened.
      await sleep(2500);
      const f = finals(rx);
      const twice = [...f.values()].filter((c) => c > 1).length;
      rows.push(`| ${workers} | UDP ${method} | ${n} | ${f.size} | ${twice} | ${(standby.got.get(method) ?? 0) - before} |`);
    }
    phone.close();
    let answered = 0;
    const before = standby.got.get("REGISTER") ?? 0;
    for (let i = 0; i < Math.min(n, 100); i++) {
      const s = connect(port, HOST);
      await once(s, "connect");
      const got: string[] = [];
      s.on("data", (d: Buffer) => got.push(d.toString("latin1")));
      s.on("error", () => {});
      s.write(request("REGISTER", i, "TCP", s.localPort!));
      for (let w = 0; w < 75 && finals(got).size === 0; w++) await sleep(20);
      if (finals(got).size > 0) answered++;
      s.destroy();
    }
    rows.push(`| ${workers} | TCP REGISTER | ${Math.min(n, 100)} | ${answered} | - | ${(standby.got.get("REGISTER") ?? 0) - before} |`);
  } finally {
    edge.kill("SIGTERM");
    if (edge.exitCode === null) await once(edge, "exit");
    main.sock.close();
    standby.sock.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

async function main(): Promise<void> {
  const o = new Command()
    .name("cluster-affinity")
    .option("--workers <n>", "workers of the second run", count, 2)
    .option("--count <n>", "requests per case", count, 300)
    .parse()
    .opts<{ workers: number; count: number }>();
  const watchdog = setTimeout(() => {
    console.error("cluster-affinity: watchdog: the run took longer than 5 minutes");
    current?.kill("SIGTERM");
    process.exit(1);
  }, 300_000);
  console.log("| workers | case | sent | answered 200 | answered twice | also sent to the Standby |\n|---:|---|---:|---:|---:|---:|");
  for (const w of [1, o.workers]) for (const row of await runCase(w, o.count)) console.log(row);
  clearTimeout(watchdog);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
