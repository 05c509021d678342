import t from "tap";
import { HEAP_GROWING_PERCENT, tuneHeap } from "../../src/util/heap.js";

t.test("the heap growing factor is set at start unless node was given one", async (t) => {
  t.equal(tuneHeap([]), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`, "set when node has no such flag");
  t.equal(tuneHeap(["--enable-source-maps", "--heap-growing-percent=10"]), undefined, "an operator's own flag wins");
  t.equal(tuneHeap(["--enable-source-maps"]), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`, "other flags do not count");
});
