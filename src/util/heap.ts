import { setFlagsFromString } from "node:v8";

/**
 * How far V8 lets the heap grow past what the last full GC kept alive
 * before it collects again, as a percentage; V8's own default (0 here)
 * picks a factor of up to 4 from its allocation rate, and at 10,000
 * REGISTER/s the edge allocates fast enough to get nearly that.
 *
 * Measured (perf/RESULTS.md, "Native UDP socket", memory): after a full
 * GC the edge holds ~50 MiB at 10,000 REGISTER/s with a full soft state,
 * yet over a 30 s step its peak resident size (HWM) was 251-378 MiB by
 * V8's default and 217-221 MiB with 50 %, for the same CPU per message
 * (the collections are more frequent but each is of the same live data).
 */
export const HEAP_GROWING_PERCENT = 50;

/**
 * Applied at start by the CLI. V8 reads the flag at every full GC, so it
 * takes effect without a command-line flag. A `--heap-growing-percent`
 * given to node (execArgv) wins. Returns the flag it set, if any.
 */
export function tuneHeap(execArgv: readonly string[] = process.execArgv): string | undefined {
  if (execArgv.some((a) => a.startsWith("--heap-growing-percent"))) return undefined;
  const flag = `--heap-growing-percent=${HEAP_GROWING_PERCENT}`;
  setFlagsFromString(flag);
  return flag;
}
