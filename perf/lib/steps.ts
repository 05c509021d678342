/**
 * One load step: SIPp phones at a fixed rate for a bounded number of calls
 * (or REGISTERs) through the proxy under test, with the proxy's CPU and
 * memory read from /proc around it and response times from SIPp.
 */
import { percentile, startSipp } from "../../test/helpers/sipp.js";
import type { SippProcess, SippTransport } from "../../test/helpers/sipp.js";
import { memorySampler, sampleTree } from "./proc.js";
import type { ProxyKind, ProxyUnderTest } from "./proxies.js";
import type { LoadTrace } from "./trace.js";
import { startChild, type Child } from "./child.js";

export type StepKind = "call" | "register";

export interface StepResult {
  proxy: ProxyKind;
  kind: StepKind;
  targetRate: number;
  attempted: number;
  successful: number;
  failed: number;
  /** Successful calls (or REGISTERs) per second over SIPp's run. */
  achievedRate: number;
  /** CPU µs of the proxy's process tree per successful call or REGISTER; undefined without a proxy. */
  cpuUsPerOp: number | undefined;
  /**
   * Of cpuUsPerOp, the µs in the kernel: system calls and, on loopback, the
   * delivery of each sent datagram to its receiver, which the sender pays.
   * Both proxies pay it for the same datagrams; the rest is their own code.
   */
  kernelUsPerOp: number | undefined;
  /** Proxy CPU seconds over the step divided by the step's wall time (1 = one core busy). */
  cpuCores: number | undefined;
  /** Largest sum of PSS over the proxy's processes seen during the step, MiB. */
  pssMiB: number | undefined;
  /** Largest peak RSS (VmHWM) of any one proxy process so far, MiB. */
  hwmMiB: number | undefined;
  /** Response time 1 (INVITE to 200, or REGISTER to 200) percentiles, ms (SIPp's resolution is 1 ms). */
  p50Ms: number;
  p99Ms: number;
  retransmissions: number;
  unexpected: number;
  sippExitCode: number | null;
}

export interface StepOptions {
  kind: StepKind;
  rate: number;
  /** Calls are rate * stepSeconds, so a step lasts about that long when the rate is met. */
  stepSeconds: number;
  transport: SippTransport;
  workDir: string;
  /** Also started phones are recorded here so an interrupted run can stop them. */
  started: SippProcess[];
  /**
   * Processes (proxies, PBXs) that must be quiet before the step starts, so
   * the tail of one step (retransmissions draining after an overload) is not
   * charged to the next one, which may be the other proxy's.
   */
  settlePids?: readonly number[];
  /** A per-second trace of the run (perf/lib/trace.ts): the step's phone is watched while it runs. */
  trace?: LoadTrace;
  /**
   * A busy loop in a process of its own beside the step, `atS` seconds
   * after the phone starts, for `seconds`: a stand-in for the CPU a noisy
   * neighbour or the hypervisor takes (perf/RESULTS.md, "Retransmission collapse").
   */
  hog?: { seconds: number; atS: number };
}

/** Starts the hog of StepOptions after its delay; the returned function ends it early (by PID) if it still runs. */
function startHog(hog: { seconds: number; atS: number }): () => void {
  let child: Child | undefined;
  const timer = setTimeout(() => {
    child = startChild("hog", process.execPath, ["-e", `const end = Date.now() + ${hog.seconds * 1000}; while (Date.now() < end);`]);
  }, hog.atS * 1000);
  return () => {
    clearTimeout(timer);
    if (child !== undefined && !child.exited) void child.stop();
  };
}

/** CPU of all these trees together below this share of one core counts as quiet. */
const QUIET_CORES = 0.05;
const QUIET_WINDOW_MS = 500;
const SETTLE_BOUND_MS = 60_000;

/**
 * Waits until the given process trees use less than QUIET_CORES of a core
 * over a QUIET_WINDOW_MS window, or SETTLE_BOUND_MS has passed. Returns the
 * time waited in ms.
 */
export async function settle(pids: readonly number[]): Promise<number> {
  const t0 = Date.now();
  const cpu = (): number => pids.reduce((sum, pid) => sum + sampleTree(pid, false).cpuS, 0);
  let before = cpu();
  while (Date.now() - t0 < SETTLE_BOUND_MS) {
    await new Promise((res) => setTimeout(res, QUIET_WINDOW_MS));
    const now = cpu();
    if (now - before < (QUIET_CORES * QUIET_WINDOW_MS) / 1000) break;
    before = now;
  }
  return Date.now() - t0;
}

/** The socket buffers a load run needs: SIPp's default 64 KiB drops datagrams on loopback. */
export const LOAD_BUFF_SIZE = 4 * 1024 * 1024;

const MIB = 1024 * 1024;

export function stepTimeoutS(stepSeconds: number): number {
  return stepSeconds * 3 + 30;
}

export async function runStep(proxy: ProxyUnderTest, o: StepOptions): Promise<StepResult> {
  const calls = Math.max(1, Math.round(o.rate * o.stepSeconds));
  if (o.settlePids !== undefined && o.settlePids.length > 0) await settle(o.settlePids);
  const root = proxy.child?.pid;
  const cpu0 = root === undefined ? undefined : sampleTree(root, false);
  const mem = root === undefined ? undefined : memorySampler(root);
  const t0 = process.hrtime.bigint();
  const phone = await startSipp({
    scenario: o.kind === "call" ? "phone-call.xml" : "phone-register.xml",
    remote: { host: proxy.host, port: proxy.port },
    transport: o.transport,
    calls,
    rate: o.rate,
    // Bounds the calls in flight if the proxy falls behind: the achieved
    // rate drops instead of SIPp piling up calls without end.
    concurrentLimit: Math.max(100, o.rate * 3),
    timeoutS: stepTimeoutS(o.stepSeconds),
    buffSize: LOAD_BUFF_SIZE,
    traceRtt: true,
    rttFreq: 200,
    workDir: o.workDir,
  });
  o.started.push(phone);
  o.trace?.setStep(`${o.kind} ${o.rate}/s`);
  o.trace?.watch("phone", phone.pid, phone.port);
  const endHog = o.hog === undefined ? undefined : startHog(o.hog);
  const r = await phone.result();
  endHog?.();
  o.trace?.unwatch("phone");
  o.trace?.setStep("");
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = root === undefined ? undefined : sampleTree(root, false);
  const m = mem?.stop();
  const cpuS = cpu0 === undefined || cpu1 === undefined ? undefined : cpu1.cpuS - cpu0.cpuS;
  const kernelS = cpu0 === undefined || cpu1 === undefined ? undefined : cpu1.kernelS - cpu0.kernelS;
  const rtt = [...r.rttMs].sort((a, b) => a - b);
  return {
    proxy: proxy.kind,
    kind: o.kind,
    targetRate: o.rate,
    attempted: r.outgoing,
    successful: r.successful,
    failed: r.failed,
    achievedRate: r.elapsedS > 0 ? r.successful / r.elapsedS : 0,
    cpuUsPerOp: cpuS === undefined || r.successful === 0 ? undefined : (cpuS * 1e6) / r.successful,
    kernelUsPerOp: kernelS === undefined || r.successful === 0 ? undefined : (kernelS * 1e6) / r.successful,
    cpuCores: cpuS === undefined ? undefined : cpuS / wallS,
    pssMiB: m === undefined ? undefined : m.maxPssBytes / MIB,
    hwmMiB: m === undefined ? undefined : m.hwmBytes / MIB,
    p50Ms: percentile(rtt, 50),
    p99Ms: percentile(rtt, 99),
    retransmissions: r.retransmissions,
    unexpected: r.unexpected,
    sippExitCode: r.exitCode,
  };
}

/**
 * A short unmeasured run of calls and REGISTERs until one passes with no
 * failure: the proxy has seen its targets answer probes, and a JIT has
 * compiled its hot path, before the first measured step. Bounded attempts.
 */
export async function warmUp(proxy: ProxyUnderTest, o: Omit<StepOptions, "kind" | "rate" | "stepSeconds">, attempts = 10): Promise<void> {
  let last: StepResult | undefined;
  for (let i = 0; i < attempts; i++) {
    const call = await runStep(proxy, { ...o, kind: "call", rate: 200, stepSeconds: 2 });
    const reg = await runStep(proxy, { ...o, kind: "register", rate: 200, stepSeconds: 2 });
    if (call.failed === 0 && reg.failed === 0 && call.successful > 0 && reg.successful > 0) return;
    last = call.failed > 0 ? call : reg;
    await new Promise((res) => setTimeout(res, 1000));
  }
  throw new Error(`${proxy.kind}: warm-up still failing after ${attempts} attempts (${last?.failed} failed of ${last?.attempted} ${last?.kind}s)`);
}
