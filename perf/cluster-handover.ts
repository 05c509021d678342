/**
 * What a flow hand-over between workers costs (a measurement, not a test)
 *
 *   npm run build && node dist/perf/cluster-handover.js [--count 2000] [--phones 8]
 *
 * Runs `sip-edge start --workers 1` and then `--workers 2` on 127.0.0.1 in
 * front of a fake UDP PBX. TCP phones register through the edge (Path) and
 * answer every INVITE at once with 200. The PBX then sends `count` INVITEs
 * to the phones in turn, one at a time (latency: the INVITE leaves the PBX
 * until the phone's 200 is back at the PBX), and `count` more with 32 in
 * flight (INVITEs per second, and CPU of the edge's whole process tree per
 * INVITE). With two workers about half of the INVITEs are read by the
 * worker without the phone's connection and handed over through the
 * primary (README, "Workers"), so the upper percentiles are theirs. The
 * same runs with UDP phones, which any worker sends to (no hand-over), are
 * the baseline of what two workers cost without it. Bounded: at most 20,000 INVITEs per phase, a watchdog ends the run after
 * 5 minutes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { StreamFramer } from "../src/sip/framer.js";
import { freePort } from "../test/helpers/sipp.js";
import { repoRoot } from "./lib/paths.js";
import { sampleTree } from "./lib/proc.js";

const HOST = "127.0.0.1";
const WINDOW = 32;
/** The edge of the case running now, for the watchdog to end. */
let current: ChildProcess | undefined;

function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 20_000) throw new InvalidArgumentError("expected a whole number from 1 to 20000");
  return n;
}

function phonesOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new InvalidArgumentError("expected a whole number from 1 to 100");
  return n;
}

function header(text: string, name: string): string | undefined {
  return new RegExp(`\\r\\n${name}: ([^\\r]+)`, "i").exec(text)?.[1];
}

/** A response to `req` with its Via, From, To (tagged), Call-ID and CSeq. */
function answer(req: string, status: string, extra: string[] = []): string {
  const lines = req.split("\r\n").filter((l) => /^(Via|From|Call-ID|CSeq|Path):/i.test(l));
  const to = /^To: .*$/im.exec(req)?.[0] ?? "To: <sip:x@x>";
  return [`SIP/2.0 ${status}`, ...lines, /;tag=/.test(to) ? to : `${to};tag=a`, ...extra, "Content-Length: 0", "", ""].join("\r\n");
}

/** The PBX: answers REGISTER and OPTIONS, keeps each phone's Path, and reports the 200s to its INVITEs. */
class Pbx {
  readonly paths = new Map<string, string>();
  onAnswer: (callId: string) => void = () => {};
  private constructor(
    readonly sock: UdpSocket,
    readonly port: number,
  ) {
    sock.on("message", (m, r) => {
      const text = m.toString("latin1");
      if (text.startsWith("SIP/2.0 200 ")) {
        if (/\r\nCSeq: \d+ INVITE/i.test(text)) this.onAnswer(header(text, "Call-ID") ?? "");
        return;
      }
      if (text.startsWith("REGISTER ")) {
        const path = /\r\nPath: <([^>]+)>/.exec(text)?.[1];
        if (path !== undefined) this.paths.set(header(text, "Call-ID") ?? "", path);
      }
      if (text.startsWith("REGISTER ") || text.startsWith("OPTIONS ")) sock.send(answer(text, "200 OK"), r.port, r.address);
    });
  }

  static async open(): Promise<Pbx> {
    const sock = createSocket("udp4");
    sock.bind(0, HOST);
    await once(sock, "listening");
    return new Pbx(sock, sock.address().port);
  }

  invite(edgePort: number, path: string, callId: string): void {
    this.sock.send(
      [
        `INVITE sip:phone@${HOST} SIP/2.0`,
        `Via: SIP/2.0/UDP ${HOST}:${this.port};branch=z9hG4bK-${callId};rport`,
        "Max-Forwards: 70",
        `Route: <${path}>`,
        `From: <sip:2000@${HOST}>;tag=pbx`,
        `To: <sip:phone@${HOST}>`,
        `Call-ID: ${callId}`,
        "CSeq: 1 INVITE",
        `Contact: <sip:pbx@${HOST}:${this.port}>`,
        "Content-Length: 0",
        "",
        "",
      ].join("\r\n"),
      edgePort,
      HOST,
    );
  }
}

/** A UDP phone: registers with Path support, answers every INVITE with 200 at once, to where it came from. */
async function udpPhone(n: number, edgePort: number): Promise<UdpSocket> {
  const s = createSocket("udp4");
  s.bind(0, HOST);
  await once(s, "listening");
  const port = s.address().port;
  s.on("message", (m, r) => {
    const text = m.toString("latin1");
    if (text.startsWith("INVITE ")) s.send(answer(text, "200 OK", [`Contact: <sip:p${n}@${HOST}:${port}>`]), r.port, r.address);
  });
  s.send(
    [
      `REGISTER sip:${HOST} SIP/2.0`,
      `Via: SIP/2.0/UDP ${HOST}:${port};branch=z9hG4bK-reg${n};rport`,
      "Max-Forwards: 70",
      `From: <sip:p${n}@${HOST}>;tag=r${n}`,
      `To: <sip:p${n}@${HOST}>`,
      `Call-ID: reg-${n}`,
      "CSeq: 1 REGISTER",
      `Contact: <sip:p${n}@${HOST}:${port}>`,
      "Supported: path",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
    edgePort,
    HOST,
  );
  return s;
}

/** A TCP phone: registers with Path support, answers every INVITE with 200 at once. */
async function phone(n: number, edgePort: number): Promise<Socket> {
  const s = connect(edgePort, HOST);
  await once(s, "connect");
  s.on("error", () => {});
  const framer = new StreamFramer({ maxMessageBytes: 65535, maxBufferBytes: 262144 });
  s.on("data", (d: Buffer) => {
    for (const ev of framer.push(d)) {
      if (ev.kind !== "message") continue;
      const text = ev.data.toString("latin1");
      if (text.startsWith("INVITE ")) s.write(answer(text, "200 OK", [`Contact: <sip:p${n}@${HOST}:${s.localPort!};transport=tcp>`]));
    }
  });
  s.write(
    [
      `REGISTER sip:${HOST} SIP/2.0`,
      `Via: SIP/2.0/TCP ${HOST}:${s.localPort!};branch=z9hG4bK-reg${n};rport`,
      "Max-Forwards: 70",
      `From: <sip:p${n}@${HOST}>;tag=r${n}`,
      `To: <sip:p${n}@${HOST}>`,
      `Call-ID: reg-${n}`,
      "CSeq: 1 REGISTER",
      `Contact: <sip:p${n}@${HOST}:${s.localPort!};transport=tcp>`,
      "Supported: path",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
  );
  return s;
}

/** Resolves once `done()` holds, checked on an interval; rejects after `ms`. */
async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runCase(workers: number, transport: "tcp" | "udp", n: number, phoneCount: number): Promise<string> {
  const pbx = await Pbx.open();
  const port = await freePort(HOST);
  const dir = mkdtempSync(join(tmpdir(), "sip-edge-handover-"));
  const config = join(dir, "edge.yaml");
  writeFileSync(
    config,
    [
      "log: { level: info }",
      "listen:",
      `  - { transport: udp, address: ${HOST}, port: ${port} }`,
      `  - { transport: tcp, address: ${HOST}, port: ${port} }`,
      "targets:",
      `  - { name: main, uri: "sip:${HOST}:${pbx.port}", acceptsPath: true }`,
      `flowToken: { key: "${"5a".repeat(32)}" }`,
      "",
    ].join("\n"),
  );
  const edge: ChildProcess = (current = spawn(process.execPath, [join(repoRoot(), "dist", "src", "cli.js"), "start", "--workers", String(workers), "--config", config], { stdio: ["ignore", "pipe", "inherit"] }));
  let ready = 0;
  let buf = "";
  edge.stdout!.on("data", (d: Buffer) => {
    buf += d.toString("utf8");
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (workers === 1 ? line.includes('"msg":"edge started"') : line.includes('"msg":"worker ready"')) ready++;
    }
  });
  const phones: Array<Socket | UdpSocket> = [];
  try {
    await until(() => ready >= workers, 30_000, "the edge to start");
    for (let i = 0; i < phoneCount; i++) phones.push(transport === "tcp" ? await phone(i, port) : await udpPhone(i, port));
    await until(() => pbx.paths.size === phoneCount, 10_000, "every phone registered");
    const paths = [...pbx.paths.values()];

    // One at a time: latency.
    const rtts: number[] = [];
    for (let i = 0; i < n; i++) {
      const id = `lat-${i}`;
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${id}`)), 5000);
        pbx.onAnswer = (callId) => {
          if (callId !== id) return;
          clearTimeout(timer);
          resolve();
        };
        pbx.invite(port, paths[i % paths.length]!, id);
      });
      rtts.push(performance.now() - t0);
    }
    rtts.sort((a, b) => a - b);

    // WINDOW in flight: throughput and CPU per INVITE.
    let sent = 0;
    let answered = 0;
    const seen = new Set<string>();
    const cpu0 = sampleTree(edge.pid!, false).cpuS;
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${answered} of ${n} INVITEs answered`)), 60_000);
      const pump = (): void => {
        while (sent < n && sent - answered < WINDOW) {
          pbx.invite(port, paths[sent % paths.length]!, `tput-${sent}`);
          sent++;
        }
      };
      pbx.onAnswer = (callId) => {
        if (!callId.startsWith("tput-") || seen.has(callId)) return;
        seen.add(callId);
        answered++;
        if (answered === n) {
          clearTimeout(timer);
          resolve();
        } else {
          pump();
        }
      };
      pump();
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpuUs = ((sampleTree(edge.pid!, false).cpuS - cpu0) / n) * 1e6;
    const ms = (v: number): string => v.toFixed(3);
    return `| ${workers} | ${transport.toUpperCase()} | ${n} | ${ms(percentile(rtts, 25))} | ${ms(percentile(rtts, 50))} | ${ms(percentile(rtts, 75))} | ${ms(percentile(rtts, 90))} | ${ms(percentile(rtts, 99))} | ${Math.round(n / seconds)} | ${Math.round(cpuUs)} |`;
  } finally {
    for (const s of phones) {
      if ("destroy" in s) s.destroy();
      else s.close();
    }
    edge.kill("SIGTERM");
    if (edge.exitCode === null) await once(edge, "exit");
    pbx.sock.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const o = new Command()
    .name("cluster-handover")
    .option("--count <n>", "INVITEs per phase", count, 2000)
    .option("--phones <n>", "TCP phones", phonesOption, 8)
    .parse()
    .opts<{ count: number; phones: number }>();
  const watchdog = setTimeout(() => {
    console.error("cluster-handover: watchdog: the run took longer than 5 minutes");
    current?.kill("SIGTERM");
    process.exit(1);
  }, 300_000);
  console.log(`| workers | phones | INVITEs | p25 ms | p50 ms | p75 ms | p90 ms | p99 ms | INVITE/s (${WINDOW} in flight) | CPU µs/INVITE |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|`);
  for (const transport of ["tcp", "udp"] as const) for (const w of [1, 2]) console.log(await runCase(w, transport, o.count, o.phones));
  clearTimeout(watchdog);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
