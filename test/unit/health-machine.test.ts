import t from "tap";
import {
  initialHealthState,
  probeDelayMs,
  transition,
  usability,
  type HealthEvent,
  type HealthState,
  type Observation,
} from "../../src/health/machine.js";
import { compileAliveCodes, resolveHealthOptions, type HealthOptions } from "../../src/health/options.js";

const ok = (status = 200, retryAfterSeconds?: number): Observation =>
  retryAfterSeconds === undefined ? { kind: "response", status } : { kind: "response", status, retryAfterSeconds };
const timeout: Observation = { kind: "timeout" };
const tpErr: Observation = { kind: "transport-error", reason: "ECONNREFUSED" };

/** Feeds probe observations, each in the generation current at the time (no late results). */
function run(obs: readonly Observation[], opts: Partial<HealthOptions> = {}, start: HealthState = initialHealthState()) {
  const o = resolveHealthOptions(opts);
  let s = start;
  const seen: string[] = [];
  for (const observation of obs) {
    s = transition(s, { type: "probe", generation: s.generation, observation }, o, 0).state;
    seen.push(s.status);
  }
  return { s, seen };
}

t.test("initial state is suspect and usable", async (t) => {
  const s = initialHealthState();
  t.equal(s.status, "suspect");
  t.same(usability(s), { newRequests: true, inDialog: true });
});

t.test("thresholds: down after N failures, up after M successes", async (t) => {
  const cases: Array<{ name: string; opts: Partial<HealthOptions>; obs: Observation[]; want: string[] }> = [
    { name: "first success from initial", opts: {}, obs: [ok()], want: ["up"] },
    { name: "N=3 from initial", opts: {}, obs: [timeout, timeout, timeout], want: ["suspect", "suspect", "down"] },
    { name: "up, then suspect, then down", opts: {}, obs: [ok(), timeout, tpErr, timeout], want: ["up", "suspect", "suspect", "down"] },
    { name: "a success clears suspicion", opts: {}, obs: [ok(), timeout, timeout, ok(), timeout, timeout], want: ["up", "suspect", "suspect", "up", "suspect", "suspect"] },
    { name: "M=2 via recovering", opts: {}, obs: [timeout, timeout, timeout, ok(), ok()], want: ["suspect", "suspect", "down", "recovering", "up"] },
    { name: "failure while recovering goes back down", opts: {}, obs: [timeout, timeout, timeout, ok(), timeout, ok(), ok()], want: ["suspect", "suspect", "down", "recovering", "down", "recovering", "up"] },
    { name: "N=1 M=1", opts: { failuresToDown: 1, successesToUp: 1 }, obs: [ok(), timeout, ok()], want: ["up", "down", "up"] },
    { name: "N=5 M=3", opts: { failuresToDown: 5, successesToUp: 3 }, obs: [timeout, timeout, timeout, timeout, timeout, ok(), ok(), ok()], want: ["suspect", "suspect", "suspect", "suspect", "down", "recovering", "recovering", "up"] },
  ];
  for (const c of cases) t.same(run(c.obs, c.opts).seen, c.want, c.name);
});

t.test("alive codes: default, strict, explicit list", async (t) => {
  const table: Array<[status: number, def: boolean, strict: boolean, list: boolean]> = [
    [200, true, true, true],
    [202, true, true, false],
    [404, true, false, true],
    [405, true, false, false],
    [408, false, false, false],
    [480, true, false, false],
    [500, false, false, false],
    [501, true, false, false],
    [503, false, false, false],
    [504, false, false, false],
    [603, true, false, false],
    [100, false, false, false],
    [180, false, false, false],
    [0, false, false, false],
    [700, false, false, false],
  ];
  const def = compileAliveCodes("default");
  const strict = compileAliveCodes("strict");
  const list = compileAliveCodes([200, 404]);
  for (const [status, d, s, l] of table) {
    t.equal(def(status), d, `default ${status}`);
    t.equal(strict(status), s, `strict ${status}`);
    t.equal(list(status), l, `list ${status}`);
  }
  t.throws(() => compileAliveCodes([]));
  t.throws(() => compileAliveCodes([180]));
  // A 404 keeps a target up in default mode and brings it down in strict mode.
  t.equal(run([ok(), ok(404), ok(404), ok(404)]).s.status, "up");
  t.equal(run([ok(), ok(404), ok(404), ok(404)], { aliveCodes: "strict" }).s.status, "down");
});

t.test("passive traffic judged by failure codes, not by alive codes", async (t) => {
  const o = resolveHealthOptions({ aliveCodes: "strict" });
  let s = initialHealthState();
  const feed = (observation: Observation) => (s = transition(s, { type: "traffic", observation }, o, 0).state);
  feed(ok(486));
  t.equal(s.status, "up", "a 486 proves the PBX alive");
  feed(ok(503));
  feed(timeout);
  t.equal(s.status, "suspect");
  feed(tpErr);
  t.equal(s.status, "down");
  feed(ok(100));
  t.equal(s.status, "recovering", "a provisional proves life");
  feed(ok(408));
  t.equal(s.status, "down");
});

t.test("503 with Retry-After holds the target down for that long", async (t) => {
  const o = resolveHealthOptions();
  let s = run([ok()]).s;
  const probe = (observation: Observation, now: number) =>
    (s = transition(s, { type: "probe", generation: s.generation, observation }, o, now).state);
  probe(ok(503, 30), 1_000);
  t.equal(s.status, "down", "down at once, not after N");
  t.equal(s.holdUntil, 31_000);
  t.equal(probeDelayMs(s, o, 1_000), 30_000, "no probe inside the hold");
  probe(ok(), 5_000);
  probe(ok(), 10_000);
  probe(ok(), 20_000);
  t.equal(s.status, "down", "successes inside the hold do not count");
  t.equal(s.successes, 0);
  probe(ok(503, 5), 21_000);
  t.equal(s.holdUntil, 31_000, "a shorter Retry-After does not shorten the hold");
  // The hold timer may fire late or early relative to an extended hold.
  s = transition(s, { type: "hold-expired" }, o, 30_000).state;
  t.equal(s.holdUntil, 31_000, "an early timer does not lift the hold");
  s = transition(s, { type: "hold-expired" }, o, 31_000).state;
  t.equal(s.holdUntil, undefined);
  t.equal(probeDelayMs(s, o, 31_000), o.intervalDownMs);
  probe(ok(), 32_000);
  probe(ok(), 37_000);
  t.equal(s.status, "up");

  // A success after the hold's end counts even if the timer has not fired yet.
  let h = run([ok()]).s;
  h = transition(h, { type: "probe", generation: h.generation, observation: ok(503, 10) }, o, 0).state;
  h = transition(h, { type: "probe", generation: h.generation, observation: ok() }, o, 10_000).state;
  t.equal(h.status, "recovering");
  t.equal(h.holdUntil, undefined);

  // A 503 without Retry-After (or with 0) is an ordinary failure.
  t.equal(run([ok(), ok(503)]).s.status, "suspect");
  t.equal(run([ok(), ok(503, 0)]).s.status, "suspect");
  t.equal(run([ok(), ok(500, 60)]).s.status, "suspect", "Retry-After only holds on a 503");
});

t.test("admin disable and drain win over probes", async (t) => {
  const o = resolveHealthOptions();
  let s = run([ok()]).s;
  const ev = (e: HealthEvent) => (s = transition(s, e, o, 0).state);
  const probe = (observation: Observation) => ev({ type: "probe", generation: s.generation, observation });

  ev({ type: "disable" });
  t.equal(s.status, "disabled");
  t.same(usability(s), { newRequests: false, inDialog: false });
  probe(ok());
  probe(ok());
  t.equal(s.status, "disabled", "successes do not re-enable");
  probe(timeout);
  probe(timeout);
  probe(timeout);
  t.equal(s.status, "disabled");
  t.equal(s.probed, "down", "probes keep tracking the target underneath");
  ev({ type: "enable" });
  t.equal(s.status, "down", "enable restores what the probes say now");

  probe(ok());
  probe(ok());
  ev({ type: "drain" });
  t.equal(s.status, "up");
  t.same(usability(s), { newRequests: false, inDialog: true }, "drain: in-dialog traffic still flows");
  probe(ok());
  t.same(usability(s).newRequests, false);
  ev({ type: "undrain" });
  t.same(usability(s), { newRequests: true, inDialog: true });

  // Both overlays at once, and each state's usability.
  ev({ type: "drain" });
  ev({ type: "disable" });
  ev({ type: "enable" });
  t.equal(usability(s).newRequests, false, "still draining");
  ev({ type: "undrain" });
  for (const [obs, status, usable] of [
    [timeout, "suspect", true],
    [timeout, "suspect", true],
    [timeout, "down", false],
    [ok(), "recovering", false],
    [ok(), "up", true],
  ] as const) {
    probe(obs);
    t.equal(s.status, status);
    t.equal(usability(s).newRequests, usable, `${status} usable=${usable}`);
  }
});

t.test("late probe results are ignored", async (t) => {
  const o = resolveHealthOptions();
  let s = run([ok()]).s;
  const sentWhileUp = s.generation;
  // Traffic takes the target down while the probe is in flight.
  for (let i = 0; i < 3; i++) s = transition(s, { type: "traffic", observation: timeout }, o, 0).state;
  t.equal(s.status, "down");
  const late = transition(s, { type: "probe", generation: sentWhileUp, observation: ok() }, o, 0);
  t.equal(late.outcome, "stale");
  t.equal(late.state, s, "state untouched");
  // A drain in between also makes an in-flight result stale.
  const g = s.generation;
  s = transition(s, { type: "drain" }, o, 0).state;
  t.equal(transition(s, { type: "probe", generation: g, observation: timeout }, o, 0).outcome, "stale");
  // A result of the current generation applies; a non-changing one keeps the generation.
  const cur = transition(s, { type: "probe", generation: s.generation, observation: timeout }, o, 0);
  t.equal(cur.outcome, "applied");
  t.equal(cur.state.generation, s.generation);
});

t.test("probe interval depends on the state", async (t) => {
  const o = resolveHealthOptions({ intervalUpMs: 30_000, intervalDownMs: 3_000 });
  t.equal(probeDelayMs(initialHealthState(), o, 0), 3_000, "suspect probes fast");
  t.equal(probeDelayMs(run([ok()]).s, o, 0), 30_000);
  t.equal(probeDelayMs(run([timeout, timeout, timeout]).s, o, 0), 3_000);
});

t.test("options are validated", async (t) => {
  t.throws(() => resolveHealthOptions({ failuresToDown: 0 }));
  t.throws(() => resolveHealthOptions({ successesToUp: 1.5 }));
  t.throws(() => resolveHealthOptions({ intervalUpMs: -1 }));
  t.throws(() => resolveHealthOptions({ rttEwmaAlpha: 0 }));
  t.throws(() => resolveHealthOptions({ passiveFailureCodes: [5000] }));
  t.equal(resolveHealthOptions().failuresToDown, 3);
  t.equal(resolveHealthOptions().successesToUp, 2);
});
