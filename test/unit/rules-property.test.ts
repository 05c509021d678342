import fc from "fast-check";
import t from "tap";
import { acquireFacts, firstFailing, match, releaseFacts } from "../../src/rules/match.js";
import { compileStringTest, requiredPrefix, testString } from "../../src/rules/string-match.js";
import { toWire } from "../../src/sip/wire-text.js";
import type { MatchInput, Rule, RulesTable } from "../../src/rules/types.js";
import { input, request, table } from "../fixtures/rules/helpers.js";

/**
 * The matching shortcuts (method bits, the Request-URI user index, facts
 * derived once) must never change which rule matches: against random rule
 * sets and random requests, `match` agrees with the plain definition, "the
 * first rule none of whose conditions fails".
 */

function plainMatch(tbl: RulesTable, inp: MatchInput): Rule {
  const f = acquireFacts(inp);
  try {
    for (const r of tbl.rules) if (firstFailing(r, f) === undefined) return r;
    throw new Error("no rule matched, not even the default");
  } finally {
    releaseFacts(f);
  }
}

const USERS = ["1", "12", "123", "1234", "+49", "+4930", "+493012", "9", "911", "alice", "Alice"];
const user = fc.constantFrom(...USERS);
const userTest = fc.oneof(
  user,
  fc.array(user, { minLength: 1, maxLength: 3 }),
  fc.record({ prefix: fc.oneof(user, fc.array(user, { minLength: 1, maxLength: 3 })) }),
  fc.record({ exact: fc.oneof(user, fc.array(user, { minLength: 1, maxLength: 3 })), ignoreCase: fc.boolean() }),
  fc.record({ prefix: user, ignoreCase: fc.constant(true) }),
  fc.record({ regex: fc.constantFrom("^1", "3$", "^\\+49", "lic") }),
);
const condition = fc.record(
  {
    method: fc.oneof(fc.constantFrom("INVITE", "REGISTER", "OPTIONS", "FOO"), fc.constant(["INVITE", "FOO"])),
    transport: fc.constantFrom("udp", "tcp", ["tls", "wss"]),
    source: fc.constantFrom("10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", ["192.0.2.0/24", "10.1.2.3"]),
    requestUri: fc.oneof(fc.record({ user: userTest }), fc.record({ host: fc.constantFrom("a.example", "B.example") }), fc.record({ user: userTest, host: fc.constant("a.example") })),
    headers: fc.constantFrom({ "X-A": true }, { "X-A": false }, { "X-B": { prefix: "v" } }),
  },
  { requiredKeys: [] },
).filter((m) => Object.keys(m).length > 0); // a rule with no conditions is the default, which must be last
const ruleSet = fc.array(condition, { minLength: 1, maxLength: 30 });
/** A dial plan: every rule tests the Request-URI user, so the index is used. */
const dialPlan = fc.array(
  fc.tuple(condition, userTest).map(([c, u]) => ({ ...c, requestUri: { user: u } })),
  { minLength: 4, maxLength: 40 },
);

const uri = fc.oneof(
  fc.tuple(user, fc.constantFrom("a.example", "b.example", "A.EXAMPLE")).map(([u, h]) => `sip:${u}@${h}`),
  fc.constant("sip:a.example"),
  fc.constant("tel:+4930123"),
  fc.constant("sip:%31%32@a.example"),
);
const req = fc.record({
  method: fc.constantFrom("INVITE", "REGISTER", "OPTIONS", "FOO", "BYE"),
  uri,
  transport: fc.constantFrom("udp" as const, "tcp" as const, "tls" as const, "wss" as const),
  source: fc.constantFrom("10.1.2.3", "10.2.0.1", "192.0.2.9", "2001:db8::1", "::ffff:10.1.2.3", "203.0.113.1"),
  headers: fc.subarray(["X-A: 1", "X-B: value", "X-B: other"]),
});

type GeneratedRequest = { method: string; uri: string; transport: "udp" | "tcp" | "tls" | "wss"; source: string; headers: string[] };

/** Compiles the rules, checks every request against both definitions, returns the table. */
function agree(specs: readonly object[], reqs: readonly GeneratedRequest[]): RulesTable {
  const rules = specs.map((m, i) => ({ name: `r${i}`, match: m, route: "g" }));
  const text = JSON.stringify({ groups: { g: { members: ["a"] } }, rules: [...rules, { name: "default", route: "g" }] });
  const tbl = table(text);
  for (const r of reqs) {
    const m = request({ method: r.method, uri: r.uri, headers: r.headers });
    const inp = input(m, { source: r.source, transport: r.transport });
    const got = match(tbl, inp).name;
    const want = plainMatch(tbl, inp).name;
    if (got !== want) throw new Error(`${r.method} ${r.uri} from ${r.source}: match gave ${got}, plain gave ${want}\n${text}`);
  }
  return tbl;
}

t.test("match agrees with the plain definition of first match", async (t) => {
  let indexed = 0;
  fc.assert(
    fc.property(dialPlan, fc.array(req, { minLength: 1, maxLength: 8 }), (specs, reqs) => {
      if (agree(specs, reqs).userIndex !== undefined) indexed++;
    }),
    { numRuns: 300, seed: 7 },
  );
  t.ok(indexed > 200, `dial plans use the user index (${indexed} of 300)`);
  let small = 0;
  fc.assert(
    fc.property(ruleSet, fc.array(req, { minLength: 1, maxLength: 8 }), (specs, reqs) => {
      if (agree(specs, reqs).userIndex === undefined) small++;
    }),
    { numRuns: 400, seed: 5 },
  );
  t.ok(small > 100, `mixed rule sets, mostly without the index (${small} of 400)`);
});

t.test("the literal-prefix prefilter of anchored regexes never changes a regex's answer", async (t) => {
  const piece = fc.constantFrom("^", "a", "b", "A", "+", "\\+", "\\.", ".", "?", "*", "+", "[ab]", "(a|b)", "|", "{1,2}", "{0}", "$", "9", "\\d", "é", "É", "k", "K");
  const source = fc
    .tuple(fc.integer({ min: 0, max: 9 }), fc.array(piece, { minLength: 1, maxLength: 7 }))
    .map(([anchor, p]) => (anchor < 7 ? "^" : "") + p.join(""));
  const value = fc.array(fc.constantFrom("a", "b", "A", "B", "+", ".", "9", "é", "É", "k", "K", "\u212A", "x"), { maxLength: 8 }).map((v) => v.join(""));
  let prefiltered = 0;
  fc.assert(
    fc.property(source, fc.boolean(), fc.array(value, { minLength: 1, maxLength: 10 }), (src, ignoreCase, values) => {
      let regex: RegExp;
      try {
        regex = new RegExp(src, ignoreCase ? "i" : "");
      } catch {
        return;
      }
      const test = compileStringTest("regex", [src], ignoreCase);
      if (test.required !== undefined) prefiltered++;
      for (const v of values) {
        // Values reach testString as wire text (UTF-8, a character per byte: src/sip/wire-text.ts); the regex means the characters.
        if (testString(test, toWire(v)) !== regex.test(v)) throw new Error(`/${src}/${ignoreCase ? "i" : ""} on ${JSON.stringify(v)}: prefilter "${test.required}" disagrees`);
      }
    }),
    { numRuns: 3000, seed: 3 },
  );
  t.ok(prefiltered > 300, `prefilters were exercised (${prefiltered})`);
  t.equal(requiredPrefix("^\\+49[0-9]+"), "+49");
  t.equal(requiredPrefix("^Vendor12/[0-9]+"), "Vendor12/");
  t.equal(requiredPrefix("^ab?c"), "a");
  t.equal(requiredPrefix("^abc+"), "abc");
  t.equal(requiredPrefix("^a|b"), undefined, "alternation may un-anchor");
  t.equal(requiredPrefix("a^"), undefined);
  t.equal(requiredPrefix("^\\d"), undefined);
});
