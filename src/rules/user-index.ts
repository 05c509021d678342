import type { StringTest } from "./string-match.js";
import { C_RURI_USER, type Rule } from "./types.js";

/**
 * A dial plan is mostly "Request-URI user starts with X" or "is one of
 * these numbers", and first-match would test every such rule in turn. This
 * index answers all of them at once per request: a trie of the prefixes and
 * a map of the exact users give the rules whose user test holds, in one
 * walk over the user part. Matching then skips an indexed rule with a bit
 * test instead of running its string test. Only case-sensitive exact and
 * prefix tests are indexed (user parts are case-sensitive, RFC 3261
 * §19.1.4); other rules are evaluated as usual, in order, so first-match
 * semantics are untouched.
 */

interface TrieNode {
  next: Map<number, TrieNode> | undefined;
  /** Rules with a prefix ending here. */
  rules: number[];
}

export interface UserIndex {
  /** Per rule: position of its indexed condition in `conditions`, or -1. */
  readonly keyOf: Int32Array;
  readonly exact: ReadonlyMap<string, readonly number[]>;
  readonly root: TrieNode;
  readonly ruleCount: number;
}

function indexable(t: StringTest): boolean {
  return !t.ignoreCase && (t.kind === "exact" || t.kind === "prefix");
}

/** Builds the index, or undefined when too few rules would use it to be worth a walk per request. */
export function buildUserIndex(rules: readonly Rule[], minRules = 4): UserIndex | undefined {
  const keyOf = new Int32Array(rules.length).fill(-1);
  const exact = new Map<string, number[]>();
  const root: TrieNode = { next: undefined, rules: [] };
  let used = 0;
  rules.forEach((r, i) => {
    const at = r.conditions.findIndex((c) => c.kind === C_RURI_USER && indexable(c.test));
    if (at < 0) return;
    const c = r.conditions[at]!;
    if (c.kind !== C_RURI_USER) return;
    keyOf[i] = at;
    used++;
    for (const v of c.test.values) {
      if (c.test.kind === "exact") {
        const list = exact.get(v) ?? [];
        if (list.at(-1) !== i) list.push(i);
        exact.set(v, list);
      } else {
        let node = root;
        for (let k = 0; k < v.length; k++) {
          const ch = v.charCodeAt(k);
          node.next ??= new Map();
          let child = node.next.get(ch);
          if (child === undefined) {
            child = { next: undefined, rules: [] };
            node.next.set(ch, child);
          }
          node = child;
        }
        if (node.rules.at(-1) !== i) node.rules.push(i);
      }
    }
  });
  if (used < minRules) return undefined;
  return { keyOf, exact, root, ruleCount: rules.length };
}

/**
 * Marks in `marks` (with `stamp`) every rule whose indexed user test holds
 * for `user`. `marks` has at least `ruleCount` entries; stamping instead of
 * clearing keeps the per-request cost at the length of the user part.
 */
export function markCandidates(index: UserIndex, user: string | undefined, marks: Int32Array, stamp: number): void {
  if (user === undefined) return;
  const hit = index.exact.get(user);
  if (hit !== undefined) for (let k = 0; k < hit.length; k++) marks[hit[k]!] = stamp;
  let node: TrieNode | undefined = index.root;
  for (let k = 0; node !== undefined; k++) {
    const rs = node.rules;
    for (let j = 0; j < rs.length; j++) marks[rs[j]!] = stamp;
    if (k >= user.length || node.next === undefined) break;
    node = node.next.get(user.charCodeAt(k));
  }
}
