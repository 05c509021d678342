/**
 * One worker of a multi-worker edge: a full edge (src/main.ts) that does
 * not probe unless the primary says so, applies the prober's results, and
 * drains on request. Its soft state (CANCEL affinity, per-request failover)
 * is its own; responses are routed by Via, so any worker relays them. A
 * request for a phone connection another worker holds is handed to that
 * worker through the primary (src/cluster/flow-relay.ts). Before a
 * request timeout fails over, the other workers are asked whether one of
 * them forwarded the transaction first (src/cluster/txn-owner.ts).
 */
import cluster from "node:cluster";
import { ConfigRefused, run, type Running } from "../main.js";
import { systemClock } from "../util/clock.js";
import { Counters } from "../util/counters.js";
import { FlowRelay } from "./flow-relay.js";
import { WORKERS_ENV, toWorker, type SeedEntry, type ToPrimary, type ToWorker } from "./messages.js";
import { TxnOwnership } from "./txn-owner.js";

/** Without a seed this long after "hello" (a primary that never answers), the worker starts from nothing. */
const SEED_WAIT_MS = 10_000;

/** Prints why an edge could not start and exits 1. */
export function exitOnStartFailure(e: unknown): never {
  if (e instanceof ConfigRefused) {
    for (const line of e.errors) console.error(line);
  } else {
    console.error(e instanceof Error ? e.message : String(e));
  }
  process.exit(1);
}

/** False when there is no channel to the primary (it is gone): nothing was sent. */
function send(m: ToPrimary): boolean {
  if (!process.connected || process.send === undefined) return false;
  process.send(m, undefined, {}, () => {});
  return true;
}

export async function startWorker(configPath: string): Promise<void> {
  const id = cluster.worker?.id ?? 0;
  let running: Running | undefined;
  let stopping = false;
  let draining = false;
  /** What arrived before the edge was up, applied in order once it is. */
  const early: ToWorker[] = [];
  const counters = new Counters();
  const relay = new FlowRelay({ self: id, send, clock: systemClock, counters });
  const owners = new TxnOwnership({ self: id, send, clock: systemClock, counters });
  let gotSeed: (results: readonly SeedEntry[]) => void = () => {};
  const seed = new Promise<readonly SeedEntry[]>((resolve) => {
    gotSeed = resolve;
  });

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await running?.stop();
    process.exit(0);
  };

  const drain = (ms: number): void => {
    if (running === undefined || draining) return;
    draining = true;
    running.edge.setProbing(false);
    running.edge.transport.stopAccepting();
    running.logger.info({ drainMs: ms }, "draining: no new connections; open ones and UDP are served until the drain ends");
    setTimeout(() => void stop(), ms);
  };

  const apply = (m: ToWorker): void => {
    if (m.kind === "seed") {
      gotSeed(m.results);
      return;
    }
    // Hand-overs are answered at once, before the edge is up too (the
    // relay says the flow is not here): held back, they would only wait.
    if (m.kind === "flow-handover") {
      relay.deliver(m);
      return;
    }
    if (m.kind === "flow-failed") {
      relay.failed(m);
      return;
    }
    // Answered at once too: before the edge is up this worker holds no
    // transaction, and the asker's timeout is waiting.
    if (m.kind === "txn-ask") {
      owners.asked(m.ref, m.key);
      return;
    }
    if (m.kind === "txn-owner") {
      owners.answered(m.ref, m.owner);
      return;
    }
    if (running === undefined) {
      // A stop before the edge is up ends the process at once (stop() has nothing to close).
      if (m.kind === "stop") void stop();
      else early.push(m);
      return;
    }
    switch (m.kind) {
      case "probe-result":
        running.edge.applyProbeResult(m.target, m.result);
        return;
      case "probe":
        running.edge.setProbing(m.on && !draining);
        return;
      case "reload":
        running.reload();
        return;
      case "drain":
        drain(m.ms);
        return;
      case "stop":
        void stop();
        return;
    }
  };

  process.on("message", (raw: unknown) => {
    const m = toWorker(raw);
    if (m !== undefined) apply(m);
  });
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  // The primary decides on reloads and restarts; a signal sent to the whole
  // process group (a closing terminal) must neither kill a worker (the
  // default action) nor reload it a second time.
  process.on("SIGHUP", () => {});
  process.on("SIGUSR2", () => {});

  send({ kind: "hello" });
  let timer: NodeJS.Timeout | undefined;
  const results = await Promise.race([
    seed,
    new Promise<readonly SeedEntry[]>((resolve) => {
      timer = setTimeout(() => resolve([]), SEED_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  try {
    running = await run(configPath, {
      probe: { mode: "follower", onResult: (target, result) => send({ kind: "probe-result", target, result }), seed: results },
      logBindings: { worker: id, pid: process.pid },
      // Any worker may read a datagram on the shared port (the native
      // socket's SO_REUSEPORT group spreads them at random; dgram's shared
      // socket gives each to whoever reads first); requests towards
      // targets leave from this worker's own port instead, so their
      // answers come back here, where their failover state and the
      // phone's TCP/TLS/WS connection are.
      udpPrivateSockets: true,
      // With the native socket, this worker's UDP socket is one of a group
      // of this many on the port; the kernel spreads datagrams over them.
      udpGroup: Math.max(1, Number(process.env[WORKERS_ENV]) || 1),
      // Flow ids name this worker, so a request for one of its phones'
      // connections read by another worker is handed here.
      flowOwner: String(id),
      remoteFlows: relay,
      // A request timeout asks the other workers first: a retransmission
      // read here may belong to a transaction another worker forwarded.
      txnPeers: owners,
      counters,
    });
  } catch (e) {
    exitOnStartFailure(e);
  }
  relay.attach(running.edge.transport, running.logger.child({ module: "handover" }));
  const proxy = running.edge.proxy;
  owners.attach((key) => proxy.transactionStamp(key));
  for (const m of early.splice(0)) apply(m);
  send({ kind: "ready", listeners: running.edge.listeners.map((l) => `${l.transport}:${l.address}:${l.port}`) });
}
