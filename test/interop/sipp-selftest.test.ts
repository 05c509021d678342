/**
 * Proves the SIPp scenarios in test/sipp/ and the helper in
 * test/helpers/sipp.ts SIPp-to-SIPp on loopback, before any proxy is in the
 * path: phone calls, registrations, cancelled calls and calls from the PBX to
 * a registered phone, over UDP and over TCP, with zero failed calls.
 */
import t from "tap";
import type { Test } from "tap";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findSipp, parseRttFile, parseStatFile, pbxCallInjection, percentile, startSipp } from "../helpers/sipp.js";
import type { SippProcess, SippResult, SippTransport } from "../helpers/sipp.js";

const HOST = "127.0.0.1";
/** SIPp's own global timeout: it bounds a broken run, never paces a good one. */
const TIMEOUT_S = 60;

t.test("helper parsers", async (t) => {
  const stat = parseStatFile(
    [
      "StartTime;CurrentTime;CallRate(C);TotalCallCreated;OutgoingCall(C);IncomingCall(C);SuccessfulCall(C);FailedCall(C);Retransmissions(C);FailedUnexpectedMessage(C)",
      "x\ty\t100.5;x\ty\t102.0;9.5;10;10;0;9;1;2;1",
      "x\ty\t100.5;x\ty\t103.0;10.0;12;12;0;11;1;2;1",
    ].join("\n"),
  );
  t.ok(stat);
  t.equal(stat?.successful, 11);
  t.equal(stat?.failed, 1);
  t.equal(stat?.created, 12);
  t.equal(stat?.outgoing, 12);
  t.equal(stat?.retransmissions, 2);
  t.equal(stat?.unexpected, 1);
  t.equal(stat?.callRate, 10);
  t.equal(stat?.elapsedS, 2.5);
  t.equal(parseStatFile("only a header"), undefined);

  t.same(parseRttFile("Date_ms;response_time_ms;rtd_no\n12.0;4;1\n12.1;0;1\n"), [4, 0]);
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  t.equal(percentile(sorted, 50), 50);
  t.equal(percentile(sorted, 99), 99);
  t.equal(percentile(sorted, 100), 100);
  t.ok(Number.isNaN(percentile([], 50)));

  const dir = mkdtempSync(join(tmpdir(), "sipp-inf-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = pbxCallInjection(
    [
      { requestUri: "sip:phone1@127.0.0.1:5090;transport=UDP", path: "<sip:abc.def@127.0.0.1:5060;lr>" },
      { requestUri: "<sip:phone2@127.0.0.1:5091>", path: "<sip:tok@127.0.0.1:5060;transport=tcp;lr>" },
    ],
    join(dir, "calls.csv"),
  );
  t.equal(
    readFileSync(file, "latin1"),
    "SEQUENTIAL\nsip:phone1@127.0.0.1:5090;sip:abc.def@127.0.0.1:5060;udp\nsip:phone2@127.0.0.1:5091;sip:tok@127.0.0.1:5060;tcp\n",
  );
  t.throws(() => pbxCallInjection([{ requestUri: "sip:a@b", path: "<sip:x@y;lr;received=sip:1.2.3.4>" }], join(dir, "bad.csv")));
  t.throws(() => pbxCallInjection([{ requestUri: "sip:a@b", path: "sip:x@y;lr" }], join(dir, "bad.csv")));
});

const sipp = findSipp();
if (sipp === undefined) {
  t.skip("SIPp-to-SIPp interop: sipp is not installed (Debian package sip-tester)", () => undefined);
} else {
  for (const transport of ["udp", "tcp"] as const satisfies readonly SippTransport[]) {
    t.test(`SIPp to SIPp over ${transport}`, async (t) => {
      const started: SippProcess[] = [];
      t.teardown(async () => {
        for (const p of started) {
          await p.stop().catch(() => undefined);
          p.cleanup();
        }
      });
      const track = (p: SippProcess): SippProcess => {
        started.push(p);
        return p;
      };

      const pbx = track(await startSipp({ scenario: "pbx.xml", transport, timeoutS: TIMEOUT_S }));
      const remote = { host: HOST, port: pbx.port };
      const clean = (t: Test, r: SippResult, calls: number, what: string): void => {
        t.equal(r.exitCode, 0, `${what}: sipp exit code 0`, { errors: r.errors.slice(0, 4000) });
        t.equal(r.successful, calls, `${what}: ${calls} successful`);
        t.equal(r.failed, 0, `${what}: no failed call`);
      };

      await t.test("call: INVITE/100/180/200/ACK/BYE/200", async (t) => {
        const phone = track(await startSipp({ scenario: "phone-call.xml", remote, transport, calls: 20, rate: 50, timeoutS: TIMEOUT_S, traceRtt: true }));
        const r = await phone.result();
        clean(t, r, 20, "phone-call");
        t.equal(r.rttMs.length, 20, "one response time per call");
      });

      await t.test("register with Supported: path", async (t) => {
        const phone = track(await startSipp({ scenario: "phone-register.xml", remote, transport, calls: 20, rate: 50, timeoutS: TIMEOUT_S, traceLogs: true }));
        const r = await phone.result();
        clean(t, r, 20, "phone-register");
        // No proxy in the path: the PBX echoes no Path, and the log line says so.
        t.equal(r.logs.length, 20);
        t.ok(r.logs.every((l) => /^PATH\s*$/.test(l)), "no Path without an edge");
      });

      await t.test("cancel a ringing call: 200 for CANCEL, 487 for INVITE, ACK", async (t) => {
        const phone = track(await startSipp({ scenario: "phone-cancel.xml", remote, transport, calls: 10, rate: 50, timeoutS: TIMEOUT_S }));
        clean(t, await phone.result(), 10, "phone-cancel");
      });

      await t.test("the PBX stand-in counted every request as a successful call", async (t) => {
        const r = await pbx.stop();
        t.equal(r.failed, 0, "PBX: no failed call", { errors: r.errors.slice(0, 4000) });
        t.equal(r.unexpected, 0, "PBX: no unexpected message");
        t.equal(r.successful, 50, "PBX: 20 calls + 20 registrations + 10 cancels");
      });

      await t.test("PBX calls a registered phone on the flow it registered from", async (t) => {
        const registrar = track(await startSipp({ scenario: "pbx.xml", transport, timeoutS: TIMEOUT_S }));
        // The phone registers, then stays up (-d, ended by SIGTERM below once
        // the calls are done) answering calls on the same socket through its
        // out-of-call scenario.
        const phone = track(
          await startSipp({
            scenario: "phone-register.xml",
            oocScenario: "phone-uas.xml",
            remote: { host: HOST, port: registrar.port },
            transport,
            calls: 1,
            pauseMs: 50_000,
            timeoutS: TIMEOUT_S,
            traceLogs: true,
          }),
        );
        // Logged from the 200: the registration is done.
        await phone.waitForLogLine(/^PATH/);
        await phone.waitListening();
        const dir = mkdtempSync(join(tmpdir(), "sipp-pbxcall-"));
        t.teardown(() => rmSync(dir, { recursive: true, force: true }));
        // Without an edge, the phone itself stands where the edge's Path would point.
        const path = `<sip:${HOST}:${phone.port}${transport === "tcp" ? ";transport=tcp" : ""};lr>`;
        const inf = pbxCallInjection([{ requestUri: `sip:phone1@${HOST}:${phone.port}`, path }], join(dir, "calls.csv"));
        const caller = track(
          await startSipp({ scenario: "pbx-call.xml", remote: { host: HOST, port: phone.port }, transport, injectionFile: inf, calls: 5, rate: 50, timeoutS: TIMEOUT_S }),
        );
        clean(t, await caller.result(), 5, "pbx-call");
        phone.kill("SIGTERM");
        const reg = await phone.result();
        t.equal(reg.unexpected, 0, "the phone took every call as its own");
        t.equal(reg.failed, 0);
      });
    });
  }
}
