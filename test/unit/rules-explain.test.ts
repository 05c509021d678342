import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { loadYamlFile } from "../../src/config/load.js";
import { compileDeviceTable, deviceTableSchema } from "../../src/policy/device-table.js";
import { CarrierBreakers } from "../../src/rules/carrier-breakers.js";
import { dryRun } from "../../src/rules/dry-run.js";
import { explain, parseMessageText, parseSource, type ExplainView } from "../../src/rules/explain.js";
import { loadRules, rulesFilesIn } from "../../src/rules/load.js";
import { applyRewrite, rewriteRequestUri } from "../../src/rules/rewrite.js";
import { FakeClock } from "../../src/util/clock.js";
import { request, table } from "../fixtures/rules/helpers.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
/** Paths as a person in the project root would type them. */
const rel = (p: string): string => relative(process.cwd(), join(root, p)) || ".";
const office = rel("proxy-rules/examples/office-main-standby");
const lcr = rel("proxy-rules/examples/two-carriers-lcr");
const fixture = (name: string): string => rel(`test/fixtures/rules/${name}`);

/** The text with the content hash (which changes with every edit of the files) blanked. */
function text(r: ReturnType<typeof dryRun>): string {
  if (!r.ok) throw new Error(r.messages.join("\n"));
  return r.text.replace(/sha256 [0-9a-f]{12}/, "sha256 <hash>");
}

t.test("explain: the office example, a call from the carrier", async (t) => {
  const r = dryRun({ rulesDir: office, messageFile: fixture("invite-from-carrier.txt"), source: "192.0.2.5:5060", localPort: 5080 });
  t.equal(
    text(r),
    `rules: version 1, sha256 <hash>, 4 rules from ${office}/rules.yaml
request: INVITE sip:+493012345001@edge.example.com from 192.0.2.5:5060 over udp, to port 5080
not matched:
  drop-scanners (${office}/rules.yaml:18): User-Agent regex /friendly-scanner|sipvicious|sipcli|VaxSIPUserAgent/i, but the request has "TelcoSBC 4.2"
matched: trunk-inbound (${office}/rules.yaml:24) - the carrier's traffic is trunk traffic, Main then Standby, fast switch
  source is carrier telco (the request has 192.0.2.5, a telco network)
action: route to group pbx (failover)
device class: trunk (from the rule)
members (no health data (dry run outside a running edge): every target presumed usable):
  main     priority 1  usable    <- chosen
  standby  priority 2  usable    (#2 on failure)
chosen: main: the first usable member in priority order
request line: INVITE sip:+493012345001@edge.example.com SIP/2.0 (unchanged)
  replace X-Edge-Trunk: telco
why: rule "trunk-inbound": group pbx (failover) → main, standby
`,
  );
  if (r.ok) {
    const e = r.explanation;
    t.equal(e.matched.rule, "trunk-inbound");
    t.equal(e.route?.chosen, "main");
    t.same(e.route?.order, ["main", "standby"]);
    t.same(e.deviceClass, { name: "trunk", from: "rule", note: undefined });
    t.same(e.headerChanges, ["replace X-Edge-Trunk: telco"]);
    t.same(e.notMatched.map((n) => n.rule), ["drop-scanners"]);
  }
});

t.test("explain: the office example, trunk port from elsewhere, a scanner, a phone while Main is down", async (t) => {
  const fake = dryRun({ rulesDir: office, messageFile: fixture("invite-from-carrier.txt"), source: "198.51.100.7:5060", localPort: 5080 });
  t.equal(
    text(fake),
    `rules: version 1, sha256 <hash>, 4 rules from ${office}/rules.yaml
request: INVITE sip:+493012345001@edge.example.com from 198.51.100.7:5060 over udp, to port 5080
not matched:
  drop-scanners (${office}/rules.yaml:18): User-Agent regex /friendly-scanner|sipvicious|sipcli|VaxSIPUserAgent/i, but the request has "TelcoSBC 4.2"
  trunk-inbound (${office}/rules.yaml:24): source is carrier telco, but the request has 198.51.100.7
matched: not-a-carrier (${office}/rules.yaml:34) - the trunk port takes only the carrier's traffic
  arrived on port 5080 (the request has 5080)
action: reject 403 Forbidden: not a configured carrier
request line: INVITE sip:+493012345001@edge.example.com SIP/2.0 (unchanged)
why: rule "not-a-carrier": reject 403 Forbidden: not a configured carrier
`,
  );
  const scanner = dryRun({ rulesDir: office, messageFile: fixture("options-scanner.txt"), source: "198.51.100.66:5070" });
  t.equal(
    text(scanner),
    `rules: version 1, sha256 <hash>, 4 rules from ${office}/rules.yaml
request: OPTIONS sip:100@203.0.113.1 from 198.51.100.66:5070 over udp, to port 5060
matched: drop-scanners (${office}/rules.yaml:18) - SIP scanners get no answer at all
  User-Agent regex /friendly-scanner|sipvicious|sipcli|VaxSIPUserAgent/i (the request has "friendly-scanner")
action: drop (no answer is sent)
request line: OPTIONS sip:100@203.0.113.1 SIP/2.0 (unchanged)
why: rule "drop-scanners": drop
`,
  );
  const view: ExplainView = {
    usable: (target) => target !== "main",
    health: (target) => (target === "main" ? "down since 10:00:00 (3 probe timeouts)" : "up"),
    deviceClassOf: (req) => (req.userAgent?.includes("WP4") === true ? "WP" : "default"),
    deviceClassNote: (name) => `${name}: home main; moves to standby in 42 s`,
  };
  const phone = dryRun({ rulesDir: office, messageFile: fixture("register-phone.txt"), source: "10.20.1.15:49152", transport: "tcp", view });
  t.equal(
    text(phone),
    `rules: version 1, sha256 <hash>, 4 rules from ${office}/rules.yaml
request: REGISTER sip:office.example.com from 10.20.1.15:49152 over tcp, to port 5060
not matched:
  drop-scanners (${office}/rules.yaml:18): User-Agent regex /friendly-scanner|sipvicious|sipcli|VaxSIPUserAgent/i, but the request has "Wildix WP490 v2.1"
  trunk-inbound (${office}/rules.yaml:24): source is carrier telco, but the request has 10.20.1.15
  not-a-carrier (${office}/rules.yaml:34): arrived on port 5080, but the request has 5060
matched: default (${office}/rules.yaml:40) - phones (any network) go to the PBX pair; the PBX authenticates them
  no conditions (the default rule)
action: route to group pbx (failover)
device class: WP (from the device table); WP: home main; moves to standby in 42 s
members:
  main     priority 1  unusable  health: down since 10:00:00 (3 probe timeouts)
  standby  priority 2  usable    health: up  <- chosen
chosen: standby: the first usable member in priority order
request line: REGISTER sip:office.example.com SIP/2.0 (unchanged)
why: rule "default": group pbx (failover) → standby (main unusable)
`,
  );
});

t.test("explain: the least-cost example, with carrier-a's breaker open", async (t) => {
  const plain = dryRun({ rulesDir: lcr, messageFile: fixture("invite-from-pbx.txt"), source: "10.20.0.10:5060" });
  t.match(text(plain), /chosen: carrier-a: the first usable member in priority order\n/);
  t.match(text(plain), /request line: INVITE sip:0044201234567@10\.20\.0\.1 SIP\/2\.0 -> INVITE sip:\+44201234567@10\.20\.0\.1 SIP\/2\.0\n/);

  const rules = loadRules(rulesFilesIn(lcr), { knownTargets: new Set(["main", "standby", "carrier-a", "carrier-b"]) });
  if (!rules.ok) throw new Error("the shipped example must load");
  const clock = new FakeClock(0);
  const breakers = new CarrierBreakers(clock);
  breakers.configure(rules.table.carriers);
  for (let i = 0; i < 5; i++) breakers.record("carrier-a", { kind: "response", status: 503 });
  const m = parseMessageText("INVITE sip:0044201234567@10.20.0.1 SIP/2.0\nVia: SIP/2.0/UDP 10.20.0.10:5060;branch=z9hG4bK-x\nMax-Forwards: 70\nFrom: <sip:101@pbx>;tag=1\nTo: <sip:0044201234567@10.20.0.1>\nCall-ID: c1\nCSeq: 1 INVITE\n");
  if (!m.ok) throw new Error(m.reason);
  const e = explain(rules.table, m.message, { source: "10.20.0.10:5060", transport: "udp", localPort: 5060 }, { usable: () => true }, breakers);
  t.equal(
    e.text.replace(/sha256 [0-9a-f]{12}/, "sha256 <hash>"),
    `rules: version 1, sha256 <hash>, 3 rules from ${lcr}/rules.yaml
request: INVITE sip:0044201234567@10.20.0.1 from 10.20.0.10:5060 over udp, to port 5060
matched: pbx-outbound (${lcr}/rules.yaml:29) - external calls from the PBXs leave through the carriers
  method INVITE (the request has INVITE)
  source in 10.20.0.10, 10.20.0.11 (the request has 10.20.0.10)
  Request-URI user regex /^(?:\\+|00)[1-9][0-9]{5,14}$/ (the request has "0044201234567")
action: route to group carriers-lcr (failover)
device class: not set by the rule; the device table decides
members:
  carrier-a  priority 1  unusable  carrier carrier-a breaker open until 2026-01-01T00:00:30.000Z (5 failures in a row within 60s (last: 503); open for 30s)
  carrier-b  priority 2  usable    carrier carrier-b breaker closed  <- chosen
chosen: carrier-b: the first usable member in priority order
request line: INVITE sip:0044201234567@10.20.0.1 SIP/2.0 -> INVITE sip:+44201234567@10.20.0.1 SIP/2.0
why: rule "pbx-outbound": group carriers-lcr (failover) → carrier-b (carrier-a unusable)
`,
  );
  t.equal(breakers.get("carrier-a")?.status, "open");
  clock.advance(30_000);
  const half = explain(rules.table, m.message, { source: "10.20.0.10:5060", transport: "udp", localPort: 5060 }, { usable: () => true }, breakers);
  t.equal(half.route?.chosen, "carrier-a", "half-open: the next call would test carrier-a");
  t.match(half.text, /breaker half-open, next call tests the carrier {2}<- chosen/);
  explain(rules.table, m.message, { source: "10.20.0.10:5060", transport: "udp", localPort: 5060 }, { usable: () => true }, breakers);
  t.notOk(breakers.get("carrier-a")?.snapshot().testInFlight, "a dry run never takes the test call");
  breakers.close();
});

t.test("explain: with the device table, a request without a class from its rule shows the table's", async (t) => {
  const loaded = loadYamlFile(join(root, "proxy-rules/devices.yaml"), deviceTableSchema);
  if (!loaded.ok) throw new Error("the shipped device table must load");
  const deviceTable = compileDeviceTable(loaded.value);
  const phone = dryRun({ rulesDir: office, messageFile: fixture("register-phone.txt"), source: "10.20.1.15:49152", transport: "tcp", deviceTable });
  t.match(text(phone), /\ndevice class: WP \(from the device table\)\n/);
  const trunk = dryRun({ rulesDir: office, messageFile: fixture("invite-from-carrier.txt"), source: "192.0.2.5:5060", deviceTable });
  t.match(text(trunk), /\ndevice class: trunk \(from the rule\)\n/, "a class set by the rule wins");
});

t.test("explain: the shipped default rules", async (t) => {
  const r = dryRun({ messageFile: fixture("register-phone.txt"), source: "[2001:db8::7]:5062", transport: "tls" });
  if (!r.ok) throw new Error(r.messages.join("\n"));
  t.equal(r.explanation.matched.rule, "default");
  t.equal(r.explanation.request.source, "[2001:db8::7]:5062");
  t.equal(r.explanation.request.localPort, 5061, "TLS arrives on 5061 unless told");
  t.same(r.explanation.route?.order, ["main", "standby"]);
});

t.test("explain: strategies say why the member was chosen, and a dry run never moves a rotation", async (t) => {
  const tbl = table(`
groups:
  rr: { strategy: round-robin, members: [a, b] }
  w: { strategy: weighted, members: [{ target: a, weight: 2 }, b] }
  h: { strategy: hash, hashOn: call-id, members: [a, b, c] }
  d: { strategy: dual, members: [main, standby] }
rules:
  - { name: rr, match: { method: MESSAGE }, route: rr }
  - { name: w, match: { method: INFO }, route: w }
  - { name: h, match: { method: INVITE }, route: h }
  - { name: dual, match: { method: REGISTER }, route: d }
  - name: default
    route: d
    rewrite:
      requestUri: { host: pbx.internal, port: 5070 }
      headers: { remove: X-Debug, add: { X-Edge: [one, two] } }
`);
  const ctx = { source: "10.0.0.1", transport: "udp" as const, localPort: 5060 };
  const rr1 = explain(tbl, request({ method: "MESSAGE" }), ctx);
  const rr2 = explain(tbl, request({ method: "MESSAGE" }), ctx);
  t.equal(rr1.route?.chosenWhy, "a: next in the rotation over 2 usable members");
  t.equal(rr2.route?.chosen, "a", "explaining twice shows the same next turn");
  t.equal(explain(tbl, request({ method: "INFO" }), ctx).route?.chosenWhy, "a: its turn in the weighted rotation (weights a=2, b=1)");
  const h = explain(tbl, request({ callId: "abc" }), ctx);
  t.match(h.route?.chosenWhy, /^[abc]: the highest rendezvous score for call-id "abc"$/);
  const top = h.route!.chosen!;
  const without = explain(tbl, request({ callId: "abc" }), ctx, { usable: (x) => x !== top });
  t.match(without.route?.chosenWhy, new RegExp(`among usable members \\(${top} scores higher but is unusable\\)$`));
  const dual = explain(tbl, request({ method: "REGISTER" }), ctx);
  t.equal(dual.route?.chosenWhy, "main: the first usable member in priority order answers; standby gets a copy of the REGISTER");
  t.same(dual.route?.fork, ["standby"]);
  const none = explain(tbl, request({ method: "REGISTER" }), ctx, { usable: () => false });
  t.equal(none.route?.chosenWhy, "no usable member: the request is answered 503");
  t.equal(none.status, 503);
  const def = explain(tbl, request({ method: "BYE", uri: "sip:1001@edge.example.com;transport=tcp" }), ctx);
  t.same(def.requestLine, {
    before: "BYE sip:1001@edge.example.com;transport=tcp SIP/2.0",
    after: "BYE sip:1001@pbx.internal:5070;transport=tcp SIP/2.0",
    changed: true,
    rewrite: "host → pbx.internal; port → 5070; remove X-Debug; add X-Edge, X-Edge",
    error: undefined,
  });
  t.same(def.headerChanges, ["remove X-Debug", "add X-Edge: one", "add X-Edge: two"]);
  t.same(def.notMatched.map((n) => n.failed), [
    "method MESSAGE, but the request has BYE",
    "method INFO, but the request has BYE",
    "method INVITE, but the request has BYE",
    "method REGISTER, but the request has BYE",
  ]);
});

t.test("explain lists at most 20 skipped rules in its text, all of them in its data", async (t) => {
  const rules = Array.from({ length: 30 }, (_, i) => `  - { name: r${i}, match: { requestUri: { user: "u${i}" } }, route: g }`).join("\n");
  const tbl = table(`groups:\n  g: { members: [a] }\nrules:\n${rules}\n  - { name: default, route: g }\n`);
  const e = explain(tbl, request(), { source: "10.0.0.1:5060", transport: "udp", localPort: 5060 });
  t.equal(e.notMatched.length, 30);
  t.match(e.text, /\n {2}\.\.\. and 10 more\n/);
  t.equal(e.notMatched[29]?.failed, 'Request-URI user exact "u29", but the request has "1001"');
});

t.test("rewrites: literal and regex users, hosts, ports, tel: URIs, refusals leave the message alone", async (t) => {
  const tbl = table(`
groups: { g: { members: [a] } }
rules:
  - name: e164
    match: { method: INVITE }
    route: g
    rewrite:
      requestUri: { user: { regex: '^0(\\d+)$', replace: "+49$1" }, port: null }
      headers: { replace: { X-Route: e164 }, remove: [X-Old] }
  - name: literal
    match: { method: MESSAGE }
    route: g
    rewrite: { requestUri: { user: "operator", host: "2001:db8::5" } }
  - name: bad
    match: { method: INFO }
    route: g
    rewrite: { requestUri: { user: { regex: '^(.*)$', replace: "$1 x" } } }
  - { name: default, route: g, rewrite: { requestUri: { host: pbx.example } } }
`);
  const rw = (name: string) => {
    const r = tbl.rules.find((x) => x.name === name)!;
    if (r.action.kind !== "route" || r.action.rewrite === undefined) throw new Error(name);
    return r.action.rewrite;
  };
  const m = request({ uri: "sip:0301234@edge.example.com:5070;user=phone", headers: ["X-Old: 1", "X-Route: a", "X-Route: b"] });
  t.same(applyRewrite(m, rw("e164")), { ok: true, requestUri: "sip:+49301234@edge.example.com;user=phone" });
  t.equal(m.startLine, "INVITE sip:+49301234@edge.example.com;user=phone SIP/2.0");
  t.equal(m.uri?.user, "+49301234");
  t.equal(m.get("X-Old"), undefined);
  t.same(m.getAll("X-Route"), ["e164"]);
  t.match(m.toString(), /^INVITE sip:\+49301234@edge\.example\.com;user=phone SIP\/2\.0\r\n/);

  const lit = request({ method: "MESSAGE", uri: "sips:alice:secret@[::1]:5061" });
  t.same(applyRewrite(lit, rw("literal")), { ok: true, requestUri: "sips:operator:secret@[2001:db8::5]:5061" });

  const odd = request({ method: "INFO", uri: "sip:1001@edge" });
  const before = odd.toString();
  const refused = applyRewrite(odd, rw("bad"));
  t.same(refused, { ok: false, reason: 'rewritten Request-URI "sip:1001 x@edge" is not valid (whitespace inside URI)' });
  t.equal(odd.toString(), before, "a refused rewrite changes nothing");

  const tel = parseMessageText("INVITE tel:0301234;phone-context=+49 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\nFrom: <sip:a@b>;tag=1\nTo: <tel:0301234>\nCall-ID: t\nCSeq: 1 INVITE\nMax-Forwards: 70\n");
  if (!tel.ok) throw new Error(tel.reason);
  const telUri = tel.message.uri!;
  const telRewritten = rewriteRequestUri(telUri, rw("e164"));
  t.equal(telRewritten.ok && telRewritten.text, "tel:+49301234;phone-context=+49", "a tel: number is rewritten like a user part");
  t.equal(telRewritten.ok && telRewritten.uri.user, "+49301234");
  t.same(rewriteRequestUri(telUri, rw("default")), { ok: false, reason: "a tel: Request-URI has no host or port to rewrite" });
  const unchanged = rewriteRequestUri(request({ uri: "sip:1@pbx.example" }).uri!, rw("default"));
  t.equal(unchanged.ok && unchanged.changed, false, "a rewrite to what is already there is no change");
});

t.test("dry run inputs: source, transport, message files", async (t) => {
  t.same(parseSource("192.0.2.1:5070"), { ok: true, address: "192.0.2.1", port: 5070 });
  t.same(parseSource("[2001:db8::1]:5061"), { ok: true, address: "2001:db8::1", port: 5061 });
  t.same(parseSource("2001:db8::1"), { ok: true, address: "2001:db8::1", port: 5060 });
  t.same(parseSource("10.0.0.1"), { ok: true, address: "10.0.0.1", port: 5060 });
  t.same(parseSource("pbx.example:5060"), { ok: false, reason: 'expected an IP address, got "pbx.example"' });
  t.same(parseSource("10.0.0.1:99999"), { ok: false, reason: 'expected a port from 1 to 65535, got "99999"' });
  t.same(parseSource("[::1"), { ok: false, reason: 'expected [IPv6]:PORT, got "[::1"' });

  t.same(dryRun({ messageFile: fixture("register-phone.txt"), transport: "sctp" }), { ok: false, messages: ['--transport: expected one of udp, tcp, tls, ws, wss, got "sctp"'] });
  t.same(dryRun({ messageFile: fixture("register-phone.txt"), source: "nowhere" }), { ok: false, messages: ['--source: expected an IP address, got "nowhere"'] });
  t.same(dryRun({ messageFile: "no/such/file.txt" }), { ok: false, messages: ["no/such/file.txt: file not found"] });

  const dir = mkdtempSync(join(tmpdir(), "rules-dry-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "rules.yaml"), "rules:\n  - name: default\n    route: nowhere\n");
  t.same(dryRun({ rulesDir: dir, messageFile: fixture("register-phone.txt") }), {
    ok: false,
    messages: [`${join(dir, "rules.yaml")}:3:12: rules[0].route: expected a group defined under groups (none is defined), got "nowhere"`],
  });
  writeFileSync(join(dir, "response.txt"), "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>;tag=2\nCall-ID: r\nCSeq: 1 OPTIONS\n");
  t.same(dryRun({ messageFile: join(dir, "response.txt") }), { ok: false, messages: [`${join(dir, "response.txt")}: expected a request, got a response: rules route requests`] });
  writeFileSync(join(dir, "junk.txt"), "hello\n");
  const junk = dryRun({ messageFile: join(dir, "junk.txt") });
  t.match(!junk.ok && junk.messages[0], new RegExp(`^${join(dir, "junk.txt").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: not a valid SIP message: `));
});
