/**
 * src/edge/policy-router.ts: the device a request belongs to (classified
 * once, cached by its From/To address without the tag), and
 * capRegisterExpires: the 200 OK to a REGISTER of a device with a switch
 * pending has its granted expiries capped; with nothing pending the answer
 * is left exactly as the registrar sent it.
 */
import t, { type Test } from "tap";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Listener } from "../../src/edge/ports.js";
import { capRegisterExpires, PolicyRouter } from "../../src/edge/policy-router.js";
import type { RouteInput } from "../../src/edge/router.js";
import { makeTarget } from "../../src/edge/targets.js";
import { resolveHealthOptions } from "../../src/health/options.js";
import { TargetHealth } from "../../src/health/target-health.js";
import { compileDeviceTable, type DeviceInfo } from "../../src/policy/device-table.js";
import { FailoverPolicy } from "../../src/policy/failover.js";
import { parse } from "../../src/sip/parse.js";
import type { SipMessage } from "../../src/sip/message.js";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";

const UDP: Listener = { id: "udp", transport: "udp", address: "192.0.2.1", port: 5060, advertise: "192.0.2.1", family: 4 };

/** A router over a Main/Standby pair whose policy records what it was asked to classify. */
function router(t: Test) {
  const clock = new FakeClock(0, Date.UTC(2026, 0, 1));
  const ho = resolveHealthOptions();
  const main = new TargetHealth("pbx-main", ho, clock);
  const standby = new TargetHealth("pbx-standby", ho, clock);
  main.traffic({ outcome: "response", status: 200 });
  standby.traffic({ outcome: "response", status: 200 });
  const table = compileDeviceTable({
    classes: [
      { name: "fast", match: { userAgent: "^fast" }, toBackup: 30, toMain: 10 },
      { name: "lobby", match: { aor: "^sip:lobby@" }, toBackup: 5, toMain: 5 },
      { name: "default", toBackup: 0, toMain: 0 },
    ],
  });
  const policy = new FailoverPolicy({ main, standby, table, clock, options: {}, onEvent: () => {} });
  const asked: DeviceInfo[] = [];
  const device = policy.device.bind(policy);
  policy.device = (info) => {
    // Copied (JSON makes strings of its own): a record holding the
    // message's slices would keep its text alive in the memory test below.
    asked.push(JSON.parse(JSON.stringify(info)) as DeviceInfo);
    return device(info);
  };
  const targets = [makeTarget({ name: "pbx-main", uri: "sip:127.0.0.1:5070", priority: 1 }), makeTarget({ name: "pbx-standby", uri: "sip:127.0.0.1:5080", priority: 2 })];
  const r = new PolicyRouter(policy, targets, clock, silentLogger);
  t.teardown(() => {
    policy.close();
    main.close();
    standby.close();
  });
  const route = (m: SipMessage, source = "10.0.0.7") => {
    const input: RouteInput = { message: m, source: { transport: "udp", address: source, port: 5060 }, listener: UDP, fromTarget: undefined };
    const d = r.route(input);
    if (d.action !== "forward") throw new Error(`not forwarded: ${d.action}`);
    return d.why;
  };
  return { route, asked };
}

function request(method: string, from: string, to: string, userAgent?: string, extra?: string): SipMessage {
  return message([
    `${method} sip:100@example.com SIP/2.0`,
    "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK-1",
    "Max-Forwards: 70",
    `From: ${from}`,
    `To: ${to}`,
    `Call-ID: c-${Math.random()}`,
    `CSeq: 1 ${method}`,
    ...(userAgent === undefined ? [] : [`User-Agent: ${userAgent}`]),
    ...(extra === undefined ? [] : [extra]),
  ]);
}

/** A message of these lines and no body; the test's input, so it must parse. */
function message(lines: readonly string[]): SipMessage {
  const r = parse([...lines, "Content-Length: 0", "", ""].join("\r\n"));
  if (!r.ok) throw new Error(r.reason);
  return r.message;
}

t.test("a device is classified once: later calls with new tags hit the cache", async (t) => {
  const e = router(t);
  for (const tag of ["a1", "b2", "c3"]) t.match(e.route(request("INVITE", `"Front desk" <sip:200@example.com>;tag=${tag}`, "<sip:100@example.com>", "fast-9")), /^class fast/);
  t.equal(e.asked.length, 1, "classified on the first call only");
  t.same(e.asked[0], { userAgent: "fast-9", source: "10.0.0.7", aor: "sip:200@example.com" });
  // addr-spec form: the tag is a header parameter after the first ';'.
  e.route(request("INVITE", "sip:201@example.com;tag=x1", "<sip:100@example.com>"));
  e.route(request("INVITE", "sip:201@example.com;tag=x2", "<sip:100@example.com>"));
  t.equal(e.asked.length, 2);
  t.equal(e.asked[1]!.aor, "sip:201@example.com");
});

t.test("the AoR is the To of a REGISTER and the From of anything else", async (t) => {
  const e = router(t);
  t.match(e.route(request("REGISTER", "<sip:100@example.com>;tag=r1", "<sip:lobby@example.com>")), /^class lobby/);
  t.match(e.route(request("INVITE", "<sip:lobby@example.com>;tag=i1", "<sip:100@example.com>")), /^class lobby/);
  t.match(e.route(request("INVITE", "<sip:100@example.com>;tag=i2", "<sip:lobby@example.com>")), /^class default/);
  t.same(
    e.asked.map((a) => a.aor),
    ["sip:lobby@example.com", "sip:100@example.com"],
    "the REGISTER's To and the INVITE's From name the same device",
  );
});

t.test("one address, several agents or sources: each is its own device, none is taken for another", async (t) => {
  const e = router(t);
  const from = "<sip:300@example.com>;tag=";
  t.match(e.route(request("INVITE", from + "1", "<sip:100@example.com>", "fast-1")), /^class fast/);
  t.match(e.route(request("INVITE", from + "2", "<sip:100@example.com>", "desk-phone")), /^class default/);
  t.match(e.route(request("INVITE", from + "3", "<sip:100@example.com>", "fast-1"), "10.0.0.8"), /^class fast/);
  t.equal(e.asked.length, 3);
  t.match(e.route(request("INVITE", from + "4", "<sip:100@example.com>", "desk-phone")), /^class default/);
  t.match(e.route(request("INVITE", from + "5", "<sip:100@example.com>", "fast-1")), /^class fast/);
  t.equal(e.asked.length, 3, "all three still cached");
});

t.test("the device cache keeps no request's text alive", async (t) => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const e = router(t);
  const pad = `X-Pad: ${"X".repeat(2048)}`;
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 5000; i++) e.route(request("REGISTER", `<sip:${i}@example.com>;tag=r${i}`, `"Desk ${i}" <sip:${i}@example.com>`, "fast-phone/1.0 (build 2026)", pad));
  gc();
  const mb = (process.memoryUsage().heapUsed - before) / 1e6;
  t.equal(e.asked.length, 5000);
  // 5,000 devices and their keys: about 2 MB. Keys that held the requests'
  // texts (2 KiB and more each) kept over 12 MB.
  t.ok(mb < 8, `${mb.toFixed(1)} MB after the requests were dropped`);
});

t.test("a display name holding '>' or ';' does not cut the address short", async (t) => {
  const e = router(t);
  e.route(request("INVITE", '"a>b;c" <sip:lobby@example.com>;tag=q1', "<sip:100@example.com>"));
  e.route(request("INVITE", '"a>b;c" <sip:lobby@example.com>;tag=q2', "<sip:100@example.com>"));
  t.equal(e.asked.length, 1);
  t.equal(e.asked[0]!.aor, "sip:lobby@example.com");
});

function ok200(extra: string[]): SipMessage {
  return message([
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK-r1;received=192.168.1.20;rport=5062",
    "From: <sip:1001@pbx.example>;tag=f1",
    "To: <sip:1001@pbx.example>;tag=t1",
    "Call-ID: reg-1",
    "CSeq: 7 REGISTER",
    ...extra,
  ]);
}

const EXTRA = ["Expires: 3600", "Contact: <sip:1001@192.168.1.20:5062>;expires=3600, <sip:1001@10.0.0.5>;EXPIRES = 60", "Contact: <sip:1001@10.0.0.6>;q=0.5;expires=1800"];

t.test("a pending switch caps the Expires header and every Contact's expires; shorter ones stay", async (t) => {
  const m = capped(300);
  t.equal(m.get("Expires"), "300");
  const contacts = m.getAll("Contact").join(", ");
  t.match(contacts, /<sip:1001@192\.168\.1\.20:5062>;expires=300/);
  t.match(contacts, /<sip:1001@10\.0\.0\.5>;EXPIRES = 60/, "60 is below the cap: as granted");
  t.match(contacts, /<sip:1001@10\.0\.0\.6>;q=0\.5;expires=300/);
});

t.test("nothing pending: the answer is not touched", async (t) => {
  const m = ok200(EXTRA);
  const before = m.toString();
  const asked: number[] = [];
  capRegisterExpires(m, (n) => {
    asked.push(n);
    return n;
  });
  t.equal(m.toString(), before, "byte for byte as the registrar sent it");
  t.same(asked, [Number.MAX_SAFE_INTEGER], "asked once whether anything is capped; no header read");
});

t.test("a cap above every granted expiry changes nothing", async (t) => {
  const m = ok200(EXTRA);
  const before = m.toString();
  capRegisterExpires(m, (n) => Math.min(n, 7200));
  t.equal(m.toString(), before);
});

t.test("an answer without Expires or Contact", async (t) => {
  const m = ok200([]);
  const before = m.toString();
  capRegisterExpires(m, (n) => Math.min(n, 30));
  t.equal(m.toString(), before);
});

function capped(limit: number): SipMessage {
  const m = ok200(EXTRA);
  capRegisterExpires(m, (n) => Math.min(n, limit));
  return m;
}
