/**
 * Failover with real SIP peers (issue: health, failover/failback): SIPp
 * phones call through the edge at a steady rate while the Main SIPp PBX is
 * killed and later restarted. Timings are shortened in the test config.
 * Waits are on events (edge state, process exits), bounded generously;
 * nothing asserts wall-clock speed: the longest call setup is recorded only.
 */
import t from "tap";
import type { Test } from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type Running } from "../../src/main.js";
import { silentLogger } from "../../src/util/logger.js";
import { portOf } from "../helpers/edge-live.js";
import { findSipp, pbxCallInjection, startSipp, type SippProcess } from "../helpers/sipp.js";
import { waitFor } from "../helpers/wait.js";

const HOST = "127.0.0.1";
const TIMEOUT_S = 120;
const LONG = { timeoutMs: 60_000 };

function writeConfig(dir: string, mainPort: number, standbyPort: number, register: "follow-active" | "dual"): string {
  writeFileSync(
    join(dir, "devices.yaml"),
    ["classes:", "  - name: default", '    toBackup: "1-2"', '    toMain: "1-2"', `    register: ${register}`, ""].join("\n"),
  );
  writeFileSync(
    join(dir, "edge.yaml"),
    [
      "log: { level: silent }",
      "listen:",
      "  - { transport: udp, address: 127.0.0.1, port: 0 }",
      "targets:",
      `  - { name: main, uri: "sip:${HOST}:${mainPort}", acceptsPath: true }`,
      `  - { name: standby, uri: "sip:${HOST}:${standbyPort}", acceptsPath: true }`,
      "health: { intervalSeconds: 1, intervalDownSeconds: 1, timeoutMs: 300, downAfter: 2, upAfter: 2 }",
      "policy: { holdDownSeconds: 2, failbackStableSeconds: 3, graceSeconds: 5, deviceTable: devices.yaml }",
      "failover: { requestTimeoutMs: 1000 }",
      // Not shedding: the suite runs files in parallel on two cores, and a
      // starved edge answering 503 Overloaded is overload control at work
      // (test/unit/overload.test.ts), not what these calls check.
      "overload: { shedAtMs: 0 }",
      "",
    ].join("\n"),
  );
  return join(dir, "edge.yaml");
}

/**
 * Main and Standby SIPp PBXs and an edge in front of them; every process and
 * the config directory are cleaned up when the test ends.
 */
async function twoPbxsAndEdge(t: Test, register: "follow-active" | "dual") {
  const started: SippProcess[] = [];
  let running: Running | undefined;
  const dir = mkdtempSync(join(tmpdir(), `edge-${register}-`));
  t.teardown(async () => {
    for (const p of started) {
      await p.stop().catch(() => undefined);
      p.cleanup();
    }
    await running?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const track = (p: SippProcess): SippProcess => {
    started.push(p);
    return p;
  };
  const main = track(await startSipp({ scenario: "pbx.xml", transport: "udp", timeoutS: TIMEOUT_S }));
  const standby = track(await startSipp({ scenario: "pbx.xml", transport: "udp", timeoutS: TIMEOUT_S }));
  running = await run(writeConfig(dir, main.port, standby.port, register), { logger: silentLogger });
  return { track, dir, main, standby, edge: running.edge };
}

const sipp = findSipp();
if (sipp === undefined) {
  t.skip("failover interop: sipp is not installed (Debian package sip-tester)", () => undefined);
} else {
  t.test("Main killed under steady calls: zero failed calls, new calls on the Standby, calm failback", async (t) => {
    const { track, main, standby, edge } = await twoPbxsAndEdge(t, "follow-active");
    const status = () => edge.status();
    await waitFor(() => status().health["main"]?.status === "up" && status().health["standby"]?.status === "up", LONG);

    const phones = track(
      await startSipp({ scenario: "phone-call.xml", remote: { host: HOST, port: portOf(edge, "udp") }, transport: "udp", calls: 500, rate: 20, timeoutS: TIMEOUT_S, traceRtt: true }),
    );
    // Phones registering at a steady rate through the same switch: a REGISTER
    // that Main never answers is retried on the Standby (per-request failover).
    const registrars = track(
      await startSipp({ scenario: "phone-register.xml", remote: { host: HOST, port: portOf(edge, "udp") }, transport: "udp", calls: 200, rate: 10, timeoutS: TIMEOUT_S }),
    );
    // Kill Main between two calls, not inside one. A call that Main has
    // already answered with 180 is, by design, never retried elsewhere
    // (DESIGN.md §2.1: no failover after a provisional from the callee side),
    // and a BYE in flight to a dead PBX cannot succeed: either would be a call
    // lost to the kill's timing, not to the failover. Waiting for "every
    // forwarded INVITE has had its 200 and its BYE's 200, and every forwarded
    // REGISTER its 200" (checked in this process; the kill follows in the
    // same turn) kills an idle Main while calls and registrations keep
    // arriving at a steady rate. (">=": a retransmitted 200 must not make the
    // condition unreachable.)
    const c = (name: string): number => edge.counters.get(name);
    await waitFor(() => {
      const invites = c("tx.request.INVITE");
      const answered = 2 * invites + c("tx.request.REGISTER");
      return invites >= 40 && c("tx.request.BYE") === invites && c("tx.response.200") >= answered;
    }, { ...LONG, what: "Main idle between two calls" });
    t.comment("stage: killing main");
    main.kill("SIGKILL");
    await waitFor(() => status().health["main"]?.status === "down", LONG);
    t.comment("stage: main down");
    // Hold-down plus the class delays: every device is homed on the Standby.
    await waitFor(() => status().policy?.classes.find((c) => c.name === "default")?.home === "standby", LONG);
    const invitesAtSwitch = edge.counters.get("tx.request.INVITE");
    t.comment("stage: homed on standby");

    // Main comes back on the same port.
    const main2 = track(await startSipp({ scenario: "pbx.xml", transport: "udp", localPort: main.port, timeoutS: TIMEOUT_S }));
    await waitFor(() => status().health["main"]?.status === "up", LONG);
    t.comment("stage: main up again");
    t.equal(status().policy?.classes.find((c) => c.name === "default")?.home, "standby", "Main up again, but nobody moves before the failback stability delay");
    await waitFor(() => status().policy?.classes.find((c) => c.name === "default")?.home === "main", LONG);
    t.ok(edge.counters.get("tx.request.INVITE") > invitesAtSwitch, "calls kept flowing through the switch");

    t.comment("stage: failed back");
    const r = await phones.result();
    if (r.failed > 0) t.comment(`edge counters: ${JSON.stringify(edge.counters.snapshot())}`);
    t.equal(r.failed, 0, "zero failed calls", { errors: r.errors.slice(0, 4000) });
    t.equal(r.successful, 500, "every call completed");
    const reg = await registrars.result();
    t.equal(reg.failed, 0, "zero failed registrations", { errors: reg.errors.slice(0, 4000) });
    t.equal(reg.successful, 200, "every registration answered 200");
    const longest = Math.max(...r.rttMs);
    t.comment(`longest call setup during the run: ${longest} ms (per-request timeout 1000 ms); median ${[...r.rttMs].sort((a, b) => a - b)[Math.floor(r.rttMs.length / 2)]} ms`);
    const s2 = await standby.stop();
    const m2 = await main2.stop();
    t.ok(s2.successful > 0, `the Standby carried calls (${s2.successful})`);
    t.ok(m2.successful > 0, `calls returned to Main after failback (${m2.successful})`);
    // Calls that reached Main after the kill, before it was declared down,
    // were moved by per-request failover (timeout, or target went down).
    const retried = Object.entries(edge.counters.snapshot())
      .filter(([k]) => k.startsWith("failover.retry."))
      .reduce((n, [, v]) => n + v, 0);
    t.ok(retried > 0, `requests sent to the dead Main were retried on the Standby (${retried})`);
  });

  t.test("dual registration: after Main dies, the Standby reaches the phone at once", async (t) => {
    const { track, dir, main, edge } = await twoPbxsAndEdge(t, "dual");
    await waitFor(() => edge.status().health["main"]?.status === "up", LONG);
    const phone = track(
      await startSipp({
        scenario: "phone-register.xml",
        oocScenario: "phone-uas.xml",
        remote: { host: HOST, port: portOf(edge, "udp") },
        transport: "udp",
        calls: 1,
        pauseMs: 100_000,
        timeoutS: TIMEOUT_S,
        traceLogs: true,
      }),
    );
    const path = (await phone.waitForLogLine(/^PATH/)).replace(/^PATH\s*/, "").trim();
    await waitFor(() => edge.status().dual["default"] !== undefined, LONG);
    t.match(edge.status().dual["default"], { target: "standby", status: 200, challenged: false }, "the Standby holds a binding too");

    main.kill("SIGKILL");
    // No re-registration: the Standby calls the phone through the edge right away.
    const inf = pbxCallInjection([{ requestUri: `sip:phone1@${HOST}:${phone.port}`, path }], join(dir, "calls.csv"));
    const caller = track(
      await startSipp({ scenario: "pbx-call.xml", remote: { host: HOST, port: portOf(edge, "udp") }, transport: "udp", injectionFile: inf, calls: 3, rate: 10, timeoutS: TIMEOUT_S }),
    );
    const r = await caller.result();
    t.equal(r.failed, 0, "calls from the Standby to the phone succeed", { errors: r.errors.slice(0, 4000) });
    t.equal(r.successful, 3);
  });
}
