/** Tables and medians for the load scripts' output. */
import type { StepResult } from "./steps.js";

export function median(values: readonly number[]): number | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

export function fmt(v: number | undefined, digits = 0): string {
  return v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits);
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string => "| " + cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(" | ") + " |";
  const sep = "|" + widths.map((w) => "-".repeat(w + 1) + ":").join("|") + "|";
  return [line(header), sep, ...rows.map(line)].join("\n");
}

/** A Markdown table printed a row at a time, as each step ends: widths fixed by the header. */
export function streamTable(header: readonly string[], minWidth = 8): { head: string; row(cells: readonly string[]): string } {
  const widths = header.map((h) => Math.max(h.length, minWidth));
  const line = (cells: readonly string[]): string => "| " + cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(" | ") + " |";
  const sep = "|" + widths.map((w) => "-".repeat(w + 1) + ":").join("|") + "|";
  return { head: `${line(header)}\n${sep}`, row: line };
}

export const STEP_HEADER = [
  "proxy",
  "load",
  "target/s",
  "achieved/s",
  "ok",
  "failed",
  "proxy CPU µs/op",
  "of it kernel",
  "proxy cores",
  "PSS MiB",
  "HWM MiB",
  "p50 ms",
  "p99 ms",
  "retrans",
] as const;

export function stepRow(r: StepResult): string[] {
  return [
    r.proxy,
    r.kind === "call" ? "calls" : "REGISTER",
    String(r.targetRate),
    fmt(r.achievedRate),
    String(r.successful),
    String(r.failed),
    fmt(r.cpuUsPerOp, 1),
    fmt(r.kernelUsPerOp, 1),
    fmt(r.cpuCores, 2),
    fmt(r.pssMiB, 1),
    fmt(r.hwmMiB, 1),
    fmt(r.p50Ms),
    fmt(r.p99Ms),
    String(r.retransmissions),
  ];
}

/** Parses "500,1000,2000" into positive integers; throws on anything else (a usage error). */
export function parseRates(text: string): number[] {
  if (text.trim() === "") return [];
  return text.split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n <= 0) throw new Error(`not a positive whole rate: ${JSON.stringify(s)}`);
    return n;
  });
}

/**
 * The edge's own counts of what it dropped, absorbed or refused, summed
 * over its processes, from the counters each one logs when it stops
 * (src/main.ts); undefined when there is nothing to report.
 */
export function edgeCountersLine(output: string): string | undefined {
  const sums = new Map<string, number>();
  for (const l of output.split("\n")) {
    if (!l.includes('"msg":"stopped: counters since start"')) continue;
    try {
      const j = JSON.parse(l) as { counters?: Record<string, number> };
      for (const [k, v] of Object.entries(j.counters ?? {})) if (/^(drop|absorb|reject|tx\.error|udp-)/.test(k)) sums.set(k, (sums.get(k) ?? 0) + v);
    } catch {
      // Not a JSON line: ignore it.
    }
  }
  return sums.size === 0 ? undefined : `# edge counters over the run: ${[...sums].map(([k, v]) => `${k} ${v}`).join(", ")}`;
}
