/**
 * A cluster worker's end of the flow hand-over (README, "Workers"). A
 * phone's TCP/TLS/WS connection lives in the worker that accepted it, but
 * a request from the PBX towards it (an incoming call, a BYE: the flow
 * token names the connection) reaches whichever worker reads the shared
 * socket. The transport layer hands such a message to this relay (its
 * RemoteFlows), which sends it through the primary to the owner; the
 * owner's relay writes it on the connection, and reports back only a
 * failure, which the sender's transport layer turns into the `onError`
 * the proxy answers 430 Flow Failed on (RFC 5626 §5.3).
 */
import type { Logger } from "pino";
import { ownerOf } from "../transport/flow-id.js";
import type { Endpoint, RemoteFlows, SendOptions, TransportErrorCode } from "../transport/types.js";
import type { Clock } from "../util/clock.js";
import type { CounterCell, Counters } from "../util/counters.js";
import { Awaiting } from "./awaiting.js";
import type { FlowFailure, FlowHandOver, ToPrimary } from "./messages.js";

/**
 * How long a hand-over waits for a failure report. The owner reports only
 * failures, so silence means the message was written; a report later than
 * this (a connection that breaks much later) finds nobody and is counted.
 */
export const REPORT_WITHIN_MS = 2000;
/** Hand-overs waiting for a report at most; past it the oldest stops waiting. */
export const MAX_PENDING = 10_000;

type OnFailure = (code: TransportErrorCode, reason: string) => void;

/** What the owner's side needs of the transport layer. */
export interface FlowSender {
  send(dest: Endpoint, data: Buffer | string, opts?: SendOptions): boolean;
}

export interface FlowRelayOptions {
  /** This worker's id, also its tag in flow ids (TransportLayerOptions.flowOwner). */
  self: number;
  /** To the primary; false when there is no channel any more (the message is not sent). */
  send: (m: ToPrimary) => boolean;
  clock: Clock;
  /** The edge's counters (RunOptions.counters), so hand-overs count beside the rest. */
  counters: Counters;
  reportWithinMs?: number;
  maxPending?: number;
}

export class FlowRelay implements RemoteFlows {
  /** Hand-overs waiting for a possible failure report; silence until the bound means written. */
  private readonly pending: Awaiting<OnFailure>;
  private readonly selfTag: string;
  private transport: FlowSender | undefined;
  private logger: Logger | undefined;
  private debug = false;
  private readonly out: CounterCell;
  private readonly in: CounterCell;

  constructor(private readonly o: FlowRelayOptions) {
    this.selfTag = String(o.self);
    this.pending = new Awaiting(o.clock, o.reportWithinMs ?? REPORT_WITHIN_MS, o.maxPending ?? MAX_PENDING, () => {});
    this.out = o.counters.cell("flow.handover.out");
    this.in = o.counters.cell("flow.handover.in");
  }

  /** The edge is up: hand-overs from other workers can be written on its flows from now on. */
  attach(transport: FlowSender, logger: Logger): void {
    this.transport = transport;
    this.logger = logger;
    this.debug = logger.isLevelEnabled("debug");
  }

  /** Hand-overs still waiting for a possible failure report. */
  get waiting(): number {
    return this.pending.size;
  }

  // ---- the sender's side (RemoteFlows) -----------------------------------------

  send(owner: string, flowId: string, dest: Endpoint, data: Buffer | string, onFailure: OnFailure): void {
    const ownerId = Number(owner);
    if (!Number.isSafeInteger(ownerId) || ownerId < 1) {
      this.failNow(onFailure, "flow-gone", `no worker is tagged ${owner}`);
      return;
    }
    const ref = this.pending.nextRef();
    // Over IPC as latin1 text, one character per byte; given text is that already (src/transport/bytes.ts).
    const text = typeof data === "string" ? data : data.toString("latin1");
    if (!this.o.send({ kind: "flow-handover", owner: ownerId, ref, flowId, dest, data: text })) {
      this.failNow(onFailure, "flow-gone", "no channel to the primary");
      return;
    }
    this.out.value++;
    if (this.pending.full) {
      // The oldest is almost surely written by now; it only loses the
      // chance to hear of a failure.
      this.pending.dropOldest();
      this.o.counters.inc("flow.handover.out.untracked");
    }
    this.pending.wait(ref, onFailure);
    if (this.debug) this.logger!.debug({ owner: ownerId, flowId, ref }, "flow handed over");
  }

  /** The owner (or the primary, for an owner that is gone) says a hand-over of ours failed. */
  failed(f: FlowFailure): void {
    const onFailure = this.pending.take(f.ref);
    if (onFailure === undefined) {
      this.o.counters.inc("flow.handover.out.late-report");
      return;
    }
    this.o.counters.inc(`flow.handover.out.failed.${f.code}`);
    if (this.debug) this.logger!.debug({ ref: f.ref, code: f.code, reason: f.reason }, "flow hand-over failed");
    onFailure(f.code, f.reason);
  }

  // ---- the owner's side ----------------------------------------------------------------

  /** Writes another worker's hand-over on our flow; only a failure is reported back. */
  deliver(h: FlowHandOver & { readonly from: number }): void {
    this.in.value++;
    const fail = (code: TransportErrorCode, reason: string): void => {
      this.o.counters.inc(`flow.handover.in.failed.${code}`);
      if (this.debug) this.logger!.debug({ from: h.from, flowId: h.flowId, ref: h.ref, code }, "handed-over message not sent");
      this.o.send({ kind: "flow-failed", to: h.from, ref: h.ref, code, reason });
    };
    // Only an id with our tag: the layer would hand any other one over
    // again, and a message must never circle between workers.
    if (this.transport === undefined || ownerOf(h.flowId) !== this.selfTag) {
      fail("flow-gone", `worker ${this.selfTag} holds no flow ${h.flowId}`);
      return;
    }
    const ok = this.transport.send(h.dest, Buffer.from(h.data, "latin1"), { flowId: h.flowId, onError: (e) => fail(e.code, e.reason) });
    if (!ok) {
      fail("flow-gone", `worker ${this.selfTag} holds no flow ${h.flowId}`);
      return;
    }
    if (this.debug) this.logger!.debug({ from: h.from, flowId: h.flowId, ref: h.ref }, "handed-over message sent on its flow");
  }

  private failNow(onFailure: OnFailure, code: TransportErrorCode, reason: string): void {
    this.o.counters.inc(`flow.handover.out.failed.${code}`);
    // Never before send() has returned (the RemoteFlows contract).
    queueMicrotask(() => onFailure(code, reason));
  }
}
