/**
 * Hashing for the `hash` strategy: rendezvous (highest-random-weight)
 * hashing. Every member gets a score from (key, member); the key goes to the
 * highest-scoring usable member. When a member dies only its keys move, and
 * they spread over the survivors in proportion to their weights, because
 * each key's runner-up is an independent draw.
 *
 * The key is hashed once (FNV-1a over its UTF-16 code units, no allocation),
 * then mixed with a per-member seed computed at load through the MurmurHash3
 * finalizer, whose avalanche makes scores of one key across members behave as
 * independent.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export const HASH_START = FNV_OFFSET;

/** Continues an FNV-1a hash over `s`. */
export function hashString(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/** Continues an FNV-1a hash over `s` with ASCII upper case folded (hosts compare case-insensitively). */
export function hashStringFolded(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) c |= 0x20;
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finalizer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seed of a member, from its target name; fixed per name so every edge instance agrees. */
export function memberSeed(target: string): number {
  return fmix32(hashString(FNV_OFFSET, target));
}

/** Score of one member for one key hash; unweighted scores compare as integers. */
export function rendezvousScore(keyHash: number, seed: number): number {
  return fmix32((keyHash ^ seed) >>> 0);
}

/**
 * Weighted score (logarithmic method): `-w / ln(u)` with `u` uniform in
 * (0, 1). A member with twice the weight wins twice as many keys, and the
 * ranking of the rest is still an independent draw per key.
 */
export function weightedScore(keyHash: number, seed: number, weight: number): number {
  const u = (rendezvousScore(keyHash, seed) + 0.5) / 4294967296;
  return -weight / Math.log(u);
}
