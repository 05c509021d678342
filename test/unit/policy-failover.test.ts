import t from "tap";
import { resolveHealthOptions } from "../../src/health/options.js";
import { TargetHealth } from "../../src/health/target-health.js";
import { compileDeviceTable, type DeviceTableFile } from "../../src/policy/device-table.js";
import { FailoverPolicy, type PolicyEvent } from "../../src/policy/failover.js";
import type { FailoverOptions } from "../../src/policy/options.js";
import { FakeClock } from "../../src/util/clock.js";

const S = 1000;
const MIN = 60 * S;
const WALL0 = Date.UTC(2026, 0, 1);

const TABLE: DeviceTableFile = {
  classes: [
    { name: "fast", match: { userAgent: "^fast" }, toBackup: 30, toMain: 10 },
    { name: "android", match: { userAgent: "^WP600A" }, toBackup: null, toMain: null },
    { name: "wp", match: { userAgent: "^WP" }, toBackup: "60-105", toMain: "60-105", register: "dual" },
    { name: "default", toBackup: 0, toMain: 0 },
  ],
};

function setup(options: Partial<FailoverOptions> = {}, file: DeviceTableFile = TABLE) {
  const clock = new FakeClock(0, WALL0);
  const ho = resolveHealthOptions();
  const main = new TargetHealth("pbx-main", ho, clock);
  const standby = new TargetHealth("pbx-standby", ho, clock);
  main.traffic({ outcome: "response", status: 200 });
  standby.traffic({ outcome: "response", status: 200 });
  const events: PolicyEvent[] = [];
  const policy = new FailoverPolicy({ main, standby, table: compileDeviceTable(file), clock, options, onEvent: (e) => events.push(e) });
  // Failures and successes as real traffic would report them: N=3 down, M=2 up.
  const down = (h: TargetHealth) => {
    for (let i = 0; i < 3; i++) h.traffic({ outcome: "timeout" });
  };
  const up = (h: TargetHealth) => {
    h.traffic({ outcome: "response", status: 200 });
    h.traffic({ outcome: "response", status: 200 });
  };
  const fast = policy.device({ userAgent: "fast-phone", aor: "sip:100@example.com" });
  const wp = policy.device({ userAgent: "WP490", aor: "sip:200@example.com" });
  const android = policy.device({ userAgent: "WP600ACG", aor: "sip:300@example.com" });
  const other = policy.device({ userAgent: "softphone", source: "10.0.0.9" });
  const close = () => {
    policy.close();
    main.close();
    standby.close();
  };
  return { clock, main, standby, policy, events, down, up, fast, wp, android, other, close };
}

t.test("devices: classification and stable delays", async (t) => {
  const e = setup();
  t.equal(e.fast.deviceClass.name, "fast");
  t.equal(e.fast.toBackupMs, 30 * S);
  t.equal(e.android.toBackupMs, null);
  t.equal(e.wp.deviceClass.name, "wp");
  t.equal(e.other.deviceClass.name, "default");
  t.equal(e.other.identity, "10.0.0.9");
  t.equal(e.policy.device({ userAgent: "WP490", aor: "SIP:200@EXAMPLE.com" }).toBackupMs, e.wp.toBackupMs, "same AOR, same delay");
  t.equal(e.policy.deviceOfClass("fast", "x").deviceClass.name, "fast");
  t.equal(e.policy.deviceOfClass("gone", "x").deviceClass.name, "default");
  t.equal(e.policy.route(e.wp).register, "dual");
  e.close();
});

t.test("hold-down: a 60 s outage moves nobody; requests go to the Standby meanwhile and straight back", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  clock.advance(10 * MIN);
  e.down(e.main);
  for (const dev of [e.fast, e.wp, e.other]) {
    const r = policy.route(dev);
    t.equal(r.home, "main");
    t.same(r.targets, ["pbx-standby"], "never a down target");
  }
  t.same(policy.route(e.fast).pending, { to: "standby", at: 10 * MIN + 180 * S + 30 * S });
  clock.advance(60 * S);
  t.same(policy.route(e.fast).targets, ["pbx-standby"]);
  e.up(e.main);
  for (const dev of [e.fast, e.wp, e.other, e.android]) {
    const r = policy.route(dev);
    t.equal(r.home, "main");
    t.same(r.targets, ["pbx-main", "pbx-standby"], "back to Main at once");
    t.equal(r.pending, undefined);
    t.equal(r.graceUntil, undefined, "never failed over, so no failback and no grace");
  }
  clock.advance(60 * MIN);
  t.equal(policy.home(e.other), "main");
  t.same(e.events.filter((x) => x.type === "switch-started"), [], "no switch window opened");
  t.same(policy.status().windows, []);
  e.close();
});

t.test("class delays apply on top of the hold-down", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  e.down(e.main);
  clock.advance(180 * S - 1);
  t.equal(policy.home(e.other), "main");
  clock.advance(1);
  t.equal(policy.home(e.other), "standby", "delay 0: at the hold-down");
  t.equal(policy.home(e.fast), "main");
  t.same(policy.route(e.other).targets, ["pbx-standby"]);
  clock.advance(30 * S - 1);
  t.equal(policy.home(e.fast), "main");
  clock.advance(1);
  t.equal(policy.home(e.fast), "standby", "fast: hold-down + 30 s");
  const wpAt = 180 * S + e.wp.toBackupMs!;
  t.ok(wpAt > 210 * S);
  clock.advance(wpAt - clock.now() - 1);
  t.equal(policy.home(e.wp), "main");
  clock.advance(1);
  t.equal(policy.home(e.wp), "standby");
  t.equal(policy.home(e.android), "main", "a class without delays does not move by itself");
  t.same(policy.route(e.android).targets, ["pbx-standby"], "but its requests avoid the down Main");
  t.equal(policy.route(e.android).pending, undefined);
  const started = e.events.filter((x) => x.type === "switch-started");
  t.equal(started.length, 1);
  t.match(started[0], { to: "standby", cause: "auto", at: WALL0 + 180 * S });
  e.close();
});

t.test("Main back inside a device's delay: that device never moved", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  e.down(e.main);
  clock.advance(200 * S);
  t.equal(policy.home(e.other), "standby");
  t.equal(policy.home(e.fast), "main");
  e.up(e.main);
  t.same(policy.route(e.fast).targets, ["pbx-main", "pbx-standby"]);
  t.equal(policy.home(e.fast), "main", "its 30 s had not run out");
  t.equal(policy.home(e.other), "standby", "moved devices return only by failback");
  t.same(policy.route(e.other).targets, ["pbx-standby", "pbx-main"]);
  t.match(e.events.at(-1), { type: "switch-stopped", to: "standby" });
  clock.advance(10 * MIN);
  t.equal(policy.home(e.other), "main", "failback after the stable delay (+0 s class delay)");
  e.close();
});

t.test("range spread: 1,000 identities over 60-105 s", async (t) => {
  const e = setup();
  const devs = Array.from({ length: 1000 }, (_, i) => e.policy.device({ userAgent: "WP480", aor: `sip:${1000 + i}@pbx.example.com` }));
  const buckets = new Array<number>(9).fill(0);
  let inRange = true;
  let stable = true;
  for (const d of devs) {
    const s = d.toBackupMs! / S;
    inRange &&= s >= 60 && s <= 105;
    buckets[Math.min(8, Math.floor((s - 60) / 5))]!++;
    stable &&= e.policy.device({ userAgent: "WP480", aor: d.identity }).toBackupMs === d.toBackupMs;
  }
  t.ok(inRange, "every delay inside 60-105 s");
  t.ok(stable, "each identity always gets the same delay");
  t.ok(buckets.every((b) => b > 0), `every 5 s bucket hit: ${buckets.join(",")}`);
  t.ok(buckets.every((b) => b > 1000 / 9 / 2), "roughly uniform");
  const sorted = devs.map((d) => d.toBackupMs! / S).sort((a, b) => a - b);
  t.ok(sorted[0]! < 61 && sorted.at(-1)! > 104, "covers the ends");
  // The failover itself is spread: about half the class has moved halfway through the range.
  e.down(e.main);
  e.clock.advance(180 * S + 82.5 * S);
  const moved = devs.filter((d) => e.policy.home(d) === "standby").length;
  t.ok(moved > 400 && moved < 600, `${moved} of 1000 moved at the middle`);
  const st = e.policy.status().classes.find((c) => c.name === "wp");
  t.equal(st?.home, "split");
  t.ok(st !== undefined && st.onStandby > 0.4 && st.onStandby < 0.6);
  t.equal(st?.pending?.to, "standby");
  t.ok(st !== undefined && st.pending !== null && st.pending.last <= WALL0 + 285 * S);
  e.close();
});

/** Main down long enough that everybody moved. */
function failedOver() {
  const e = setup();
  e.down(e.main);
  e.clock.advance(10 * MIN);
  for (const d of [e.fast, e.wp, e.other]) if (e.policy.home(d) !== "standby") throw new Error("not failed over");
  return e;
}

t.test("failback after 600 s stable plus the class delay, not before; grace after it", async (t) => {
  const e = failedOver();
  const { clock, policy } = e;
  e.up(e.main);
  const U = clock.now();
  t.same(policy.route(e.fast).targets, ["pbx-standby", "pbx-main"], "home first, Main as per-request fallback");
  t.same(policy.route(e.fast).pending, { to: "main", at: U + 600 * S + 10 * S });
  clock.advance(600 * S + 10 * S - 1);
  t.equal(policy.home(e.fast), "standby");
  t.equal(policy.home(e.other), "main", "class delay 0 moved at 600 s");
  clock.advance(1);
  const r = policy.route(e.fast);
  t.equal(r.home, "main");
  t.same(r.targets, ["pbx-main", "pbx-standby"]);
  t.equal(r.graceUntil, U + 610 * S + 300 * S, "grace runs from the device's own failback");
  t.equal(policy.home(e.wp), "standby");
  clock.advance(e.wp.toMainMs! - 10 * S);
  t.equal(policy.home(e.wp), "main");
  clock.advance(U + 910 * S - clock.now());
  t.equal(policy.route(e.fast).graceUntil, undefined, "grace over");
  t.ok(policy.route(e.wp).graceUntil !== undefined, "wp moved later, its grace runs later");
  // Everyone is back: the history forgets what it no longer needs.
  clock.advance(10 * MIN);
  t.ok(policy.status().windows.length <= 1);
  e.close();
});

t.test("a flapping Main moves nobody back (down/up every 30 s for 20 min)", async (t) => {
  const e = failedOver();
  const { clock, policy } = e;
  for (let i = 0; i < 20; i++) {
    e.up(e.main);
    t.same(policy.route(e.other).targets, ["pbx-standby", "pbx-main"]);
    clock.advance(30 * S);
    e.down(e.main);
    t.same(policy.route(e.other).targets, ["pbx-standby"]);
    clock.advance(30 * S);
    for (const d of [e.fast, e.wp, e.other]) t.equal(policy.home(d), "standby");
  }
  t.equal(e.events.filter((x) => x.type === "switch-started").length, 1, "only the first failover");
  // Once Main stays up, the stability clock counts from its last return.
  e.up(e.main);
  const U = clock.now();
  clock.advance(600 * S - 1);
  t.equal(policy.home(e.other), "standby");
  clock.advance(1);
  t.equal(policy.home(e.other), "main");
  t.match(e.events.at(-1), { type: "switch-started", to: "main", at: WALL0 + U + 600 * S });
  e.close();
});

t.test("a flapping Main does not fail anyone over either", async (t) => {
  const e = setup();
  for (let i = 0; i < 20; i++) {
    e.down(e.main);
    e.clock.advance(30 * S);
    e.up(e.main);
    e.clock.advance(30 * S);
  }
  for (const d of [e.fast, e.wp, e.other]) t.equal(e.policy.home(d), "main");
  t.same(e.policy.status().windows, []);
  e.close();
});

t.test("a drop during failback stops it; moved devices stay moved", async (t) => {
  const e = failedOver();
  const { clock, policy } = e;
  e.up(e.main);
  clock.advance(600 * S + 20 * S);
  t.equal(policy.home(e.fast), "main");
  t.equal(policy.home(e.wp), "standby");
  e.down(e.main);
  t.same(policy.route(e.fast).targets, ["pbx-standby"]);
  t.equal(policy.home(e.fast), "main", "already back: a new outage needs a new hold-down");
  clock.advance(5 * MIN);
  t.equal(policy.home(e.wp), "standby", "did not move back");
  t.equal(policy.home(e.fast), "standby", "hold-down + 30 s later it fails over again");
  e.close();
});

t.test("manual failback mode", async (t) => {
  const e = setup({ failbackMode: "manual" });
  const { clock, policy } = e;
  e.down(e.main);
  clock.advance(10 * MIN);
  t.same(policy.failbackNow(), { ok: false, reason: "main pbx-main is not usable" });
  e.up(e.main);
  clock.advance(120 * MIN);
  for (const d of [e.fast, e.wp, e.other]) t.equal(policy.home(d), "standby");
  t.equal(policy.route(e.fast).pending, undefined, "nothing pending in manual mode");
  t.same(policy.failbackNow(), { ok: true });
  const T = clock.now();
  t.equal(policy.home(e.other), "main");
  t.equal(policy.home(e.fast), "standby");
  t.same(policy.route(e.fast).pending, { to: "main", at: T + 10 * S });
  clock.advance(10 * S);
  t.equal(policy.home(e.fast), "main", "class delays spread a manual failback too");
  t.equal(policy.route(e.fast).graceUntil, T + 10 * S + 300 * S);
  t.equal(policy.status().failbackMode, "manual");
  // Switching the mode to auto lets the guards act.
  e.down(e.main);
  clock.advance(10 * MIN);
  e.up(e.main);
  policy.setFailbackMode("auto");
  clock.advance(600 * S);
  t.equal(policy.home(e.other), "main");
  e.close();
});

t.test("force failover and failback now", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  t.same(policy.forceFailover(), { ok: true });
  const T = clock.now();
  t.equal(policy.home(e.other), "standby");
  t.equal(policy.home(e.fast), "main");
  t.same(policy.route(e.fast).pending, { to: "standby", at: T + 30 * S });
  t.equal(policy.home(e.android), "standby", "ops move classes without delays, at once");
  clock.advance(30 * S);
  t.equal(policy.home(e.fast), "standby");
  t.same(policy.route(e.fast).targets, ["pbx-standby", "pbx-main"]);
  t.equal(policy.status().forced, true);
  clock.advance(120 * MIN);
  t.equal(policy.home(e.fast), "standby", "no automatic failback while forced");
  e.down(e.main);
  clock.advance(10 * MIN);
  e.up(e.main);
  clock.advance(20 * MIN);
  t.equal(policy.home(e.fast), "standby");
  t.same(policy.failbackNow({ immediate: true }), { ok: true });
  for (const d of [e.fast, e.wp, e.other, e.android]) t.equal(policy.home(d), "main");
  t.equal(policy.status().forced, false);
  t.same(policy.forceFailover({ immediate: true }), { ok: true });
  t.equal(policy.home(e.wp), "standby");
  e.down(e.standby);
  t.same(policy.forceFailover(), { ok: false, reason: "standby pbx-standby is not usable" });
  t.same(policy.route(e.wp).targets, ["pbx-main"], "home on a down Standby: requests still reach Main");
  t.same(
    e.events.filter((x) => x.type === "switch-started").map((x) => [x.to, x.cause]),
    [["standby", "ops"], ["main", "ops"], ["standby", "ops"]],
  );
  e.close();
});

t.test("pin and unpin a device class", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  t.same(policy.pin("fast", "standby"), { ok: true });
  const r = policy.route(e.fast);
  t.equal(r.home, "standby");
  t.equal(r.pinned, true);
  t.same(r.targets, ["pbx-standby", "pbx-main"]);
  t.equal(policy.home(e.wp), "main", "other classes unaffected");
  t.equal(policy.status().classes.find((c) => c.name === "fast")?.pinned, "standby");
  e.down(e.main);
  clock.advance(10 * MIN);
  t.equal(policy.pin("wp", "main").ok, true);
  t.equal(policy.home(e.wp), "main");
  t.same(policy.route(e.wp).targets, ["pbx-standby"], "a pin never sends a request to a down target");
  t.equal(policy.route(e.wp).pending, undefined);
  t.same(policy.unpin("wp"), { ok: true });
  t.equal(policy.home(e.wp), "standby", "unpinned: the computed home");
  t.equal(policy.unpin("wp").ok, false);
  t.same(policy.pin("nope", "main"), { ok: false, reason: "unknown device class nope" });
  e.close();
});

t.test("drain a target", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  policy.drain("main");
  t.equal(e.main.usability().inDialog, true, "calls in progress keep flowing");
  t.same(policy.route(e.fast).targets, ["pbx-standby"], "no new requests to a drained target");
  t.equal(policy.home(e.fast), "main");
  clock.advance(180 * S + 30 * S);
  t.equal(policy.home(e.fast), "standby", "a drained Main counts as unusable for the guards");
  policy.undrain("main");
  t.same(policy.route(e.fast).targets, ["pbx-standby", "pbx-main"]);
  policy.drain("standby");
  t.same(policy.route(e.fast).targets, ["pbx-main"]);
  policy.undrain("standby");
  e.close();
});

t.test("capExpires while a switch is pending", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  t.equal(policy.capExpires(e.fast, 3600), 3600, "nothing pending: as requested");
  e.down(e.main);
  clock.advance(10 * S);
  // Switch at 210 s: 200 s away, plus 30 s slack.
  t.equal(policy.capExpires(e.fast, 3600), 230);
  t.equal(policy.capExpires(e.fast, 120), 120, "never raised");
  clock.advance(195 * S);
  t.equal(policy.capExpires(e.fast, 3600), 35);
  clock.advance(4.5 * S);
  t.equal(policy.capExpires(e.fast, 3600), 31, "rounded up");
  clock.advance(0.5 * S);
  t.equal(policy.home(e.fast), "standby");
  t.equal(policy.capExpires(e.fast, 3600), 3600, "switched: nothing pending");
  t.equal(policy.capExpires(e.android, 3600), 3600, "a class that never switches by itself");
  e.up(e.main);
  t.equal(policy.capExpires(e.fast, 3600), 600 + 10 + 30, "failback pending");
  t.equal(policy.capExpires(e.other, 3600), 600 + 30);
  const floor = setup({ pendingExpiresMinSeconds: 60, pendingExpiresSlackSeconds: 0 });
  floor.down(floor.main);
  floor.clock.advance(200 * S);
  t.equal(floor.policy.capExpires(floor.fast, 3600), 60, "never below the floor");
  floor.close();
  e.close();
});

t.test("no failover to a Standby that is down; the spread starts when it comes up", async (t) => {
  const e = setup();
  const { clock, policy } = e;
  e.down(e.standby);
  clock.advance(MIN);
  e.down(e.main);
  clock.advance(10 * MIN);
  t.same(policy.route(e.other).targets, [], "nothing usable");
  t.equal(policy.home(e.other), "main");
  t.equal(policy.route(e.other).pending, undefined);
  e.up(e.standby);
  t.equal(policy.home(e.other), "standby", "hold-down long over: delay 0 moves at once");
  t.equal(policy.home(e.fast), "main");
  clock.advance(30 * S);
  t.equal(policy.home(e.fast), "standby", "class delay counted from the Standby's return");
  e.close();
});

t.test("status snapshot", async (t) => {
  const e = failedOver();
  e.up(e.main);
  e.clock.advance(605 * S);
  e.policy.pin("android", "standby");
  const s = e.policy.status();
  t.match(s, {
    failbackMode: "auto",
    forced: false,
    holdDownSeconds: 180,
    failbackStableSeconds: 600,
    graceSeconds: 300,
    main: { name: "pbx-main", usable: true, since: WALL0 + 10 * MIN },
    standby: { name: "pbx-standby", usable: true },
  });
  t.same(
    s.windows.map((w) => [w.to, w.cause, w.end === null]),
    [["standby", "auto", false], ["main", "auto", true]],
  );
  const byName = new Map(s.classes.map((c) => [c.name, c]));
  t.match(byName.get("default"), { home: "main", onStandby: 0, pending: null });
  t.match(byName.get("fast"), { home: "standby", onStandby: 1, pending: { to: "main", first: WALL0 + 10 * MIN + 610 * S } });
  t.match(byName.get("wp"), { home: "standby", register: "dual", toMain: { min: 60, max: 105 } });
  t.match(byName.get("android"), { home: "standby", pinned: "standby", pending: null });
  t.same(s.classes.map((c) => c.name), ["fast", "android", "wp", "default"]);
  e.close();
});

t.test("windows open on time through the clock, and close() cancels the timer", async (t) => {
  const e = setup();
  e.down(e.main);
  t.equal(e.events.length, 0);
  e.clock.advance(180 * S);
  t.match(e.events, [{ type: "switch-started", to: "standby", at: WALL0 + 180 * S }], "no query needed");
  e.up(e.main);
  t.match(e.events.at(-1), { type: "switch-stopped", to: "standby", reason: /main usable again/ });
  e.close();
  t.equal(e.clock.pending, 0);
});

t.test("the window history stays bounded", async (t) => {
  const e = setup({ historyLimit: 3, failbackStableSeconds: 60, holdDownSeconds: 60 });
  const { clock, policy } = e;
  // Outages and returns each just long enough to open a window that moves only some devices.
  for (let i = 0; i < 30; i++) {
    e.down(e.main);
    clock.advance(60 * S + 40 * S);
    e.up(e.main);
    clock.advance(60 * S + 5 * S);
    t.ok(policy.status().windows.length <= 3);
  }
  // The device-table delay 0 class still follows every switch.
  t.equal(policy.home(e.other), "main");
  e.down(e.main);
  clock.advance(61 * S);
  t.equal(policy.home(e.other), "standby");
  e.close();
});

t.test("device table reload keeps pins of classes that still exist", async (t) => {
  const e = setup();
  e.policy.pin("fast", "standby");
  e.policy.pin("wp", "standby");
  e.policy.setDeviceTable(
    compileDeviceTable({ classes: [{ name: "fast", match: { userAgent: "^fast" }, toBackup: 5, toMain: 5 }, { name: "default", toBackup: 1, toMain: 1 }] }),
  );
  const s = e.policy.status();
  t.same(s.classes.map((c) => [c.name, c.pinned]), [["fast", "standby"], ["default", null]]);
  t.equal(e.policy.device({ userAgent: "WP490" }).deviceClass.name, "default");
  e.close();
});

t.test("options are validated", async (t) => {
  t.throws(() => setup({ holdDownSeconds: -1 }));
  t.throws(() => setup({ failbackMode: "sometimes" as never }));
  t.throws(() => setup({ historyLimit: 0 }));
});
