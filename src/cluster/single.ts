/**
 * `--workers 1`: the edge in this process, no primary. It probes the
 * targets itself and handles the signals directly.
 */
import { run, type Running } from "../main.js";
import { exitOnStartFailure } from "./worker.js";

export async function startSingle(configPath: string): Promise<void> {
  let running: Running;
  try {
    running = await run(configPath);
  } catch (e) {
    exitOnStartFailure(e);
  }
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await running.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  process.on("SIGHUP", () => running.reload());
  // Default action of SIGUSR2 is to terminate: a rolling restart asked of a
  // single process must not stop it.
  process.on("SIGUSR2", () => console.error("sip-edge: a rolling restart needs --workers 2 or more; SIGUSR2 ignored"));
}
