import t from "tap";
import type { Endpoint, Listener } from "../../src/edge/ports.js";
import type { RouteDecision, RouteInput, Router } from "../../src/edge/router.js";
import { RulesRouter, type RulesRouteInput } from "../../src/edge/rules-router.js";
import { makeTarget, type Target } from "../../src/edge/targets.js";
import { CarrierBreakers } from "../../src/rules/carrier-breakers.js";
import type { Decision, RulesTable } from "../../src/rules/types.js";
import { FakeClock } from "../../src/util/clock.js";
import { request, table, type Req } from "../fixtures/rules/helpers.js";

const UDP: Listener = { id: "udp", transport: "udp", address: "192.0.2.1", port: 5060, advertise: "192.0.2.1", family: 4 };
const targets: Target[] = [
  makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1 }),
  makeTarget({ name: "standby", uri: "sip:10.0.0.2:5070", priority: 2 }),
  makeTarget({ name: "carrier-a", uri: "sip:198.51.100.10", priority: 10 }),
  makeTarget({ name: "carrier-b", uri: "sip:203.0.113.20", priority: 20 }),
];

const RULES = `
groups:
  pbx: { members: [main, standby] }
  pbx-dual: { strategy: dual, members: [main, standby] }
  lcr: { members: [carrier-a, carrier-b] }
  ghosts: { members: [a, b] }
carriers:
  ca: { targets: carrier-a, breaker: { failures: 2, coolDownSeconds: 30 } }
  cb: { targets: carrier-b }
rules:
  - name: scanners
    match: { userAgent: { regex: scanner } }
    drop: true
  - name: blocked
    match: { requestUri: { user: "666" } }
    reject: { status: 403, reason: Nope }
  - name: outbound
    match: { source: 10.0.0.0/24, requestUri: { user: { prefix: "00" } } }
    route: lcr
    rewrite:
      requestUri: { user: { regex: "^00", replace: "+" } }
      headers: { add: { X-Carrier-Route: lcr } }
  - name: broken-rewrite
    match: { requestUri: { user: "777" } }
    route: lcr
    rewrite: { requestUri: { user: { regex: "^(.*)$", replace: "$1 x" } } }
  - name: ghost-group
    match: { requestUri: { user: "888" } }
    route: ghosts
  - name: registrations
    match: { method: REGISTER }
    route: pbx-dual
  - name: trunk
    match: { source: 192.0.2.0/28 }
    deviceClass: trunk
    route: pbx
  - name: default
    route: pbx
`;

function routeInput(r: Req, source = "198.51.100.99"): RouteInput {
  const src: Endpoint = { transport: "udp", address: source, port: 5060 };
  return { message: request(r), source: src, listener: UDP, fromTarget: undefined };
}

const names = (d: RouteDecision): string =>
  d.action === "forward" ? `${d.targets.map((x) => x.name).join(",")}${d.fork !== undefined ? ` fork ${d.fork.map((x) => x.name).join(",")}` : ""}` : d.action === "reject" ? `reject ${d.status} ${d.reason ?? ""}` : `drop ${d.why}`;

t.test("rules decisions in the proxy's terms", async (t) => {
  const tbl = table(RULES);
  const seen: Decision[] = [];
  const down = new Set<string>();
  const router = new RulesRouter({ rules: () => tbl, targets, usable: (x) => !down.has(x.name), onDecision: (_tb, d) => seen.push(d) });
  t.equal(names(router.route(routeInput({ headers: ["User-Agent: friendly-scanner"] }))), "drop rule.scanners");
  t.equal(names(router.route(routeInput({ uri: "sip:666@edge" }))), "reject 403 Nope");
  t.equal(names(router.route(routeInput({}))), "main,standby");
  down.add("main");
  t.equal(names(router.route(routeInput({}))), "standby");
  down.clear();
  t.equal(names(router.route(routeInput({ method: "REGISTER" }))), "main fork standby", "dual: the home answers, the other gets a copy");
  t.equal(names(router.route(routeInput({ method: "INVITE", uri: "sip:888@edge" }))), "reject 503 Service Unavailable", "members missing from the edge config are never routed to");
  t.same(seen.map((d) => d.rule.name), ["scanners", "blocked", "default", "default", "registrations", "ghost-group"]);
});

t.test("rewrites are applied before forwarding; a refused rewrite is a 500", async (t) => {
  const tbl = table(RULES);
  const router = new RulesRouter({ rules: () => tbl, targets, usable: () => true });
  const ri = routeInput({ uri: "sip:004420123456@edge" }, "10.0.0.1");
  t.equal(names(router.route(ri)), "carrier-a,carrier-b");
  t.equal(ri.message.startLine, "INVITE sip:+4420123456@edge SIP/2.0");
  t.equal(ri.message.get("X-Carrier-Route"), "lcr");
  const bad = routeInput({ uri: "sip:777@edge" });
  const before = bad.message.toString();
  const d = router.route(bad);
  t.equal(names(d), "reject 500 Server Internal Error");
  t.equal(d.why, 'rule "broken-rewrite": rewritten Request-URI "sip:777 x@edge" is not valid (whitespace inside URI)');
  t.equal(bad.message.toString(), before);
});

t.test("carrier breakers: an open breaker skips the carrier; the half-open test call is taken once", async (t) => {
  const tbl = table(RULES);
  const clock = new FakeClock(0);
  const breakers = new CarrierBreakers(clock);
  breakers.configure(tbl.carriers);
  const router = new RulesRouter({ rules: () => tbl, targets, usable: () => true, breakers });
  const out = () => names(router.route(routeInput({ uri: "sip:0049301234@edge" }, "10.0.0.7")));
  t.equal(out(), "carrier-a,carrier-b");
  breakers.recordTarget(tbl, "carrier-a", { kind: "response", status: 503 });
  breakers.recordTarget(tbl, "carrier-a", { kind: "timeout" });
  t.equal(out(), "carrier-b");
  clock.advance(30_000);
  t.equal(out(), "carrier-a,carrier-b", "half-open: this call tests carrier-a");
  t.equal(out(), "carrier-b", "the next ones go on to carrier-b until the test answers");
  breakers.recordTarget(tbl, "carrier-a", { kind: "response", status: 486 });
  t.equal(out(), "carrier-a,carrier-b");
  breakers.close();
});

t.test("a Main/Standby group goes to the policy router, with the rule's device class", async (t) => {
  const tbl = table(RULES);
  const got: RulesRouteInput[] = [];
  const policy: Router = {
    route(input: RouteInput): RouteDecision {
      got.push(input);
      return { action: "forward", targets: [targets[1]!], why: "policy: home standby" };
    },
  };
  const router = new RulesRouter({ rules: () => tbl, targets, usable: () => true, pbx: { router: policy, targets: ["main", "standby"] } });
  t.equal(names(router.route(routeInput({}, "192.0.2.3"))), "standby");
  t.equal(got[0]?.deviceClass, "trunk");
  t.equal(names(router.route(routeInput({}))), "standby");
  t.equal(got[1]?.deviceClass, undefined, "no class from the rule: the device table decides");
  t.equal(names(router.route(routeInput({ uri: "sip:0049301234@edge" }, "10.0.0.7"))), "carrier-a,carrier-b", "other groups stay with the rules");
  t.equal(got.length, 2);
});

t.test("each request reads the table in force when it starts", async (t) => {
  let current: RulesTable = table(RULES);
  const router = new RulesRouter({ rules: () => current, targets, usable: () => true });
  t.equal(names(router.route(routeInput({}))), "main,standby");
  current = table("groups:\n  g: { members: [standby] }\nrules:\n  - { name: default, route: g }\n");
  t.equal(names(router.route(routeInput({}))), "standby");
});
