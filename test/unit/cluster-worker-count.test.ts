import t from "tap";
import { DEFAULT_WORKERS, workerCount } from "../../src/cluster/worker-count.js";

t.test("one process by default; auto is one per core", async (t) => {
  t.equal(DEFAULT_WORKERS, 1);
  t.same(workerCount(1, 8, { listenerTransports: ["udp", "tcp"], targets: 2 }), { workers: 1, why: "--workers", warnings: [] }, "one process: nothing to warn about");
  t.match(workerCount("auto", 4, { listenerTransports: ["udp"], targets: 1 }), { workers: 4, why: /one per core/, warnings: [] });
  t.equal(workerCount("auto", 1, { listenerTransports: ["udp"], targets: 2 }).workers, 1, "one core: the single-process mode");
  t.equal(workerCount("auto", 0, { listenerTransports: ["udp"], targets: 2 }).workers, 1, "never zero");
});

t.test("several workers: the known costs are named", async (t) => {
  const w = workerCount(2, 8, { listenerTransports: ["udp", "tcp", "tls", "tcp"], targets: 2 });
  t.equal(w.workers, 2);
  t.equal(w.warnings.length, 2);
  t.match(w.warnings[0], /per-request failover state is per worker/);
  t.match(w.warnings[1], /^tcp\/tls connections are per worker/);
  t.same(workerCount(3, 8, { listenerTransports: ["udp"], targets: 1 }).warnings, [], "one target, UDP only: no failover, no connections");
});
