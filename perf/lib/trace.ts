/**
 * A once-a-second trace of a load run (perf/load.ts --trace FILE), to see
 * where a step that goes wrong loses its datagrams: for every watched
 * process the share of a core it used in that second, and for every
 * labelled UDP socket the datagrams the kernel dropped on it (the `drops`
 * column of /proc/net/udp: its receive buffer was full) and the bytes
 * waiting in its receive queue, plus the machine's UDP error counters from
 * /proc/net/snmp and its CPU (busy, idle, and stolen by the hypervisor,
 * from /proc/stat). One JSON line per second, so a collapse can be read back
 * second by second next to the step's result.
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { clockTicks, sampleTree } from "./proc.js";
import type { ProxyUnderTest } from "./proxies.js";

interface SocketRow {
  port: number;
  rxQueue: number;
  drops: number;
}

/** The IPv4 UDP sockets bound on loopback, by local port (Linux only; empty elsewhere). */
function udpSockets(): Map<number, SocketRow> {
  const out = new Map<number, SocketRow>();
  let text: string;
  try {
    text = readFileSync("/proc/net/udp", "latin1");
  } catch {
    return out;
  }
  for (const line of text.split("\n").slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const [ip, portHex] = (f[1] ?? "").split(":");
    if (ip !== "0100007F") continue;
    const port = parseInt(portHex ?? "", 16);
    const rxQueue = parseInt((f[4] ?? "").split(":")[1] ?? "0", 16);
    const drops = Number(f[f.length - 1]);
    // Two sockets on one port (SO_REUSEPORT workers): add them up.
    const prev = out.get(port);
    out.set(port, { port, rxQueue: (prev?.rxQueue ?? 0) + rxQueue, drops: (prev?.drops ?? 0) + drops });
  }
  return out;
}

/** The Udp counters of /proc/net/snmp that say a datagram was lost. */
function udpErrors(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    const lines = readFileSync("/proc/net/snmp", "latin1").split("\n").filter((l) => l.startsWith("Udp:"));
    const names = (lines[0] ?? "").split(/\s+/).slice(1);
    const values = (lines[1] ?? "").split(/\s+/).slice(1);
    names.forEach((n, i) => {
      if (n === "InErrors" || n === "RcvbufErrors" || n === "SndbufErrors") out[n] = Number(values[i]);
    });
  } catch {
    // No /proc/net/snmp: the line carries no machine counters.
  }
  return out;
}

/** The machine's CPU time so far from /proc/stat's first line, in ticks: busy, idle and steal (taken by the hypervisor). */
function machineTicks(): { busy: number; idle: number; steal: number } {
  try {
    const f = (readFileSync("/proc/stat", "latin1").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
  } catch {
    return { busy: 0, idle: 0, steal: 0 };
  }
}

export class LoadTrace {
  private readonly fd: number;
  private readonly timer: NodeJS.Timeout;
  private readonly ports = new Map<number, string>();
  private readonly pids = new Map<string, number>();
  private lastCpu = new Map<string, number>();
  private lastDrops = new Map<number, number>();
  private lastErrors = udpErrors();
  private lastMachine = machineTicks();
  private lastAt = process.hrtime.bigint();
  private step = "";

  constructor(file: string, intervalMs = 1000) {
    this.fd = openSync(file, "w");
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Names a socket (by its loopback port) and the process it belongs to. */
  watch(name: string, pid: number | undefined, port: number | undefined): void {
    if (pid !== undefined) {
      this.pids.set(name, pid);
      this.lastCpu.set(name, sampleTree(pid, false).cpuS);
    }
    if (port !== undefined) {
      this.ports.set(port, name);
      this.lastDrops.set(port, udpSockets().get(port)?.drops ?? 0);
    }
  }

  /** The PBXs of a run and the proxies under test, named by kind (a proxy without a process, the baseline, is left out). */
  watchRun(run: { pbxPids: readonly number[]; pbxs: { main: number; standby: number } }, proxies: Iterable<ProxyUnderTest>): void {
    this.watch("main", run.pbxPids[0], run.pbxs.main);
    this.watch("standby", run.pbxPids[1], run.pbxs.standby);
    for (const p of proxies) if (p.child !== undefined) this.watch(p.kind, p.child.pid, p.port);
  }

  unwatch(name: string): void {
    this.pids.delete(name);
    for (const [port, n] of this.ports) if (n === name) this.ports.delete(port);
  }

  /** The step the following lines belong to (written on every line). */
  setStep(step: string): void {
    this.step = step;
  }

  private sample(): void {
    const now = process.hrtime.bigint();
    const wallS = Number(now - this.lastAt) / 1e9;
    this.lastAt = now;
    const cpu: Record<string, number> = {};
    for (const [name, pid] of this.pids) {
      const s = sampleTree(pid, false).cpuS;
      cpu[name] = Math.round(((s - (this.lastCpu.get(name) ?? s)) / wallS) * 100) / 100;
      this.lastCpu.set(name, s);
    }
    const sockets = udpSockets();
    const drops: Record<string, number> = {};
    const rxQueue: Record<string, number> = {};
    for (const [port, name] of this.ports) {
      const row = sockets.get(port);
      if (row === undefined) continue;
      drops[name] = row.drops - (this.lastDrops.get(port) ?? row.drops);
      rxQueue[name] = row.rxQueue;
      this.lastDrops.set(port, row.drops);
    }
    const errors = udpErrors();
    const udp: Record<string, number> = {};
    for (const [k, v] of Object.entries(errors)) udp[k] = v - (this.lastErrors[k] ?? v);
    this.lastErrors = errors;
    // The whole machine in cores: what every process used, what was idle, and what the hypervisor took.
    const m = machineTicks();
    const cores = (a: number, b: number): number => Math.round(((a - b) / clockTicks() / wallS) * 100) / 100;
    const machine = { busy: cores(m.busy, this.lastMachine.busy), idle: cores(m.idle, this.lastMachine.idle), steal: cores(m.steal, this.lastMachine.steal) };
    this.lastMachine = m;
    const line = { t: new Date().toISOString().slice(11, 19), step: this.step, machine, cpu, drops, rxQueue, udp };
    writeSync(this.fd, `${JSON.stringify(line)}\n`);
  }

  close(): void {
    clearInterval(this.timer);
    this.sample();
    closeSync(this.fd);
  }
}
