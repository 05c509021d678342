/**
 * Child processes the load scripts start (proxies), tracked so that every
 * one of them, and only those, is stopped by PID when a script ends or is
 * interrupted.
 */
import { spawn } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";

const MAX_CAPTURE = 64 * 1024;

export class Child {
  readonly pid: number;
  private out = "";
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exitPromise: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    private readonly proc: ChildProcess,
  ) {
    if (proc.pid === undefined) throw new Error(`${name} did not start`);
    this.pid = proc.pid;
    const keep = (c: Buffer): void => {
      this.out += c.toString("latin1");
      if (this.out.length > MAX_CAPTURE) this.out = this.out.slice(this.out.length - MAX_CAPTURE);
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    this.exitPromise = new Promise((res) =>
      proc.once("close", (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        res(this.exitInfo);
      }),
    );
    live.add(this);
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  /** The last 64 KiB of stdout and stderr together. */
  get output(): string {
    return this.out;
  }

  waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), timeoutMs)));
    return Promise.race([this.exitPromise, timeout]).finally(() => clearTimeout(timer));
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exited) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // Gone between the check and the signal.
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within graceMs. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.exited) return;
    this.signal("SIGTERM");
    if ((await this.waitExit(graceMs)) === undefined) {
      this.signal("SIGKILL");
      await this.waitExit(graceMs);
    }
  }
}

const live = new Set<Child>();

export function startChild(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}): Child {
  const proc = spawn(command, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
  return new Child(name, proc);
}

/** Sends SIGKILL to every child still running that this process started (by PID). */
export function killStartedChildren(): void {
  for (const c of live) c.signal("SIGKILL");
}
