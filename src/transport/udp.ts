import { randomBytes } from "node:crypto";
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { lookup as dnsLookup, type LookupOneOptions } from "node:dns";
import { isIP } from "node:net";
import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import { isWildcard, listenerId, normalizeAddress } from "./address.js";
import { bytesOf } from "./bytes.js";
import { NativeUdpSocket, nativeUdp, sendError } from "./native-udp.js";
import { DelayEstimate, PROBE_BYTES, decodeProbe, encodeProbe } from "./queue-delay.js";
import type { BoundListener, ListenerSpec } from "./types.js";

export interface UdpHost {
  readonly logger: Logger;
  readonly clock: Clock;
  /** `data`: the datagram as text, one character per byte (latin1), as the parser reads it. */
  onDatagram(listener: UdpListener, data: string, address: string, port: number): void;
  count(reason: string): void;
}

/**
 * How a listener's sockets do their I/O. `native` is the addon of
 * native/udp (src/transport/native-udp.ts): one recvmmsg per readable
 * event, and one sendmmsg for what is sent while those are handled. `group` > 0 puts the listener's socket in
 * an SO_REUSEPORT group of that many sockets on the port (one per cluster
 * worker) instead of node:cluster's shared socket; a port of 0 cannot be
 * agreed on that way, so such a listener stays on dgram in a worker.
 */
export type UdpIo = { kind: "dgram" } | { kind: "native"; group: number };

/** Called with the sender's address (IPv4-mapped IPv6 already made plain IPv4) and port. */
type OnDatagram = (data: string, address: string, port: number) => void;
type SendDone = (err: Error | null) => void;

/** One socket of a listener; bind resolves with its port. */
interface DatagramSocket {
  bind(address: string, port: number, exclusive: boolean): Promise<number>;
  /**
   * `done` runs after send() has returned, with the error when the datagram
   * could not be sent; dgram also calls it with null on success, the native
   * socket does not (a tick per datagram is what it saves). The native
   * socket counts a datagram lost to a full send buffer
   * (`udp-send-would-block`) instead: the destination is not at fault, and
   * SIP's retransmissions cover it as they cover a loss on the wire.
   */
  send(data: Buffer | string, port: number, address: string, done: SendDone): void;
  close(): Promise<void>;
  /** Out of the SO_REUSEPORT group's share of new datagrams; still open (NativeUdpSocket.quiesce). */
  leaveGroup?(): void;
}

/**
 * One UDP socket per UDP listener; it both receives and sends (RFC 3581
 * symmetric response routing).
 *
 * With `privateSocket`, the listener also has a second socket on the same
 * address and a free port that is this process's alone (never shared with
 * other cluster workers). Requests the edge sends towards its
 * targets leave from it (TransportLayer, `SendOptions.fromPrivatePort`), so
 * the target's answer, sent back to the request's source port (RFC 3581,
 * our Via always carries `rport`), reaches the worker that forwarded the
 * request and holds its failover state, not whichever worker reads the
 * shared socket first. Via, Record-Route and Path still name the shared
 * listener. Whatever arrives on the private socket is handled as if it had
 * arrived on the listener.
 */
export class UdpListener {
  private readonly socket: DatagramSocket;
  /** The process-private socket (see above); undefined without `privateSocket`. */
  private readonly privateSocket: DatagramSocket | undefined;
  bound: BoundListener | undefined;
  /** The private socket's port, once bound. */
  privatePort: number | undefined;
  /** Which I/O the listener's sockets use, for the start log. */
  readonly io: "native" | "dgram";
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
    socketBufferBytes: number | undefined,
    privateSocket = false,
    io: UdpIo = { kind: "dgram" },
  ) {
    const native = io.kind === "native" ? nativeUdp().binding : undefined;
    // A port of 0 in a group: every worker would get a different free port (see UdpIo).
    const useNative = native !== undefined && !(io.kind === "native" && io.group > 0 && spec.port === 0);
    this.io = useNative ? "native" : "dgram";
    const make = (isPrivate: boolean, group: number): DatagramSocket => {
      const onDatagram = this.receiver(isPrivate);
      const onError = (err: Error): void => {
        this.host.count("udp-socket-error");
        this.host.logger.warn({ err: err.message, listener: this.bound?.id, ...(isPrivate ? { private: true } : {}) }, "udp socket error");
      };
      return useNative
        ? new NativeSocket(native, family, group, socketBufferBytes, onDatagram, onError, () => this.host.count("udp-send-would-block"))
        : new DgramSocket(family, socketBufferBytes, onDatagram, onError, host.logger);
    };
    this.socket = make(false, io.kind === "native" ? io.group : 0);
    this.privateSocket = privateSocket ? make(true, 0) : undefined;
  }

  /**
   * The message handler of one socket. A probe is tested for by its length
   * and first byte before anything else: one compare on every datagram
   * that is not one.
   */
  private receiver(isPrivate: boolean): OnDatagram {
    return (data, address, port) => {
      if (data.length === PROBE_BYTES && data.charCodeAt(0) === 0 && this.takeProbe(isPrivate, data, address, port)) return;
      this.host.onDatagram(this, data, address, port);
    };
  }

  /** See TransportLayer.stopAccepting: only a socket in an SO_REUSEPORT group has others to leave its datagrams to. */
  stopAccepting(): void {
    this.socket.leaveGroup?.();
  }

  /** Sends from the listener's socket, or from the private one (when there is one) for `fromPrivatePort`. */
  send(data: Buffer | string, port: number, address: string, fromPrivatePort: boolean, done: SendDone): void {
    (fromPrivatePort ? (this.privateSocket ?? this.socket) : this.socket).send(data, port, address, done);
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
  private takeProbe(isPrivate: boolean, data: string, address: string, port: number): boolean {
    if (port !== (isPrivate ? this.privatePort : this.bound?.port) || address !== this.probeAddress) return false;
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

  private readonly probeSent: SendDone = (err) => {
    if (err) this.host.count("queue-probe-send-failed");
  };

  private sendProbe(s: DatagramSocket, port: number, now: number): void {
    s.send(encodeProbe(this.probeTag, now), port, this.probeAddress, this.probeSent);
  }

  /** The longest wait a datagram read now has had on either socket, in ms; 0 before probing starts. */
  queueDelayMs(now: number): number {
    const s = this.sharedDelay?.estimate(now) ?? 0;
    const p = this.privateDelay?.estimate(now) ?? 0;
    return s > p ? s : p;
  }

  async start(): Promise<BoundListener> {
    const port = await this.bind(this.socket, this.spec.port, false, "");
    this.bound = Object.freeze({
      id: listenerId("udp", this.spec.address, port),
      transport: "udp",
      address: this.spec.address,
      port,
      advertise: this.advertise,
      family: this.family,
    });
    // The private socket: same address, a free port, never shared through node:cluster.
    if (this.privateSocket !== undefined) this.privatePort = await this.bind(this.privateSocket, 0, true, "private socket: ");
    return this.bound;
  }

  private async bind(s: DatagramSocket, port: number, exclusive: boolean, what: string): Promise<number> {
    try {
      return await s.bind(this.spec.address, port, exclusive);
    } catch (err) {
      throw new Error(`udp listener ${this.spec.address}:${this.spec.port}: ${what}${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.socket.close(), this.privateSocket?.close()]);
  }
}

/** A listener socket over node:dgram. */
class DgramSocket implements DatagramSocket {
  private readonly s: Socket;

  constructor(
    family: 4 | 6,
    private readonly bufferBytes: number | undefined,
    onDatagram: OnDatagram,
    private readonly onError: (err: Error) => void,
    private readonly logger: Logger,
  ) {
    this.s = createSocket({ type: family === 6 ? "udp6" : "udp4", lookup: literalLookup });
    const mapped = family === 6;
    // As text, like the native socket's datagrams (src/transport/native-udp.ts).
    this.s.on("message", (data: Buffer, rinfo: RemoteInfo) => onDatagram(data.toString("latin1"), mapped ? normalizeAddress(rinfo.address) : rinfo.address, rinfo.port));
  }

  bind(address: string, port: number, exclusive: boolean): Promise<number> {
    const s = this.s;
    return new Promise((resolve, reject) => {
      s.once("error", reject);
      // `exclusive`: node:cluster does not share the socket with other workers.
      s.bind({ address, port, ...(exclusive ? { exclusive: true } : {}) }, () => {
        s.off("error", reject);
        // Send failures without a callback land here; they must not crash the process.
        s.on("error", this.onError);
        if (this.bufferBytes !== undefined) this.setBuffers(this.bufferBytes);
        resolve(s.address().port);
      });
    });
  }

  /** Larger socket buffers absorb bursts (DEPENDENCIES.md: 64 KiB drops datagrams under load). */
  private setBuffers(bytes: number): void {
    try {
      this.s.setRecvBufferSize(bytes);
      this.s.setSendBufferSize(bytes);
    } catch (err) {
      // The OS refused the size; the defaults still work, only burst capacity is lower.
      this.logger.warn({ err: err instanceof Error ? err.message : String(err), bytes }, "udp buffer size not applied");
    }
  }

  send(data: Buffer | string, port: number, address: string, done: SendDone): void {
    try {
      // dgram would encode text as UTF-8 (src/transport/bytes.ts).
      this.s.send(bytesOf(data), port, address, done);
    } catch (err) {
      // The socket is closed (shutdown race).
      process.nextTick(done, err instanceof Error ? err : new Error(String(err)));
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      try {
        this.s.close(() => resolve());
      } catch {
        // Never bound (start failed) or closed already: nothing to close.
        resolve();
      }
    });
  }
}

/** A listener socket over the native addon (src/transport/native-udp.ts). */
class NativeSocket implements DatagramSocket {
  private readonly s: NativeUdpSocket;

  constructor(
    binding: NonNullable<ReturnType<typeof nativeUdp>["binding"]>,
    family: 4 | 6,
    private readonly group: number,
    private readonly bufferBytes: number | undefined,
    onDatagram: OnDatagram,
    private readonly onError: (err: Error) => void,
    onWouldBlock: () => void,
  ) {
    this.s = new NativeUdpSocket(binding, family, onDatagram, (errno) => this.onError(new Error(`recvmmsg failed (errno ${errno})`)), onWouldBlock);
  }

  async bind(address: string, port: number): Promise<number> {
    // A socket outside a group is exclusive anyway: nothing here shares it.
    return this.s.bind(address, port, this.group, this.bufferBytes);
  }

  send(data: Buffer | string, port: number, address: string, done: SendDone): void {
    // A held send's failure reaches `done` at flush, after send() returned.
    const errno = this.s.send(data, port, address, done);
    // Reported after send() has returned, as dgram does: the callers' contract.
    if (errno !== 0) process.nextTick(done, sendError(errno));
  }

  leaveGroup(): void {
    if (this.group === 0) return;
    const errno = this.s.quiesce();
    if (errno !== 0) this.onError(new Error(`leaving the SO_REUSEPORT group failed (errno ${errno})`));
  }

  async close(): Promise<void> {
    this.s.close();
  }
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
