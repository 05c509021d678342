import t from "tap";
import { parseNetwork, readAddress, inNetwork, type AddressWords } from "../../src/rules/address.js";
import { decide } from "../../src/rules/decide.js";
import { messageInput } from "../../src/rules/input.js";
import { match } from "../../src/rules/match.js";
import { compileStringTest, testString } from "../../src/rules/string-match.js";
import type { Decision } from "../../src/rules/types.js";
import { ALL_UP, input, request, table, without, type Req, type Via } from "../fixtures/rules/helpers.js";

const RULES = `
groups:
  pbx:
    members: [main, standby]
  carriers:
    members:
      - { target: carrier-a, priority: 1 }
      - { target: carrier-b, priority: 2 }
  lab:
    strategy: round-robin
    members: [a, b]
carriers:
  telco:
    sources: ["192.0.2.0/28", "2001:db8:5::/48"]
  carrier-a:
    targets: carrier-a
  carrier-b:
    targets: carrier-b
rules:
  - name: scanners
    match:
      userAgent: { regex: "friendly-scanner|sipvicious" }
    drop: true
  - name: trunk
    match: { carrier: telco }
    deviceClass: trunk
    route: pbx
  - name: trunk-port
    match: { localPort: 5080 }
    reject: { status: 403 }
  - name: outbound
    match:
      source: ["10.20.0.10", "10.20.0.11"]
      method: INVITE
      requestUri: { user: { regex: '^(\\+|00)[1-9][0-9]{5,}$' } }
    route: carriers
    rewrite:
      requestUri: { user: { regex: "^00", replace: "+" } }
  - name: lab-phones
    match:
      source: "fd00:1ab::/32"
      transport: [tls, wss]
    route: lab
  - name: emergency
    match:
      requestUri: { user: ["110", "112"] }
    route: pbx
  - name: sales-domain
    match:
      requestUri: { host: SALES.example.com }
    route: pbx
    deviceClass: sales
  - name: vip-callers
    match:
      from: { user: { prefix: "9" }, host: { exact: vip.example.com } }
    route: pbx
  - name: to-support
    match:
      to: { user: support }
    route: pbx
  - name: marked
    match:
      headers: { X-Route-Lab: true }
    route: lab
  - name: unmarked-register
    match:
      method: REGISTER
      headers: { Authorization: false, X-Tenant: { prefix: acme } }
    reject: { status: 401, reason: "Say who you are" }
  - name: old-phones
    match:
      userAgent: { prefix: "OldPhone/1." }
      transport: udp
    reject: { status: 488 }
  - name: default
    route: pbx
`;

const tbl = table(RULES, { knownDeviceClasses: new Set(["trunk", "sales"]) });

function short(d: Decision): string {
  switch (d.action) {
    case "route":
      return `route ${d.group.name} ${d.targets.join(",")}${d.deviceClass !== undefined ? ` class=${d.deviceClass}` : ""}`;
    case "reject":
      return `reject ${d.status} ${d.reason}`;
    case "drop":
      return "drop";
  }
}

t.test("rules × messages → matched rule, action, targets", async (t) => {
  const cases: Array<[label: string, req: Req, via: Via, rule: string, outcome: string]> = [
    ["scanner UA anywhere is dropped", { headers: ["User-Agent: friendly-scanner 1.0"] }, { source: "192.0.2.3" }, "scanners", "drop"],
    ["scanner UA any case", { headers: ["User-Agent: SIPVicious"] }, {}, "scanners", "drop"],
    ["carrier v4 source", {}, { source: "192.0.2.14", localPort: 5080 }, "trunk", "route pbx main,standby class=trunk"],
    ["carrier v4 source seen as IPv4-mapped", {}, { source: "::ffff:192.0.2.1" }, "trunk", "route pbx main,standby class=trunk"],
    ["carrier v6 source", {}, { source: "2001:db8:5:1::9" }, "trunk", "route pbx main,standby class=trunk"],
    ["just outside the carrier network, on the trunk port", {}, { source: "192.0.2.16", localPort: 5080 }, "trunk-port", "reject 403 Forbidden"],
    ["PBX calls out with 00", { uri: "sip:004420123456@edge" }, { source: "10.20.0.10" }, "outbound", "route carriers carrier-a,carrier-b"],
    ["PBX calls out with +", { uri: "sip:+4420123456@edge" }, { source: "10.20.0.11" }, "outbound", "route carriers carrier-a,carrier-b"],
    ["PBX REGISTER is not outbound", { method: "REGISTER", uri: "sip:+4420123456@edge" }, { source: "10.20.0.11" }, "default", "route pbx main,standby"],
    ["PBX internal call is not outbound", { uri: "sip:1234@edge" }, { source: "10.20.0.10" }, "default", "route pbx main,standby"],
    ["lab phone over TLS", {}, { source: "fd00:1ab:2::7", transport: "tls" }, "lab-phones", "route lab a,b"],
    ["lab phone over UDP is not lab", {}, { source: "fd00:1ab:2::7", transport: "udp" }, "default", "route pbx main,standby"],
    ["emergency 112", { uri: "sip:112@edge" }, {}, "emergency", "route pbx main,standby"],
    ["tel: URI 110", { uri: "tel:110" }, {}, "emergency", "route pbx main,standby"],
    ["escaped user compares unescaped", { uri: "sip:%31%31%32@edge" }, {}, "emergency", "route pbx main,standby"],
    ["1120 is not 112", { uri: "sip:1120@edge" }, {}, "default", "route pbx main,standby"],
    ["host compares without case", { uri: "sip:1@sales.EXAMPLE.com" }, {}, "sales-domain", "route pbx main,standby class=sales"],
    ["From user prefix and host", { from: '"Boss" <sip:9001@VIP.example.com>' }, {}, "vip-callers", "route pbx main,standby"],
    ["From host alone is not enough", { from: "<sip:1001@vip.example.com>" }, {}, "default", "route pbx main,standby"],
    ["To user, addr-spec form", { to: "sip:support@example.com" }, {}, "to-support", "route pbx main,standby"],
    // The lab group's round-robin took its first turn with the lab phone above.
    ["header present", { headers: ["X-Route-Lab: yes"] }, {}, "marked", "route lab b,a"],
    ["REGISTER without Authorization, tenant acme", { method: "REGISTER", headers: ["X-Tenant: acme-berlin"] }, {}, "unmarked-register", "reject 401 Say who you are"],
    [
      "REGISTER with Authorization passes",
      { method: "REGISTER", headers: ["X-Tenant: acme-berlin", 'Authorization: Digest username="1"'] },
      {},
      "default",
      "route pbx main,standby",
    ],
    ["REGISTER of another tenant passes", { method: "REGISTER", headers: ["X-Tenant: other"] }, {}, "default", "route pbx main,standby"],
    ["old phone UA prefix is case-insensitive by default", { headers: ["User-Agent: oldphone/1.4"] }, {}, "old-phones", "reject 488 Not Acceptable Here"],
    ["old phone over TCP passes", { headers: ["User-Agent: OldPhone/1.4"] }, { transport: "tcp" }, "default", "route pbx main,standby"],
    ["garbage source address matches no network", {}, { source: "not-an-ip" }, "default", "route pbx main,standby"],
  ];
  for (const [label, req, via, rule, outcome] of cases) {
    const m = request(req);
    t.equal(match(tbl, input(m, via)).name, rule, `${label}: rule`);
    t.equal(short(decide(tbl, input(m, via), ALL_UP)), outcome, `${label}: decision`);
  }
});

t.test("messageInput wraps a parsed message and its socket", async (t) => {
  const inp = messageInput(request({ headers: ["User-Agent: X"] }), { address: "192.0.2.1", port: 5071 }, "tcp", 5061);
  t.same([inp.method, inp.sourceAddress, inp.sourcePort, inp.transport, inp.localPort, inp.requestUri?.user], ["INVITE", "192.0.2.1", 5071, "tcp", 5061, "1001"]);
  t.equal(inp.header("user-agent"), "X");
  t.equal(inp.header("x-none"), undefined);
  t.equal(match(tbl, inp).name, "trunk", "192.0.2.1 is a telco source");
});

t.test("health decides the members; nothing usable is a 503", async (t) => {
  const m = request();
  t.equal(short(decide(tbl, input(m), without("main"))), "route pbx standby");
  const none = decide(tbl, input(m), without("main", "standby"));
  t.equal(none.action, "reject");
  t.equal(none.action === "reject" && none.status, 503);
  t.equal(none.why, 'rule "default": group pbx (failover): no usable member (main, standby unusable)');
  t.equal(decide(tbl, input(m), without("main")).why, 'rule "default": group pbx (failover) → standby (main unusable)');
});

t.test("decisions of reject/drop rules and of failover groups are built once", async (t) => {
  const a = decide(tbl, input(request({ headers: ["User-Agent: friendly-scanner"] })), ALL_UP);
  const b = decide(tbl, input(request({ headers: ["User-Agent: friendly-scanner"] })), ALL_UP);
  t.equal(a, b, "same drop decision object");
  const c = decide(tbl, input(request()), ALL_UP);
  const d = decide(tbl, input(request()), ALL_UP);
  t.equal(c, d, "same failover decision while health is unchanged");
  t.not(decide(tbl, input(request()), without("main")), c, "a new one once health changes");
  t.ok(Object.isFrozen(c));
  t.ok(Object.isFrozen(tbl) && Object.isFrozen(tbl.rules) && Object.isFrozen(tbl.rules[0]));
});

t.test("a rewrite and the rule travel with the decision", async (t) => {
  const d = decide(tbl, input(request({ uri: "sip:004420123456@edge" }), { source: "10.20.0.10" }), ALL_UP);
  t.equal(d.action, "route");
  if (d.action !== "route") return;
  t.equal(d.rule.name, "outbound");
  t.equal(d.rule.line, 31, "the line of `- name: outbound` in the text");
  t.equal(d.rewrite?.text, 'user /^00/ → "+"');
});

t.test("addresses: IPv4, IPv6 forms, mapped, zones, brackets; refusals", async (t) => {
  const w: AddressWords = [0, 0, 0, 0];
  t.equal(readAddress("192.0.2.1", w), 4);
  t.same(w, [0, 0, 0xffff, 0xc0000201]);
  t.equal(readAddress("::ffff:192.0.2.1", w), 6);
  t.same(w, [0, 0, 0xffff, 0xc0000201], "mapped form reads the same words");
  t.equal(readAddress("2001:db8::1", w), 6);
  t.same(w, [0x20010db8, 0, 0, 1]);
  t.equal(readAddress("[2001:db8::1]", w), 6);
  t.equal(readAddress("fe80::1%eth0", w), 6);
  t.same(w, [0xfe800000, 0, 0, 1]);
  t.equal(readAddress("::", w), 6);
  t.same(w, [0, 0, 0, 0]);
  t.equal(readAddress("1::", w), 6);
  t.same(w, [0x10000, 0, 0, 0]);
  t.equal(readAddress("1:2:3:4:5:6:7:8", w), 6);
  t.same(w, [0x10002, 0x30004, 0x50006, 0x70008]);
  for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "1:2:3:4:5:6:7:8:9", "1::2::3", ":1", "1:", "12345::", "g::1", "1.2.3.4:5060", "example.com", "[]"]) {
    t.equal(readAddress(bad, w), 0, `refused: ${JSON.stringify(bad)}`);
  }
  const net = (s: string) => {
    const r = parseNetwork(s);
    if (!r.ok) throw new Error(r.message);
    return r.network;
  };
  const inside = (addr: string, n: string): boolean => {
    const x: AddressWords = [0, 0, 0, 0];
    if (readAddress(addr, x) === 0) throw new Error(addr);
    return inNetwork(x[0], x[1], x[2], x[3], net(n));
  };
  t.ok(inside("10.255.0.1", "10.0.0.0/8"));
  t.notOk(inside("11.0.0.1", "10.0.0.0/8"));
  t.ok(inside("203.0.113.9", "203.0.113.9"));
  t.notOk(inside("203.0.113.10", "203.0.113.9"));
  t.ok(inside("1.2.3.4", "0.0.0.0/0"));
  t.notOk(inside("2001:db8::1", "0.0.0.0/0"), "an IPv4 network holds no native IPv6 address");
  t.ok(inside("2001:db8:ffff::1", "2001:db8::/32"));
  t.notOk(inside("2001:db9::1", "2001:db8::/32"));
  t.ok(inside("2001:db8::1", "::/0"));
  t.ok(inside("10.1.2.3", "::ffff:10.0.0.0/104"), "a mapped network holds IPv4 sources");
  t.ok(inside("fd00::8001", "fd00::8000/113"));
  t.notOk(inside("fd00::7fff", "fd00::8000/113"));
  t.same(parseNetwork("10.1.0.0/8"), { ok: false, message: 'expected a network address with no host bits set beyond /8, got "10.1.0.0/8" (did you mean 10.0.0.0/8?)' });
  t.same(parseNetwork("2001:db8::1/32"), { ok: false, message: 'expected a network address with no host bits set beyond /32, got "2001:db8::1/32" (did you mean 2001:db8::/32?)' });
  t.same(parseNetwork("10.0.0.0/33"), { ok: false, message: 'expected a prefix length from 0 to 32 after "/", got "10.0.0.0/33"' });
  t.same(parseNetwork("10.0.0.300/8"), { ok: false, message: 'expected an IPv4 or IPv6 address or network (CIDR), got "10.0.0.300/8"' });
  t.same(parseNetwork("fe80::1%eth0"), { ok: false, message: 'expected an IPv4 or IPv6 address or network (CIDR), got "fe80::1%eth0"' });
});

t.test("string tests: exact lists, prefixes, regexes, case, long values", async (t) => {
  const exact = compileStringTest("exact", ["A", "b"], false);
  t.ok(testString(exact, "A"));
  t.notOk(testString(exact, "a"));
  t.notOk(testString(exact, undefined));
  const folded = compileStringTest("exact", ["Host.Example"], true);
  t.ok(testString(folded, "HOST.example"));
  t.notOk(testString(folded, "HOST.example."));
  const many = compileStringTest("exact", Array.from({ length: 20 }, (_, i) => `n${i}`), true);
  t.ok(many.set !== undefined, "a long list is a set");
  t.ok(testString(many, "N19"));
  t.notOk(testString(many, "n20"));
  const prefix = compileStringTest("prefix", ["+49", "0049"], false);
  t.ok(testString(prefix, "+4930"));
  t.notOk(testString(prefix, "+4"));
  const prefixFolded = compileStringTest("prefix", ["Yealink"], true);
  t.ok(testString(prefixFolded, "YEALINK SIP-T46"));
  const rx = compileStringTest("regex", ["^a+$"], false);
  t.ok(testString(rx, "aaa"));
  // Only the first 512 characters are searched: what comes after them is never seen.
  const tail = compileStringTest("regex", ["b$"], false);
  t.ok(testString(tail, `${"a".repeat(500)}b`));
  t.notOk(testString(tail, `${"a".repeat(600)}b`));
  t.equal(rx.text, "regex /^a+$/");
  t.equal(prefix.text, 'prefix one of "+49", "0049"');
  t.equal(folded.text, 'exact "Host.Example" (any case)');
});

t.test("match allocates no facts for rules that do not need them; From parsed once", async (t) => {
  let fromReads = 0;
  const tb = table(`
groups: { g: { members: [a] } }
rules:
  - { name: r1, match: { from: { user: x } }, route: g }
  - { name: r2, match: { from: { host: y } }, route: g }
  - { name: r3, match: { from: { user: "2001" }, headers: { X-A: true } }, route: g }
  - { name: d, route: g }
`);
  const m = request();
  const inp = input(m);
  const counting = Object.assign(Object.create(Object.getPrototypeOf(inp) as object) as typeof inp, inp, {
    header(name: string) {
      if (name === "from") fromReads++;
      return inp.header(name);
    },
  });
  t.equal(match(tb, counting).name, "d");
  t.equal(fromReads, 1, "the From header is read and parsed once per request");
});
