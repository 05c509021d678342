/**
 * How many workers `sip-edge start` runs, and what is known to go wrong
 * with more than one (README, "Workers").
 *
 * Answers to requests the edge forwards to its targets come back to the
 * worker that forwarded them: each worker sends those requests from a UDP
 * port of its own (src/transport/udp.ts) and the target answers to the
 * source port (RFC 3581), so per-request failover and a TCP phone's
 * REGISTER work with several workers (perf/cluster-affinity.ts: none of
 * 300 INVITEs or 300 REGISTERs also sent to the Standby, 100 of 100 TCP
 * REGISTERs answered; before: 89-213 and 235-300 to the Standby, 54-62 of
 * 100 answered). A request from a PBX to a phone on a TCP/TLS/WS
 * connection (its flow token names the connection and, in its flow id, the
 * worker holding it) read by another worker is handed to that worker
 * through the primary (src/cluster/flow-relay.ts): it costs two IPC
 * messages, and only PBX-to-phone requests on stream flows read by the
 * wrong worker pay it. A phone's UDP retransmission read by another
 * worker than the one that forwarded the original is forwarded again by
 * it, and the target answers only the first; when that worker's request
 * timeout fires it asks the others through the primary which of them
 * forwarded the transaction first, and yields to that one instead of
 * retrying it on the Standby (src/cluster/txn-owner.ts): a failover on a
 * timeout waits up to 250 ms more for the answer. What still goes wrong
 * is in the warnings below.
 * With those two fixed, the default is one worker per core (DESIGN.md
 * §2.9): on the 2-core machine measured, one process tops out at ~7,500
 * REGISTER/s and two workers hold 10,000/s (perf/RESULTS.md, "Overload
 * control"), at ~20 % more CPU per call below the ceiling (the shared
 * socket wakes every worker for each datagram); with the native UDP
 * socket one process holds 10,000/s and 4,000 calls/s there, and two
 * workers cost 40-50 % more per call on that shared box (perf/RESULTS.md,
 * "Native UDP socket"). `--workers 1` runs the
 * edge in one process, with no primary: README, "Workers".
 */
export type WorkersOption = number | "auto";

export const DEFAULT_WORKERS: WorkersOption = "auto";

export interface WorkerCount {
  workers: number;
  /** Why, for the start log line. */
  why: string;
  /** What is known to go wrong with this many workers and this config. */
  warnings: string[];
}

export interface CountedConfig {
  listenerTransports: readonly string[];
  targets: number;
}

export function workerCount(requested: WorkersOption, cores: number, cfg: CountedConfig): WorkerCount {
  const workers = requested === "auto" ? Math.max(1, Math.floor(cores)) : requested;
  const why = requested === "auto" ? "--workers auto (the default): one per core" : "--workers";
  if (workers === 1) return { workers, why, warnings: [] };
  const warnings: string[] = [];
  if (cfg.targets >= 1 && cfg.listenerTransports.includes("udp")) {
    warnings.push(
      "requests to targets leave from each worker's own UDP port and their answers come back there only from a target that answers to the source port (RFC 3581 rport, which our Via asks for); a worker's port closes when it exits, so a rolling restart loses the answer to an INVITE that worker forwarded if it is still unanswered when the drain (--drain) ends",
    );
  }
  return { workers, why, warnings };
}
