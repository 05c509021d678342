/**
 * The primary's decisions about its workers, kept apart from `node:cluster`
 * (src/cluster/primary.ts wires the two) so they can be driven by a test
 * with fake workers and a fake clock: which worker probes, what a new
 * worker starts from, when a dead worker is replaced, the order of a
 * rolling restart, where a message for another worker's flow goes, and
 * which workers a question about a transaction goes to (src/cluster/txn-fanout.ts).
 */
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../util/clock.js";
import { toPrimary, type ToWorker } from "./messages.js";
import type { ProbeLog } from "./probe-log.js";
import { TxnFanOut } from "./txn-fanout.js";

/** One forked worker, as the supervisor sees it. */
export interface WorkerPort {
  readonly id: number;
  send(m: ToWorker): void;
  kill(signal: NodeJS.Signals): void;
}

export interface SupervisorOptions {
  workers: number;
  fork: () => WorkerPort;
  clock: Clock;
  logger: Logger;
  probeLog: ProbeLog;
  /** How long a replaced worker keeps serving before it stops (rolling restart). */
  drainMs: number;
  /** A worker not ready this long after its fork is killed: a hung replacement must not stall a rolling restart. */
  startTimeoutMs: number;
  /** A worker still running this long after it was told to stop (or its drain ended) is killed. */
  killAfterMs: number;
  /** Called once: every worker has exited after `stop()` (0), or the edge could not start at all (1). */
  onDone: (exitCode: number) => void;
  /** How long a question about a transaction waits for the other workers (CLAIMS_WITHIN_MS by default). */
  claimsWithinMs?: number;
}

export type WorkerPhase = "starting" | "ready" | "draining";

interface Member {
  readonly port: WorkerPort;
  phase: WorkerPhase;
  /** Asked for its seed: from then on it gets every relayed probe result. */
  seeded: boolean;
  /** The start deadline, then the kill deadline of a drain or stop. */
  timer: TimerHandle | undefined;
}

interface Rolling {
  /** Workers still to be replaced, oldest first. */
  readonly queue: number[];
  /** The worker being replaced now and its replacement. */
  old: number | undefined;
  fresh: number | undefined;
}

/** Longest wait before replacing a worker that keeps failing to start. */
const MAX_RESPAWN_DELAY_MS = 30_000;

export class Supervisor {
  private readonly members = new Map<number, Member>();
  private prober: number | undefined;
  private rolling: Rolling | undefined;
  private readonly respawns = new Set<TimerHandle>();
  /** Starts that failed in a row; resets when a worker becomes ready. */
  private failedStarts = 0;
  private everReady = false;
  private stopping = false;
  private exitCode = 0;
  private done = false;
  private readonly txns: TxnFanOut;

  constructor(private readonly o: SupervisorOptions) {
    if (!Number.isInteger(o.workers) || o.workers < 1) throw new Error("Supervisor: workers must be a whole number of at least 1");
    this.txns = new TxnFanOut({ clock: o.clock, ...(o.claimsWithinMs === undefined ? {} : { claimsWithinMs: o.claimsWithinMs }) });
  }

  start(): void {
    for (let i = 0; i < this.o.workers; i++) this.spawn();
  }

  /** Who is what, for logs and tests. */
  status(): { workers: Array<{ id: number; phase: WorkerPhase }>; prober: number | undefined; rolling: boolean } {
    const workers = [...this.members.entries()].sort(([a], [b]) => a - b).map(([id, m]) => ({ id, phase: m.phase }));
    return { workers, prober: this.prober, rolling: this.rolling !== undefined };
  }

  message(id: number, raw: unknown): void {
    const member = this.members.get(id);
    const m = toPrimary(raw);
    if (member === undefined || m === undefined) {
      if (m === undefined) this.o.logger.warn({ worker: id }, "malformed message from a worker ignored");
      return;
    }
    switch (m.kind) {
      case "hello":
        member.seeded = true;
        member.port.send({ kind: "seed", results: this.o.probeLog.replay(this.o.clock.now()) });
        return;
      case "ready":
        this.onReady(id, member, m.listeners);
        return;
      case "probe-result":
        // Only the elected prober's results count: during a hand-over the
        // previous prober's last answers must not reach the others twice.
        if (id !== this.prober) return;
        this.o.probeLog.add(m.target, m.result, this.o.clock.now());
        for (const [other, om] of this.members) {
          if (other !== id && om.seeded) om.port.send({ kind: "probe-result", target: m.target, result: m.result });
        }
        return;
      case "flow-handover": {
        // Any phase: a draining worker still serves the connections it holds.
        const owner = this.members.get(m.owner);
        if (owner === undefined) {
          // Gone (crashed, or replaced in a rolling restart): so is every
          // connection it held, and the phone's request is answered 430.
          member.port.send({ kind: "flow-failed", ref: m.ref, code: "flow-gone", reason: `worker ${m.owner} is gone` });
          return;
        }
        owner.port.send({ kind: "flow-handover", from: id, ref: m.ref, flowId: m.flowId, dest: m.dest, data: m.data });
        return;
      }
      case "flow-failed":
        // The sender may have exited meanwhile; nobody is left to tell.
        this.members.get(m.to)?.port.send({ kind: "flow-failed", ref: m.ref, code: m.code, reason: m.reason });
        return;
      case "txn-ask": {
        // Every other worker, whatever its phase: a draining one still
        // holds its transactions, and a starting one may already read the
        // shared socket (one that cannot answer costs only the bound).
        const others: WorkerPort[] = [];
        for (const [other, om] of this.members) if (other !== id) others.push(om.port);
        this.txns.ask(member.port, m.ref, m.key, others);
        return;
      }
      case "txn-claim":
        this.txns.claim(id, m.ref, m.stamp);
        return;
    }
  }

  exited(id: number, code: number | null, signal: string | null): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    this.members.delete(id);
    this.clearTimer(member);
    this.txns.exited(id);
    if (this.stopping) {
      if (this.members.size === 0) this.finish();
      return;
    }
    const log = this.o.logger;
    const rolling = this.rolling;
    if (rolling !== undefined) {
      const queued = rolling.queue.indexOf(id);
      if (queued >= 0) rolling.queue.splice(queued, 1);
    }
    switch (member.phase) {
      case "draining":
        log.info({ worker: id, code, signal }, "drained worker exited");
        break;
      case "starting":
        this.failedStarts++;
        if (rolling?.fresh === id) {
          log.error({ worker: id, code, signal }, "replacement worker failed to start: rolling restart stopped, the running workers keep serving");
          this.rolling = undefined;
          // The worker it was to replace died meanwhile: one is missing.
          if (rolling.old === undefined) this.respawnLater(id, code, signal);
        } else if (!this.everReady) {
          log.error({ worker: id, code, signal }, "worker failed to start: stopping the edge");
          this.exitCode = 1;
          this.stop();
          return;
        } else {
          this.respawnLater(id, code, signal);
        }
        break;
      case "ready":
        if (rolling?.old === id) {
          // Its replacement is already starting.
          rolling.old = undefined;
          log.error({ worker: id, code, signal }, "worker exited during its rolling restart; its replacement takes over");
        } else {
          this.respawnLater(id, code, signal);
        }
        break;
    }
    if (id === this.prober) {
      this.prober = undefined;
      this.elect(id);
    }
  }

  /**
   * Replaces every running worker, one at a time: a new worker starts,
   * gets the recent probe results, and only once it is listening is the
   * old one told to drain. False when one is already running or stopping.
   */
  rollingRestart(): boolean {
    if (this.stopping) return false;
    if (this.rolling !== undefined) {
      this.o.logger.warn("a rolling restart is already running; ignored");
      return false;
    }
    const queue = [...this.members.entries()].filter(([, m]) => m.phase === "ready").map(([id]) => id).sort((a, b) => a - b);
    if (queue.length === 0) {
      this.o.logger.warn("no running worker to restart; ignored");
      return false;
    }
    this.rolling = { queue, old: undefined, fresh: undefined };
    this.o.logger.info({ workers: queue }, "rolling restart started");
    this.step();
    return true;
  }

  /** Config reload in every worker that serves. */
  reload(): void {
    for (const m of this.members.values()) if (m.phase === "ready") m.port.send({ kind: "reload" });
  }

  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.rolling = undefined;
    for (const h of this.respawns) this.o.clock.clearTimer(h);
    this.respawns.clear();
    if (this.members.size === 0) {
      this.finish();
      return;
    }
    for (const [id, m] of this.members) {
      m.port.send({ kind: "stop" });
      this.armKill(id, m, this.o.killAfterMs);
    }
  }

  private spawn(): WorkerPort {
    const port = this.o.fork();
    const m: Member = { port, phase: "starting", seeded: false, timer: undefined };
    this.members.set(port.id, m);
    m.timer = this.o.clock.setTimer(this.o.startTimeoutMs, () => {
      m.timer = undefined;
      this.o.logger.error({ worker: port.id, timeoutMs: this.o.startTimeoutMs }, "worker not ready in time: killed");
      port.kill("SIGKILL");
    });
    return port;
  }

  private onReady(id: number, member: Member, listeners: readonly string[]): void {
    if (member.phase !== "starting") return;
    this.clearTimer(member);
    member.phase = "ready";
    this.failedStarts = 0;
    this.everReady = true;
    this.o.logger.info({ worker: id, listeners }, "worker ready");
    const rolling = this.rolling;
    if (rolling !== undefined && rolling.fresh === id) {
      const old = rolling.old === undefined ? undefined : this.members.get(rolling.old);
      if (old !== undefined && rolling.old !== undefined) this.retire(rolling.old, old);
      rolling.old = undefined;
      rolling.fresh = undefined;
      this.elect();
      this.step();
      return;
    }
    this.elect();
  }

  /** The old worker stops probing and taking connections, serves for the drain period, then exits. */
  private retire(id: number, m: Member): void {
    m.phase = "draining";
    // The prober role moves before the old worker hears "drain", so the
    // gap with nobody probing is one IPC hop, not a probe interval.
    this.elect();
    m.port.send({ kind: "drain", ms: this.o.drainMs });
    this.armKill(id, m, this.o.drainMs + this.o.killAfterMs);
    this.o.logger.info({ worker: id, drainMs: this.o.drainMs }, "worker draining");
  }

  private step(): void {
    const rolling = this.rolling;
    if (rolling === undefined) return;
    for (let id = rolling.queue.shift(); id !== undefined; id = rolling.queue.shift()) {
      if (this.members.get(id)?.phase !== "ready") continue;
      rolling.old = id;
      rolling.fresh = this.spawn().id;
      this.o.logger.info({ worker: id, replacement: rolling.fresh }, "replacing worker");
      return;
    }
    this.o.logger.info("rolling restart done");
    this.rolling = undefined;
  }

  /**
   * Exactly one worker probes: the current prober while it serves, else
   * the newest worker that serves (in a rolling restart, oldest first, that
   * is a replacement, so the role moves once, not once per step). A
   * draining prober keeps the role only when no other worker serves (a
   * prober on its way out beats none).
   */
  private elect(lost?: number): void {
    if (this.stopping) return;
    const current = this.prober === undefined ? undefined : this.members.get(this.prober);
    if (current?.phase === "ready") return;
    const next = [...this.members.entries()].filter(([, m]) => m.phase === "ready").sort(([a], [b]) => b - a)[0];
    if (next === undefined) return;
    const [id, m] = next;
    this.o.logger.info({ worker: id, previous: this.prober ?? lost ?? null }, "prober elected");
    const previous = current;
    this.prober = id;
    m.port.send({ kind: "probe", on: true });
    previous?.port.send({ kind: "probe", on: false });
  }

  private respawnLater(id: number, code: number | null, signal: string | null): void {
    const delayMs = this.failedStarts === 0 ? 0 : Math.min(MAX_RESPAWN_DELAY_MS, 1000 * 2 ** (this.failedStarts - 1));
    this.o.logger.error({ worker: id, code, signal, delayMs }, "worker exited: starting another");
    const h = this.o.clock.setTimer(delayMs, () => {
      this.respawns.delete(h);
      if (!this.stopping) this.spawn();
    });
    this.respawns.add(h);
  }

  private armKill(id: number, m: Member, ms: number): void {
    this.clearTimer(m);
    m.timer = this.o.clock.setTimer(ms, () => {
      m.timer = undefined;
      this.o.logger.warn({ worker: id }, "worker did not exit in time: killed");
      m.port.kill("SIGKILL");
    });
  }

  private clearTimer(m: Member): void {
    if (m.timer !== undefined) this.o.clock.clearTimer(m.timer);
    m.timer = undefined;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.o.onDone(this.exitCode);
  }
}
