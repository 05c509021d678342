import t from "tap";
import { CarrierBreaker, canAttempt, classifyOutcome, DEFAULT_BREAKER, initialBreakerState, step, type BreakerSettings, type BreakerTransition, type CallOutcome } from "../../src/rules/carrier-breaker.js";
import { CarrierBreakers, callOutcome, withBreakers } from "../../src/rules/carrier-breakers.js";
import { decide } from "../../src/rules/decide.js";
import { FakeClock, type Clock } from "../../src/util/clock.js";
import { ALL_UP, input, request, table } from "../fixtures/rules/helpers.js";

const S: BreakerSettings = { ...DEFAULT_BREAKER, failures: 3, windowMs: 10_000, coolDownMs: 30_000, maxCoolDownMs: 120_000, trialTimeoutMs: 32_000 };

const r503: CallOutcome = { kind: "response", status: 503 };
const r408: CallOutcome = { kind: "response", status: 408 };
const r200: CallOutcome = { kind: "response", status: 200 };
const timeout: CallOutcome = { kind: "timeout" };
const transport: CallOutcome = { kind: "transport-error" };

function breaker(settings: BreakerSettings = S): { b: CarrierBreaker; clock: FakeClock; events: BreakerTransition[] } {
  const clock = new FakeClock(1000);
  const events: BreakerTransition[] = [];
  const b = new CarrierBreaker("telco", settings, clock, (e) => events.push(e));
  return { b, clock, events };
}

t.test("what counts: 503/408/no response/transport errors; callee answers and successes never", async (t) => {
  for (const o of [r503, r408, timeout, transport]) t.equal(classifyOutcome(o, S), "failure", JSON.stringify(o));
  for (const status of [200, 202, 302, 404, 480, 486, 487, 500, 600, 603, 604]) {
    t.equal(classifyOutcome({ kind: "response", status }, S), "answer", `status ${status}`);
  }
  t.equal(classifyOutcome({ kind: "response", status: 180 }, S), "ignore", "a provisional says nothing");
});

t.test("a single 503 does not trip it; N in a row do", async (t) => {
  const { b, clock, events } = breaker();
  t.same(events.map((e) => [e.from, e.to, e.reason]), [[undefined, "closed", "initial: no calls seen yet"]], "the initial state is an event too");
  b.record(r503);
  t.equal(b.status, "closed");
  t.ok(b.canAttempt());
  b.record(r200);
  b.record(r503);
  b.record(r503);
  t.equal(b.status, "closed", "a success ended the first run");
  clock.advance(1000);
  b.record(timeout);
  t.equal(b.status, "open");
  t.notOk(b.canAttempt());
  const trip = events.at(-1)!;
  t.same([trip.from, trip.to, trip.reason], ["closed", "open", "3 failures in a row within 10s (last: no response); open for 30s"]);
  t.equal(trip.at, clock.wallNow(), "the event carries the time");
});

t.test("callee answers between failures reset the run; callee answers alone never trip", async (t) => {
  const { b } = breaker();
  for (let i = 0; i < 50; i++) {
    b.record({ kind: "response", status: [404, 486, 603][i % 3]! });
    t.equal(b.status, "closed");
  }
  for (let i = 0; i < 20; i++) {
    b.record(r503);
    b.record(r503);
    b.record({ kind: "response", status: 486 });
  }
  t.equal(b.status, "closed", "two 503s then a busy callee, twenty times over");
});

t.test("the failures must fall within the window", async (t) => {
  const { b, clock } = breaker();
  b.record(r503);
  clock.advance(6000);
  b.record(r503);
  clock.advance(6000);
  b.record(r503);
  t.equal(b.status, "closed", "three failures spread over 12 s, window 10 s");
  clock.advance(1000);
  b.record(r503);
  t.equal(b.status, "open", "the last three fell within 10 s");
});

t.test("cool-down, half-open with one test call, success closes", async (t) => {
  const { b, clock, events } = breaker();
  for (let i = 0; i < 3; i++) b.record(r503);
  clock.advance(29_999);
  t.equal(b.status, "open");
  b.record(r200);
  t.equal(b.status, "open", "answers to calls sent before the trip do not close it");
  clock.advance(1);
  t.equal(b.status, "half-open", "the cool-down timer moved it");
  t.equal(events.at(-1)!.reason, "cool-down of 30s over; the next call tests the carrier");
  t.ok(b.canAttempt());
  b.attempt();
  t.notOk(b.canAttempt(), "one test call at a time");
  t.ok(b.snapshot().testInFlight);
  b.record({ kind: "response", status: 100 });
  t.equal(b.status, "half-open", "a provisional decides nothing");
  b.record(r200);
  t.equal(b.status, "closed");
  t.equal(events.at(-1)!.reason, "test call answered (200)");
  t.ok(b.canAttempt());
});

t.test("a failed test re-opens with a doubled cool-down, up to the maximum; no flapping", async (t) => {
  const { b, clock, events } = breaker();
  const isOpen = (): boolean => b.status === "open";
  for (let i = 0; i < 3; i++) b.record(r503);
  const coolDowns: number[] = [];
  for (let round = 0; round < 4; round++) {
    const openedAt = clock.now();
    while (isOpen()) clock.advance(1000);
    coolDowns.push(clock.now() - openedAt);
    b.attempt();
    b.record(transport);
    t.equal(b.status, "open");
  }
  t.same(coolDowns, [30_000, 60_000, 120_000, 120_000]);
  t.equal(events.at(-1)!.reason, "test call failed (transport error); open for 120s");
  while (isOpen()) clock.advance(1000);
  b.attempt();
  b.record({ kind: "response", status: 486 });
  t.equal(b.status, "closed", "a callee's answer proves the carrier works");
  for (let i = 0; i < 3; i++) b.record(r503);
  const openedAt = clock.now();
  while (isOpen()) clock.advance(1000);
  t.equal(clock.now() - openedAt, 30_000, "after closing, the cool-down starts over");
});

t.test("a test call that never reports frees the slot after the trial timeout", async (t) => {
  const { b, clock } = breaker();
  for (let i = 0; i < 3; i++) b.record(r503);
  clock.advance(30_000);
  b.attempt();
  t.notOk(b.canAttempt());
  clock.advance(31_999);
  t.notOk(b.canAttempt());
  clock.advance(1);
  t.ok(b.canAttempt(), "another call may test the carrier");
});

t.test("the pure machine: questions take nothing; stale timers and attempts change nothing", async (t) => {
  const s0 = initialBreakerState(0);
  t.equal(step(s0, { type: "cool-down-over" }, S, 5).state, s0);
  t.equal(step(s0, { type: "attempt" }, S, 5).state, s0);
  t.equal(step(s0, { type: "outcome", outcome: r200 }, S, 5).state, s0, "a success on a clean run returns the very same state");
  let s = s0;
  for (let i = 0; i < 3; i++) s = step(s, { type: "outcome", outcome: r408 }, S, 10 + i).state;
  t.equal(s.status, "open");
  t.equal(step(s, { type: "cool-down-over" }, S, 12 + 29_000).state, s, "a timer that fires early changes nothing");
  t.notOk(canAttempt(s, S, 1e9), "open means no, whatever the time (the timer moves it)");
  const half = step(s, { type: "cool-down-over" }, S, 12 + 30_000).state;
  t.equal(half.status, "half-open");
  t.ok(canAttempt(half, S, 0));
  t.ok(canAttempt(half, S, 0), "asking twice still says yes: only attempt() takes the slot");
});

t.test("a late timer is caught up by the next question", async (t) => {
  // A clock whose timers never fire, as when a blocked event loop runs them late.
  let now = 0;
  const stalled: Clock = { now: () => now, wallNow: () => now, setTimer: () => ({ id: 1 }), clearTimer: () => {} };
  const b = new CarrierBreaker("x", S, stalled);
  for (let i = 0; i < 3; i++) b.record(r503);
  now = 29_999;
  t.notOk(b.canAttempt());
  now = 30_000;
  t.ok(b.canAttempt(), "the cool-down is over even though the timer has not run");
  t.equal(b.status, "half-open");
});

t.test("registry: settings change on reload, state survives, removed carriers go", async (t) => {
  const clock = new FakeClock(0);
  const seen: BreakerTransition[] = [];
  const breakers = new CarrierBreakers(clock, undefined, (e) => seen.push(e));
  const v1 = table(`
groups:
  lcr: { members: [carrier-a, carrier-b] }
carriers:
  ca: { targets: carrier-a, breaker: { failures: 3, coolDownSeconds: 30 } }
  cb: { targets: carrier-b, breaker: { failures: 3 } }
rules:
  - { name: default, route: lcr }
`);
  breakers.configure(v1.carriers);
  t.same(breakers.snapshot().map((s) => s.carrier), ["ca", "cb"]);
  const view = withBreakers(v1, ALL_UP, breakers);
  const first = () => {
    const d = decide(v1, input(request()), view);
    return d.action === "route" ? d.targets[0] : d.why;
  };
  t.equal(first(), "carrier-a");
  breakers.recordTarget(v1, "carrier-a", r503);
  t.equal(first(), "carrier-a", "one 503 is ignored");
  breakers.recordTarget(v1, "carrier-a", r503);
  breakers.recordTarget(v1, "carrier-a", r503);
  t.equal(breakers.get("ca")?.status, "open");
  t.equal(first(), "carrier-b", "traffic moves to the next carrier");
  breakers.recordTarget(v1, "main", r503);

  const v2 = table(`
groups:
  lcr: { members: [carrier-a, carrier-b] }
carriers:
  ca: { targets: carrier-a, breaker: { failures: 3, coolDownSeconds: 60 } }
rules:
  - { name: default, route: lcr }
`);
  breakers.configure(v2.carriers);
  t.equal(breakers.get("ca")?.status, "open", "a reload keeps the breaker open");
  t.equal(breakers.get("cb"), undefined, "a removed carrier's breaker is gone");
  t.equal(breakers.get("ca")?.settings.coolDownMs, 60_000);
  clock.advance(30_000);
  t.equal(breakers.get("ca")?.status, "half-open", "the running cool-down keeps the length it started with");
  const view2 = withBreakers(v2, ALL_UP, breakers);
  const d = decide(v2, input(request()), view2);
  t.equal(d.action === "route" && d.targets[0], "carrier-a", "the half-open carrier gets the test call");
  breakers.noteRouted(v2, d);
  const d2 = decide(v2, input(request()), view2);
  t.equal(d2.action === "route" && d2.targets[0], "carrier-b", "while it is tested, others go to the next carrier");
  breakers.recordTarget(v2, "carrier-a", r200);
  t.equal(breakers.get("ca")?.status, "closed");
  t.same(
    seen.filter((e) => e.carrier === "ca").map((e) => e.to),
    ["closed", "open", "half-open", "closed"],
  );
  breakers.close();
  t.equal(clock.pending, 0, "no timer left behind");
});

t.test("the proxy's outcomes in breaker terms", async (t) => {
  t.same(callOutcome("timeout"), { kind: "timeout" });
  t.same(callOutcome("transport-error"), { kind: "transport-error" });
  t.same(callOutcome("failure-response", 503), { kind: "response", status: 503 });
  t.same(callOutcome("response", 486), { kind: "response", status: 486 });
  t.equal(callOutcome("response"), undefined);
});
