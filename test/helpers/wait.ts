import type { EventEmitter } from "node:events";

export interface WaitOptions {
  /** Upper bound, generous on purpose: it only decides how long a broken test hangs. */
  timeoutMs?: number;
  /** Named in the timeout error. */
  what?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** After this many turns of the event loop, poll on a short timer instead of spinning. */
const SPIN_TURNS = 50;
const POLL_MS = 2;

/**
 * Resolves with the first truthy value of `predicate`, checked on every turn
 * of the event loop (then every few ms). The predicate is the
 * synchronisation; the timeout only bounds a failure.
 */
export function waitFor<T>(predicate: () => T | undefined | null | false, opts: WaitOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  return new Promise<T>((resolve, reject) => {
    let turns = 0;
    const check = (): void => {
      let value: T | undefined | null | false;
      try {
        value = predicate();
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (value !== undefined && value !== null && value !== false) {
        resolve(value);
        return;
      }
      if (Date.now() >= deadline) {
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? "condition"}`));
        return;
      }
      turns++;
      if (turns < SPIN_TURNS) setImmediate(check);
      else setTimeout(check, POLL_MS);
    };
    check();
  });
}

/** Resolves with the arguments of the next `event` from `emitter`; rejects on timeout (listener removed). */
export function waitForEvent<A extends unknown[] = unknown[]>(emitter: EventEmitter, event: string, opts: WaitOptions = {}): Promise<A> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise<A>((resolve, reject) => {
    const onEvent = (...args: unknown[]): void => {
      clearTimeout(timer);
      resolve(args as A);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? `'${event}'`}`));
    }, timeoutMs);
    emitter.once(event, onEvent);
  });
}
