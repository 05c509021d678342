import { readFileSync } from "node:fs";
import t from "tap";
import { parse as parseYaml } from "yaml";
import { addressBytes, inNetwork, parseNetwork } from "../../src/policy/cidr.js";
import { compileDeviceTable, deviceTableSchema, parseSwitchDelay, type DeviceTableFile } from "../../src/policy/device-table.js";

const shippedPath = new URL("../../proxy-rules/devices.yaml", import.meta.url);

function shipped(): DeviceTableFile {
  const r = deviceTableSchema.safeParse(parseYaml(readFileSync(shippedPath, "utf8")));
  if (!r.success) throw new Error(JSON.stringify(r.error.issues));
  return r.data;
}

t.test("the shipped proxy-rules/devices.yaml validates and holds the reference table", async (t) => {
  const table = compileDeviceTable(shipped());
  t.ok(Object.isFrozen(table));
  t.ok(Object.isFrozen(table.classes));
  t.equal(table.classes.at(-1)?.name, "default", "default last");
  const expect: Record<string, [string, number | null, number | null, number | null, number | null, string]> = {
    WP: ["tcp", 60, 105, 60, 105, "443"],
    WP2015: ["tcp", 30, 60, 10, 60, "443"],
    W24FXSR2: ["tcp", 40, 45, 30, 90, "443"],
    W04FXS: ["tls", 30, 30, 45, 300, "443"],
    W02FXSR2: ["udp", 30, 60, 10, 30, "5060"],
    W0XPRI: ["tcp", 10, 10, 30, 180, "443"],
    "W01/02BRI": ["tcp", 10, 60, 60, 180, "443"],
    W04FXO: ["tls", 30, 30, 45, 300, "443"],
    WP600AXX: ["tls", null, null, null, null, "443"],
  };
  for (const [name, [tp, bMin, bMax, mMin, mMax, port]] of Object.entries(expect)) {
    const c = table.byName(name);
    t.ok(c, name);
    t.equal(c?.transport, tp, `${name} transport`);
    t.equal(String(c?.port), port, `${name} port`);
    t.same(c?.toBackup, bMin === null ? null : { min: bMin, max: bMax }, `${name} toBackup`);
    t.same(c?.toMain, mMin === null ? null : { min: mMin, max: mMax }, `${name} toMain`);
  }
  t.same(table.byName("trunk")?.toBackup, { min: 10, max: 10 });
  t.ok(table.byName("default"));
  t.equal(table.byName("nope"), undefined);

  const cases: Array<[ua: string, cls: string]> = [
    ["Wildix WP490 v2.1", "WP"],
    ["WP480G R2", "WP"],
    ["WP2015 firmware 1.0", "WP2015"],
    ["WP600ACG 3.2", "WP600AXX"],
    ["W24FXSR2 fw 5", "W24FXSR2"],
    ["W24FXS-R2", "W24FXSR2"],
    ["W04FXS 2.0", "W04FXS"],
    ["W02FXSR2", "W02FXSR2"],
    ["W01PRI", "W0XPRI"],
    ["W02BRI 4", "W01/02BRI"],
    ["w04fxo", "W04FXO"],
    ["Yealink SIP-T46S", "default"],
  ];
  for (const [ua, cls] of cases) t.equal(table.classify({ userAgent: ua }).name, cls, ua);
  t.equal(table.classify({ source: "192.0.2.77" }).name, "trunk");
  t.equal(table.classify({ source: "2001:db8:1::5" }).name, "trunk");
  t.equal(table.classify({}).name, "default");
});

const base = (classes: DeviceTableFile["classes"]): DeviceTableFile => ({
  classes: [...classes, { name: "default", toBackup: 30, toMain: 30 }],
});

t.test("classification: UA, CIDR v4 and v6, AOR, first match wins, default last", async (t) => {
  const table = compileDeviceTable({
    classes: [
      { name: "default", toBackup: 30, toMain: 30 },
      { name: "lab", match: { source: ["10.1.0.0/16", "fd00:1::/32"], aor: "@lab\\.example\\.com$" }, toBackup: 5, toMain: 5 },
      { name: "yealink", match: { userAgent: ["^Yealink"] }, toBackup: "60-105", toMain: 10, register: "dual" },
      { name: "ops", match: { aor: ["^sip:9\\d{3}@"] }, toBackup: null, toMain: null, register: "passthrough" },
      { name: "host", match: { source: "203.0.113.9" }, toBackup: 1, toMain: 1 },
      { name: "byname", toBackup: 1, toMain: 1 },
    ],
  });
  t.same(table.classes.map((c) => c.name), ["lab", "yealink", "ops", "host", "byname", "default"]);
  const cases: Array<[info: Parameters<typeof table.classify>[0], cls: string]> = [
    [{ source: "10.1.200.3" }, "lab"],
    [{ source: "10.2.0.1" }, "default"],
    [{ source: "::ffff:10.1.2.3" }, "lab"],
    [{ source: "[fd00:1:ffff::1]" }, "lab"],
    [{ source: "fd00:2::1" }, "default"],
    [{ source: "fe80::1%eth0" }, "default"],
    [{ source: "203.0.113.9" }, "host"],
    [{ source: "203.0.113.10" }, "default"],
    [{ source: "not an address" }, "default"],
    [{ userAgent: "yealink SIP-T46S" }, "yealink"],
    [{ userAgent: "Snom" }, "default"],
    [{ aor: "sip:9001@pbx.example.com" }, "ops"],
    [{ aor: "sip:1001@LAB.example.com" }, "lab"],
    // First match wins: lab (source) comes before yealink (UA) and ops (AOR).
    [{ source: "10.1.0.1", userAgent: "Yealink", aor: "sip:9001@x" }, "lab"],
    [{ source: "10.9.0.1", userAgent: "Yealink", aor: "sip:9001@x" }, "yealink"],
    [{ userAgent: "x".repeat(10_000) + "Yealink" }, "default"],
  ];
  for (const [info, cls] of cases) t.equal(table.classify(info).name, cls, JSON.stringify(info).slice(0, 80));
  t.equal(table.byName("yealink")?.register, "dual");
  t.equal(table.byName("lab")?.register, "follow-active", "register defaults to follow-active");
  t.equal(table.byName("byname")?.match.userAgent.length, 0);
});

t.test("schema errors carry the field path", async (t) => {
  const bad: Array<[file: unknown, path: string]> = [
    [{ classes: [{ name: "a", toBackup: 1, toMain: 1 }] }, "classes"],
    [base([{ name: "a", match: { userAgent: "([" }, toBackup: 1, toMain: 1 }]), "classes.0.match.userAgent.0"],
    [base([{ name: "a", match: { source: ["10.0.0.1/8"] }, toBackup: 1, toMain: 1 }]), "classes.0.match.source.0"],
    [base([{ name: "a", match: { source: ["10.0.0.0/33"] }, toBackup: 1, toMain: 1 }]), "classes.0.match.source.0"],
    [base([{ name: "a", match: { source: ["bogus"] }, toBackup: 1, toMain: 1 }]), "classes.0.match.source.0"],
    [base([{ name: "a", toBackup: "105-60", toMain: 1 }]), "classes.0.toBackup"],
    [base([{ name: "a", toBackup: "-", toMain: 1 }]), "classes.0.toBackup"],
    [base([{ name: "a", toBackup: -1, toMain: 1 }]), "classes.0.toBackup"],
    [base([{ name: "a", toBackup: 1, toMain: 1, register: "both" } as never]), "classes.0.register"],
    [base([{ name: "a", toBackup: 1, toMain: 1, colour: "red" } as never]), "classes.0"],
    [base([{ name: "a", toBackup: 1, toMain: 1 }, { name: "a", toBackup: 1, toMain: 1 }]), "classes.1.name"],
    [{ classes: [{ name: "default", match: { aor: "x" }, toBackup: 1, toMain: 1 }] }, "classes.0.match"],
  ];
  for (const [file, path] of bad) {
    const r = deviceTableSchema.safeParse(file);
    t.notOk(r.success, path);
    if (!r.success) t.ok(r.error.issues.some((i) => i.path.join(".") === path), `${path}: ${JSON.stringify(r.error.issues.map((i) => i.path.join(".")))}`);
  }
  t.throws(() => compileDeviceTable({ classes: [] }), /device table/);
});

t.test("switch delays", async (t) => {
  const cases: Array<[number | string | null, unknown]> = [
    [30, { min: 30, max: 30 }],
    ["30", { min: 30, max: 30 }],
    ["60-105", { min: 60, max: 105 }],
    [" 10 - 60 ", { min: 10, max: 60 }],
    ["1.5-2.5", { min: 1.5, max: 2.5 }],
    [null, null],
    ["-", undefined],
    ["60-", undefined],
    ["a-b", undefined],
    [-5, undefined],
    [Infinity, undefined],
    [100_000, undefined],
  ];
  for (const [input, want] of cases) t.same(parseSwitchDelay(input), want, String(input));
});

t.test("networks", async (t) => {
  const cases: Array<[net: string, addr: string, inside: boolean]> = [
    ["10.0.0.0/8", "10.255.255.255", true],
    ["10.0.0.0/8", "11.0.0.0", false],
    ["0.0.0.0/0", "8.8.8.8", true],
    ["0.0.0.0/0", "2001:db8::1", false],
    ["192.168.1.128/25", "192.168.1.200", true],
    ["192.168.1.128/25", "192.168.1.127", false],
    ["::/0", "2001:db8::1", true],
    ["2001:db8::/32", "2001:db8:ffff:ffff::1", true],
    ["2001:db8::/32", "2001:db9::1", false],
    ["2001:db8:0:8000::/49", "2001:db8:0:8001::1", true],
    ["2001:db8:0:8000::/49", "2001:db8:0:7fff::1", false],
    ["::1", "::1", true],
    ["::1", "0:0:0:0:0:0:0:1", true],
    ["::ffff:0:0/96", "1.2.3.4", true],
    ["1.2.3.4", "::ffff:1.2.3.4", true],
    ["1.2.3.4", "::ffff:102:304", true],
    ["64:ff9b::/96", "64:ff9b::1.2.3.4", true],
  ];
  for (const [net, addr, inside] of cases) {
    const a = addressBytes(addr);
    t.ok(a, addr);
    t.equal(inNetwork(a!, parseNetwork(net)), inside, `${addr} in ${net}`);
  }
  for (const bad of ["1.2.3", "1.2.3.4.5", "::g", "1::2::3", "", "[1.2.3.4]x"]) t.equal(addressBytes(bad), undefined, bad);
  t.throws(() => parseNetwork("10.0.0.0/x"));
  t.throws(() => parseNetwork("2001:db8::1/32"), /host bits/);
});

t.test("classify: the memo of (User-Agent, source) gives what matching gives, and AOR patterns bypass it", async (t) => {
  const file: DeviceTableFile = {
    classes: [
      { name: "lab", match: { source: "10.9.0.0/16" }, toBackup: 5, toMain: 5 },
      { name: "phones", match: { userAgent: "^Acme" }, toBackup: 5, toMain: 5 },
      { name: "default", toBackup: 5, toMain: 5 },
    ],
  };
  const table = compileDeviceTable(file);
  for (let round = 0; round < 2; round++) {
    t.equal(table.classify({ userAgent: "Acme 1", source: "10.1.0.1", aor: `sip:${round}@x` }).name, "phones");
    t.equal(table.classify({ userAgent: "Acme 1", source: "10.9.0.1", aor: `sip:${round}@x` }).name, "lab", "the source counts");
    t.equal(table.classify({ userAgent: "Other", source: "10.1.0.1" }).name, "default");
    t.equal(table.classify({ source: "10.1.0.1" }).name, "default", "no User-Agent");
    t.equal(table.classify({ userAgent: "", source: "10.1.0.1" }).name, "default", "an empty User-Agent");
  }
  const long = "Acme " + "x".repeat(600);
  t.equal(table.classify({ userAgent: long }).name, "phones", "only the first 512 characters are matched, with or without the memo");
  const byAor = compileDeviceTable({ classes: [{ name: "vip", match: { aor: "^sip:1" }, toBackup: 5, toMain: 5 }, { name: "default", toBackup: 5, toMain: 5 }] });
  t.equal(byAor.classify({ userAgent: "Acme", aor: "sip:100@x" }).name, "vip");
  t.equal(byAor.classify({ userAgent: "Acme", aor: "sip:200@x" }).name, "default", "same User-Agent, another AOR");
});
