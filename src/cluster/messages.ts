/**
 * What the primary and its workers say to each other over the cluster IPC
 * channel. Everything that arrives is checked with `toPrimary`/`toWorker`
 * before it is acted on: a malformed message is ignored, never thrown on.
 */
import type { ProbeReport } from "../health/target-health.js";

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
  | { readonly kind: "probe-result"; readonly target: string; readonly result: ProbeReport };

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
  | { readonly kind: "stop" };

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

export function toPrimary(v: unknown): ToPrimary | undefined {
  if (!isObject(v)) return undefined;
  switch (v.kind) {
    case "hello":
      return { kind: "hello" };
    case "ready":
      return Array.isArray(v.listeners) && v.listeners.every((l) => typeof l === "string") ? { kind: "ready", listeners: v.listeners as string[] } : undefined;
    case "probe-result":
      return typeof v.target === "string" && isProbeReport(v.result) ? { kind: "probe-result", target: v.target, result: v.result } : undefined;
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
    default:
      return undefined;
  }
}
