/**
 * Routing rules with real SIP peers (issue: routing rules in proxy-rules/),
 * the edge started in-process by `run()`:
 *
 * 1. Hot reload under traffic: SIPp phones call through the edge to two
 *    SIPp PBXs while rules.yaml is rewritten 50 times. Each version routes
 *    to the other PBX and stamps its number on the INVITE (Request-URI user
 *    and a header), so what reached the PBXs says which version routed each
 *    call; the version in force when the edge took each INVITE is recorded
 *    in the same turn, before the proxy sees it.
 * 2. Carrier breaker: outbound calls from a PBX through a least-cost group
 *    whose first carrier (SIPp) refuses calls with 503 and whose second
 *    answers. The edge's clock is injected, so a cool-down ends when the
 *    test says so rather than after a real wait.
 *
 * Waits are on events (store version, breaker state, SIPp exits), bounded
 * generously; nothing asserts wall-clock speed.
 */
import t, { type Test } from "tap";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type Running } from "../../src/main.js";
import type { CarrierBreakers } from "../../src/rules/carrier-breakers.js";
import type { InboundMessage } from "../../src/transport/types.js";
import { systemClock, type Clock, type TimerHandle } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { portOf } from "../helpers/edge-live.js";
import { findSipp, freePort, startSipp, type SippOptions, type SippProcess } from "../helpers/sipp.js";
import { waitFor } from "../helpers/wait.js";

const HOST = "127.0.0.1";
const TIMEOUT_S = 120;
const LONG = { timeoutMs: 30_000 };

/** Failures in a row that trip carrier-a's breaker in the second test. */
const TRIP = 3;
/** Its first cool-down; the injected clock skips it. */
const COOL_DOWN_S = 30;

/**
 * The system clock, plus time the test skips: `skip(ms)` makes every
 * `now()` later by `ms` at once, so a cool-down is over when the test says.
 * Timers still run on real time (a skipped timer fires late; the breaker
 * catches up on the next question, as it does for a late timer).
 */
class SkipClock implements Clock {
  private skipped = 0;

  now(): number {
    return systemClock.now() + this.skipped;
  }

  wallNow(): number {
    return systemClock.wallNow() + this.skipped;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    return systemClock.setTimer(ms, fn);
  }

  clearTimer(handle: TimerHandle): void {
    systemClock.clearTimer(handle);
  }

  skip(ms: number): void {
    this.skipped += ms;
  }
}

/** SIPp processes of one test, stopped and cleaned up at its end. */
function sippPool(t: Test): (o: SippOptions) => Promise<SippProcess> {
  const started: SippProcess[] = [];
  t.teardown(async () => {
    for (const p of started) {
      await p.stop().catch(() => undefined);
      p.cleanup();
    }
  });
  return async (o) => {
    const p = await startSipp(o);
    started.push(p);
    return p;
  };
}

/** One `<log>` line of callee-log.xml / carrier-503.xml: "METHOD Call-ID [Request-URI [version]]". */
interface LoggedRequest {
  method: string;
  callId: string;
  ruri: string;
  version: string;
}

function loggedRequests(p: SippProcess): LoggedRequest[] {
  return p.readLogs().map((l) => {
    const [method = "", callId = "", ruri = "", version = ""] = l.trim().split(/\s+/);
    return { method, callId, ruri, version };
  });
}

const CALL_ID = /\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]+)/i;

// ---------------------------------------------------------------------------
// 1. Hot reload under traffic.

const REWRITES = 50;

/** Version `label` of the rules: even labels route to pbx-a, odd to pbx-b, and say so on the INVITE. */
function rulesText(label: number): string {
  return [
    "groups:",
    "  to-a: { strategy: failover, members: [pbx-a] }",
    "  to-b: { strategy: failover, members: [pbx-b] }",
    "rules:",
    "  - name: default",
    `    route: ${label % 2 === 0 ? "to-a" : "to-b"}`,
    "    rewrite:",
    `      requestUri: { user: "v${label}" }`,
    `      headers: { add: { X-Rules-Version: "${label}" } }`,
    "",
  ].join("\n");
}

/** As an editor saves: a new file renamed over the old one, so the edge never reads half a file. */
function saveRules(dir: string, text: string): void {
  const tmp = join(dir, "rules.yaml.saving");
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, "rules.yaml"));
}

/** What the edge's own rules said when a call's INVITE and BYE reached it. */
interface CallSeen {
  /** Store version in force when the edge took the INVITE. */
  version: number;
  /** ... and when it took the BYE. */
  byeVersion?: number;
}

const sipp = findSipp();
if (sipp === undefined) {
  t.skip("rules interop: sipp is not installed (Debian package sip-tester)", () => undefined);
} else {
  t.test("rules rewritten 50 times under SIPp calls: no call fails, each call goes whole where the version in force at its INVITE said", async (t) => {
    const start = sippPool(t);
    const pbxA = await start({ scenario: "callee-log.xml", transport: "udp", timeoutS: TIMEOUT_S, traceLogs: true });
    const pbxB = await start({ scenario: "callee-log.xml", transport: "udp", timeoutS: TIMEOUT_S, traceLogs: true });
    const dir = mkdtempSync(join(tmpdir(), "rules-reload-"));
    writeFileSync(
      join(dir, "edge.yaml"),
      [
        "log: { level: silent }",
        "listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]",
        "targets:",
        `  - { name: pbx-a, uri: "sip:${HOST}:${pbxA.port}", acceptsPath: true }`,
        `  - { name: pbx-b, uri: "sip:${HOST}:${pbxB.port}", acceptsPath: true }`,
        // Not shedding: the suite runs files in parallel on two cores, and a
        // starved edge answering 503 Overloaded is overload control at work
        // (test/unit/overload.test.ts), not what these calls check.
        "overload: { shedAtMs: 0 }",
        "",
      ].join("\n"),
    );
    saveRules(dir, rulesText(0));
    const running: Running = await run(join(dir, "edge.yaml"), { logger: silentLogger });
    t.teardown(async () => {
      await running.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const store = running.rules;
    if (store === undefined) throw new Error("rules.yaml beside the config must give the edge a rules store");
    const firstVersion = store.version;
    /** Label (the number in the file) of each store version. */
    const labelOf = new Map<number, number>([[firstVersion, 0]]);

    // The store version a call is routed by is the one in force when the
    // transport hands its INVITE to the proxy: the router reads the table
    // in that same turn. Recorded here, just before, for every call.
    const calls = new Map<string, CallSeen>();
    const callsPerVersion = new Map<number, number>();
    const transport = running.edge.transport;
    const deliver = transport.onMessage;
    transport.onMessage = (m: InboundMessage) => {
      const text = m.data.toString("latin1");
      const callId = CALL_ID.exec(text)?.[1]?.trim();
      if (callId !== undefined) {
        if (text.startsWith("INVITE ") && !calls.has(callId)) {
          calls.set(callId, { version: store.version });
          callsPerVersion.set(store.version, (callsPerVersion.get(store.version) ?? 0) + 1);
        } else if (text.startsWith("BYE ")) {
          const c = calls.get(callId);
          if (c !== undefined && c.byeVersion === undefined) c.byeVersion = store.version;
        }
      }
      deliver(m);
    };

    // Calls last 400 ms, so most of them see a reload between INVITE and
    // BYE. The count only bounds the run: the phones are stopped (SIGUSR1:
    // no new calls, the calls up finish) once the last version has carried
    // traffic.
    const phones = await start({
      scenario: "phone-call.xml",
      remote: { host: HOST, port: portOf(running.edge, "udp") },
      transport: "udp",
      calls: 2000,
      rate: 20,
      pauseMs: 400,
      timeoutS: TIMEOUT_S,
    });
    await waitFor(() => (callsPerVersion.get(firstVersion) ?? 0) >= 1, { ...LONG, what: "a call under the first rules" });

    const wrongTables: string[] = [];
    for (let label = 1; label <= REWRITES; label++) {
      const want = store.version + 1;
      saveRules(dir, rulesText(label));
      // The store reloads after a debounce: the next rewrite waits until
      // this one is in force (and has routed a call), so every version counts.
      await waitFor(() => store.version >= want, { ...LONG, what: `rules label ${label} in force (version ${want})` });
      labelOf.set(store.version, label);
      const rule = store.current().rules[0];
      const action = rule?.action;
      const header = action?.kind === "route" ? action.rewrite?.addHeaders.find(([h]) => h === "X-Rules-Version")?.[1] : undefined;
      if (store.version !== want || action?.kind !== "route" || action.group.name !== (label % 2 === 0 ? "to-a" : "to-b") || header !== String(label)) {
        wrongTables.push(`label ${label}: version ${store.version} (wanted ${want}), ${action?.kind} ${action?.kind === "route" ? action.group.name : ""} ${header}`);
      }
      await waitFor(() => (callsPerVersion.get(want) ?? 0) >= 1, { ...LONG, what: `a call under rules label ${label}` });
    }
    const r = await phones.stop(30_000);
    t.same(wrongTables, [], "each rewrite was loaded, in order, as its own version");
    const st = store.status();
    t.equal(st.version, firstVersion + REWRITES, `${REWRITES} new versions`);
    t.match(st.reloads, { ok: REWRITES, failed: 0 }, "every rewrite loaded, none refused");

    t.equal(r.failed, 0, "zero failed calls", { errors: r.errors.slice(0, 4000) });
    t.ok(r.successful > REWRITES, `calls ran all along (${r.successful})`);
    t.equal(r.successful, r.created, "every call placed completed");
    t.equal(calls.size, r.created, "the edge took every call's INVITE");
    for (let v = firstVersion; v <= firstVersion + REWRITES; v++) {
      if ((callsPerVersion.get(v) ?? 0) === 0) t.fail(`no call under version ${v}`);
    }

    const [a, b] = await Promise.all([pbxA.stop(), pbxB.stop()]);
    const logs = new Map([
      ["pbx-a", loggedRequests(pbxA)],
      ["pbx-b", loggedRequests(pbxB)],
    ]);
    t.equal(a.failed + b.failed, 0, "no call failed at the PBXs");
    const byCall = new Map<string, { pbx: string; r: LoggedRequest }[]>();
    for (const [pbx, lines] of logs) {
      for (const r of lines) {
        const list = byCall.get(r.callId) ?? [];
        list.push({ pbx, r });
        byCall.set(r.callId, list);
      }
    }
    const problems: string[] = [];
    let spanning = 0;
    for (const [callId, seen] of calls) {
      const label = labelOf.get(seen.version);
      if (label === undefined) {
        problems.push(`${callId}: routed under version ${seen.version}, which the test never wrote`);
        continue;
      }
      const pbx = label % 2 === 0 ? "pbx-a" : "pbx-b";
      const got = byCall.get(callId) ?? [];
      const elsewhere = got.filter((g) => g.pbx !== pbx);
      const invites = got.filter((g) => g.r.method === "INVITE");
      const where = (m: string): string[] => got.filter((g) => g.r.method === m).map((g) => g.pbx);
      if (elsewhere.length > 0) problems.push(`${callId} (label ${label}, ${pbx}): ${elsewhere.map((g) => `${g.r.method} at ${g.pbx}`).join(", ")}`);
      if (invites.length !== 1 || invites[0]?.pbx !== pbx) problems.push(`${callId} (label ${label}): INVITE at [${where("INVITE").join(", ")}], wanted ${pbx}`);
      else if (invites[0].r.version !== String(label) || !invites[0].r.ruri.startsWith(`sip:v${label}@`)) {
        problems.push(`${callId} (label ${label}): INVITE rewritten as ${invites[0].r.ruri} / X-Rules-Version ${invites[0].r.version}`);
      }
      if (!where("ACK").includes(pbx)) problems.push(`${callId} (label ${label}): no ACK at ${pbx}`);
      if (!where("BYE").includes(pbx)) problems.push(`${callId} (label ${label}): no BYE at ${pbx}`);
      if (seen.byeVersion !== undefined && seen.byeVersion > seen.version) spanning++;
    }
    t.same(problems.slice(0, 20), [], "every call's INVITE, ACK and BYE reached the PBX of the version in force at its INVITE, with that version's rewrites");
    t.equal(byCall.size, calls.size, "the PBXs saw no call the edge did not take");
    t.ok(spanning > 0, `calls set up under one version and ended under a later one stayed on their PBX (${spanning} of ${calls.size})`);
    t.comment(`${calls.size} calls over ${REWRITES + 1} rules versions; ${spanning} ended under a later version than they started`);
  });

  t.test("carrier breaker with SIPp carriers: a short run of 503s is ignored, a run of N moves traffic to the next carrier, one test call after the cool-down brings it back", async (t) => {
    const start = sippPool(t);
    const clock = new SkipClock();
    const standby = await start({ scenario: "pbx.xml", transport: "udp", timeoutS: TIMEOUT_S });
    const carrierB = await start({ scenario: "callee-log.xml", transport: "udp", timeoutS: TIMEOUT_S, traceLogs: true });
    const carrierPort = await freePort();
    // The first carrier is one SIPp process per phase on the same port:
    // refusing every call (carrier-503.xml) or answering (callee-log.xml).
    const carrierAs: SippProcess[] = [];
    let carrierA: SippProcess | undefined;
    const carrierAIs = async (scenario: "carrier-503.xml" | "callee-log.xml"): Promise<void> => {
      await carrierA?.stop();
      carrierA = await start({ scenario, transport: "udp", localPort: carrierPort, timeoutS: TIMEOUT_S, traceLogs: true });
      carrierAs.push(carrierA);
    };
    await carrierAIs("callee-log.xml");

    // The calling PBX is Main: outbound rules match requests from a PBX
    // target, and a second loopback address keeps it apart from the rest.
    const PBX_IP = "127.0.0.2";
    const pbxPort = await freePort(PBX_IP);
    const dir = mkdtempSync(join(tmpdir(), "rules-breaker-"));
    writeFileSync(
      join(dir, "edge.yaml"),
      [
        "log: { level: silent }",
        "listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]",
        "targets:",
        `  - { name: main, uri: "sip:${PBX_IP}:${pbxPort}", priority: 1, acceptsPath: true }`,
        `  - { name: standby, uri: "sip:${HOST}:${standby.port}", priority: 2, acceptsPath: true }`,
        `  - { name: carrier-a, uri: "sip:${HOST}:${carrierPort}", priority: 10 }`,
        `  - { name: carrier-b, uri: "sip:${HOST}:${carrierB.port}", priority: 20 }`,
        // Default health (downAfter 3): a carrier's refused calls are its
        // breaker's to judge, not passive health signals.
        // Not shedding: the suite runs files in parallel on two cores, and a
        // starved edge answering 503 Overloaded is overload control at work
        // (test/unit/overload.test.ts), not what these calls check.
        "overload: { shedAtMs: 0 }",
        "",
      ].join("\n"),
    );
    writeFileSync(
      join(dir, "rules.yaml"),
      [
        "groups:",
        "  pbx: { strategy: failover, members: [main, standby] }",
        "  carriers-lcr:",
        "    strategy: failover",
        "    members:",
        "      - { target: carrier-a, priority: 1 }",
        "      - { target: carrier-b, priority: 2 }",
        "carriers:",
        "  carrier-a:",
        "    targets: carrier-a",
        `    breaker: { failures: ${TRIP}, windowSeconds: 600, coolDownSeconds: ${COOL_DOWN_S} }`,
        "  carrier-b:",
        "    targets: carrier-b",
        "rules:",
        "  - name: pbx-outbound",
        "    match:",
        `      source: "${PBX_IP}"`,
        "      method: INVITE",
        "      requestUri:",
        "        user: { regex: '^00[1-9][0-9]{5,14}$' }",
        "    route: carriers-lcr",
        "    rewrite:",
        "      requestUri:",
        '        user: { regex: "^00", replace: "+" }',
        "  - name: default",
        "    route: pbx",
        "",
      ].join("\n"),
    );
    const running: Running = await run(join(dir, "edge.yaml"), { logger: silentLogger, clock });
    t.teardown(async () => {
      await running.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const breakers: CarrierBreakers | undefined = running.breakers;
    if (breakers === undefined) throw new Error("rules.yaml beside the config must give the edge carrier breakers");
    const breakerA = () => {
      const s = breakers.get("carrier-a")?.snapshot();
      if (s === undefined) throw new Error("carrier-a has no breaker");
      return s;
    };
    const edgePort = portOf(running.edge, "udp");

    /** Calls from the PBX to an international number; every one must succeed for the caller. */
    const callOut = async (calls: number, what: string): Promise<void> => {
      const caller = await start({
        scenario: "phone-call.xml",
        remote: { host: HOST, port: edgePort },
        transport: "udp",
        localIp: PBX_IP,
        localPort: pbxPort,
        calls,
        rate: 50,
        timeoutS: 60,
        extraArgs: ["-s", "0049301234567"],
      });
      const r = await caller.result();
      t.equal(r.failed, 0, `${what}: no call failed for the caller`, { errors: r.errors.slice(0, 2000) });
      t.equal(r.successful, calls, `${what}: ${calls} calls completed`);
    };
    const invites = (p: SippProcess | undefined): LoggedRequest[] => (p === undefined ? [] : loggedRequests(p).filter((r) => r.method === "INVITE"));
    const count = (p: SippProcess | undefined): number => invites(p).length;
    const REWRITTEN = /^sip:\+49301234567@/;

    // Baseline: the cheaper carrier takes the calls.
    await callOut(2, "carrier-a answering");
    t.equal(count(carrierA), 2, "carrier-a, first in the group, took both calls");
    t.equal(count(carrierB), 0, "carrier-b was not needed");
    t.ok(invites(carrierA).every((r) => REWRITTEN.test(r.ruri)), "with the rule's Request-URI rewrite");

    // A run shorter than N: each refused call goes on to carrier-b, and the
    // next answered call ends the run.
    await carrierAIs("carrier-503.xml");
    await callOut(TRIP - 1, `${TRIP - 1} calls refused by carrier-a`);
    t.equal(count(carrierA), TRIP - 1, "carrier-a was tried for each");
    t.equal(count(carrierB), TRIP - 1, "and carrier-b took each after the 503");
    t.ok(invites(carrierB).every((r) => REWRITTEN.test(r.ruri)), "the failover attempt carries the rule's rewrite too");
    t.match(breakerA(), { status: "closed", consecutiveFailures: TRIP - 1, trips: 0 }, `${TRIP - 1} failures in a row: not tripped`);
    await carrierAIs("callee-log.xml");
    await callOut(3, "carrier-a answering again");
    t.equal(count(carrierA), 3, "carrier-a kept its traffic");
    t.equal(count(carrierB), TRIP - 1, "carrier-b got nothing new");
    t.match(breakerA(), { status: "closed", consecutiveFailures: 0, trips: 0 }, "an answered call ends the run of failures");

    // A run of N trips the breaker; while it is open carrier-a is skipped.
    await carrierAIs("carrier-503.xml");
    await callOut(TRIP, `${TRIP} calls refused by carrier-a`);
    t.equal(count(carrierA), TRIP, "carrier-a was tried for each of the run");
    t.match(breakerA(), { status: "open", trips: 1 }, `${TRIP} failures in a row: open`);
    const bBefore = count(carrierB);
    await callOut(3, "breaker open");
    t.equal(count(carrierA), TRIP, "while open, carrier-a gets no call");
    t.equal(count(carrierB), bBefore + 3, "the calls go to carrier-b");

    // Cool-down over, carrier still refusing: of three calls, one tests it
    // (the others go straight to carrier-b), and the breaker opens again.
    clock.skip(COOL_DOWN_S * 1000);
    await waitFor(() => breakerA().status === "half-open", { ...LONG, what: "carrier-a half-open after the cool-down" });
    await callOut(3, "half-open, carrier-a still refusing");
    t.equal(count(carrierA), TRIP + 1, "exactly one call tested carrier-a");
    t.match(breakerA(), { status: "open", trips: 2 }, "the failed test opens the breaker again");
    t.match(breakerA().history.at(-1)?.reason, new RegExp(`open for ${2 * COOL_DOWN_S}s$`), "for twice the first cool-down");

    // The carrier recovers: after the (doubled) cool-down one test call
    // reaches it and closes the breaker; then it takes the traffic again.
    await carrierAIs("callee-log.xml");
    clock.skip(2 * COOL_DOWN_S * 1000);
    await waitFor(() => breakerA().status === "half-open", { ...LONG, what: "carrier-a half-open after the second cool-down" });
    await callOut(1, "the test call");
    t.equal(count(carrierA), 1, "the test call reached the recovered carrier-a");
    t.match(breakerA(), { status: "closed", consecutiveFailures: 0 }, "an answered test closes the breaker");
    const bAfter = count(carrierB);
    await callOut(3, "closed again");
    t.equal(count(carrierA), 4, "carrier-a takes the traffic again");
    t.equal(count(carrierB), bAfter, "carrier-b is not needed");

    const history = breakerA().history.map((h) => `${h.from ?? "start"}->${h.to}`);
    t.same(history, ["start->closed", "closed->open", "open->half-open", "half-open->open", "open->half-open", "half-open->closed"], "the breaker's transitions, in order");
    t.equal(carrierAs.length, 5, "carrier-a ran as five SIPp processes in turn");
    const healthA = running.edge.status().health["carrier-a"];
    t.not(healthA?.status, "down", "health never took carrier-a down for its 503s: the breaker alone decided");
    t.notOk(healthA?.history.some((h) => h.to === "down"), "not even for a moment");
  });
}
