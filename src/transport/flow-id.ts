import { randomBytes } from "node:crypto";

/**
 * Connection (flow) ids. Every flow token carries one (src/edge/flow-token.ts),
 * so they are short. In a cluster worker the id starts with the worker's
 * owner tag (`3.1a2b3c-f`): a request for the flow read by another worker
 * names the process that holds the connection. A single process has no tag
 * (`1a2b3c-f`) and no other process to ask.
 */
export class FlowIds {
  /** Ids differ across restarts, so a stale flow token never names a new connection. */
  private readonly prefix: string;
  private seq = 0;

  constructor(readonly owner: string | undefined) {
    if (owner !== undefined && !isOwnerTag(owner)) throw new Error(`flow owner tag ${JSON.stringify(owner)} must be 1-8 lowercase letters or digits`);
    const random = randomBytes(3).toString("hex");
    this.prefix = owner === undefined ? random : `${owner}.${random}`;
  }

  next(): string {
    this.seq++;
    return `${this.prefix}-${this.seq.toString(36)}`;
  }
}

/** The owner tag a flow id starts with; undefined for an untagged id (a single process's, or garbage). */
export function ownerOf(flowId: string): string | undefined {
  const dot = flowId.indexOf(".");
  if (dot <= 0) return undefined;
  const owner = flowId.slice(0, dot);
  return isOwnerTag(owner) ? owner : undefined;
}

/** No "." (it ends the tag), no "|" (the flow token's separator), no "-" (it ends the random part). */
function isOwnerTag(s: string): boolean {
  return /^[0-9a-z]{1,8}$/.test(s);
}
