import t from "tap";
import { resolveHealthOptions } from "../../src/health/options.js";
import { TargetHealth, type HealthTransition } from "../../src/health/target-health.js";
import { FakeClock } from "../../src/util/clock.js";

function make(opts: Parameters<typeof resolveHealthOptions>[0] = {}) {
  const clock = new FakeClock(0, 1_000_000);
  const events: HealthTransition[] = [];
  const h = new TargetHealth("main", resolveHealthOptions(opts), clock, (e) => events.push(e));
  return { clock, events, h };
}

t.test("the initial state is an event", async (t) => {
  const { h, events } = make();
  t.equal(events.length, 1);
  t.match(events[0], { target: "main", from: null, to: "suspect", draining: false, at: 1_000_000, mono: 0 });
  t.same(events[0]?.usable, { newRequests: true, inDialog: true });
  t.same(h.snapshot().history, events);
});

t.test("probe protocol, transitions, RTT and counts", async (t) => {
  const { h, events, clock } = make();
  const ticket = h.beginProbe();
  clock.advance(40);
  t.equal(h.probeResult(ticket, { ok: true, status: 200, rttMs: 40, retryAfterSeconds: undefined }), "applied");
  t.equal(h.status, "up");
  for (const rtt of [20, 100]) h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: rtt });
  h.probeResult(h.beginProbe(), { ok: true, status: 503, rttMs: 5 });
  h.probeResult(h.beginProbe(), { ok: false, kind: "timeout", reason: "no answer", rttMs: 2000 });
  clock.advance(1000);
  h.probeResult(h.beginProbe(), { ok: false, kind: "transport", reason: "ECONNREFUSED" });
  t.equal(h.status, "down");
  const snap = h.snapshot();
  t.same(snap.probes, { sent: 6, ok: 3, failed: 2, timeouts: 1, stale: 0 });
  t.equal(snap.rtt.lastMs, 5);
  t.equal(snap.rtt.maxMs, 100);
  // EWMA with alpha 0.2 over 40, 20, 100, 5.
  const ewma = [20, 100, 5].reduce((e, x) => 0.2 * x + 0.8 * e, 40);
  t.ok(Math.abs((snap.rtt.ewmaMs ?? 0) - ewma) < 1e-9);
  t.same(
    events.map((e) => [e.from, e.to]),
    [[null, "suspect"], ["suspect", "up"], ["up", "suspect"], ["suspect", "down"]],
  );
  t.match(events[3]?.reason, /ECONNREFUSED \(3 consecutive failures\)/);
  t.equal(events[3]?.mono, 1040);
  t.equal(snap.since, events[3]?.at);
  t.equal(snap.consecutiveFailures, 3);
  t.equal(h.nextProbeDelayMs(), 5_000);
});

t.test("a late result is counted but not applied", async (t) => {
  const { h } = make();
  h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: 1 });
  const inFlight = h.beginProbe();
  h.drain();
  t.equal(h.probeResult(inFlight, { ok: false, kind: "timeout" }), "stale");
  t.equal(h.snapshot().probes.stale, 1);
  t.equal(h.snapshot().consecutiveFailures, 0);
});

t.test("drain and disable are visible transitions with distinct usability", async (t) => {
  const { h, events } = make();
  h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: 1 });
  h.drain();
  t.match(events.at(-1), { from: "up", to: "up", draining: true, reason: "admin drain" });
  t.same(events.at(-1)?.usable, { newRequests: false, inDialog: true });
  h.drain();
  t.equal(events.length, 3, "a repeated drain is no transition");
  h.undrain();
  h.disable();
  t.match(events.at(-1), { from: "up", to: "disabled" });
  t.same(h.usability(), { newRequests: false, inDialog: false });
  h.enable();
  t.match(events.at(-1), { from: "disabled", to: "up", reason: "admin enable (probes say up)" });
});

t.test("passive traffic in the proxy's terms", async (t) => {
  const { h } = make();
  h.traffic({ outcome: "response", status: 486 });
  t.equal(h.status, "up");
  h.traffic({ outcome: "failure-response", status: 503 });
  h.traffic({ outcome: "timeout" });
  h.traffic({ outcome: "transport-error" });
  t.equal(h.status, "down");
  h.traffic({ outcome: "response" });
  t.equal(h.status, "recovering");
  h.traffic({ outcome: "failure-response" });
  t.equal(h.status, "down", "a failure without a code is still a failure");
  h.traffic({ outcome: "failure-response", status: 503, retryAfterSeconds: 60 });
  t.not(h.snapshot().holdUntil, null);
});

t.test("the Retry-After hold ends through a clock timer", async (t) => {
  const { h, clock, events } = make();
  h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: 1 });
  h.probeResult(h.beginProbe(), { ok: true, status: 503, rttMs: 1, retryAfterSeconds: 120 });
  t.equal(h.status, "down");
  t.equal(h.snapshot().holdUntil, 1_000_000 + 120_000);
  t.equal(h.nextProbeDelayMs(), 120_000);
  clock.advance(60_000);
  h.probeResult(h.beginProbe(), { ok: true, status: 503, rttMs: 1, retryAfterSeconds: 120 });
  t.equal(clock.pending, 1, "one hold timer, re-armed for the longer hold");
  clock.advance(60_000);
  h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: 1 });
  t.equal(h.status, "down", "still held");
  clock.advance(60_000);
  t.equal(clock.pending, 0);
  t.equal(h.snapshot().holdUntil, null);
  h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: 1 });
  h.probeResult(h.beginProbe(), { ok: true, status: 200, rttMs: 1 });
  t.equal(h.status, "up");
  t.match(events.at(-1)?.reason, /2 consecutive successes/);

  h.probeResult(h.beginProbe(), { ok: true, status: 503, rttMs: 1, retryAfterSeconds: 10 });
  t.equal(clock.pending, 1);
  h.close();
  t.equal(clock.pending, 0, "close cancels the hold timer");
});

t.test("history is bounded and listeners can be removed", async (t) => {
  const { h } = make({ historySize: 3, failuresToDown: 1, successesToUp: 1 });
  const seen: string[] = [];
  const off = h.onTransition((e) => seen.push(e.to));
  for (let i = 0; i < 5; i++) {
    h.traffic({ outcome: "timeout" });
    h.traffic({ outcome: "response", status: 200 });
  }
  t.equal(seen.length, 10);
  off();
  h.traffic({ outcome: "timeout" });
  t.equal(seen.length, 10);
  const hist = h.snapshot().history;
  t.equal(hist.length, 3);
  t.equal(hist.at(-1)?.to, "down");
});
