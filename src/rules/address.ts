/**
 * Source-address matching for rules, tuned for the per-message path: an
 * address is read into four 32-bit words without allocating, IPv4 as an
 * IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2), so one network test serves
 * both families and an IPv4 network also matches the `::ffff:a.b.c.d` form
 * a dual-stack socket reports.
 */

export interface Network {
  /** As written in the rules file, for explain and errors. */
  readonly text: string;
  /** Network words with the host bits cleared. */
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  /** Mask words over the 128-bit form. */
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
}

/** Four unsigned 32-bit words; written by `readAddress`. */
export type AddressWords = [number, number, number, number];

function readV4(s: string, start: number, end: number): number {
  let value = 0;
  let octets = 0;
  let i = start;
  while (octets < 4) {
    const os = i;
    let n = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      n = n * 10 + (c - 48);
      i++;
    }
    const len = i - os;
    // No empty octet, no more than three digits, no leading zero (ambiguous: some stacks read it as octal).
    if (len === 0 || len > 3 || n > 255 || (len > 1 && s.charCodeAt(os) === 48)) return -1;
    value = value * 256 + n;
    octets++;
    if (octets < 4) {
      if (i >= end || s.charCodeAt(i) !== 46 /* . */) return -1;
      i++;
    }
  }
  return i === end ? value : -1;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Scratch for IPv6 groups; reading is synchronous, so one array serves every call. */
const groups = new Array<number>(8).fill(0);

function readV6(s: string, start: number, end: number, out: AddressWords): boolean {
  let count = 0;
  let gap = -1;
  let i = start;
  if (i < end && s.charCodeAt(i) === 58 /* : */) {
    if (i + 1 >= end || s.charCodeAt(i + 1) !== 58) return false;
    gap = 0;
    i += 2;
  }
  while (i < end) {
    if (count >= 8) return false;
    const gs = i;
    let v = 0;
    while (i < end) {
      const d = hexDigit(s.charCodeAt(i));
      if (d < 0) break;
      v = v * 16 + d;
      i++;
    }
    if (i < end && s.charCodeAt(i) === 46 /* . */) {
      // Dotted IPv4 in the last 32 bits (RFC 4291 §2.2 form 3).
      if (count > 6) return false;
      const v4 = readV4(s, gs, end);
      if (v4 < 0) return false;
      groups[count++] = Math.floor(v4 / 65536);
      groups[count++] = v4 % 65536;
      i = end;
      break;
    }
    if (i === gs || i - gs > 4) return false;
    groups[count++] = v;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = count;
      i++;
    } else if (i === end) {
      return false;
    }
  }
  if (gap < 0 && count !== 8) return false;
  if (gap >= 0 && count > 7) return false;
  const fill = 8 - count;
  // Spread the groups read around the `::` gap, in place, from the end.
  for (let k = 7, g = count - 1; k >= 0; k--) {
    groups[k] = gap >= 0 && k >= gap && k < gap + fill ? 0 : groups[g--]!;
  }
  for (let w = 0; w < 4; w++) out[w] = groups[w * 2]! * 65536 + groups[w * 2 + 1]!;
  return true;
}

/**
 * Reads an IP literal (IPv4, IPv6, bracketed IPv6, IPv6 with a zone) into
 * `out`. Returns 4 or 6 for the family read, 0 when `s` is not an address.
 * Allocates nothing.
 */
export function readAddress(s: string, out: AddressWords): 0 | 4 | 6 {
  let start = 0;
  let end = s.length;
  if (end >= 2 && s.charCodeAt(0) === 91 /* [ */ && s.charCodeAt(end - 1) === 93) {
    start = 1;
    end--;
  }
  const zone = s.indexOf("%", start);
  if (zone >= 0 && zone < end) end = zone;
  if (end <= start) return 0;
  if (s.indexOf(":", start) < 0 || s.indexOf(":", start) >= end) {
    const v4 = readV4(s, start, end);
    if (v4 < 0) return 0;
    out[0] = 0;
    out[1] = 0;
    out[2] = 0xffff;
    out[3] = v4;
    return 4;
  }
  return readV6(s, start, end, out) ? 6 : 0;
}

function maskWord(bits: number, word: number): number {
  const keep = Math.max(0, Math.min(32, bits - word * 32));
  if (keep === 0) return 0;
  if (keep === 32) return 0xffffffff;
  return (0xffffffff << (32 - keep)) >>> 0;
}

export type NetworkResult = { ok: true; network: Network } | { ok: false; message: string };

/**
 * Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host network).
 * The message says what was expected, for the rules schema.
 */
export function parseNetwork(text: string): NetworkResult {
  const slash = text.indexOf("/");
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const w: AddressWords = [0, 0, 0, 0];
  const family = addr.charCodeAt(0) === 91 ? 0 : readAddress(addr, w);
  if (family === 0 || addr.indexOf("%") >= 0) {
    return { ok: false, message: `expected an IPv4 or IPv6 address or network (CIDR), got ${JSON.stringify(text)}` };
  }
  const max = family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      return { ok: false, message: `expected a prefix length from 0 to ${max} after "/", got ${JSON.stringify(text)}` };
    }
    len = Number(p);
  }
  const bits = family === 4 ? 96 + len : len;
  const m: AddressWords = [maskWord(bits, 0), maskWord(bits, 1), maskWord(bits, 2), maskWord(bits, 3)];
  const net: AddressWords = [(w[0] & m[0]) >>> 0, (w[1] & m[1]) >>> 0, (w[2] & m[2]) >>> 0, (w[3] & m[3]) >>> 0];
  // `10.1.2.3/8` is almost always a typo for a host: say so rather than widen it silently.
  if (net[0] !== w[0] || net[1] !== w[1] || net[2] !== w[2] || net[3] !== w[3]) {
    return {
      ok: false,
      message: `expected a network address with no host bits set beyond /${len}, got ${JSON.stringify(text)} (did you mean ${formatWords(net, family)}/${len}?)`,
    };
  }
  return {
    ok: true,
    network: Object.freeze({ text, w0: net[0], w1: net[1], w2: net[2], w3: net[3], m0: m[0], m1: m[1], m2: m[2], m3: m[3] }),
  };
}

/** Text form of address words, for the "did you mean" hint. */
function formatWords(w: AddressWords, family: 4 | 6): string {
  if (family === 4) {
    const v = w[3];
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const parts: string[] = [];
  for (const word of w) parts.push((word >>> 16).toString(16), (word & 0xffff).toString(16));
  // Compress the longest run of zero groups (RFC 5952 §4.2.3).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (parts[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return parts.join(":");
  return `${parts.slice(0, best).join(":")}::${parts.slice(best + bestLen).join(":")}`;
}

export function inNetwork(w0: number, w1: number, w2: number, w3: number, n: Network): boolean {
  return (
    ((w3 & n.m3) >>> 0) === n.w3 && ((w2 & n.m2) >>> 0) === n.w2 && ((w1 & n.m1) >>> 0) === n.w1 && ((w0 & n.m0) >>> 0) === n.w0
  );
}
