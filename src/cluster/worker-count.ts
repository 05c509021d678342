/**
 * How many workers `sip-edge start` runs, and what is known to go wrong
 * with more than one. The default is one process: the per-worker state
 * below makes several workers misroute (perf/cluster-affinity.ts, two
 * workers, two fake UDP PBXs answering at once, 127.0.0.1):
 *
 * - A PBX's answer arrives on the shared UDP socket and is read by
 *   whichever worker reads first, not necessarily the one that forwarded
 *   the request and holds its per-request failover timer. The forwarder,
 *   having heard nothing, retries the request on the next target after the
 *   request timeout: 89-213 of 300 INVITEs and 242-300 of 300 REGISTERs
 *   were also sent to the Standby.
 * - A phone's TCP/TLS/WS connection lives in the worker that accepted it:
 *   the PBX's answer read by another worker cannot be sent on it (9 of 40,
 *   54 of 100 REGISTERs from TCP phones answered), nor can a PBX request
 *   carrying that phone's flow token.
 *
 * Until answers are steered to the worker that forwarded the request,
 * more workers is an explicit choice (`--workers N`, `--workers auto` for
 * one per core), and the start log says what it costs.
 */
export type WorkersOption = number | "auto";

export const DEFAULT_WORKERS: WorkersOption = 1;

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
  const why = requested === "auto" ? "--workers auto: one per core" : "--workers";
  if (workers === 1) return { workers, why, warnings: [] };
  const warnings: string[] = [];
  if (cfg.targets >= 2) {
    warnings.push(
      "per-request failover state is per worker: an answer read by another worker than the one that forwarded the request is relayed without it, and the forwarding worker retries the request on the next target after the request timeout (duplicate INVITEs and REGISTERs on the Standby)",
    );
  }
  const streams = [...new Set(cfg.listenerTransports.filter((t) => t !== "udp"))];
  if (streams.length > 0) {
    warnings.push(`${streams.join("/")} connections are per worker: an answer or a flow-token request for a phone's connection read by another worker is lost`);
  }
  return { workers, why, warnings };
}
