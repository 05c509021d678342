import t from "tap";
import { FakeClock, systemClock } from "../../src/util/clock.js";

t.test("FakeClock fires timers in due order and only when advanced", async (t) => {
  const c = new FakeClock(1000);
  const fired: string[] = [];
  c.setTimer(50, () => fired.push(`b@${c.now()}`));
  c.setTimer(10, () => {
    fired.push(`a@${c.now()}`);
    c.setTimer(5, () => fired.push(`c@${c.now()}`));
  });
  const d = c.setTimer(20, () => fired.push("never"));
  c.clearTimer(d);
  c.advance(9);
  t.same(fired, []);
  c.advance(100);
  t.same(fired, ["a@1010", "c@1015", "b@1050"]);
  t.equal(c.now(), 1109);
  t.equal(c.pending, 0);
  t.equal(c.wallNow(), Date.UTC(2026, 0, 1) + 109);
});

t.test("systemClock timers fire and can be cleared", async (t) => {
  await new Promise<void>((resolve) => systemClock.setTimer(1, resolve));
  const h = systemClock.setTimer(1, () => t.fail("cleared timer fired"));
  systemClock.clearTimer(h);
  t.ok(systemClock.now() > 0);
  t.ok(systemClock.wallNow() > 1.7e12);
});
