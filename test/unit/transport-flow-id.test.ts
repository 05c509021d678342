import t from "tap";
import { FlowIds, ownerOf } from "../../src/transport/flow-id.js";

t.test("a cluster worker's flow ids carry its tag; a single process's carry none", async (t) => {
  const w = new FlowIds("3");
  const a = w.next();
  const b = w.next();
  t.match(a, /^3\.[0-9a-f]{6}-1$/, "tag, random part, sequence");
  t.not(a, b, "each id is new");
  t.equal(ownerOf(a), "3");
  const single = new FlowIds(undefined).next();
  t.match(single, /^[0-9a-f]{6}-1$/, "untagged, as before");
  t.equal(ownerOf(single), undefined);
  t.not(new FlowIds("3").next(), a, "another start of the same worker id names other flows");
  t.ok(a.length <= 12, `short (${a.length} characters): it goes into every flow token`);
});

t.test("what is not a tag", async (t) => {
  for (const bad of ["", "A", "1.2", "a|b", "a-b", "123456789"]) t.throws(() => new FlowIds(bad), /owner tag/, JSON.stringify(bad));
  for (const id of ["", ".abc-1", "tcp-17", "A.abc-1", "x|y.abc-1", "123456789.abc-1"]) t.equal(ownerOf(id), undefined, `${JSON.stringify(id)} has no owner`);
  t.equal(ownerOf("w12.abc-1"), "w12");
});
