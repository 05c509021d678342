import t from "tap";
import { SoftState, type RetryState, type TxnState } from "../../src/edge/soft-state.js";
import { makeTarget, type Target } from "../../src/edge/targets.js";
import { FakeClock } from "../../src/util/clock.js";

const MAIN: Target = makeTarget({ name: "main", uri: "sip:10.0.0.1:5070", priority: 1 });

function entry(branch: string): TxnState {
  return { dest: { transport: "udp", address: "10.0.0.1", port: 5070 }, target: MAIN, branch };
}

// lru-cache reads a start time of 0 as "no start" (the entry would never
// expire), so the fake clock starts later, as performance.now() always is.
const START = 1_000;

/** Failover state of a transaction that may still move to another target. */
function retryState(): RetryState {
  return { rest: [], original: "", inbound: { data: "", source: { transport: "udp", address: "192.0.2.1", port: 5060 } } as RetryState["inbound"], attempt: 0, timer: undefined, anyFailure: false, deferrals: 0, trying: false, question: undefined };
}

/** Entries that wait on MAIN with failover possible, as the proxy records them. */
function waiting(s: SoftState, keys: readonly string[]): void {
  for (const k of keys) s.setByKey(k, { ...entry(k), retry: retryState() });
}

t.test("never holds more than maxEntries: the least recently used goes first", async (t) => {
  const s = new SoftState({ maxEntries: 3, ttlMs: 60_000 }, new FakeClock(START));
  for (const k of ["a", "b", "c"]) s.setByKey(k, entry(k));
  t.ok(s.getByKey("a"), "a read refreshes a");
  s.setByKey("d", entry("d"));
  s.setByKey("e", entry("e"));
  t.equal(s.size, 3);
  t.equal(s.max, 3);
  t.same(["a", "b", "c", "d", "e"].filter((k) => s.peekByKey(k) !== undefined), ["a", "d", "e"], "b and c, read least recently, were evicted");
});

t.test("a peek does not keep an entry from eviction", async (t) => {
  const s = new SoftState({ maxEntries: 2, ttlMs: 60_000 }, new FakeClock(START));
  s.setByKey("a", entry("a"));
  s.setByKey("b", entry("b"));
  t.ok(s.peekByKey("a"));
  s.setByKey("c", entry("c"));
  t.equal(s.peekByKey("a"), undefined, "a went, peeked or not");
  t.ok(s.peekByKey("b"));
});

t.test("entries expire ttlMs after they were last set, on the clock given", async (t) => {
  const clock = new FakeClock(START);
  const s = new SoftState({ maxEntries: 10, ttlMs: 100 }, clock);
  s.setByKey("a", entry("a"));
  clock.advance(60);
  s.setByKey("b", entry("b"));
  clock.advance(40);
  t.ok(s.getByKey("a"), "alive at exactly its TTL");
  t.ok(s.getByKey("b"), "a read does not extend it");
  clock.advance(1);
  t.equal(s.getByKey("a"), undefined, "a expired");
  t.ok(s.getByKey("b"), "b is 41 ms old");
  clock.advance(60);
  t.equal(s.peekByKey("b"), undefined, "b expired too");
  s.setByKey("b", entry("b2"));
  clock.advance(99);
  t.equal(s.getByKey("b")?.branch, "b2", "setting again starts its TTL over");
  t.equal(clock.pending, 0, "no timer is armed for any of it");
});

t.test("the transactions waiting on a target: failover possible, still held, on that target", async (t) => {
  const s = new SoftState({ maxEntries: 2, ttlMs: 60_000 }, new FakeClock(START));
  waiting(s, ["a", "b"]);
  s.setByKey("c", entry("c"));
  t.same(s.waitingOn("main"), ["b"], "a was evicted; c may not fail over");
  s.setByKey("b", entry("b-replaced"));
  t.same(s.waitingOn("main"), [], "b replaced by an entry without failover");
  waiting(s, ["d"]);
  t.same(s.waitingOn("standby"), [], "none waits on another target");
  const d = s.getByKey("d")!;
  d.retry = undefined;
  t.same(s.waitingOn("main"), [], "settled: no longer waits");
});

t.test("an expired transaction waits no more", async (t) => {
  const clock = new FakeClock(START);
  const s = new SoftState({ maxEntries: 10, ttlMs: 100 }, clock);
  waiting(s, ["a"]);
  clock.advance(101);
  t.same(s.waitingOn("main"), []);
});

t.test("forget drops an entry, but leaves the last one for the LRU", async (t) => {
  const s = new SoftState({ maxEntries: 10, ttlMs: 60_000 }, new FakeClock(START));
  waiting(s, ["a", "b"]);
  s.forget("a");
  t.equal(s.peekByKey("a"), undefined, "a is gone");
  t.equal(s.size, 1);
  t.same(s.waitingOn("main"), ["b"], "and it no longer waits");
  s.forget("b");
  t.ok(s.peekByKey("b"), "the last entry stays (lru-cache empties by clearing all its arrays)");
  s.forget("nothing");
  t.equal(s.size, 1, "an unknown key changes nothing");
});

t.test("the key is Call-ID and branch; the Call-ID is read back for logs", async (t) => {
  const key = SoftState.key("call-1@host", "z9hG4bK1");
  t.equal(SoftState.callIdOf(key), "call-1@host");
  t.not(SoftState.key("a", "bc"), SoftState.key("ab", "c"), "no two pairs share a key");
  t.equal(SoftState.key("c", undefined), "c\n", "a request with no branch still has a key");
  const s = new SoftState({ maxEntries: 2, ttlMs: 60_000 }, new FakeClock(START));
  s.setByKey(key, entry("x"));
  t.equal(s.get("call-1@host", "z9hG4bK1")?.branch, "x");
});
