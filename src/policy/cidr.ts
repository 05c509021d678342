import { isIP } from "node:net";

/**
 * Source-network matching for the device table. Every address is held as 16
 * bytes, IPv4 as an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2), so an IPv4
 * network also matches a source a dual-stack socket reports as
 * `::ffff:a.b.c.d`, and one comparison routine serves both families.
 */

export interface Network {
  /** As written in the table, for status and errors. */
  readonly text: string;
  readonly bytes: Uint8Array;
  /** Prefix length over the 128-bit form. */
  readonly bits: number;
}

function v4Bytes(s: string, out: Uint8Array, at: number): boolean {
  const parts = s.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p)) return false;
    const n = Number(p);
    if (n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

function v6Bytes(s: string, out: Uint8Array): boolean {
  let tail: string[] = [];
  let head: string[];
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    head = s.slice(0, dbl) === "" ? [] : s.slice(0, dbl).split(":");
    tail = s.slice(dbl + 2) === "" ? [] : s.slice(dbl + 2).split(":");
  } else {
    head = s.split(":");
  }
  const groups: Array<number | "v4"> = [];
  const read = (list: string[]): Array<number | "v4"> | undefined => {
    const r: Array<number | "v4"> = [];
    for (const g of list) {
      if (g.includes(".")) r.push("v4", "v4");
      else if (/^[0-9a-f]{1,4}$/i.test(g)) r.push(parseInt(g, 16));
      else return undefined;
    }
    return r;
  };
  const h = read(head);
  const tl = read(tail);
  if (h === undefined || tl === undefined) return false;
  const fill = 8 - h.length - tl.length;
  if (fill < 0 || (dbl < 0 && fill !== 0)) return false;
  groups.push(...h, ...new Array<number>(fill).fill(0), ...tl);
  for (let i = 0; i < 8; i++) {
    const g = groups[i];
    if (g === "v4") {
      const last = s.slice(s.lastIndexOf(":") + 1);
      return i === 6 && v4Bytes(last, out, 12);
    }
    out[i * 2] = (g ?? 0) >> 8;
    out[i * 2 + 1] = (g ?? 0) & 0xff;
  }
  return true;
}

/**
 * Parses an IP literal (IPv4, IPv6, bracketed IPv6, IPv6 with a zone) into
 * its 16-byte form; undefined when it is not one. Source addresses come
 * from sockets, but the function is total anyway.
 */
export function addressBytes(address: string): Uint8Array | undefined {
  let a = address.trim();
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  const family = isIP(a);
  const out = new Uint8Array(16);
  if (family === 4) {
    out[10] = 0xff;
    out[11] = 0xff;
    return v4Bytes(a, out, 12) ? out : undefined;
  }
  if (family === 6) return v6Bytes(a, out) ? out : undefined;
  return undefined;
}

/** Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host network); throws on a config error. */
export function parseNetwork(text: string): Network {
  const slash = text.indexOf("/");
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const bytes = addressBytes(addr);
  if (bytes === undefined) throw new Error(`${text}: not an IP address or network`);
  const v4 = isIP(addr.trim()) === 4;
  const max = v4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw new Error(`${text}: prefix length must be 0-${max}`);
    len = Number(p);
  }
  const bits = v4 ? 96 + len : len;
  // Host bits must be zero: `10.1.2.3/8` is almost always a typo for a host.
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((bytes[i]! & ~mask & 0xff) !== 0) throw new Error(`${text}: host bits set beyond /${len}`);
  }
  return Object.freeze({ text, bytes, bits });
}

export function inNetwork(address: Uint8Array, net: Network): boolean {
  const whole = net.bits >> 3;
  for (let i = 0; i < whole; i++) if (address[i] !== net.bytes[i]) return false;
  const rest = net.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((address[whole]! ^ net.bytes[whole]!) & mask) === 0;
}
