import t from "tap";
import { workerCount } from "../../src/cluster/worker-count.js";

t.test("auto is one worker per core for a UDP-only edge", async (t) => {
  t.match(workerCount("auto", 4, ["udp", "udp"]), { workers: 4, why: /one worker per core/ });
  t.equal(workerCount("auto", 1, ["udp"]).workers, 1, "one core: the single-process mode");
  t.equal(workerCount("auto", 0, ["udp"]).workers, 1, "never zero");
});

t.test("auto stays in one process with stream listeners; an explicit count is obeyed with a warning", async (t) => {
  const auto = workerCount("auto", 8, ["udp", "tcp", "tls", "tcp"]);
  t.equal(auto.workers, 1);
  t.match(auto.why, /tcp\/tls listeners/);
  t.equal(auto.warning, undefined, "nothing to warn about in one process");
  const two = workerCount(2, 8, ["udp", "tcp"]);
  t.equal(two.workers, 2);
  t.match(two.warning, /tcp listeners and several workers/);
  t.same(workerCount(1, 8, ["tcp"]), { workers: 1, why: "--workers" });
  t.same(workerCount(3, 8, ["udp"]), { workers: 3, why: "--workers" });
});
