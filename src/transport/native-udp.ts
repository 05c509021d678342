import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The native UDP socket (native/udp/sip_udp.c), built by
 * scripts/build-native.mjs at install time. It reads up to BATCH datagrams
 * per readable event with one recvmmsg and hands them to JS in one call;
 * what is sent while they are handled goes out in one sendmmsg per socket
 * (`batching` below), anything else with one synchronous sendto.
 * SO_REUSEPORT lets each cluster worker own a socket on the shared port,
 * and the kernel spreads datagrams over the workers at random instead of
 * waking all of them (Node 20's dgram has no reusePort).
 *
 * When the addon is not built (no compiler or headers on the machine), the
 * edge uses dgram and logs why (`udp.io` in the config).
 */
interface Binding {
  open(family: 4 | 6, address: string, port: number, group: number, bufferBytes: number, area: Buffer, meta: Int32Array, onBatch: (n: number, texts?: string[]) => void): [unknown, number];
  send(handle: unknown, data: Buffer | string, port: number, address: string, hold: boolean): number;
  flush(handle: unknown, status: Int32Array): number;
  quiesce(handle: unknown): number;
  close(handle: unknown): void;
  readonly BATCH: number;
  readonly SLOT: number;
  readonly META_INTS: number;
  readonly SEND_BATCH: number;
}

let loaded: { binding?: Binding; error?: string } | undefined;

/** Where the built addon is, from src/transport (tests) or dist/src/transport (the built edge). */
function addonPath(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = join(dir, "native", "build", "sip_udp.node");
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  return undefined;
}

/** The addon, or why it is not there. Loaded once. */
export function nativeUdp(): { binding?: Binding; error?: string } {
  if (loaded !== undefined) return loaded;
  const path = addonPath();
  if (path === undefined) {
    loaded = { error: "native/build/sip_udp.node is not built (npm run build:native)" };
    return loaded;
  }
  try {
    loaded = { binding: createRequire(import.meta.url)(path) as Binding };
  } catch (err) {
    loaded = { error: `${path}: ${err instanceof Error ? err.message : String(err)}` };
  }
  return loaded;
}

/** `data` is the datagram as text, one character per byte (latin1), as the parser reads it. */
export type DatagramHandler = (data: string, address: string, port: number) => void;
/** Told when a send failed after send() returned (a held send, at flush). */
export type SendFailed = (err: Error) => void;

/** Names of IPv4 senders by their address word; cleared when it grows past this. */
const V4_NAMES_MAX = 4096;

/** errno values of a full send buffer: the datagram is lost, as on the wire, not a broken destination. */
const EAGAIN = 11;
const ENOBUFS = 105;

/**
 * While any socket's batch is being handled, every send of every native
 * socket is held and goes out in one sendmmsg per socket when the batch
 * ends (a worker reads on the shared port and sends to targets from its
 * private one). Outside a batch (timers, stream traffic) sends go at once.
 */
let batching = 0;
const holding: NativeUdpSocket[] = [];

function flushHeld(): void {
  for (let i = 0; i < holding.length; i++) holding[i]!.flush();
  holding.length = 0;
}

export function sendError(errno: number): Error {
  return Object.assign(new Error(`sendto failed (errno ${errno})`), { errno });
}

/**
 * One native socket. The addon hands each datagram over as a string made
 * from the receive area: the proxy may keep a message (soft state, a
 * failover retry) past the next batch, which overwrites the area.
 */
export class NativeUdpSocket {
  private readonly area: Buffer;
  private readonly meta: Int32Array;
  /** The same table as bytes, for the address bytes. */
  private readonly metaBytes: Uint8Array;
  private handle: unknown;
  private readonly v4Names = new Map<number, string>();
  private readonly metaInts: number;
  /** The callbacks of the sends held now, in order; one per held send. */
  private held: Array<SendFailed | undefined> = [];
  private readonly status: Int32Array;

  constructor(
    private readonly binding: Binding,
    readonly family: 4 | 6,
    private readonly onDatagram: DatagramHandler,
    /** A receive error: the errno of recvmmsg. */
    private readonly onReadError: (errno: number) => void,
    /** A datagram lost to a full send buffer (EAGAIN, ENOBUFS): not the send's failure, only counted. */
    private readonly onWouldBlock: () => void = () => {},
  ) {
    this.status = new Int32Array(binding.SEND_BATCH);
    this.metaInts = binding.META_INTS;
    // Where recvmmsg writes; only the addon reads it (it makes the texts).
    this.area = Buffer.allocUnsafeSlow(binding.BATCH * binding.SLOT);
    this.meta = new Int32Array(binding.BATCH * binding.META_INTS);
    this.metaBytes = new Uint8Array(this.meta.buffer);
  }

  /** Binds and starts reading; returns the port. Throws with the OS's reason (the `code` is the errno). */
  bind(address: string, port: number, group: number, bufferBytes: number | undefined): number {
    const [handle, bound] = this.binding.open(this.family, address, port, group, bufferBytes ?? 0, this.area, this.meta, this.onBatch);
    this.handle = handle;
    return bound;
  }

  /**
   * Sends one datagram: now, or held until the batch being handled ends
   * (see `batching`). Returns 0 when sent or held, or the errno of a
   * failure known now (a bad address, a failed sendto); a held send that
   * fails at flush is told through `onFailed`. A full send buffer only
   * counts (`onWouldBlock`) and returns 0.
   */
  send(data: Buffer | string, port: number, address: string, onFailed?: SendFailed): number {
    if (this.handle === undefined) return 9; // EBADF: not bound, or closed
    let r: number;
    if (batching === 0) {
      r = this.binding.send(this.handle, data, port, address, false);
    } else {
      r = this.binding.send(this.handle, data, port, address, true);
      if (r === -1) {
        // The send area is full: what it holds goes now, then this one is held.
        this.flush();
        r = this.binding.send(this.handle, data, port, address, true);
      }
      if (r === 0) {
        if (this.held.length === 0) holding.push(this);
        this.held.push(onFailed);
        return 0;
      }
    }
    if (r === EAGAIN || r === ENOBUFS) {
      this.onWouldBlock();
      return 0;
    }
    return r;
  }

  /** Sends what is held (one sendmmsg), and tells each failed send's callback. */
  flush(): void {
    const n = this.held.length;
    if (n === 0) return;
    const cbs = this.held;
    this.held = [];
    if (this.binding.flush(this.handle, this.status) === 0) return;
    for (let i = 0; i < n; i++) {
      const errno = this.status[i]!;
      if (errno === 0) continue;
      if (errno === EAGAIN || errno === ENOBUFS) this.onWouldBlock();
      else cbs[i]?.(sendError(errno));
    }
  }

  /**
   * Takes the socket out of its SO_REUSEPORT group's share of new datagrams
   * (it connects it to the discard port on its own address, so only that
   * peer, which never sends, would reach it); what is queued is still read.
   * 0 or the errno.
   */
  quiesce(): number {
    if (this.handle === undefined) return 9;
    return this.binding.quiesce(this.handle);
  }

  close(): void {
    if (this.handle === undefined) return;
    // Held sends still go: a socket closed while handling a batch (a stop) answered them.
    this.flush();
    this.binding.close(this.handle);
    this.handle = undefined;
  }

  /** A class field, so the addon holds one function for the socket's life. */
  private readonly onBatch = (n: number, texts?: string[]): void => {
    if (n < 0 || texts === undefined) {
      this.onReadError(-n);
      return;
    }
    const meta = this.meta;
    batching++;
    try {
      for (let i = 0; i < n; i++) {
        const m = i * this.metaInts;
        this.onDatagram(texts[i]!, meta[m + 2] === 4 ? this.v4Name(meta[m + 3]!, m) : this.v6Name(m), meta[m + 1]!);
      }
    } finally {
      if (--batching === 0) flushHeld();
    }
  };

  /** The word is the four address bytes read as one int32: a key only; the name is built from the bytes. */
  private v4Name(word: number, m: number): string {
    let name = this.v4Names.get(word);
    if (name === undefined) {
      const b = this.metaBytes;
      const o = (m + 3) * 4;
      name = `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
      if (this.v4Names.size >= V4_NAMES_MAX) this.v4Names.clear();
      this.v4Names.set(word, name);
    }
    return name;
  }

  /** inet_ntop's text, written by the addon after the entry's fixed fields. */
  private v6Name(m: number): string {
    const len = this.meta[m + 4]!;
    return Buffer.from(this.meta.buffer, (m + 5) * 4, len).toString("latin1");
  }
}
