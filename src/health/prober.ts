import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { randomBytes } from "node:crypto";
import { connect as tcpConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import type { Logger } from "pino";
import { StreamFramer } from "../sip/framer.js";
import { parse } from "../sip/parse.js";
import { hostRef } from "../sip/uri.js";
import type { Clock, TimerHandle } from "../util/clock.js";

/** Where and how to probe one target. */
export interface ProbeTarget {
  name: string;
  transport: "udp" | "tcp" | "tls";
  /** Resolved IP literal. */
  address: string;
  port: number;
  /** Request-URI of the OPTIONS, e.g. "sip:10.0.0.1:5070". */
  uri: string;
  /** TLS SNI / certificate name. */
  servername?: string;
}

export type ProbeResult =
  | { ok: true; status: number; rttMs: number; retryAfterSeconds: number | undefined }
  | { ok: false; kind: "timeout" | "transport"; reason: string; rttMs: number };

export interface ProberOptions {
  clock: Clock;
  logger: Logger;
  /** Probe timeout, independent of SIP transaction timers (DESIGN.md §2.2). */
  timeoutMs: number;
  /** First UDP retransmission interval (RFC 3261 Timer E starts at T1). */
  t1Ms?: number;
  /** Local address the probe sockets bind to; "" = any. */
  sourceAddress?: string;
  /** Host written in our Via/From; responses go to the source address anyway (rport). */
  viaHost: string;
  /** Close a TCP/TLS probe connection after this many consecutive timeouts on it. */
  closeStreamAfterTimeouts: number;
  tls?: ConnectionOptions;
  userAgent?: string;
}

interface Pending {
  target: ProbeTarget;
  sentAt: number;
  done: (r: ProbeResult) => void;
  timeout: TimerHandle;
  retransmit: TimerHandle | undefined;
  interval: number;
  data: Buffer;
}

interface StreamConn {
  socket: Socket;
  framer: StreamFramer;
  connected: boolean;
  queue: Buffer[];
  timeouts: number;
}

const PROBE_BRANCH = "z9hG4bK-sEp";

/**
 * Sends OPTIONS keepalives and matches each reply to its probe by the Via
 * branch, never by URI. UDP uses one plain socket per address family with a
 * 'message' listener (no reply can be lost to a pending-read gap), and
 * retransmits within the timeout (RFC 3261 §17.1.2.2 Timer E). TCP/TLS keep
 * one probe connection per target, closed after N consecutive timeouts so a
 * half-dead connection is not trusted forever.
 */
export class Prober {
  private readonly pending = new Map<string, Pending>();
  private readonly udp = new Map<4 | 6, UdpSocket>();
  private readonly streams = new Map<string, StreamConn>();
  private readonly tag = randomBytes(6).toString("hex");
  private cseq = 1;
  private stopped = false;

  constructor(private readonly o: ProberOptions) {}

  /** Probes a target once; `done` is called exactly once. */
  probe(target: ProbeTarget, done: (r: ProbeResult) => void): void {
    if (this.stopped) return done({ ok: false, kind: "transport", reason: "prober stopped", rttMs: 0 });
    const branch = PROBE_BRANCH + randomBytes(9).toString("base64url");
    const family = isIP(target.address) === 6 ? 6 : 4;
    const data = this.buildOptions(target, branch);
    const sentAt = this.o.clock.now();
    const p: Pending = {
      target,
      sentAt,
      done,
      timeout: this.o.clock.setTimer(this.o.timeoutMs, () => this.onTimeout(branch)),
      retransmit: undefined,
      interval: this.o.t1Ms ?? 500,
      data,
    };
    this.pending.set(branch, p);
    if (target.transport === "udp") {
      this.sendUdp(family, target, data);
      p.retransmit = this.o.clock.setTimer(p.interval, () => this.retransmit(branch));
    } else {
      this.sendStream(target, data);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const [branch, p] of this.pending) {
      this.pending.delete(branch);
      this.clear(p);
      p.done({ ok: false, kind: "transport", reason: "prober stopped", rttMs: this.o.clock.now() - p.sentAt });
    }
    for (const s of this.udp.values()) s.close();
    this.udp.clear();
    for (const c of this.streams.values()) c.socket.destroy();
    this.streams.clear();
  }

  private buildOptions(target: ProbeTarget, branch: string): Buffer {
    const via = `SIP/2.0/${target.transport.toUpperCase()} ${hostRef(this.o.viaHost)};branch=${branch};rport`;
    const lines = [
      `OPTIONS ${target.uri} SIP/2.0`,
      `Via: ${via}`,
      "Max-Forwards: 70",
      `From: <sip:sip-edge@${hostRef(this.o.viaHost)}>;tag=${this.tag}`,
      `To: <${target.uri}>`,
      `Call-ID: ${branch.slice(PROBE_BRANCH.length)}@sip-edge`,
      `CSeq: ${this.cseq++} OPTIONS`,
      `User-Agent: ${this.o.userAgent ?? "sip-edge"}`,
      "Accept: application/sdp",
      "Content-Length: 0",
      "",
      "",
    ];
    return Buffer.from(lines.join("\r\n"), "latin1");
  }

  private udpSocket(family: 4 | 6): UdpSocket {
    let s = this.udp.get(family);
    if (s !== undefined) return s;
    s = createSocket(family === 6 ? "udp6" : "udp4");
    s.on("message", (msg) => this.onReply(msg));
    // A socket error (e.g. ICMP-driven) must never crash the process.
    s.on("error", (err) => this.o.logger.warn({ err: err.message }, "probe socket error"));
    const src = this.o.sourceAddress;
    // exclusive: in a cluster worker a plain bind(0) would share one socket
    // owned by the primary with every worker, and the reply to this
    // worker's probe could be read by another that never sent it.
    s.bind({ port: 0, exclusive: true, ...(src !== undefined && src !== "" && (isIP(src) === 6) === (family === 6) ? { address: src } : {}) });
    this.udp.set(family, s);
    return s;
  }

  private sendUdp(family: 4 | 6, target: ProbeTarget, data: Buffer): void {
    this.udpSocket(family).send(data, target.port, target.address, (err) => {
      if (err !== null && err !== undefined) this.failAllFor(target, `send failed: ${err.message}`);
    });
  }

  private retransmit(branch: string): void {
    const p = this.pending.get(branch);
    if (p === undefined) return;
    this.sendUdp(isIP(p.target.address) === 6 ? 6 : 4, p.target, p.data);
    p.interval = Math.min(p.interval * 2, 4000); // Timer E doubles up to T2
    p.retransmit = this.o.clock.setTimer(p.interval, () => this.retransmit(branch));
  }

  private streamKey(t: ProbeTarget): string {
    return `${t.transport}|${t.address}|${t.port}`;
  }

  private sendStream(target: ProbeTarget, data: Buffer): void {
    const key = this.streamKey(target);
    let c = this.streams.get(key);
    if (c === undefined) {
      const socket =
        target.transport === "tls"
          ? tlsConnect({ host: target.address, port: target.port, ...(target.servername === undefined ? {} : { servername: target.servername }), minVersion: "TLSv1.2", ...this.o.tls })
          : tcpConnect({ host: target.address, port: target.port });
      const conn: StreamConn = { socket, framer: new StreamFramer({ maxMessageBytes: 65535, maxBufferBytes: 262144 }), connected: false, queue: [], timeouts: 0 };
      c = conn;
      this.streams.set(key, conn);
      socket.on(target.transport === "tls" ? "secureConnect" : "connect", () => {
        conn.connected = true;
        for (const q of conn.queue) socket.write(q);
        conn.queue = [];
      });
      socket.on("data", (chunk: Buffer) => {
        for (const ev of conn.framer.push(chunk)) {
          if (ev.kind === "message") this.onReply(ev.data);
          else if (ev.kind === "ping") socket.write("\r\n");
          else if (ev.kind === "error") socket.destroy();
        }
      });
      socket.on("error", (err) => {
        if (this.streams.get(key) === conn) this.streams.delete(key);
        this.failAllFor(target, err.message);
      });
      socket.on("close", () => {
        if (this.streams.get(key) === conn) this.streams.delete(key);
        this.failAllFor(target, "connection closed");
      });
    }
    if (c.connected) c.socket.write(data);
    else c.queue.push(data);
  }

  private onReply(msg: Buffer): void {
    const r = parse(msg);
    if (!r.ok || r.message.isRequest) return;
    const m = r.message;
    const p = this.pending.get(m.topVia.branch ?? "");
    if (p === undefined || m.status < 200) return; // unknown/late reply, or provisional
    this.pending.delete(m.topVia.branch!);
    this.clear(p);
    const conn = p.target.transport === "udp" ? undefined : this.streams.get(this.streamKey(p.target));
    if (conn !== undefined) conn.timeouts = 0;
    const ra = m.get("Retry-After");
    const retryAfter = ra === undefined ? undefined : Number.parseInt(ra, 10);
    p.done({ ok: true, status: m.status, rttMs: this.o.clock.now() - p.sentAt, retryAfterSeconds: retryAfter !== undefined && Number.isFinite(retryAfter) ? retryAfter : undefined });
  }

  private onTimeout(branch: string): void {
    const p = this.pending.get(branch);
    if (p === undefined) return;
    this.pending.delete(branch);
    this.clear(p);
    if (p.target.transport !== "udp") {
      const key = this.streamKey(p.target);
      const c = this.streams.get(key);
      if (c !== undefined && ++c.timeouts >= this.o.closeStreamAfterTimeouts) {
        // Open but silent: stop trusting this connection.
        this.streams.delete(key);
        c.socket.destroy();
      }
    }
    p.done({ ok: false, kind: "timeout", reason: `no response within ${this.o.timeoutMs} ms`, rttMs: this.o.clock.now() - p.sentAt });
  }

  private failAllFor(target: ProbeTarget, reason: string): void {
    for (const [branch, p] of this.pending) {
      if (p.target.name !== target.name || p.target.transport !== target.transport) continue;
      this.pending.delete(branch);
      this.clear(p);
      p.done({ ok: false, kind: "transport", reason, rttMs: this.o.clock.now() - p.sentAt });
    }
  }

  private clear(p: Pending): void {
    this.o.clock.clearTimer(p.timeout);
    if (p.retransmit !== undefined) this.o.clock.clearTimer(p.retransmit);
  }

  /** Probes in flight (for status and tests). */
  get inFlight(): number {
    return this.pending.size;
  }
}
