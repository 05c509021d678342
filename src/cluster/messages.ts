/**
 * What the primary and its workers say to each other over the cluster IPC
 * channel. Everything that arrives is checked with `toPrimary`/`toWorker`
 * before it is acted on: a malformed message is ignored, never thrown on.
 */
import type { ProbeReport } from "../health/target-health.js";
import { TRANSPORTS, TRANSPORT_ERROR_CODES, type Endpoint, type TransportErrorCode } from "../transport/types.js";

/**
 * A message for a phone's stream connection held by another worker
 * (src/cluster/flow-relay.ts). `ref` correlates the failure report;
 * `data` is the message's bytes as a latin1 string (one character per
 * byte: JSON carries it unchanged and ASCII SIP does not grow by a third,
 * as base64 would).
 */
export interface FlowHandOver {
  readonly ref: number;
  readonly flowId: string;
  readonly dest: Endpoint;
  readonly data: string;
}

/** Why a hand-over failed: the owner lacks the flow, the write failed, or the owner is gone. */
export interface FlowFailure {
  readonly ref: number;
  readonly code: TransportErrorCode;
  readonly reason: string;
}

/**
 * What a worker knows of a transaction another worker asks about
 * (src/cluster/txn-owner.ts): when it first forwarded it, on a clock all
 * workers share, and whether a target has answered it there.
 */
export interface TxnStampWire {
  readonly firstAt: number;
  readonly heard: boolean;
}

/** A worker's stamp, with the worker the primary heard it from. */
export interface TxnClaim extends TxnStampWire {
  readonly worker: number;
}

/**
 * Longest transaction key (SoftState.key: Call-ID, newline, branch) asked
 * about: two header lines at the parser's default line limit (8,192
 * bytes each). A longer one is never asked (its timeout fails over as in
 * one process); a longer one arriving is junk.
 */
export const MAX_TXN_KEY = 16_384;

export interface SeedEntry {
  readonly target: string;
  readonly result: ProbeReport;
}

/** Worker -> primary. */
export type ToPrimary =
  /** The worker listens for messages and wants its probe seed before it starts the edge. */
  | { readonly kind: "hello" }
  /** The edge is listening and serving. */
  | { readonly kind: "ready"; readonly listeners: readonly string[] }
  /** A result of this worker's own probe (only the elected prober's are relayed). */
  | { readonly kind: "probe-result"; readonly target: string; readonly result: ProbeReport }
  /** For worker `owner`'s flow: the primary passes it on. */
  | ({ readonly kind: "flow-handover"; readonly owner: number } & FlowHandOver)
  /** The owner could not send a hand-over of worker `to`. */
  | ({ readonly kind: "flow-failed"; readonly to: number } & FlowFailure)
  /** This worker's request timeout fired: does another worker hold transaction `key`? `ref` correlates the answer. */
  | { readonly kind: "txn-ask"; readonly ref: number; readonly key: string }
  /** The answer to the primary's `txn-ask` `ref`: this worker's stamp, or none (it holds no such transaction). */
  | { readonly kind: "txn-claim"; readonly ref: number; readonly stamp: TxnStampWire | undefined };

/** Primary -> worker. */
export type ToWorker =
  /** Recent probe results, oldest first, to apply before the edge takes traffic. */
  | { readonly kind: "seed"; readonly results: readonly SeedEntry[] }
  /** Another worker's probe result. */
  | { readonly kind: "probe-result"; readonly target: string; readonly result: ProbeReport }
  /** Probe the targets (on) or stop (off): exactly one worker probes. */
  | { readonly kind: "probe"; readonly on: boolean }
  | { readonly kind: "reload" }
  /** Stop accepting connections, keep serving for `ms`, then stop and exit. */
  | { readonly kind: "drain"; readonly ms: number }
  | { readonly kind: "stop" }
  /** Send this on your flow; report a failure to worker `from`. */
  | ({ readonly kind: "flow-handover"; readonly from: number } & FlowHandOver)
  /** A hand-over of yours failed (from its owner, or from the primary when the owner is gone). */
  | ({ readonly kind: "flow-failed" } & FlowFailure)
  /** Another worker asks: do you hold transaction `key`? Answer `txn-claim` with this `ref`. */
  | { readonly kind: "txn-ask"; readonly ref: number; readonly key: string }
  /** The answer to your `txn-ask` `ref`: the first of the other workers holding it, or none. */
  | { readonly kind: "txn-owner"; readonly ref: number; readonly owner: TxnClaim | undefined };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

function isProbeReport(v: unknown): v is ProbeReport {
  if (!isObject(v) || typeof v.ok !== "boolean") return false;
  if (v.ok) {
    return (
      typeof v.status === "number" &&
      typeof v.rttMs === "number" &&
      (v.retryAfterSeconds === undefined || typeof v.retryAfterSeconds === "number")
    );
  }
  return v.kind === "timeout" || v.kind === "transport";
}

function isSeedEntry(v: unknown): v is SeedEntry {
  return isObject(v) && typeof v.target === "string" && isProbeReport(v.result);
}

/** Worker ids and correlation refs: whole numbers from 1. */
function isId(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
}

/** Longer than any flow id the transport layer makes (src/transport/flow-id.ts), short enough to refuse junk. */
const MAX_FLOW_ID = 64;

function isEndpoint(v: unknown): v is Endpoint {
  return (
    isObject(v) &&
    typeof v.transport === "string" &&
    (TRANSPORTS as readonly string[]).includes(v.transport) &&
    typeof v.address === "string" &&
    v.address.length > 0 &&
    typeof v.port === "number" &&
    Number.isInteger(v.port) &&
    v.port >= 1 &&
    v.port <= 65535
  );
}

function handOver(v: Record<string, unknown>): FlowHandOver | undefined {
  if (!isId(v.ref) || typeof v.flowId !== "string" || v.flowId.length === 0 || v.flowId.length > MAX_FLOW_ID) return undefined;
  if (!isEndpoint(v.dest) || typeof v.data !== "string" || v.data.length === 0) return undefined;
  return { ref: v.ref, flowId: v.flowId, dest: { transport: v.dest.transport, address: v.dest.address, port: v.dest.port }, data: v.data };
}

function failure(v: Record<string, unknown>): FlowFailure | undefined {
  if (!isId(v.ref) || typeof v.reason !== "string") return undefined;
  if (typeof v.code !== "string" || !(TRANSPORT_ERROR_CODES as readonly string[]).includes(v.code)) return undefined;
  return { ref: v.ref, code: v.code as TransportErrorCode, reason: v.reason };
}

function isTxnKey(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= MAX_TXN_KEY;
}

/** A stamp as sent, or null (JSON has no undefined) for none; anything else is malformed. */
function txnStamp(v: unknown): TxnStampWire | undefined | false {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v) || typeof v.firstAt !== "number" || !Number.isFinite(v.firstAt) || typeof v.heard !== "boolean") return false;
  return { firstAt: v.firstAt, heard: v.heard };
}

export function toPrimary(v: unknown): ToPrimary | undefined {
  if (!isObject(v)) return undefined;
  switch (v.kind) {
    case "hello":
      return { kind: "hello" };
    case "ready":
      return Array.isArray(v.listeners) && v.listeners.every((l) => typeof l === "string") ? { kind: "ready", listeners: v.listeners as string[] } : undefined;
    case "probe-result":
      return typeof v.target === "string" && isProbeReport(v.result) ? { kind: "probe-result", target: v.target, result: v.result } : undefined;
    case "flow-handover": {
      const h = handOver(v);
      return h !== undefined && isId(v.owner) ? { kind: "flow-handover", owner: v.owner, ...h } : undefined;
    }
    case "flow-failed": {
      const f = failure(v);
      return f !== undefined && isId(v.to) ? { kind: "flow-failed", to: v.to, ...f } : undefined;
    }
    case "txn-ask":
      return isId(v.ref) && isTxnKey(v.key) ? { kind: "txn-ask", ref: v.ref, key: v.key } : undefined;
    case "txn-claim": {
      const stamp = txnStamp(v.stamp);
      return isId(v.ref) && stamp !== false ? { kind: "txn-claim", ref: v.ref, stamp } : undefined;
    }
    default:
      return undefined;
  }
}

export function toWorker(v: unknown): ToWorker | undefined {
  if (!isObject(v)) return undefined;
  switch (v.kind) {
    case "seed":
      return Array.isArray(v.results) && v.results.every(isSeedEntry) ? { kind: "seed", results: v.results as SeedEntry[] } : undefined;
    case "probe-result":
      return typeof v.target === "string" && isProbeReport(v.result) ? { kind: "probe-result", target: v.target, result: v.result } : undefined;
    case "probe":
      return typeof v.on === "boolean" ? { kind: "probe", on: v.on } : undefined;
    case "reload":
      return { kind: "reload" };
    case "drain":
      return typeof v.ms === "number" && Number.isFinite(v.ms) && v.ms >= 0 ? { kind: "drain", ms: v.ms } : undefined;
    case "stop":
      return { kind: "stop" };
    case "flow-handover": {
      const h = handOver(v);
      return h !== undefined && isId(v.from) ? { kind: "flow-handover", from: v.from, ...h } : undefined;
    }
    case "flow-failed": {
      const f = failure(v);
      return f === undefined ? undefined : { kind: "flow-failed", ...f };
    }
    case "txn-ask":
      return isId(v.ref) && isTxnKey(v.key) ? { kind: "txn-ask", ref: v.ref, key: v.key } : undefined;
    case "txn-owner": {
      if (!isId(v.ref)) return undefined;
      const stamp = txnStamp(v.owner);
      if (stamp === false) return undefined;
      if (stamp === undefined) return { kind: "txn-owner", ref: v.ref, owner: undefined };
      const worker = (v.owner as Record<string, unknown>).worker;
      return isId(worker) ? { kind: "txn-owner", ref: v.ref, owner: { worker, ...stamp } } : undefined;
    }
    default:
      return undefined;
  }
}

/** The environment variable that tells a worker how many workers there are (the size of its UDP SO_REUSEPORT group). */
export const WORKERS_ENV = "SIP_EDGE_WORKERS";
