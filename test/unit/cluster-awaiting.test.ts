/** The IPC request bookkeeping shared by the flow hand-over and the transaction-owner questions (src/cluster/awaiting.ts). */
import t from "tap";
import { Awaiting } from "../../src/cluster/awaiting.js";
import { FakeClock } from "../../src/util/clock.js";

t.test("a value waits under its reference until taken or expired, at most max at once", async (t) => {
  const clock = new FakeClock();
  const expired: Array<[string, number]> = [];
  const a = new Awaiting<string>(clock, 100, 2, (v, ref) => expired.push([v, ref]));
  const r1 = a.nextRef();
  const r2 = a.nextRef();
  t.not(r1, r2);
  a.wait(r1, "one");
  clock.advance(50);
  a.wait(r2, "two");
  t.equal(a.size, 2);
  t.ok(a.full);
  t.equal(a.get(r1), "one", "get leaves it waiting");
  t.equal(a.take(r2), "two");
  t.equal(a.take(r2), undefined, "taken once");
  clock.advance(50);
  t.same(expired, [["one", r1]], "expired at its own bound");
  t.equal(a.take(r1), undefined);
  clock.advance(1000);
  t.same(expired, [["one", r1]], "a taken value never expires");
  t.equal(a.size, 0);
  t.notOk(a.full);
});

t.test("dropOldest and forEach", async (t) => {
  const clock = new FakeClock();
  const expired: string[] = [];
  const a = new Awaiting<string>(clock, 100, 10, (v) => expired.push(v));
  t.equal(a.dropOldest(), undefined, "nothing waits");
  for (const v of ["a", "b", "c"]) a.wait(a.nextRef(), v);
  t.equal(a.dropOldest(), "a");
  const seen: string[] = [];
  a.forEach((v, ref) => {
    seen.push(v);
    if (v === "b") a.take(ref);
  });
  t.same(seen, ["b", "c"], "oldest first; taking inside is safe");
  clock.advance(100);
  t.same(expired, ["c"], "dropped and taken values never expire");
});
