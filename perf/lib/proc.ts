/**
 * CPU and memory of a process tree from /proc (Linux): what a load step
 * charges to the proxy under test, its workers included.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

let ticks: number | undefined;

/** Kernel clock ticks per second (utime/stime unit); 100 on Linux when getconf is missing. */
export function clockTicks(): number {
  if (ticks === undefined) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(r.stdout?.trim());
    ticks = r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticks;
}

interface StatLine {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in ticks. */
  cpuTicks: number;
  /** stime + cstime: the part spent in the kernel (system calls, loopback delivery), in ticks. */
  kernelTicks: number;
}

/** Fields of /proc/PID/stat after the command name, which may hold spaces and parentheses. */
function readStat(pid: number): StatLine | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(")");
  if (close === -1) return undefined;
  // After ") ": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
  const f = text.slice(close + 2).split(" ");
  const n = (i: number): number => Number(f[i - 3] ?? 0);
  // cutime/cstime hold the CPU of children that exited and were reaped, so a
  // worker restarted mid-step is still charged to the tree.
  return { pid, ppid: n(4), cpuTicks: n(14) + n(15) + n(16) + n(17), kernelTicks: n(15) + n(17) };
}

/** The PID and every live descendant of it. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [root];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const s = readStat(Number(e));
    if (s === undefined) continue;
    const list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, [s.pid]);
    else list.push(s.pid);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    out.push(pid);
    for (const c of children.get(pid) ?? []) stack.push(c);
  }
  return out;
}

function statusKb(pid: number, field: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "latin1");
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return m?.[1] === undefined ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}

/**
 * Proportional set size: shared pages split between the processes that map
 * them. Kamailio's workers all map one shared memory pool; summing their RSS
 * would count it once per worker, summing PSS counts it once.
 */
function pssKb(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "latin1");
    const m = /^Pss:\s+(\d+) kB/m.exec(text);
    return m?.[1] === undefined ? statusKb(pid, "VmRSS") : Number(m[1]);
  } catch {
    return statusKb(pid, "VmRSS");
  }
}

export interface TreeSample {
  pids: number[];
  /** CPU seconds (user + system) used so far by the tree. */
  cpuS: number;
  /** Of cpuS, the seconds in the kernel (system time). */
  kernelS: number;
  /** Sum of PSS over the tree, bytes. */
  pssBytes: number;
  /** Largest VmHWM (peak RSS) of any process in the tree, bytes. */
  hwmBytes: number;
}

export function sampleTree(root: number, withMemory = true): TreeSample {
  const pids = processTree(root);
  let cpuTicks = 0;
  let kernelTicks = 0;
  let pss = 0;
  let hwm = 0;
  for (const pid of pids) {
    const st = readStat(pid);
    cpuTicks += st?.cpuTicks ?? 0;
    kernelTicks += st?.kernelTicks ?? 0;
    if (withMemory) {
      pss += pssKb(pid);
      hwm = Math.max(hwm, statusKb(pid, "VmHWM"));
    }
  }
  return { pids, cpuS: cpuTicks / clockTicks(), kernelS: kernelTicks / clockTicks(), pssBytes: pss * 1024, hwmBytes: hwm * 1024 };
}

/**
 * Samples a tree's memory on an interval while a step runs; stop() returns
 * the largest PSS sum seen and the largest VmHWM. The interval is coarse on
 * purpose: the sampler shares the machine with the load.
 */
export function memorySampler(root: number, intervalMs = 1000): { stop(): { maxPssBytes: number; hwmBytes: number } } {
  let maxPss = 0;
  let hwm = 0;
  const take = (): void => {
    const s = sampleTree(root);
    maxPss = Math.max(maxPss, s.pssBytes);
    hwm = Math.max(hwm, s.hwmBytes);
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { maxPssBytes: maxPss, hwmBytes: hwm };
    },
  };
}
