import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The native UDP socket (native/udp/sip_udp.c), built by
 * scripts/build-native.mjs at install time. It reads up to BATCH datagrams
 * per readable event with one recvmmsg and hands them to JS in one call,
 * and sends with a plain synchronous sendto. SO_REUSEPORT lets each
 * cluster worker own a socket on the shared port, so the kernel spreads
 * datagrams over the workers by source address instead of waking all of
 * them (Node 20's dgram has no reusePort).
 *
 * When the addon is not built (no compiler or headers on the machine), the
 * edge uses dgram and logs why (`udp.io` in the config).
 */
interface Binding {
  open(family: 4 | 6, address: string, port: number, group: number, bufferBytes: number, area: Buffer, meta: Int32Array, onBatch: (n: number) => void): [unknown, number];
  send(handle: unknown, data: Buffer | string, port: number, address: string): number;
  quiesce(handle: unknown): number;
  close(handle: unknown): void;
  ref(handle: unknown, yes: boolean): void;
  readonly BATCH: number;
  readonly SLOT: number;
  readonly META_INTS: number;
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

export type DatagramHandler = (data: Buffer, address: string, port: number) => void;

/** Names of IPv4 senders by their address word; cleared when it grows past this. */
const V4_NAMES_MAX = 4096;

/**
 * One native socket. Datagrams are copied out of the shared receive area
 * before the handler sees them: the proxy may keep a message (soft state,
 * a failover retry) past the next batch, which overwrites the area.
 */
export class NativeUdpSocket {
  private readonly area: Buffer;
  private readonly meta: Int32Array;
  /** The same table as bytes, for the address bytes. */
  private readonly metaBytes: Uint8Array;
  private handle: unknown;
  private readonly v4Names = new Map<number, string>();
  private readonly metaInts: number;
  private readonly slot: number;

  constructor(
    private readonly binding: Binding,
    readonly family: 4 | 6,
    private readonly onDatagram: DatagramHandler,
    /** A receive error: the errno of recvmmsg. */
    private readonly onReadError: (errno: number) => void,
  ) {
    this.metaInts = binding.META_INTS;
    this.slot = binding.SLOT;
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

  /** Sends one datagram now; 0 or the errno of sendto. */
  send(data: Buffer | string, port: number, address: string): number {
    if (this.handle === undefined) return 9; // EBADF: not bound, or closed
    return this.binding.send(this.handle, data, port, address);
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
    this.binding.close(this.handle);
    this.handle = undefined;
  }

  /** A class field, so the addon holds one function for the socket's life. */
  private readonly onBatch = (n: number): void => {
    if (n < 0) {
      this.onReadError(-n);
      return;
    }
    const meta = this.meta;
    for (let i = 0; i < n; i++) {
      const m = i * this.metaInts;
      const len = meta[m]!;
      const start = i * this.slot;
      const data = Buffer.allocUnsafe(len);
      this.area.copy(data, 0, start, start + len);
      this.onDatagram(data, meta[m + 2] === 4 ? this.v4Name(meta[m + 3]!, m) : this.v6Name(m), meta[m + 1]!);
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
