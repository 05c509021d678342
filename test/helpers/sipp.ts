/**
 * SIPp (`sipp`, Debian `sip-tester`) as a child process for interop tests and
 * the load scripts in perf/: start a scenario from test/sipp/ on a free
 * 127.0.0.1 port, always bounded (-m and -timeout, so SIPp ends by itself),
 * and read the outcome from SIPp's own statistics file when it exits.
 *
 * Waits are event driven (process exit, a line of output, a socket showing
 * up in /proc/net) and bounded by generous timeouts; kill() signals this
 * process by its PID only.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export type SippTransport = "udp" | "tcp";

/** SIPp's exit codes (sipp(1), "EXIT STATUS"). */
export const SIPP_EXIT = {
  allSucceeded: 0,
  someFailed: 1,
  /** Ended by an internal command or the global -timeout; calls may have run. */
  internalCommand: 97,
  /** Normal exit without any call processed. */
  noCalls: 99,
  /** -1: fatal error, also the global -timeout with -timeout_error; -2: fatal error binding a socket (as a parent sees them: 255, 254). */
  fatal: 255,
  fatalBind: 254,
} as const;

const MAX_CAPTURE = 256 * 1024;

/** The directory that holds the scenarios; found by walking up from this module (source or dist). */
export function scenarioDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "test", "sipp");
    if (existsSync(join(candidate, "pbx.xml"))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("test/sipp/pbx.xml not found above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

export function scenarioPath(name: string): string {
  return isAbsolute(name) ? name : join(scenarioDir(), name);
}

let sippPath: string | null | undefined;

/** Absolute path of the sipp binary, or undefined when it is not installed. */
export function findSipp(): string | undefined {
  if (sippPath === undefined) {
    const r = spawnSync("sh", ["-c", "command -v sipp"], { encoding: "utf8" });
    const p = r.status === 0 ? r.stdout.trim() : "";
    sippPath = p === "" ? null : p;
  }
  return sippPath ?? undefined;
}

/**
 * A port that is free on `host` for both UDP and TCP at the time of the
 * call (SIPp binds one or the other depending on -t, the edge binds both).
 * Another process can take it before it is used: startSipp retries on a
 * bind failure.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const tcp = createServer();
    tcp.listen(0, host);
    await once(tcp, "listening");
    const addr = tcp.address();
    const port = typeof addr === "object" && addr !== null ? addr.port : 0;
    const udp = createSocket(host.includes(":") ? "udp6" : "udp4");
    const udpOk = await new Promise<boolean>((res) => {
      udp.once("error", () => res(false));
      udp.bind(port, host, () => res(true));
    });
    if (udpOk) udp.close();
    else udp.removeAllListeners();
    tcp.close();
    await once(tcp, "close");
    if (udpOk && port !== 0) return port;
  }
  throw new Error("no port free for both UDP and TCP after 20 attempts");
}

/** Distinct free ports (each free for UDP and TCP). */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < count) out.add(await freePort(host));
  return [...out];
}

export interface SippOptions {
  /** A file name in test/sipp/ or an absolute path. */
  scenario: string;
  /** Where a client (UAC) scenario sends; absent for a server scenario. */
  remote?: { host: string; port: number };
  transport?: SippTransport;
  localIp?: string;
  /** -p; a free port is picked when absent. */
  localPort?: number;
  /** -m: stop after this many calls. Required for clients, optional for servers. */
  calls?: number;
  /** -r: calls per second (clients). */
  rate?: number;
  /** -l: limit on simultaneous calls. */
  concurrentLimit?: number;
  /** -d: what <pause/> without a length waits, in ms. */
  pauseMs?: number;
  /**
   * -timeout in seconds, with -timeout_error: SIPp exits (code 255) after
   * this whatever happens. Without -timeout_error SIPp only stops starting
   * calls and waits for the ones in progress, which can be forever (a call
   * that got a 100 and no final answer waits in <recv> with no end).
   */
  timeoutS: number;
  /**
   * -recv_timeout: a call waiting longer than this for an expected message
   * fails instead of waiting on. Default 32,000 ms (RFC 3261 Timer B).
   */
  recvTimeoutMs?: number;
  /** -inf: injection file (absolute path). */
  injectionFile?: string;
  /** -oocsf: scenario for out-of-call requests (a file name in test/sipp/ or a path). */
  oocScenario?: string;
  /** -buff_size: socket buffers; load runs need ~4 MiB on loopback. */
  buffSize?: number;
  /** -trace_rtt: keep response times (ms, SIPp's resolution) for percentiles. */
  traceRtt?: boolean;
  /**
   * -rtt_freq: SIPp writes response times in batches of this many calls and
   * drops the last partial batch; 1 (the default) keeps them all, a load run
   * uses a larger batch to spare SIPp a write per call.
   */
  rttFreq?: number;
  /** -trace_logs: keep <log> lines (phone-register.xml logs the Path it got). */
  traceLogs?: boolean;
  /** -trace_msg: every message to a file (debugging only: slow). */
  traceMessages?: boolean;
  /** Working directory for SIPp's trace files; a fresh temp dir when absent (removed by cleanup()). */
  workDir?: string;
  extraArgs?: readonly string[];
}

export interface SippStats {
  /** Every column of the last line of SIPp's statistics file, by name. */
  columns: Record<string, string>;
  successful: number;
  failed: number;
  created: number;
  incoming: number;
  outgoing: number;
  retransmissions: number;
  unexpected: number;
  /** Average achieved call rate over the whole run (SIPp's CallRate(C)). */
  callRate: number;
  /** Seconds from SIPp's start to its last statistics line. */
  elapsedS: number;
}

export interface SippResult extends SippStats {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** SIPp's error log (unexpected messages, aborts); "" when none. */
  errors: string;
  /** Lines written by <log> actions (with traceLogs). */
  logs: string[];
  /** Response times in ms, all rtd numbers together (with traceRtt). */
  rttMs: number[];
}

function num(v: string | undefined): number {
  if (v === undefined || v === "") return 0;
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

/** SIPp writes timestamps as "date<TAB>time<TAB>epoch.micro"; the epoch part is what we need. */
function epochOf(v: string | undefined): number {
  if (v === undefined) return 0;
  const parts = v.split("\t");
  return num(parts[parts.length - 1]);
}

/** Parses SIPp's -trace_stat CSV (';'-separated, header first) into the last row's counts. */
export function parseStatFile(text: string): SippStats | undefined {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const header = lines[0];
  const last = lines.length > 1 ? lines[lines.length - 1] : undefined;
  if (header === undefined || last === undefined) return undefined;
  const names = header.split(";");
  const values = last.split(";");
  const columns: Record<string, string> = {};
  names.forEach((name, i) => {
    if (name !== "") columns[name] = values[i] ?? "";
  });
  return {
    columns,
    successful: num(columns["SuccessfulCall(C)"]),
    failed: num(columns["FailedCall(C)"]),
    created: num(columns["TotalCallCreated"]),
    incoming: num(columns["IncomingCall(C)"]),
    outgoing: num(columns["OutgoingCall(C)"]),
    retransmissions: num(columns["Retransmissions(C)"]),
    unexpected: num(columns["FailedUnexpectedMessage(C)"]),
    callRate: num(columns["CallRate(C)"]),
    elapsedS: Math.max(0, epochOf(columns["CurrentTime"]) - epochOf(columns["StartTime"])),
  };
}

/** Parses SIPp's -trace_rtt CSV ("Date_ms;response_time_ms;rtd_no") into response times. */
export function parseRttFile(text: string): number[] {
  const out: number[] = [];
  for (const line of text.split("\n")) {
    const cols = line.split(";");
    if (cols.length < 3 || cols[0] === "Date_ms") continue;
    const v = Number(cols[1]);
    if (Number.isFinite(v)) out.push(v);
  }
  return out;
}

/** The p-th percentile (0..100) by nearest rank; NaN for no samples. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

/** Is something bound to host:port (UDP) or listening on it (TCP)? Read from /proc/net, so it takes no port. */
export function isBound(transport: SippTransport, host: string, port: number): boolean {
  const v6 = host.includes(":");
  const file = `/proc/net/${transport}${v6 ? "6" : ""}`;
  let text: string;
  try {
    text = readFileSync(file, "latin1");
  } catch {
    return false;
  }
  const portHex = port.toString(16).toUpperCase().padStart(4, "0");
  const wantAddr = v6 ? undefined : host.split(".").reverse().map((o) => Number(o).toString(16).toUpperCase().padStart(2, "0")).join("");
  for (const line of text.split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    const state = cols[3];
    if (local === undefined) continue;
    const [addr, p] = local.split(":");
    if (p !== portHex) continue;
    if (transport === "tcp" && state !== "0A") continue;
    if (wantAddr === undefined || addr === wantAddr || addr === "00000000") return true;
  }
  return false;
}

/** SIPp processes of this Node process still running, killed by PID if it exits first. */
const liveSipp = new Set<SippProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test that fails or times out must not leave SIPp running on its own
  // (children outlive their parent); -timeout_error bounds the cases where
  // this process is killed before it can run the hook.
  process.once("exit", () => {
    for (const p of liveSipp) p.kill("SIGKILL");
  });
}

export class SippProcess {
  readonly pid: number;
  private stdoutBuf = "";
  private stderrBuf = "";
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exitPromise: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private resultPromise: Promise<SippResult> | undefined;

  constructor(
    private readonly child: ChildProcess,
    readonly localIp: string,
    readonly port: number,
    readonly transport: SippTransport,
    readonly workDir: string,
    private readonly ownsWorkDir: boolean,
    private readonly statFile: string,
  ) {
    if (child.pid === undefined) throw new Error("sipp did not start");
    this.pid = child.pid;
    const keep = (buf: string, chunk: Buffer): string => {
      const s = buf + chunk.toString("latin1");
      return s.length > MAX_CAPTURE ? s.slice(s.length - MAX_CAPTURE) : s;
    };
    child.stdout?.on("data", (c: Buffer) => (this.stdoutBuf = keep(this.stdoutBuf, c)));
    child.stderr?.on("data", (c: Buffer) => (this.stderrBuf = keep(this.stderrBuf, c)));
    this.exitPromise = new Promise((res) => {
      child.once("close", (code, signal) => {
        this.exitInfo = { code, signal };
        liveSipp.delete(this);
        res(this.exitInfo);
      });
    });
    installExitHook();
    liveSipp.add(this);
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  get stdout(): string {
    return this.stdoutBuf;
  }

  get stderr(): string {
    return this.stderrBuf;
  }

  /** Resolves when the process has exited; rejects after timeoutMs. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`sipp ${this.pid} still running after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exitPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once SIPp's socket is bound (UDP) or listening (TCP) on its port;
   * rejects if the process exits first or after timeoutMs.
   */
  async waitListening(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!isBound(this.transport, this.localIp, this.port)) {
      if (this.exited) throw new Error(`sipp ${this.pid} exited (${this.exitInfo?.code}) before listening on ${this.port}\n${this.stderrBuf}${this.stdoutBuf.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`sipp ${this.pid} not listening on ${this.transport} ${this.port} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Resolves with the first <log> line (needs traceLogs) matching `re`. */
  async waitForLogLine(re: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.readLogs().find((l) => re.test(l));
      if (line !== undefined) return line;
      if (this.exited) throw new Error(`sipp ${this.pid} exited without a log line matching ${re}`);
      if (Date.now() > deadline) throw new Error(`no log line matching ${re} from sipp ${this.pid} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Signals this SIPp process (by PID). SIGUSR1 asks SIPp to stop calls and exit with its statistics. */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (!this.exited) {
      try {
        process.kill(this.pid, signal);
      } catch {
        // Already gone between the check and the signal.
      }
    }
  }

  /**
   * Stops the process (SIGUSR1, then SIGKILL if it lingers) and waits for it.
   * Used to end a long-running PBX; clients end by themselves.
   */
  async stop(graceMs = 5_000): Promise<SippResult> {
    if (!this.exited) {
      this.kill("SIGUSR1");
      try {
        await this.waitExit(graceMs);
      } catch {
        this.kill("SIGKILL");
      }
    }
    return this.result();
  }

  /** Resolves when SIPp has exited, with its exit code, counts and traces. */
  result(): Promise<SippResult> {
    this.resultPromise ??= this.exitPromise.then(({ code, signal }) => this.collect(code, signal));
    return this.resultPromise;
  }

  private filesEnding(suffix: string): string[] {
    try {
      return readdirSync(this.workDir)
        .filter((f) => f.endsWith(suffix) && f.includes(`_${this.pid}_`))
        .map((f) => join(this.workDir, f));
    } catch {
      return [];
    }
  }

  private readAll(suffix: string): string {
    return this.filesEnding(suffix)
      .map((f) => readFileSync(f, "latin1"))
      .join("");
  }

  readLogs(): string[] {
    return this.readAll("_logs.log")
      .split("\n")
      .map((l) => l.replace(/\r$/, ""))
      .filter((l) => l !== "");
  }

  private collect(code: number | null, signal: NodeJS.Signals | null): SippResult {
    let statText = "";
    try {
      statText = readFileSync(this.statFile, "latin1");
    } catch {
      // No statistics: SIPp failed before its first dump (bad scenario, bind error).
    }
    const stats = parseStatFile(statText) ?? {
      columns: {},
      successful: 0,
      failed: 0,
      created: 0,
      incoming: 0,
      outgoing: 0,
      retransmissions: 0,
      unexpected: 0,
      callRate: 0,
      elapsedS: 0,
    };
    return {
      ...stats,
      exitCode: code,
      signal,
      stdout: this.stdoutBuf,
      stderr: this.stderrBuf,
      errors: this.readAll("_errors.log"),
      logs: this.readLogs(),
      rttMs: parseRttFile(this.readAll("_rtt.csv")),
    };
  }

  /** Removes the temp work dir if this helper made it. Call after result(). */
  cleanup(): void {
    if (this.ownsWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }
}

function buildArgs(o: SippOptions, port: number, mediaPort: number, statFile: string): string[] {
  const localIp = o.localIp ?? "127.0.0.1";
  const args: string[] = [];
  if (o.remote !== undefined) args.push(`${o.remote.host.includes(":") ? `[${o.remote.host}]` : o.remote.host}:${o.remote.port}`);
  args.push("-sf", scenarioPath(o.scenario));
  args.push("-t", (o.transport ?? "udp") === "udp" ? "u1" : "t1");
  // No -cp: with a port picked here, a client whose pick was taken before
  // its bind exited at once (a client is not retried below; seen in CI);
  // without it SIPp itself tries the ports from 8888 up until one is free.
  args.push("-i", localIp, "-p", String(port), "-mp", String(mediaPort));
  args.push("-nostdin", "-timeout", `${o.timeoutS}s`, "-timeout_error", "-recv_timeout", String(o.recvTimeoutMs ?? 32_000));
  // Statistics every second; the last line is the final one written at exit.
  args.push("-trace_stat", "-stf", statFile, "-fd", "1", "-trace_err");
  if (o.calls !== undefined) args.push("-m", String(o.calls));
  if (o.rate !== undefined) args.push("-r", String(o.rate), "-rp", "1000");
  if (o.concurrentLimit !== undefined) args.push("-l", String(o.concurrentLimit));
  if (o.pauseMs !== undefined) args.push("-d", String(o.pauseMs));
  if (o.injectionFile !== undefined) args.push("-inf", o.injectionFile);
  if (o.oocScenario !== undefined) args.push("-oocsf", scenarioPath(o.oocScenario));
  if (o.buffSize !== undefined) args.push("-buff_size", String(o.buffSize));
  if (o.traceRtt === true) args.push("-trace_rtt", "-rtt_freq", String(o.rttFreq ?? 1));
  if (o.traceLogs === true) args.push("-trace_logs");
  if (o.traceMessages === true) args.push("-trace_msg");
  if (o.extraArgs !== undefined) args.push(...o.extraArgs);
  return args;
}

/**
 * Starts SIPp. A server scenario (no `remote`) is returned once its socket is
 * up; a client starts sending at once. A bind failure (port taken between
 * the pick and SIPp's bind) is retried on another port when the port was
 * picked here.
 */
export async function startSipp(o: SippOptions): Promise<SippProcess> {
  const bin = findSipp();
  if (bin === undefined) throw new Error("sipp is not installed (Debian package sip-tester)");
  if (o.remote === undefined && o.calls === undefined && o.timeoutS <= 0) throw new Error("a SIPp server needs -m or a positive -timeout");
  if (o.remote !== undefined && o.calls === undefined) throw new Error("a SIPp client needs a call limit (calls)");
  const attempts = o.localPort === undefined ? 5 : 1;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const ownsWorkDir = o.workDir === undefined;
    const workDir = o.workDir ?? mkdtempSync(join(tmpdir(), "sipp-"));
    const [port, mediaPort] = [o.localPort ?? (await freePort(o.localIp)), await freePort()] as [number, number];
    const statFile = join(workDir, `stat_${port}_${attempt}.csv`);
    const child = spawn(bin, buildArgs(o, port, mediaPort, statFile), { cwd: workDir, stdio: ["ignore", "pipe", "pipe"] });
    const spawnError = new Promise<Error>((res) => child.once("error", res));
    if (child.pid === undefined) {
      throw await spawnError;
    }
    const p = new SippProcess(child, o.localIp ?? "127.0.0.1", port, o.transport ?? "udp", resolve(workDir), ownsWorkDir, statFile);
    if (o.remote !== undefined) return p;
    try {
      await p.waitListening();
      return p;
    } catch (err) {
      lastError = err;
      const { code } = await p.waitExit(10_000).catch(() => ({ code: null }));
      p.cleanup();
      if (code !== SIPP_EXIT.fatalBind) throw err;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

/** One call to a registered phone: its Contact and the Path the edge put on its REGISTER. */
export interface PbxCallTarget {
  /** The phone's Contact URI; its parameters are dropped (the Route decides the flow). */
  requestUri: string;
  /** The Path header value, e.g. "<sip:TOKEN@127.0.0.1:5060;transport=tcp;lr>". */
  path: string;
}

function stripParams(uri: string): string {
  const semi = uri.indexOf(";");
  return semi === -1 ? uri : uri.slice(0, semi);
}

/**
 * Writes the injection file pbx-call.xml expects (see its header): SIPp cuts
 * rows at every ';' with no escape, so the Path is passed as its URI without
 * parameters and its transport. Throws for a Path it cannot express that way
 * (a programmer error in the test, not network input).
 */
export function pbxCallInjection(targets: readonly PbxCallTarget[], file: string): string {
  const rows = targets.map(({ requestUri, path }) => {
    const m = /^\s*<([^>]+)>\s*$/.exec(path.split(",")[0] ?? "");
    if (m === null || m[1] === undefined) throw new Error(`Path is not a single name-addr: ${path}`);
    const [uri, ...params] = m[1].split(";");
    const names = params.map((p) => (p.split("=")[0] ?? "").toLowerCase());
    const unknown = names.filter((n) => n !== "lr" && n !== "transport");
    if (uri === undefined || unknown.length > 0) throw new Error(`Path has parameters pbx-call.xml cannot carry (${unknown.join(",")}): ${path}`);
    const tp = params.find((p) => p.toLowerCase().startsWith("transport="))?.split("=")[1]?.toLowerCase() ?? "udp";
    return `${stripParams(requestUri.replace(/^<|>$/g, ""))};${uri};${tp}`;
  });
  writeFileSync(file, ["SEQUENTIAL", ...rows, ""].join("\n"));
  return file;
}
