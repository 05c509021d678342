import type { Clock, TimerHandle } from "../util/clock.js";
import type { BoundListener, Endpoint, TransportError, TransportErrorCode, TransportName } from "./types.js";

export type ErrorCallback = (e: TransportError) => void;

/** What a connection needs from the layer that owns it. */
export interface FlowHost {
  readonly clock: Clock;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxWriteQueueBytes: number;
  /** One complete SIP message arrived on the flow. */
  deliver(flow: Flow, data: Buffer): void;
  /** A CRLF keepalive (ping or pong) arrived. */
  keepalive(): void;
  flowOpened(flow: Flow): void;
  flowClosed(flow: Flow, reason: string): void;
  count(reason: string): void;
  /** Calls an error callback without letting its exceptions reach socket event handlers. */
  report(onError: ErrorCallback | undefined, e: TransportError): void;
}

interface PendingWrite {
  data: Buffer | string;
  onError: ErrorCallback | undefined;
}

export type FlowState = "connecting" | "open" | "closed";

/**
 * One stream connection (TCP, TLS, WebSocket), inbound or outbound. Holds
 * what is common to all of them: the write queue while connecting, the
 * connect and idle timers (on the injected clock), and closing exactly once.
 */
export abstract class Flow {
  state: FlowState;
  /** Clock time of the last byte in or out. */
  lastActivity: number;
  private timer: TimerHandle | undefined;
  private queue: PendingWrite[] = [];
  private queuedBytes = 0;
  private closeCode: TransportErrorCode = "flow-gone";

  constructor(
    protected readonly host: FlowHost,
    readonly id: string,
    readonly transport: TransportName,
    /** The peer; also the `source` of every message received on the flow. */
    readonly remote: Endpoint,
    readonly listener: BoundListener,
    readonly outbound: boolean,
    connecting: boolean,
  ) {
    this.state = connecting ? "connecting" : "open";
    this.lastActivity = host.clock.now();
    if (connecting) {
      this.timer = host.clock.setTimer(host.connectTimeoutMs, () => {
        this.timer = undefined;
        this.fail("connect-timeout", `no connection within ${host.connectTimeoutMs} ms`);
      });
    } else {
      this.armIdle(host.idleTimeoutMs);
    }
  }

  /** Writes now, queues while connecting, or reports why it cannot. */
  send(data: Buffer | string, onError: ErrorCallback | undefined): void {
    switch (this.state) {
      case "open": {
        if (this.backlog() + data.length > this.host.maxWriteQueueBytes) {
          this.host.count("write-queue-full");
          this.reportLater(onError, "limit", `more than ${this.host.maxWriteQueueBytes} bytes waiting to be written`);
          return;
        }
        this.lastActivity = this.host.clock.now();
        this.write(data, onError);
        return;
      }
      case "connecting": {
        if (this.queuedBytes + data.length > this.host.maxWriteQueueBytes) {
          this.host.count("write-queue-full");
          this.reportLater(onError, "limit", `more than ${this.host.maxWriteQueueBytes} bytes queued while connecting`);
          return;
        }
        this.queue.push({ data, onError });
        this.queuedBytes += data.length;
        return;
      }
      case "closed":
        this.reportLater(onError, "flow-gone", "connection closed");
        return;
    }
  }

  /** Closes the flow (idempotent); queued writes are reported as failed. */
  close(reason: string): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.timer !== undefined) {
      this.host.clock.clearTimer(this.timer);
      this.timer = undefined;
    }
    const queue = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    for (const w of queue) this.host.report(w.onError, { code: this.closeCode, reason, dest: this.remote });
    this.teardown();
    this.host.flowClosed(this, reason);
  }

  /** Closes a flow that failed, reporting `code` to the writes queued on it. */
  fail(code: TransportErrorCode, reason: string): void {
    if (this.state === "closed") return;
    this.closeCode = code;
    this.close(`${code}: ${reason}`);
  }

  protected touch(): void {
    this.lastActivity = this.host.clock.now();
  }

  /** The connection is established (TCP connect, TLS handshake, WebSocket open). */
  protected opened(): void {
    if (this.state !== "connecting") return;
    this.state = "open";
    if (this.timer !== undefined) this.host.clock.clearTimer(this.timer);
    this.touch();
    this.armIdle(this.host.idleTimeoutMs);
    this.host.flowOpened(this);
    const queue = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    for (const w of queue) {
      if (this.state !== "open") {
        this.host.report(w.onError, { code: "flow-gone", reason: "connection closed", dest: this.remote });
        continue;
      }
      this.write(w.data, w.onError);
    }
  }

  /**
   * Rather than restart a timer on every message, the idle timer fires once
   * per period and re-arms for the time left since the last activity.
   */
  private armIdle(ms: number): void {
    this.timer = this.host.clock.setTimer(ms, () => {
      this.timer = undefined;
      if (this.state !== "open") return;
      const idle = this.host.clock.now() - this.lastActivity;
      if (idle >= this.host.idleTimeoutMs) {
        this.host.count("idle-timeout");
        this.close(`idle for ${idle} ms`);
      } else {
        this.armIdle(this.host.idleTimeoutMs - idle);
      }
    });
  }

  private reportLater(onError: ErrorCallback | undefined, code: TransportErrorCode, reason: string): void {
    if (onError === undefined) return;
    const e: TransportError = { code, reason, dest: this.remote };
    // A failure found inside send() is reported after send() returns, like
    // every other failure, so callers never see their callback re-entered.
    queueMicrotask(() => this.host.report(onError, e));
  }

  /** Bytes accepted for writing but not yet handed to the OS. */
  protected abstract backlog(): number;
  protected abstract write(data: Buffer | string, onError: ErrorCallback | undefined): void;
  /** Releases the socket; called once, from close(). */
  protected abstract teardown(): void;
}
