/**
 * The real CLI (`sip-edge start`) as a child process, for tests: its JSON
 * log lines (primary and workers) are collected to wait on.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait.js";

const CLI = join(import.meta.dirname, "..", "..", "src", "cli.ts");
/** Generous: it only decides how long a broken test hangs. */
export const WAIT = { timeoutMs: 30_000 };

export type LogLine = Record<string, unknown> & { msg?: string; worker?: number; pid?: number; role?: string };

/** An edge.yaml of these lines in a new temporary directory; the test removes `dir`. */
export function tempConfig(prefix: string, lines: readonly string[]): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const file = join(dir, "edge.yaml");
  writeFileSync(file, [...lines, ""].join("\n"));
  return { dir, file };
}

/** One `sip-edge start` process tree; `stop()` ends the primary and any worker left behind. */
export class EdgeProcess {
  readonly lines: LogLine[] = [];
  stderr = "";
  private exited = false;
  private buf = "";

  private constructor(readonly proc: ChildProcess) {
    proc.stdout!.on("data", (d: Buffer) => {
      this.buf += d.toString("utf8");
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          // Not a log line (a stray print): nothing to wait on.
        }
      }
    });
    proc.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString("utf8")));
    proc.on("exit", () => (this.exited = true));
  }

  static start(config: string, args: string[]): EdgeProcess {
    // execArgv carries the TypeScript loader the test runs under; cluster
    // workers inherit it from the primary.
    return new EdgeProcess(spawn(process.execPath, [...process.execArgv, CLI, "start", "--config", config, ...args], { stdio: ["ignore", "pipe", "pipe"] }));
  }

  primary(msg: string): LogLine[] {
    return this.lines.filter((l) => l.role === "primary" && l.msg === msg);
  }

  line(pred: (l: LogLine) => boolean, what: string): Promise<LogLine> {
    return waitFor(() => this.lines.find(pred), { ...WAIT, what });
  }

  /**
   * Waits until `n` workers are ready (the primary says so) and have logged
   * their own "edge started" line, which may come in after the primary's;
   * returns those lines (listeners, private UDP ports).
   */
  async workersStarted(n: number): Promise<LogLine[]> {
    await waitFor(() => this.primary("worker ready").length >= n, { ...WAIT, what: `${n} workers ready` });
    return waitFor(() => {
      const ls = this.lines.filter((l) => l.msg === "edge started" && typeof l.worker === "number");
      return ls.length >= n && ls;
    }, { ...WAIT, what: `${n} workers' start lines` });
  }

  /** pid of a worker, from its own log lines. */
  pidOf(worker: number): number | undefined {
    return this.lines.find((l) => l.worker === worker && l.role === undefined && typeof l.pid === "number")?.pid;
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      this.proc.kill("SIGTERM");
      await waitFor(() => this.exited, { ...WAIT, what: "the primary to exit" }).catch(() => this.proc.kill("SIGKILL"));
    }
    // Workers exit with their primary; any that did not is ended here.
    for (const pid of new Set(this.lines.map((l) => l.pid).filter((p): p is number => typeof p === "number"))) {
      try {
        process.kill(pid, 0);
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
}

