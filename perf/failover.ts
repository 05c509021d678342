/**
 * Failover run (issue 4's benchmark, not a test): SIPp phones call through
 * the edge at a fixed rate; the Main SIPp PBX is killed, later restarted on
 * the same port. Reports failed calls, calls answered by each PBX per second,
 * time from the kill to the first call on the Standby, the longest call
 * setup, and time from the restart to the first call back on Main.
 *
 *   npm run build && node dist/perf/failover.js [--rate 50] [--kill-after 15] [--down-for 20] [--tail 25]
 *
 * Loopback only; every process it starts is ended by PID; bounded in time.
 * The edge runs in this process (its CPU is not the point here).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../src/main.js";
import { silentLogger } from "../src/util/logger.js";
import { startSipp, type SippProcess } from "../test/helpers/sipp.js";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

const RATE = arg("rate", 50);
const KILL_AFTER_S = arg("kill-after", 15);
const DOWN_FOR_S = arg("down-for", 20);
const TAIL_S = arg("tail", 25);
const HOST = "127.0.0.1";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per-second IncomingCall(P) of a SIPp server's -fd 1 stat file: [epoch s, count][]. */
function perSecond(statFile: string): [number, number][] {
  let text: string;
  try {
    text = readFileSync(statFile, "latin1");
  } catch {
    return [];
  }
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const names = lines[0]?.split(";") ?? [];
  const iTime = names.indexOf("CurrentTime");
  const iIn = names.indexOf("IncomingCall(P)");
  return lines.slice(1).map((l) => {
    const v = l.split(";");
    const t = Number((v[iTime] ?? "").split("\t").pop());
    return [Math.round(t), Number(v[iIn] ?? 0)] as [number, number];
  });
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "edge-failover-run-"));
  const started: SippProcess[] = [];
  const track = (p: SippProcess) => (started.push(p), p);
  try {
    const mainDir = mkdtempSync(join(work, "main"));
    const main1 = track(await startSipp({ scenario: "pbx.xml", transport: "udp", timeoutS: 600, workDir: mainDir, extraArgs: ["-fd", "1"], buffSize: 4194304 }));
    const sbDir = mkdtempSync(join(work, "standby"));
    const standby = track(await startSipp({ scenario: "pbx.xml", transport: "udp", timeoutS: 600, workDir: sbDir, extraArgs: ["-fd", "1"], buffSize: 4194304 }));
    writeFileSync(join(work, "devices.yaml"), 'classes:\n  - name: default\n    toBackup: "1-3"\n    toMain: "1-3"\n');
    writeFileSync(
      join(work, "edge.yaml"),
      [
        "log: { level: silent }",
        "listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]",
        "targets:",
        `  - { name: main, uri: "sip:${HOST}:${main1.port}", acceptsPath: true }`,
        `  - { name: standby, uri: "sip:${HOST}:${standby.port}", acceptsPath: true }`,
        "health: { intervalSeconds: 1, intervalDownSeconds: 1, timeoutMs: 300, downAfter: 2, upAfter: 2 }",
        "policy: { holdDownSeconds: 5, failbackStableSeconds: 10, graceSeconds: 10, deviceTable: devices.yaml }",
        "failover: { requestTimeoutMs: 1000 }",
        "",
      ].join("\n"),
    );
    const edge = await run(join(work, "edge.yaml"), { logger: silentLogger });
    const edgePort = edge.edge.listeners.find((l) => l.transport === "udp")!.port;
    const total = Math.round(RATE * (KILL_AFTER_S + DOWN_FOR_S + TAIL_S));
    const t0 = Date.now();
    const phones = track(
      await startSipp({ scenario: "phone-call.xml", remote: { host: HOST, port: edgePort }, transport: "udp", calls: total, rate: RATE, timeoutS: 600, traceRtt: true, buffSize: 4194304 }),
    );
    await sleep(KILL_AFTER_S * 1000);
    const killedAt = Date.now();
    main1.kill("SIGKILL");
    await sleep(DOWN_FOR_S * 1000);
    const main2Dir = mkdtempSync(join(work, "main2"));
    const main2 = track(await startSipp({ scenario: "pbx.xml", transport: "udp", localPort: main1.port, timeoutS: 600, workDir: main2Dir, extraArgs: ["-fd", "1"], buffSize: 4194304 }));
    const restartedAt = Date.now();
    const r = await phones.result();
    const s = await standby.stop();
    await main2.stop();
    const st = edge.edge.status();
    await edge.stop();

    const statOf = (dir: string) => perSecond(join(dir, readdirFirst(dir)));
    const mainRows = [...statOf(mainDir), ...statOf(main2Dir)];
    const sbRows = statOf(sbDir);
    const firstAfter = (rows: [number, number][], t: number) => rows.find(([sec, n]) => sec * 1000 >= t && n > 1)?.[0];
    const sbFirst = firstAfter(sbRows, killedAt);
    const mainBack = firstAfter(statOf(main2Dir), restartedAt);
    const rtt = [...r.rttMs].sort((a, b) => a - b);

    console.log(`# failover run: ${RATE} calls/s, ${total} calls; Main killed at +${((killedAt - t0) / 1000).toFixed(1)} s, restarted at +${((restartedAt - t0) / 1000).toFixed(1)} s`);
    console.log(`failed calls: ${r.failed} of ${r.created} (successful ${r.successful})`);
    console.log(`time from kill to first call on the Standby: ${sbFirst === undefined ? "none" : `≤ ${Math.max(0, sbFirst - Math.floor(killedAt / 1000))} s (1 s stat resolution)`}`);
    console.log(`longest call setup (INVITE→200): ${rtt[rtt.length - 1] ?? "n/a"} ms; p99 ${rtt[Math.floor(rtt.length * 0.99)] ?? "n/a"} ms; p50 ${rtt[Math.floor(rtt.length / 2)] ?? "n/a"} ms`);
    console.log(`time from restart to first call back on Main: ${mainBack === undefined ? "none" : `≤ ${Math.max(0, mainBack - Math.floor(restartedAt / 1000))} s`} (hold-down 5 s, stable 10 s, class delay 1-3 s)`);
    console.log(`Standby answered ${s.successful} calls (incl. ~1 OPTIONS probe/s); edge counters: failover.retry.* = ${JSON.stringify(Object.fromEntries(Object.entries(st.counters).filter(([k]) => k.startsWith("failover."))))}`);
    console.log("\ncalls received per second (IncomingCall(P), incl. ~1 probe/s): second since start, Main, Standby");
    const bySec = new Map<number, [number, number]>();
    for (const [sec, n] of mainRows) bySec.set(sec, [n, bySec.get(sec)?.[1] ?? 0]);
    for (const [sec, n] of sbRows) bySec.set(sec, [bySec.get(sec)?.[0] ?? 0, n]);
    const base = Math.floor(t0 / 1000);
    for (const sec of [...bySec.keys()].sort((a, b) => a - b)) {
      const [m, sb] = bySec.get(sec)!;
      if (sec >= base) console.log(`${String(sec - base).padStart(4)}  ${String(m).padStart(5)}  ${String(sb).padStart(5)}`);
    }
  } finally {
    for (const p of started) {
      await p.stop().catch(() => undefined);
      p.cleanup();
    }
    rmSync(work, { recursive: true, force: true });
  }
}

/** The -trace_stat file SIPp writes in its working directory. */
function readdirFirst(dir: string): string {
  return readdirSync(dir).find((f) => f.startsWith("stat_")) ?? "missing";
}

await main();
