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
  /** Rules (other than the default) with no indexed condition, ascending: always evaluated. */
  readonly unindexed: Int32Array;
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
  const unindexed: number[] = [];
  for (let i = 0; i < rules.length - 1; i++) if (keyOf[i] === -1) unindexed.push(i);
  return { keyOf, unindexed: Int32Array.from(unindexed), exact, root, ruleCount: rules.length };
}

/** Scratch for collecting candidates; reused because collecting is synchronous. */
export interface CandidateScratch {
  /** Rule index -> stamp of the last collection that added it (no duplicates). */
  marks: Int32Array;
  stamp: number;
  /** The candidates, ascending, in `list[0..count)`. */
  list: Int32Array;
  count: number;
}

export function candidateScratch(): CandidateScratch {
  return { marks: new Int32Array(0), stamp: 0, list: new Int32Array(0), count: 0 };
}

function add(s: CandidateScratch, rule: number): void {
  if (s.marks[rule] === s.stamp) return;
  s.marks[rule] = s.stamp;
  s.list[s.count++] = rule;
}

/**
 * Collects, ascending and without duplicates, every rule whose indexed user
 * test holds for `user`: one map lookup and one walk down the trie, so the
 * cost follows the length of the user part, not the number of rules.
 */
export function collectCandidates(index: UserIndex, user: string | undefined, s: CandidateScratch): void {
  if (s.marks.length < index.ruleCount) {
    s.marks = new Int32Array(index.ruleCount);
    s.list = new Int32Array(index.ruleCount);
    s.stamp = 0;
  }
  if (s.stamp === 0x7fffffff) {
    s.marks.fill(0);
    s.stamp = 0;
  }
  s.stamp++;
  s.count = 0;
  if (user === undefined) return;
  const hit = index.exact.get(user);
  if (hit !== undefined) for (let k = 0; k < hit.length; k++) add(s, hit[k]!);
  let node: TrieNode | undefined = index.root;
  for (let k = 0; node !== undefined; k++) {
    const rs = node.rules;
    for (let j = 0; j < rs.length; j++) add(s, rs[j]!);
    if (k >= user.length || node.next === undefined) break;
    node = node.next.get(user.charCodeAt(k));
  }
  if (s.count > 1) s.list.subarray(0, s.count).sort();
}
