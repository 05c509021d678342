import t from "tap";
import { DEFAULT_WORKERS, workerCount } from "../../src/cluster/worker-count.js";

t.test("one worker per core by default; 1 is one process", async (t) => {
  t.equal(DEFAULT_WORKERS, "auto");
  t.same(workerCount(1, 8, { listenerTransports: ["udp", "tcp"], targets: 2 }), { workers: 1, why: "--workers", warnings: [] }, "one process: nothing to warn about");
  t.match(workerCount("auto", 4, { listenerTransports: ["udp"], targets: 1 }), { workers: 4, why: /one per core/, warnings: [] });
  t.equal(workerCount("auto", 1, { listenerTransports: ["udp"], targets: 2 }).workers, 1, "one core: the single-process mode");
  t.equal(workerCount("auto", 0, { listenerTransports: ["udp"], targets: 2 }).workers, 1, "never zero");
});

t.test("several workers: the known costs are named", async (t) => {
  const w = workerCount(2, 8, { listenerTransports: ["udp", "tcp", "tls", "tcp"], targets: 2 });
  t.equal(w.workers, 2);
  t.equal(w.warnings.length, 1);
  t.match(w.warnings[0], /leave from each worker's own UDP port .*RFC 3581 rport.* a rolling restart loses the answer to an INVITE/);
  t.notOk(w.warnings.some((x) => /retransmission/.test(x)), "a retransmission read by another worker yields to the worker that forwarded it first: nothing to warn of");
  t.notOk(w.warnings.some((x) => /430/.test(x)), "stream phones' requests from the PBX are handed to the worker holding the connection: no 430 to warn of");
  t.same(workerCount(4, 8, { listenerTransports: ["tcp"], targets: 2 }).warnings, [], "no UDP listener: no worker's own UDP port");
  const udpOnly = workerCount(3, 8, { listenerTransports: ["udp"], targets: 1 }).warnings;
  t.equal(udpOnly.length, 1, "one target, UDP only: no failover, no connections");
  t.match(udpOnly[0], /own UDP port/);
  t.same(workerCount(3, 8, { listenerTransports: ["udp"], targets: 0 }).warnings, [], "no target: nothing forwarded to one");
});
