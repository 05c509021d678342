import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

/**
 * One root logger for the process. Modules take a child logger from the
 * composition root instead of importing a global, so tests can pass a silent
 * one. Per-message logging is debug-only and guarded with `isLevelEnabled`.
 */
export function createLogger(level: LevelWithSilent = "info", destination?: NodeJS.WritableStream): Logger {
  return destination === undefined
    ? pino({ level, base: { name: "sip-edge" } })
    : pino({ level, base: { name: "sip-edge" } }, destination);
}

export const silentLogger: Logger = pino({ level: "silent" });
