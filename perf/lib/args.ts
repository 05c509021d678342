/** Option parsers shared by the perf scripts' command lines (commander). */
import { InvalidArgumentError } from "commander";
import { parseRates } from "./report.js";

/** A comma-separated list of rates per second; "" is an empty ladder. */
export function rates(v: string): number[] {
  try {
    return parseRates(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number of at least 1");
  return n;
}

/** Space-separated words (flags handed on to another program); "" is none. */
export function words(v: string): string[] {
  return v.split(/\s+/).filter((w) => w.length > 0);
}
