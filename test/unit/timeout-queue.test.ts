import t from "tap";
import { TimeoutQueue } from "../../src/edge/timeout-queue.js";
import { FakeClock, type Clock, type TimerHandle } from "../../src/util/clock.js";

t.test("each timeout fires at its own deadline, in arming order, through one clock timer", async (t) => {
  const c = new FakeClock(0);
  const fired: string[] = [];
  const q = new TimeoutQueue<string>(c, 100, (v) => fired.push(`${v}@${c.now()}`));
  q.add("a");
  c.advance(30);
  q.add("b");
  q.add("c");
  t.equal(c.pending, 1, "one clock timer for three timeouts");
  t.equal(q.pending, 3);
  c.advance(69);
  t.same(fired, []);
  c.advance(1);
  t.same(fired, ["a@100"]);
  c.advance(30);
  t.same(fired, ["a@100", "b@130", "c@130"]);
  t.equal(c.pending, 0, "no timer once the queue is empty");
  t.equal(q.pending, 0);
});

t.test("a cancelled timeout never fires, and a cancelled front does not hold the next one back", async (t) => {
  const c = new FakeClock(0);
  const fired: string[] = [];
  const q = new TimeoutQueue<string>(c, 100, (v) => fired.push(`${v}@${c.now()}`));
  const a = q.add("a");
  c.advance(10);
  const b = q.add("b");
  c.advance(10);
  q.add("c");
  q.cancel(a);
  q.cancel(b);
  t.equal(a.value, undefined, "a cancelled entry lets go of its value");
  c.advance(1000);
  t.same(fired, ["c@120"]);
});

t.test("a timeout armed while timeouts expire fires at its own deadline", async (t) => {
  const c = new FakeClock(0);
  const fired: string[] = [];
  const q: TimeoutQueue<string> = new TimeoutQueue<string>(c, 100, (v) => {
    fired.push(`${v}@${c.now()}`);
    if (v === "a") q.add("a2");
  });
  q.add("a");
  c.advance(250);
  t.same(fired, ["a@100", "a2@200"]);
  t.equal(c.pending, 0);
});

t.test("a clock timer that fires early by the queue's clock waits for the deadline", async (t) => {
  // A system timer can run a little before the deadline measured by
  // performance.now(); the queue re-arms instead of firing early.
  let now = 0;
  const timers: Array<{ fn: () => void }> = [];
  const clock: Clock = {
    now: () => now,
    wallNow: () => now,
    setTimer: (_ms: number, fn: () => void): TimerHandle => {
      timers.push({ fn });
      return { id: timers.length };
    },
    clearTimer: () => undefined,
  };
  const fired: number[] = [];
  const q = new TimeoutQueue<number>(clock, 100, () => fired.push(now));
  q.add(1);
  now = 99.5;
  timers.shift()!.fn();
  t.same(fired, [], "not yet due");
  t.equal(timers.length, 1, "re-armed");
  now = 100;
  timers.shift()!.fn();
  t.same(fired, [100]);
});

t.test("the consumed front of a long queue is dropped", async (t) => {
  const c = new FakeClock(0);
  let n = 0;
  const q = new TimeoutQueue<number>(c, 10_000, () => n++);
  for (let i = 0; i < 3000; i++) {
    q.add(i);
    c.advance(5);
  }
  c.advance(10_000);
  t.equal(n, 3000);
  t.equal(q.pending, 0);
});

t.test("regression: with nothing pending the queue holds no entries (entries kept to their deadline grew the heap)", async (t) => {
  const c = new FakeClock(0);
  const q = new TimeoutQueue<string>(c, 1000, () => t.fail("cancelled timeout fired"));
  const a = q.add("a");
  const b = q.add("b");
  q.cancel(a);
  q.cancel(b);
  q.cancel(b);
  t.equal(q.pending, 0);
  t.same((q as unknown as { items: unknown[] }).items, [], "the cancelled entries are gone at once");
  c.advance(1000);
  t.equal(c.pending, 0, "the clock timer ran out and was not set again");
  const fired: string[] = [];
  const q2 = new TimeoutQueue<string>(c, 1000, (v) => fired.push(`${v}@${c.now()}`));
  q2.add("x");
  c.advance(500);
  q2.add("y");
  c.advance(1000);
  t.same(fired, ["x@2000", "y@2500"], "after emptying the queue still fires on time");
});

t.test("emptying the queue leaves its clock timer to run out instead of clearing it; a timeout added meanwhile still fires at its own deadline", async (t) => {
  // At 10,000 REGISTER/s answered within a millisecond the queue empties
  // between most requests: a system timer set and cleared per request was
  // most of the failover timers' cost (perf/RESULTS.md).
  const c = new FakeClock(0);
  const fired: string[] = [];
  const q = new TimeoutQueue<string>(c, 1000, (v) => fired.push(`${v}@${c.now()}`));
  for (let i = 0; i < 100; i++) {
    q.cancel(q.add(`r${i}`));
    c.advance(1);
  }
  t.equal(c.pending, 1, "one clock timer for a hundred requests answered at once");
  q.add("late");
  t.equal(c.pending, 1, "the timer still set serves the new timeout too");
  c.advance(900);
  t.same(fired, [], "the old timer fired early for it and was set again");
  t.equal(c.pending, 1);
  c.advance(99);
  t.same(fired, []);
  c.advance(1);
  t.same(fired, ["late@1100"], "at its own deadline");
  t.equal(c.pending, 0);
});
