/**
 * The probing seams a cluster worker uses, on a real edge in this process:
 * a seed of probe results applied before traffic, and probing switched on
 * and off at run time (the primary moves the prober role between workers).
 */
import t from "tap";
import { startEdge, UdpPeer, pbxBehaviour } from "../helpers/edge-live.js";
import { waitFor } from "../helpers/wait.js";

const timeout = { ok: false as const, kind: "timeout" as const };

t.test("a follower edge starts from the seed, probes only when told, and stops when told", async (t) => {
  const pbx = await UdpPeer.open(pbxBehaviour);
  const edge = await startEdge(
    [
      { name: "main", uri: "sip:127.0.0.1:9", priority: 1 },
      { name: "standby", uri: `sip:127.0.0.1:${pbx.port}`, priority: 2 },
    ],
    {
      health: {
        options: { failuresToDown: 3, successesToUp: 2, intervalUpMs: 200, intervalDownMs: 200, probeTimeoutMs: 100 },
        closeStreamAfterTimeouts: 3,
        mode: "follower",
        seed: [
          { target: "main", result: timeout },
          { target: "main", result: timeout },
          { target: "main", result: timeout },
          { target: "standby", result: { ok: true, status: 200, rttMs: 1 } },
          { target: "nosuch", result: timeout },
        ],
      },
    },
  );
  t.teardown(async () => {
    await edge.stop();
    pbx.close();
  });
  const st = edge.status().health;
  t.equal(st["main"]?.status, "down", "Main is down from the first request on, as the prober saw it");
  t.equal(st["standby"]?.status, "up");
  t.equal(pbx.received.length, 0, "a follower sends no probe");

  edge.setProbing(true);
  await waitFor(() => pbx.received.filter((m) => m.startsWith("OPTIONS ")).length >= 2, { timeoutMs: 10_000, what: "probes once probing is on" });
  edge.setProbing(true);
  edge.setProbing(false);
  const h = edge.status().health["standby"]!;
  t.equal(h.consecutiveFailures, 0, "stopping the prober does not count a probe in flight as a failure");
  edge.applyProbeResult("standby", timeout);
  t.equal(edge.status().health["standby"]?.consecutiveFailures, 1, "results from the prober still apply");
  edge.applyProbeResult("nosuch", timeout);
});
