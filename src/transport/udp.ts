import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { lookup as dnsLookup, type LookupOneOptions } from "node:dns";
import { isIP } from "node:net";
import type { Logger } from "../util/logger.js";
import { listenerId, normalizeAddress } from "./address.js";
import type { BoundListener, ListenerSpec } from "./types.js";

export interface UdpHost {
  readonly logger: Logger;
  onDatagram(listener: UdpListener, data: Buffer, address: string, port: number): void;
  count(reason: string): void;
}

/** One UDP socket per UDP listener; it both receives and sends (RFC 3581 symmetric response routing). */
export class UdpListener {
  readonly socket: Socket;
  bound: BoundListener | undefined;
  private closed = false;

  constructor(
    private readonly host: UdpHost,
    private readonly spec: ListenerSpec,
    readonly family: 4 | 6,
    private readonly advertise: string,
    private readonly socketBufferBytes: number | undefined,
  ) {
    this.socket = createSocket({ type: family === 6 ? "udp6" : "udp4", lookup: literalLookup });
    const mapped = family === 6;
    this.socket.on("message", (data: Buffer, rinfo: RemoteInfo) => {
      host.onDatagram(this, data, mapped ? normalizeAddress(rinfo.address) : rinfo.address, rinfo.port);
    });
  }

  start(): Promise<BoundListener> {
    return new Promise((resolve, reject) => {
      const onBindError = (err: Error): void => reject(new Error(`udp listener ${this.spec.address}:${this.spec.port}: ${err.message}`));
      this.socket.once("error", onBindError);
      this.socket.bind(this.spec.port, this.spec.address, () => {
        this.socket.off("error", onBindError);
        this.socket.on("error", (err) => {
          // Send failures without a callback land here; they must not crash the process.
          this.host.count("udp-socket-error");
          this.host.logger.warn({ err: err.message, listener: this.bound?.id }, "udp socket error");
        });
        if (this.socketBufferBytes !== undefined) this.setBuffers(this.socketBufferBytes);
        const port = this.socket.address().port;
        this.bound = Object.freeze({
          id: listenerId("udp", this.spec.address, port),
          transport: "udp",
          address: this.spec.address,
          port,
          advertise: this.advertise,
          family: this.family,
        });
        resolve(this.bound);
      });
    });
  }

  /** Larger socket buffers absorb bursts (DEPENDENCIES.md: 64 KiB drops datagrams under load). */
  private setBuffers(bytes: number): void {
    try {
      this.socket.setRecvBufferSize(bytes);
      this.socket.setSendBufferSize(bytes);
    } catch (err) {
      // The OS refused the size; the defaults still work, only burst capacity is lower.
      this.host.logger.warn({ err: err instanceof Error ? err.message : String(err), bytes }, "udp buffer size not applied");
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        // Never bound (start failed): nothing to close.
        resolve();
      }
    });
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
