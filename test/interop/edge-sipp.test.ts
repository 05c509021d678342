/**
 * Interop through the edge with SIPp as phones and as the PBX, on loopback,
 * over UDP and over TCP: registrations whose Path reaches the PBX, calls
 * INVITE/100/180/200/ACK/BYE/200, calls from the PBX to a phone routed by the
 * flow token alone, and cancelled calls. Zero failed calls in each run.
 */
import t from "tap";
import type { Test } from "tap";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Edge } from "../../src/edge/edge.js";
import { portOf, startEdge } from "../helpers/edge-live.js";
import { findSipp, pbxCallInjection, startSipp, type SippProcess, type SippResult, type SippTransport } from "../helpers/sipp.js";

const HOST = "127.0.0.1";
const TIMEOUT_S = 60;

const sipp = findSipp();
if (sipp === undefined) {
  t.skip("edge interop with SIPp: sipp is not installed (Debian package sip-tester)", () => undefined);
} else {
  for (const transport of ["udp", "tcp"] as const satisfies readonly SippTransport[]) {
    t.test(`SIPp through the edge over ${transport}`, async (t) => {
      const started: SippProcess[] = [];
      let edge: Edge | undefined;
      t.teardown(async () => {
        for (const p of started) {
          await p.stop().catch(() => undefined);
          p.cleanup();
        }
        await edge?.stop();
      });
      const track = (p: SippProcess): SippProcess => {
        started.push(p);
        return p;
      };
      const clean = (t: Test, r: SippResult, calls: number, what: string): void => {
        t.equal(r.exitCode, 0, `${what}: sipp exit code 0`, { errors: r.errors.slice(0, 4000) });
        t.equal(r.successful, calls, `${what}: ${calls} successful`);
        t.equal(r.failed, 0, `${what}: no failed call`);
      };

      const pbx = track(await startSipp({ scenario: "pbx.xml", transport, timeoutS: TIMEOUT_S }));
      edge = await startEdge([{ name: "main", uri: `sip:${HOST}:${pbx.port}${transport === "tcp" ? ";transport=tcp" : ""}`, priority: 1, acceptsPath: true }]);
      const remote = { host: HOST, port: portOf(edge, transport) };

      await t.test("register: the PBX gets (and echoes) the edge's Path with a flow token", async (t) => {
        const phone = track(await startSipp({ scenario: "phone-register.xml", remote, transport, calls: 20, rate: 50, timeoutS: TIMEOUT_S, traceLogs: true }));
        const r = await phone.result();
        clean(t, r, 20, "phone-register");
        t.equal(r.logs.length, 20);
        t.ok(
          r.logs.every((l) => new RegExp(`^PATH <sip:[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{16}@${HOST.replace(/\./g, "\\.")}:${remote.port}${transport === "tcp" ? ";transport=tcp" : ""};lr>`).test(l)),
          "each 200 carries our Path",
          { sample: r.logs[0] },
        );
      });

      await t.test("calls: INVITE/100/180/200/ACK/BYE/200 through the edge", async (t) => {
        const phone = track(await startSipp({ scenario: "phone-call.xml", remote, transport, calls: 50, rate: 100, timeoutS: TIMEOUT_S }));
        clean(t, await phone.result(), 50, "phone-call");
      });

      await t.test("cancel a ringing call through the edge", async (t) => {
        const phone = track(await startSipp({ scenario: "phone-cancel.xml", remote, transport, calls: 10, rate: 50, timeoutS: TIMEOUT_S }));
        clean(t, await phone.result(), 10, "phone-cancel");
      });

      await t.test("the PBX counted every request as a successful call", async (t) => {
        const r = await pbx.stop();
        t.equal(r.failed, 0, "PBX: no failed call", { errors: r.errors.slice(0, 4000) });
        t.equal(r.unexpected, 0, "PBX: no unexpected message (OPTIONS, REGISTER, INVITE, CANCEL all handled)");
        t.ok(r.successful >= 80, `PBX: 20 registrations + 50 calls + 10 cancels (${r.successful})`);
      });

      await t.test("a call from the PBX reaches a phone registered through the edge, by the flow token alone", async (t) => {
        const registrar = track(await startSipp({ scenario: "pbx.xml", transport, timeoutS: TIMEOUT_S }));
        edge!.replaceRouting([{ name: "main", uri: `sip:${HOST}:${registrar.port}${transport === "tcp" ? ";transport=tcp" : ""}`, priority: 1, acceptsPath: true }]);
        const phone = track(
          await startSipp({
            scenario: "phone-register.xml",
            oocScenario: "phone-uas.xml",
            remote,
            transport,
            calls: 1,
            pauseMs: 50_000,
            timeoutS: TIMEOUT_S,
            traceLogs: true,
          }),
        );
        const line = await phone.waitForLogLine(/^PATH/);
        const path = line.replace(/^PATH\s*/, "").trim();
        t.match(path, /^<sip:[^@]+@/, "the registration's Path");
        const dir = mkdtempSync(join(tmpdir(), "edge-pbxcall-"));
        t.teardown(() => rmSync(dir, { recursive: true, force: true }));
        // The PBX sends to the edge with the Path as its Route; the Request-URI is
        // the phone's Contact, which the edge never looks up anywhere.
        const inf = pbxCallInjection([{ requestUri: `sip:phone1@${HOST}:${phone.port}`, path }], join(dir, "calls.csv"));
        const caller = track(await startSipp({ scenario: "pbx-call.xml", remote, transport, injectionFile: inf, calls: 5, rate: 50, timeoutS: TIMEOUT_S }));
        clean(t, await caller.result(), 5, "pbx-call");
        phone.kill("SIGTERM");
        const reg = await phone.result();
        t.equal(reg.unexpected, 0, "the phone took every call as its own");
        t.equal(reg.failed, 0);
      });
    });
  }
}
