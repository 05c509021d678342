import { randomBytes } from "node:crypto";
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { lookup as dnsLookup, type LookupOneOptions } from "node:dns";
import { isIP } from "node:net";
import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import { isWildcard, listenerId, normalizeAddress } from "./address.js";
import { DelayEstimate, PROBE_BYTES, decodeProbe, encodeProbe } from "./queue-delay.js";
import type { BoundListener, ListenerSpec } from "./types.js";

export interface UdpHost {
  readonly logger: Logger;
  readonly clock: Clock;
  onDatagram(listener: UdpListener, data: Buffer, address: string, port: number): void;
  count(reason: string): void;
}

/**
 * One UDP socket per UDP listener; it both receives and sends (RFC 3581
 * symmetric response routing).
 *
 * With `privateSocket`, the listener also has a second socket on the same
 * address and a free port, bound `exclusive` so that node:cluster does not
 * share it: it is this process's alone. Requests the edge sends towards its
 * targets leave from it (TransportLayer, `SendOptions.fromPrivatePort`), so
 * the target's answer, sent back to the request's source port (RFC 3581,
 * our Via always carries `rport`), reaches the worker that forwarded the
 * request and holds its failover state, not whichever worker reads the
 * shared socket first. Via, Record-Route and Path still name the shared
 * listener. Whatever arrives on the private socket is handled as if it had
 * arrived on the listener.
 */
export class UdpListener {
  readonly socket: Socket;
  /** The process-private socket (see above); undefined without `privateSocket`. */
  readonly privateSocket: Socket | undefined;
  bound: BoundListener | undefined;
  /** The private socket's port, once bound. */
  privatePort: number | undefined;
  private closed = false;
  /** Names this listener's queue-delay probes (src/transport/queue-delay.ts) among other workers'. */
  private readonly probeTag = randomBytes(4).readUInt32BE(0);
  /** Queue delay of the shared and the private socket; undefined until probing starts. */
  private sharedDelay: DelayEstimate | undefined;
  private privateDelay: DelayEstimate | undefined;

  constructor(
    private readonly host: UdpHost,
    private readonly spec: ListenerSpec,
    readonly family: 4 | 6,
    private readonly advertise: string,
    private readonly socketBufferBytes: number | undefined,
    privateSocket = false,
  ) {
    const type = family === 6 ? "udp6" : "udp4";
    this.socket = createSocket({ type, lookup: literalLookup });
    this.socket.on("message", this.receiver(false));
    if (privateSocket) {
      this.privateSocket = createSocket({ type, lookup: literalLookup });
      this.privateSocket.on("message", this.receiver(true));
    }
  }

  /**
   * The message handler of one socket. A probe is tested for by its length
   * and first byte before anything else: one compare on every datagram
   * that is not one.
   */
  private receiver(isPrivate: boolean): (data: Buffer, rinfo: RemoteInfo) => void {
    const mapped = this.family === 6;
    return (data, rinfo) => {
      if (data.length === PROBE_BYTES && data[0] === 0 && this.takeProbe(isPrivate, data, rinfo)) return;
      this.host.onDatagram(this, data, mapped ? normalizeAddress(rinfo.address) : rinfo.address, rinfo.port);
    };
  }

  /** Where a socket of this listener sends its probes: itself (loopback for a wildcard address). */
  private get probeAddress(): string {
    if (!isWildcard(this.spec.address)) return this.spec.address;
    return this.family === 6 ? "::1" : "127.0.0.1";
  }

  /**
   * A probe is taken only from the socket's own address and port, which a
   * remote peer cannot send from (Linux drops arriving datagrams with a
   * local source address); a probe from another worker sharing the socket
   * is dropped, and anything else that merely looks like one goes on to
   * the parser like any datagram.
   */
  private takeProbe(isPrivate: boolean, data: Buffer, rinfo: RemoteInfo): boolean {
    if (rinfo.port !== (isPrivate ? this.privatePort : this.bound?.port) || normalizeAddress(rinfo.address) !== this.probeAddress) return false;
    const delay = isPrivate ? this.privateDelay : this.sharedDelay;
    const p = decodeProbe(data);
    if (p === undefined) return false;
    // Another worker's probe on the shared socket: expected, so it is not
    // counted among the drops (where it would look like lost traffic).
    if (p.tag !== this.probeTag || delay === undefined) return true;
    delay.sample(p.stampMs, this.host.clock.now());
    return true;
  }

  /**
   * Sends each socket a probe stamped now. The first call starts the
   * estimates; `staleAfterMs` is how long without a probe back means the
   * socket is losing datagrams.
   */
  probe(staleAfterMs: number): void {
    if (this.closed || this.bound === undefined) return;
    const now = this.host.clock.now();
    // The shared socket's silence counts only when no other process reads it (no private socket: not a cluster worker).
    this.sharedDelay ??= new DelayEstimate(staleAfterMs, this.privateSocket === undefined);
    this.sendProbe(this.socket, this.bound.port, now);
    if (this.privateSocket !== undefined && this.privatePort !== undefined) {
      this.privateDelay ??= new DelayEstimate(staleAfterMs, true);
      this.sendProbe(this.privateSocket, this.privatePort, now);
    }
  }

  private sendProbe(s: Socket, port: number, now: number): void {
    s.send(encodeProbe(this.probeTag, now), port, this.probeAddress, (err) => {
      if (err) this.host.count("queue-probe-send-failed");
    });
  }

  /** The longest wait a datagram read now has had on either socket, in ms; 0 before probing starts. */
  queueDelayMs(now: number): number {
    const s = this.sharedDelay?.estimate(now) ?? 0;
    const p = this.privateDelay?.estimate(now) ?? 0;
    return s > p ? s : p;
  }

  async start(): Promise<BoundListener> {
    const port = await this.bind(this.socket, { port: this.spec.port, address: this.spec.address }, "");
    this.bound = Object.freeze({
      id: listenerId("udp", this.spec.address, port),
      transport: "udp",
      address: this.spec.address,
      port,
      advertise: this.advertise,
      family: this.family,
    });
    // The private socket: same address, a free port, never shared through node:cluster.
    if (this.privateSocket !== undefined) this.privatePort = await this.bind(this.privateSocket, { port: 0, address: this.spec.address, exclusive: true }, "private socket: ");
    return this.bound;
  }

  /** Binds one of the listener's sockets; resolves with its port. */
  private bind(s: Socket, at: { port: number; address: string; exclusive?: boolean }, what: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const onBindError = (err: Error): void => reject(new Error(`udp listener ${this.spec.address}:${this.spec.port}: ${what}${err.message}`));
      s.once("error", onBindError);
      s.bind(at, () => {
        s.off("error", onBindError);
        s.on("error", (err) => {
          // Send failures without a callback land here; they must not crash the process.
          this.host.count("udp-socket-error");
          this.host.logger.warn({ err: err.message, listener: this.bound?.id, ...(s === this.socket ? {} : { private: true }) }, "udp socket error");
        });
        if (this.socketBufferBytes !== undefined) this.setBuffers(s, this.socketBufferBytes);
        resolve(s.address().port);
      });
    });
  }

  /** Larger socket buffers absorb bursts (DEPENDENCIES.md: 64 KiB drops datagrams under load). */
  private setBuffers(socket: Socket, bytes: number): void {
    try {
      socket.setRecvBufferSize(bytes);
      socket.setSendBufferSize(bytes);
    } catch (err) {
      // The OS refused the size; the defaults still work, only burst capacity is lower.
      this.host.logger.warn({ err: err instanceof Error ? err.message : String(err), bytes }, "udp buffer size not applied");
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([closeSocket(this.socket), this.privateSocket === undefined ? undefined : closeSocket(this.privateSocket)]);
  }
}

function closeSocket(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      // Never bound (start failed): nothing to close.
      resolve();
    }
  });
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * dgram looks up the address of every datagram it sends; the default
 * (dns.lookup) answers an IP literal on the next tick, which puts a tick and
 * a closure between every send() and its sendto(). The edge only ever sends
 * to and binds IP literals (TransportLayer checks them), so a literal is
 * answered at once and anything else still goes to dns.lookup.
 */
function literalLookup(address: string, family: number | LookupOneOptions, callback: LookupCallback): void {
  const f = isIP(address);
  if (f !== 0) callback(null, address, f);
  else dnsLookup(address, typeof family === "number" ? { family } : family, callback);
}
