import t from "tap";
import { decide } from "../../src/rules/decide.js";
import type { Decision, RoutingView } from "../../src/rules/types.js";
import { ALL_UP, input, request, table, without, type Req } from "../fixtures/rules/helpers.js";

function group(strategy: string, members: string, extra = ""): string {
  return `groups:\n  g:\n    strategy: ${strategy}\n${extra}    members: ${members}\nrules:\n  - name: default\n    route: g\n`;
}

function targets(d: Decision): readonly string[] {
  if (d.action !== "route") throw new Error(`expected a route, got ${d.why}`);
  return d.targets;
}

function firstOf(tbl: ReturnType<typeof table>, req: Req, view: RoutingView = ALL_UP): string {
  return targets(decide(tbl, input(request(req)), view))[0]!;
}

function counts(values: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const v of values) c[v] = (c[v] ?? 0) + 1;
  return c;
}

t.test("failover: priority order, unusable members skipped, file order breaks ties", async (t) => {
  const tbl = table(group("failover", "[{ target: c, priority: 3 }, { target: a, priority: 1 }, { target: b, priority: 2 }, { target: d, priority: 2 }]"));
  t.same(targets(decide(tbl, input(request()), ALL_UP)), ["a", "b", "d", "c"]);
  t.same(targets(decide(tbl, input(request()), without("a"))), ["b", "d", "c"]);
  t.same(targets(decide(tbl, input(request()), without("a", "b"))), ["d", "c"]);
  const none = decide(tbl, input(request()), without("a", "b", "c", "d"));
  t.equal(none.action, "reject");
  const plain = table(group("failover", "[b, a]"));
  t.same(targets(decide(plain, input(request()), ALL_UP)), ["b", "a"], "without priorities, list order");
});

t.test("dual: REGISTER goes to the first usable member and is copied to the others; other methods fail over", async (t) => {
  const tbl = table(group("dual", "[main, standby]"));
  const reg = decide(tbl, input(request({ method: "REGISTER" })), ALL_UP);
  t.equal(reg.action, "route");
  if (reg.action === "route") {
    t.same(reg.targets, ["main", "standby"]);
    t.same(reg.fork, ["standby"]);
    t.equal(reg.why, 'rule "default": group g (dual) → main, standby; REGISTER copied to standby');
  }
  const inv = decide(tbl, input(request()), ALL_UP);
  if (inv.action === "route") t.same(inv.fork, [], "an INVITE is never forked");
  const regDown = decide(tbl, input(request({ method: "REGISTER" })), without("main"));
  if (regDown.action === "route") {
    t.same(regDown.targets, ["standby"]);
    t.same(regDown.fork, []);
  }
});

t.test("round-robin: even turns over usable members; a dead member's turns spread over the rest", async (t) => {
  const tbl = table(group("round-robin", "[a, b, c]"));
  const seq = Array.from({ length: 6 }, () => firstOf(tbl, {}));
  t.same(seq, ["a", "b", "c", "a", "b", "c"]);
  t.same(targets(decide(tbl, input(request()), ALL_UP)), ["a", "b", "c"], "the rest follow as failover");
  t.same(targets(decide(tbl, input(request()), ALL_UP)), ["b", "c", "a"]);
  const noB = without("b");
  const spread = counts(Array.from({ length: 600 }, () => firstOf(tbl, {}, noB)));
  t.same(spread, { a: 300, c: 300 }, "with b down, a and c take turns evenly");
});

t.test("weighted: each member gets its weight's share, interleaved, exactly", async (t) => {
  const tbl = table(group("weighted", "[{ target: a, weight: 5 }, { target: b, weight: 3 }, { target: c, weight: 2 }]"));
  const first10 = Array.from({ length: 10 }, () => firstOf(tbl, {}));
  t.same(counts(first10), { a: 5, b: 3, c: 2 }, "every cycle of 10 picks");
  let maxRun = 0;
  let run = 0;
  for (let i = 0; i < first10.length; i++) {
    run = i > 0 && first10[i] === first10[i - 1] ? run + 1 : 1;
    maxRun = Math.max(maxRun, run);
  }
  t.ok(maxRun <= 2, `picks are interleaved, not in blocks (longest run ${maxRun})`);
  t.same(counts(Array.from({ length: 1000 }, () => firstOf(tbl, {}))), { a: 500, b: 300, c: 200 });
  const noA = without("a");
  t.same(counts(Array.from({ length: 500 }, () => firstOf(tbl, {}, noA))), { b: 300, c: 200 }, "a's share goes to b and c by their weights");
  const d = decide(tbl, input(request()), ALL_UP);
  t.equal(targets(d).length, 3, "the other members follow as failover");
});

t.test("hash: rendezvous on Call-ID is stable, even, and moves only a dead member's keys, evenly", async (t) => {
  const tbl = table(group("hash", "[a, b, c, d]", "    hashOn: call-id\n"));
  const N = 8000;
  const keys = Array.from({ length: N }, (_, i) => `call-${i}-${(i * 2654435761) % 1000003}@host`);
  const before = keys.map((k) => firstOf(tbl, { callId: k }));
  t.same(keys.slice(0, 50).map((k) => firstOf(tbl, { callId: k })), before.slice(0, 50), "same key, same member");
  const again = table(group("hash", "[a, b, c, d]", "    hashOn: call-id\n"));
  t.same(keys.slice(0, 200).map((k) => firstOf(again, { callId: k })), before.slice(0, 200), "a reload (or another instance) agrees");
  const reordered = table(group("hash", "[d, c, b, a]", "    hashOn: call-id\n"));
  t.same(keys.slice(0, 200).map((k) => firstOf(reordered, { callId: k })), before.slice(0, 200), "member order in the file does not matter");

  const share = counts(before);
  for (const m of ["a", "b", "c", "d"]) {
    t.ok(Math.abs(share[m]! - N / 4) < N * 0.03, `${m} gets about a quarter: ${share[m]}`);
  }

  const noB = without("b");
  const after = keys.map((k) => firstOf(tbl, { callId: k }, noB));
  let moved = 0;
  const moves: string[] = [];
  keys.forEach((_, i) => {
    if (before[i] !== "b") {
      if (after[i] !== before[i]) moved++;
    } else moves.push(after[i]!);
  });
  t.equal(moved, 0, "keys of the live members stay where they were");
  const spread = counts(moves);
  t.same(Object.keys(spread).sort(), ["a", "c", "d"]);
  for (const m of ["a", "c", "d"]) {
    t.ok(Math.abs(spread[m]! - moves.length / 3) < moves.length * 0.06, `b's keys spread evenly: ${m} got ${spread[m]} of ${moves.length}`);
  }
  const back = keys.map((k) => firstOf(tbl, { callId: k }));
  t.same(back, before, "when b is back, its keys return to it");
});

t.test("hash: weights, and keys from From, To and the Request-URI", async (t) => {
  const weighted = table(group("hash", "[{ target: a, weight: 3 }, { target: b, weight: 1 }]", "    hashOn: call-id\n"));
  const share = counts(Array.from({ length: 8000 }, (_, i) => firstOf(weighted, { callId: `w-${i}` })));
  t.ok(Math.abs(share.a! / 8000 - 0.75) < 0.03, `a gets three quarters: ${share.a}`);

  const byFrom = table(group("hash", "[a, b, c]", "    hashOn: from\n"));
  const f1 = firstOf(byFrom, { from: "<sip:alice@Example.COM>", callId: "1" });
  t.equal(firstOf(byFrom, { from: '"Alice" <sip:alice@example.com;transport=tcp>', callId: "2" }), f1, "same caller, any call, any host case");
  const callers = counts(Array.from({ length: 3000 }, (_, i) => firstOf(byFrom, { from: `<sip:user${i}@example.com>` })));
  t.equal(Object.keys(callers).length, 3, "callers spread over every member");

  const byTo = table(group("hash", "[a, b, c]", "    hashOn: to\n"));
  t.equal(firstOf(byTo, { to: "<sip:bob@x.example>", callId: "1" }), firstOf(byTo, { to: "sip:bob@X.example", callId: "2" }));

  const byUri = table(group("hash", "[a, b, c]", "    hashOn: request-uri\n"));
  t.equal(firstOf(byUri, { uri: "sip:100@pbx.example" }), firstOf(byUri, { uri: "sip:100@PBX.example;user=phone" }));
  const uris = counts(Array.from({ length: 3000 }, (_, i) => firstOf(byUri, { uri: `sip:${1000 + i}@pbx.example` })));
  t.equal(Object.keys(uris).length, 3);
});
