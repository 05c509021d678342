/**
 * How many workers `sip-edge start` runs. `auto` (the default) is one per
 * core, except when the edge has stream listeners: a phone's TCP/TLS/WS
 * connection lives in the one worker that accepted it, while the PBX's
 * answer to its request (over UDP, on the shared socket) and the PBX's
 * requests towards it (a flow token naming that connection) reach
 * whichever worker reads first. Measured with two workers, TCP phone and
 * UDP PBX: 9 of 40 REGISTERs answered. Until responses and flow-token
 * requests are steered to the worker holding the connection, `auto` keeps
 * such an edge in one process; an explicit number is obeyed, with a warning.
 */
export type WorkersOption = number | "auto";

export interface WorkerCount {
  workers: number;
  /** Why, for the start log line. */
  why: string;
  /** Set when the count is known to break something (stream listeners with several workers). */
  warning?: string;
}

export function workerCount(requested: WorkersOption, cores: number, listenerTransports: readonly string[]): WorkerCount {
  const streams = [...new Set(listenerTransports.filter((t) => t !== "udp"))];
  const risk =
    streams.length === 0
      ? undefined
      : `with ${streams.join("/")} listeners and several workers, a response or an in-dialog request for a phone's connection can reach a worker that does not hold it and be lost`;
  if (requested !== "auto") {
    return { workers: requested, why: "--workers", ...(requested > 1 && risk !== undefined ? { warning: risk } : {}) };
  }
  if (risk !== undefined) return { workers: 1, why: `auto: one process, because ${risk}` };
  return { workers: Math.max(1, Math.floor(cores)), why: "auto: one worker per core" };
}
