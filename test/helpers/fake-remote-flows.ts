import type { Endpoint, RemoteFlows, TransportErrorCode } from "../../src/transport/types.js";

/** A message the transport layer handed to another cluster worker; `fail` reports that owner's failure back. */
export interface HandedOver {
  owner: string;
  flowId: string;
  dest: Endpoint;
  data: string;
  fail: (code: TransportErrorCode, reason: string) => void;
}

/** RemoteFlows that only records what it is handed (the cluster's IPC relay stands behind it in production). */
export class FakeRemote implements RemoteFlows {
  readonly got: HandedOver[] = [];
  send(owner: string, flowId: string, dest: Endpoint, data: Buffer | string, onFailure: (code: TransportErrorCode, reason: string) => void): void {
    this.got.push({ owner, flowId, dest, data: data.toString(), fail: onFailure });
  }
}
