/**
 * A copy of `s` that holds nothing of the strings it was made from. V8
 * makes a slice of 13 or more characters a view into its parent, and a
 * concatenation a pair of references (hashing it as a Map key does not
 * flatten it), so a cache that keeps a header value cut from a datagram,
 * or a key built from such values, keeps the whole datagram's text alive:
 * 20,000 cached 40-character slices of 2 KiB messages held 43 MB of heap,
 * the copies 2 MB (test/unit/own-string.test.ts). For what outlives its
 * message: cache keys and cached values, copied when stored.
 */
export function ownString(s: string): string {
  // The concatenation is a cons string; slice() flattens it into a new
  // string of its own first, and the result is a view of that one.
  return ("\0" + s).slice(1);
}
