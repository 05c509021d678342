import t from "tap";
import { compileRules, loadRules } from "../../src/rules/load.js";
import { errorsOf, TARGETS } from "../fixtures/rules/helpers.js";

/**
 * Every kind of bad rules file is refused whole, with one line per problem
 * in the loader's format `file:line:column: field: message`. The messages
 * are asserted exactly: they are what ops read at 2 a.m.
 */

const head = "groups:\n  pbx:\n    members: [main, standby]\n";
const withRules = (rules: string, extra = ""): string => `${head}${extra}rules:\n${rules}`;
const DEFAULT = "  - name: default\n    route: pbx\n";

const cases: Array<[kind: string, text: string, errors: string[]]> = [
  [
    "YAML syntax error",
    "groups:\n  pbx:\n    members: [main, standby\nrules:\n  - name: default\n    route: pbx\n",
    ["rules.yaml:3:14: groups.pbx.members: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] (opened here, noticed at line 4, column 1)"],
  ],
  ["empty file", "# nothing yet\n", ["rules.yaml:1:1: the file is empty; expected a mapping"]],
  ["not a mapping", "- default\n", ["rules.yaml:1:1: (root): expected a mapping with groups, carriers and rules, got a list"]],
  [
    "unknown field (a typo of route)",
    withRules("  - name: default\n    rout: pbx\n"),
    [
      "rules.yaml:5:5: rules[0]: required field missing; expected one action: route, reject or drop",
      'rules.yaml:6:5: rules[0].rout: unknown field (did you mean "route"?); expected one of: name, description, match, route, deviceClass, rewrite, reject, drop',
    ],
  ],
  [
    "unknown match field",
    withRules(`  - name: a\n    match: { methd: INVITE }\n    route: pbx\n${DEFAULT}`),
    ['rules.yaml:6:14: rules[0].match.methd: unknown field (did you mean "method"?); expected one of: method, source, carrier, transport, localPort, requestUri, from, to, userAgent, headers'],
  ],
  ["wrong type", withRules(`  - name: a\n    match: { localPort: "5060" }\n    route: pbx\n${DEFAULT}`), ['rules.yaml:6:25: rules[0].match.localPort: expected a number or a list, got "5060"']],
  [
    "a number where text is compared",
    withRules(`  - name: a\n    match: { requestUri: { user: +4930 } }\n    route: pbx\n${DEFAULT}`),
    ["rules.yaml:6:34: rules[0].match.requestUri.user: expected a string (put numbers in quotes), a list or a mapping, got 4930"],
  ],
  [
    "bad regex",
    withRules(`  - name: a\n    match:\n      requestUri: { user: { regex: "+49(" } }\n    route: pbx\n${DEFAULT}`),
    ['rules.yaml:7:36: rules[0].match.requestUri.user.regex: expected a valid regular expression, got "+49(" (Nothing to repeat)'],
  ],
  [
    "bad regex in a rewrite",
    withRules(`  - name: default\n    route: pbx\n    rewrite:\n      requestUri:\n        user: { regex: "[0-", replace: "" }\n`),
    ['rules.yaml:9:24: rules[0].rewrite.requestUri.user.regex: expected a valid regular expression, got "[0-" (Unterminated character class)'],
  ],
  [
    "bad CIDR",
    withRules(`  - name: a\n    match: { source: ["10.0.0.0/8", "10.0.0.300/24"] }\n    route: pbx\n${DEFAULT}`),
    ['rules.yaml:6:37: rules[0].match.source[1]: expected an IPv4 or IPv6 address or network (CIDR), got "10.0.0.300/24"'],
  ],
  [
    "CIDR with host bits",
    withRules(`  - name: a\n    match: { source: 10.1.0.0/8 }\n    route: pbx\n${DEFAULT}`),
    ['rules.yaml:6:22: rules[0].match.source: expected a network address with no host bits set beyond /8, got "10.1.0.0/8" (did you mean 10.0.0.0/8?)'],
  ],
  [
    "bad IPv6 prefix in a carrier",
    withRules(DEFAULT, "carriers:\n  telco:\n    sources: 2001:db8::/129\n"),
    ['rules.yaml:6:14: carriers.telco.sources: expected a prefix length from 0 to 128 after "/", got "2001:db8::/129"'],
  ],
  ["unknown group", withRules("  - name: default\n    route: pbxx\n"), ['rules.yaml:6:12: rules[0].route: expected a group defined under groups (one of: pbx), got "pbxx"']],
  [
    "unknown target",
    "groups:\n  pbx:\n    members: [main, stanby]\nrules:\n  - name: default\n    route: pbx\n",
    ['rules.yaml:3:21: groups.pbx.members[1]: expected a target defined in the edge config (one of: a, b, c, carrier-a, carrier-b, carrier-c, d, e, main, standby), got "stanby"'],
  ],
  [
    "missing default",
    withRules("  - name: a\n    match: { method: INVITE }\n    route: pbx\n"),
    ['rules.yaml:6:12: rules[0].match: expected the last rule to be the default (a rule without match), got rule "a" with match conditions'],
  ],
  ["no rules at all", head, ["rules.yaml:1:1: rules: required field missing; expected a list of rules ending with the default rule (one without match)"]],
  [
    "a rule after the default",
    withRules(`${DEFAULT}  - name: late\n    match: { method: BYE }\n    route: pbx\n`),
    ['rules.yaml:7:5: rules[1]: expected no rule after the default: rule "late" can never match (rules[0] matches everything)'],
  ],
  ["two actions", withRules("  - name: default\n    route: pbx\n    drop: true\n"), ["rules.yaml:7:11: rules[0].drop: expected one action, got route and drop"]],
  [
    "rewrite on a reject",
    withRules(`  - name: a\n    match: { method: BYE }\n    reject: { status: 403 }\n    rewrite: { requestUri: { host: x.example } }\n${DEFAULT}`),
    ["rules.yaml:8:14: rules[0].rewrite: expected rewrite only on a rule that routes (with route:)"],
  ],
  [
    "duplicate rule name",
    withRules("  - name: a\n    match: { method: BYE }\n    route: pbx\n  - name: a\n    route: pbx\n"),
    ['rules.yaml:8:11: rules[1].name: expected a unique rule name, got "a" again (first at rules[0])'],
  ],
  [
    "method in lower case",
    withRules(`  - name: a\n    match: { method: invite }\n    route: pbx\n${DEFAULT}`),
    ['rules.yaml:6:22: rules[0].match.method: expected a method in upper case (methods are case-sensitive), got "invite"; write INVITE'],
  ],
  [
    "hash strategy without a key",
    "groups:\n  pbx:\n    strategy: hash\n    members: [main, standby]\nrules:\n  - name: default\n    route: pbx\n",
    ["rules.yaml:3:5: groups.pbx.hashOn: required field missing; expected one of call-id, from, to, request-uri (strategy hash)"],
  ],
  [
    "unknown strategy",
    "groups:\n  pbx:\n    strategy: random\n    members: [main]\nrules:\n  - name: default\n    route: pbx\n",
    ['rules.yaml:3:15: groups.pbx.strategy: expected one of failover, dual, round-robin, weighted, hash, got "random"'],
  ],
  [
    "same target twice in a group",
    "groups:\n  pbx:\n    members: [main, { target: main, priority: 5 }]\nrules:\n  - name: default\n    route: pbx\n",
    ['rules.yaml:3:21: groups.pbx.members[1]: expected each target once in a group, got "main" again (first at members[0])'],
  ],
  [
    "rewriting a header the proxy owns",
    withRules("  - name: default\n    route: pbx\n    rewrite:\n      headers:\n        remove: [Via]\n"),
    ['rules.yaml:9:18: rules[0].rewrite.headers.remove[0]: expected a header the proxy does not manage, got "Via" (Via, Call-ID, CSeq, From, To, Contact, Route, Record-Route, Path, Content-Length and Max-Forwards are kept by the proxy core)'],
  ],
  [
    "a header value that would inject a line",
    withRules('  - name: default\n    route: pbx\n    rewrite:\n      headers:\n        add: { X-A: "a\\r\\nVia: evil" }\n'),
    ['rules.yaml:9:21: rules[0].rewrite.headers.add.X-A: expected text on one line without control characters, got "a\\r\\nVia: evil"'],
  ],
  [
    "replacement that names a group the regex lacks",
    withRules('  - name: default\n    route: pbx\n    rewrite:\n      requestUri:\n        user: { regex: "^00", replace: "+$1" }\n'),
    ['rules.yaml:9:40: rules[0].rewrite.requestUri.user.replace: expected no $n references (the regex has no groups), got "+$1"'],
  ],
  [
    "unknown carrier",
    withRules(`  - name: a\n    match: { carrier: telco }\n    route: pbx\n${DEFAULT}`),
    ['rules.yaml:6:23: rules[0].match.carrier: expected a carrier defined under carriers (none is defined), got "telco"'],
  ],
  [
    "breaker that one call would trip, and a callee answer as a failure",
    withRules(DEFAULT, "carriers:\n  ca:\n    targets: carrier-a\n    breaker: { failures: 1, failureCodes: [503, 486] }\n"),
    [
      "rules.yaml:7:26: carriers.ca.breaker.failures: expected an integer from 2 to 1000 (one bad call never trips a breaker), got 1",
      "rules.yaml:7:49: carriers.ca.breaker.failureCodes[1]: expected a status code that says the carrier failed, got 486 (a callee's answer never counts against a carrier)",
    ],
  ],
  [
    "a target in two carriers",
    withRules(DEFAULT, "carriers:\n  ca:\n    targets: carrier-a\n  cb:\n    targets: [carrier-b, carrier-a]\n"),
    ['rules.yaml:8:26: carriers.cb.targets[1]: expected a target no other carrier uses, got "carrier-a" (already a target of carrier ca)'],
  ],
  [
    "a carrier match on a carrier without sources",
    withRules(`  - name: a\n    match: { carrier: ca }\n    route: pbx\n${DEFAULT}`, "carriers:\n  ca:\n    targets: carrier-a\n"),
    ['rules.yaml:9:23: rules[0].match.carrier: expected a carrier with sources (inbound networks), got "ca", which has none'],
  ],
  [
    "two kinds of string test at once",
    withRules(`  - name: a\n    match: { userAgent: { prefix: x, regex: y } }\n    route: pbx\n${DEFAULT}`),
    ["rules.yaml:6:25: rules[0].match.userAgent: expected one of exact, prefix, regex, got prefix and regex"],
  ],
  [
    "a bad group name and reject status",
    `groups:\n  "pbx pair":\n    members: [main]\nrules:\n  - name: default\n    reject: { status: 200 }\n`,
    [
      'rules.yaml:3:5: groups["pbx pair"]: expected a name of letters, digits, _ . / - (starting with a letter or digit), got "pbx pair"',
      "rules.yaml:6:23: rules[0].reject.status: expected a final error status code from 400 to 699, got 200",
    ],
  ],
  [
    "unknown device class",
    withRules("  - name: default\n    route: pbx\n    deviceClass: trunc\n"),
    ['rules.yaml:7:18: rules[0].deviceClass: expected a device class from the device table (one of: default, trunk), got "trunc"'],
  ],
];

t.test("every kind of bad rules file is refused with its exact message", async (t) => {
  for (const [kind, text, errors] of cases) {
    t.same(errorsOf(text, { knownDeviceClasses: new Set(["trunk", "default"]) }), errors, kind);
  }
});

t.test("several files: references across files, and their own errors", async (t) => {
  const groups = { file: "rules.yaml", text: "groups:\n  pbx:\n    members: [main, standby]\n" };
  const trunk = { file: "rules.d/10-trunk.yaml", text: "carriers:\n  telco: { sources: 192.0.2.0/28 }\nrules:\n  - name: trunk\n    match: { carrier: telco }\n    route: pbx\n" };
  const last = { file: "rules.d/90-default.yaml", text: "rules:\n  - name: default\n    route: pbx\n" };
  const ok = compileRules([groups, trunk, last], { knownTargets: TARGETS });
  t.ok(ok.ok, "a group in one file, a carrier and rule in another, the default in a third");
  if (ok.ok) {
    t.same(ok.table.rules.map((r) => `${r.name}@${r.file}:${r.line}`), ["trunk@rules.d/10-trunk.yaml:4", "default@rules.d/90-default.yaml:2"]);
  }
  t.same(
    errorsOf([groups, last, trunk]),
    [
      'rules.d/10-trunk.yaml:4:5: rules[0]: expected no rule after the default: rule "trunk" can never match (rules[0] in rules.d/90-default.yaml matches everything)',
    ],
    "the default must be the last rule of the last file with rules",
  );
  t.same(
    errorsOf([groups, { file: "rules.d/20-more.yaml", text: "groups:\n  pbx:\n    members: [standby]\nrules:\n  - name: default\n    route: pbx\n" }]),
    ['rules.d/20-more.yaml:3:5: groups.pbx: expected a unique group name, got "pbx" again (first defined at groups.pbx in rules.yaml)'],
  );
  t.same(
    errorsOf([
      { file: "a.yaml", text: "groups:\n  g: { members: [nobody] }\n" },
      { file: "b.yaml", text: "rules:\n  - name: default\n    route: h\n  - name: x\n" },
    ]),
    [
      "b.yaml:4:5: rules[1]: required field missing; expected one action: route, reject or drop",
    ],
    "schema errors of every file come first, and alone: references are checked once each file is sound",
  );
  t.same(
    errorsOf([
      { file: "a.yaml", text: "groups:\n  g: { members: [nobody] }\n" },
      { file: "b.yaml", text: "rules:\n  - name: default\n    route: h\n" },
    ]),
    [
      'a.yaml:2:18: groups.g.members[0]: expected a target defined in the edge config (one of: a, b, c, carrier-a, carrier-b, carrier-c, d, e, main, standby), got "nobody"',
      'b.yaml:3:12: rules[0].route: expected a group defined under groups (one of: g), got "h"',
    ],
    "every reference error of every file at once",
  );
  t.same(
    loadRules(["/nonexistent/rules.yaml"], { knownTargets: TARGETS }),
    { ok: false, errors: [{ file: "/nonexistent/rules.yaml", line: 0, column: 0, field: "", message: "file not found" }] },
  );
});
