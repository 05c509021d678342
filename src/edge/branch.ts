import type { SipMessage } from "../sip/message.js";
import { MAGIC_COOKIE, type Via } from "../sip/via.js";

/**
 * Our branch prefix: the magic cookie plus a marker, so a response or a
 * looped request carrying our Via is recognised cheaply.
 */
export const EDGE_BRANCH_PREFIX = `${MAGIC_COOKIE}-sE`;

/**
 * Stateless branch derivation (RFC 3261 §16.11): a retransmission of a
 * request, its CANCEL and the ACK for a non-2xx final response all carry the
 * incoming top Via branch of the INVITE, so they all map to the same branch
 * here and reach the same transaction downstream.
 *
 * With an RFC 3261 branch the input is that branch plus the sent-by (branch
 * uniqueness is only guaranteed per sender). An RFC 2543 request (no magic
 * cookie) has no usable branch, so the hash covers what §16.11 lists instead:
 * To tag, From tag, Call-ID, Request-URI, top Via and CSeq number.
 */
export function deriveBranch(m: SipMessage, via: Via = m.topVia): string {
  const branch = via.branch;
  begin();
  if (branch !== undefined && branch.startsWith(MAGIC_COOKIE) && branch.length > MAGIC_COOKIE.length) {
    // Fed part by part: the same hash as of `${branch}|${host}|${port}`,
    // without building that string per request.
    feed(branch);
    feed("|");
    feed(via.host);
    feed("|");
    if (via.port !== undefined) feedDigits(via.port);
  } else {
    // The To tag is left out: the ACK of a non-2xx carries one that its
    // INVITE did not, and both must map to the same branch.
    feed(`${m.get("From") ?? ""}|${m.callId}|${m.requestUri}|${via.raw}|${m.cseq.seq}`);
  }
  return EDGE_BRANCH_PREFIX + finish();
}

/**
 * A fast non-cryptographic 96-bit hash (three FNV-1a lanes with different
 * offsets and a final avalanche), as 24 hex digits. Branches need
 * uniqueness, not secrecy, and this runs once per forwarded request.
 */
export function hash96(s: string): string {
  begin();
  feed(s);
  return finish();
}

// The lanes of the hash being fed (one at a time: JS runs one call at a time).
let la = 0;
let lb = 0;
let lc = 0;
let fed = 0;

function begin(): void {
  la = 0x811c9dc5;
  lb = 0x01000193 ^ 0x5bd1e995;
  lc = 0x27d4eb2f;
  fed = 0;
}

function feedChar(ch: number): void {
  la = Math.imul(la ^ ch, 0x01000193);
  lb = Math.imul(lb ^ ch, 0x5bd1e995);
  lc = Math.imul(lc ^ ch, 0x85ebca6b);
}

function feed(s: string): void {
  for (let i = 0; i < s.length; i++) feedChar(s.charCodeAt(i));
  fed += s.length;
}

/** The decimal digits of `n` (a port: 0-65535), as `String(n)` would feed them. */
function feedDigits(n: number): void {
  let div = 1;
  while (div * 10 <= n) div *= 10;
  for (; div > 0; div = (div / 10) | 0) {
    feedChar(48 + (((n / div) | 0) % 10));
    fed++;
  }
}

/** Two lower-case hex digits per byte value. */
const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function hex32(h: number): string {
  return HEX_BYTE[h >>> 24]! + HEX_BYTE[(h >>> 16) & 255]! + HEX_BYTE[(h >>> 8) & 255]! + HEX_BYTE[h & 255]!;
}

/**
 * The three lanes as 24 hex digits. By table, not `toString(36)`: a radix
 * conversion is a call into the engine's runtime, ~570 ns for the three
 * against ~110 here (perf/RESULTS.md), once per forwarded request.
 */
function finish(): string {
  const a = fmix(la ^ fed);
  const b = fmix(lb ^ a);
  const c = fmix(lc ^ b);
  return hex32(a) + hex32(b) + hex32(c);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export function isEdgeBranch(branch: string | undefined): boolean {
  return branch !== undefined && branch.startsWith(EDGE_BRANCH_PREFIX);
}
