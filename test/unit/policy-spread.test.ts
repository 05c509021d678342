import t from "tap";
import { delayMs, deviceIdentity, spreadFraction } from "../../src/policy/spread.js";

t.test("identity: AOR first, else source address", async (t) => {
  const cases: Array<[aor: string | undefined, source: string | undefined, want: string]> = [
    ["sip:1001@pbx.example.com", "10.0.0.1", "sip:1001@pbx.example.com"],
    ["SIP:Alice@PBX.Example.COM", undefined, "sip:Alice@pbx.example.com"],
    ["tel:+15551234", undefined, "tel:+15551234"],
    ["", "10.0.0.1", "10.0.0.1"],
    [undefined, "2001:db8::1", "2001:db8::1"],
    [undefined, undefined, ""],
  ];
  for (const [aor, source, want] of cases) t.equal(deviceIdentity(aor, source), want, `${aor} / ${source}`);
});

t.test("spread fraction: stable, in [0, 1), uniform", async (t) => {
  t.equal(spreadFraction("sip:1@x"), spreadFraction("sip:1@x"));
  t.not(spreadFraction("sip:1@x"), spreadFraction("sip:2@x"));
  const deciles = new Array<number>(10).fill(0);
  let inRange = true;
  for (let i = 0; i < 10_000; i++) {
    const f = spreadFraction(`sip:${i}@pbx.example.com`);
    inRange &&= f >= 0 && f < 1;
    deciles[Math.floor(f * 10)]!++;
  }
  t.ok(inRange);
  // 1,000 expected per decile; 6 standard deviations is ~±570.
  t.ok(deciles.every((n) => n > 850 && n < 1150), deciles.join(","));
});

t.test("delay inside a range", async (t) => {
  t.equal(delayMs(null, 0.5), null);
  t.equal(delayMs({ min: 30, max: 30 }, 0.99), 30_000);
  t.equal(delayMs({ min: 60, max: 105 }, 0), 60_000);
  t.equal(delayMs({ min: 60, max: 105 }, 0.5), 82_500);
  t.equal(delayMs({ min: 60, max: 105 }, 0.999999), 105_000);
});

t.test("a device's spread is computed when read, and equals the eager one", async (t) => {
  const { makeDevice, deviceAt } = await import("../../src/policy/device.js");
  const cls = { name: "c", description: undefined, toBackup: { min: 10, max: 70 }, toMain: null, register: "follow-active" as const, transport: undefined, port: undefined, match: { userAgent: [], source: [], aor: [] } };
  const lazy = makeDevice(cls, "sip:1001@example.com");
  const eager = deviceAt(cls, "sip:1001@example.com", spreadFraction("sip:1001@example.com"));
  t.ok(Object.isFrozen(lazy));
  t.equal(lazy.fraction, eager.fraction);
  t.equal(lazy.toBackupMs, eager.toBackupMs);
  t.equal(lazy.toMainMs, null);
  t.same(JSON.parse(JSON.stringify(lazy)), JSON.parse(JSON.stringify(eager)), "serializes like a plain device");
});
