import { HASH_START, hashString, hashStringFolded, rendezvousScore, weightedScore } from "./hash.js";
import type { Facts } from "./match.js";
import type { HashKey } from "./schema.js";
import type { GroupMember, RoutingView, TargetGroup } from "./types.js";

/**
 * Member order for each strategy. Every strategy returns only usable
 * members (a target that is down never gets a new request, DESIGN.md §2.3),
 * the one to try first first and the rest as per-request failover.
 *
 * - failover, dual: priority order.
 * - round-robin: rotates the starting member over the usable members; the
 *   rest follow in group order from there.
 * - weighted: smooth weighted round-robin over the usable members (each gets
 *   its share of picks, evenly interleaved, with no random draw), then the
 *   rest in priority order.
 * - hash: rendezvous order of the key, so a key keeps its member while that
 *   member is usable and moves to its own runner-up otherwise.
 *
 * `advance: false` answers "what would happen now" without moving the
 * rotation (explain).
 */

/** Hash of the request's key for the `hash` strategy. */
export function hashKeyOf(f: Facts, key: HashKey): number {
  const input = f.input!;
  switch (key) {
    case "call-id":
      return hashString(HASH_START, input.header("call-id") ?? "");
    case "from":
      f.fromParts();
      return hashStringFolded(hashString(hashString(HASH_START, f.fromUser ?? ""), "@"), f.fromHost ?? "");
    case "to":
      f.toParts();
      return hashStringFolded(hashString(hashString(HASH_START, f.toUser ?? ""), "@"), f.toHost ?? "");
    case "request-uri":
      return hashStringFolded(hashString(hashString(HASH_START, f.requestUriUser() ?? ""), "@"), f.requestUriHost() ?? "");
  }
}

/** Wraps the round-robin counter long before it loses integer precision; divisible by every group size up to 12. */
const ROTATION_WRAP = 27_720 * 36_000 - 1;

function usableInOrder(members: readonly GroupMember[], view: RoutingView): string[] {
  const out: string[] = [];
  for (let i = 0; i < members.length; i++) if (view.usable(members[i]!.target)) out.push(members[i]!.target);
  return out;
}

function roundRobin(g: TargetGroup, view: RoutingView, advance: boolean): string[] {
  // Rotating over the usable members (not over all of them) keeps the
  // spread even when one is down: its turns do not all fall to its neighbour.
  const usable = usableInOrder(g.members, view);
  if (usable.length === 0) return usable;
  const start = g.rotation.next % usable.length;
  if (advance) g.rotation.next = g.rotation.next >= ROTATION_WRAP ? 0 : g.rotation.next + 1;
  return start === 0 ? usable : [...usable.slice(start), ...usable.slice(0, start)];
}

function weighted(g: TargetGroup, view: RoutingView, advance: boolean): string[] {
  const m = g.members;
  const current = advance ? g.rotation.current : [...g.rotation.current];
  let total = 0;
  let best = -1;
  const usable: boolean[] = [];
  for (let i = 0; i < m.length; i++) {
    const ok = view.usable(m[i]!.target);
    usable.push(ok);
    if (!ok) continue;
    current[i] = current[i]! + m[i]!.weight;
    total += m[i]!.weight;
    if (best < 0 || current[i]! > current[best]!) best = i;
  }
  if (best < 0) return [];
  current[best] = current[best]! - total;
  const out = [m[best]!.target];
  for (let i = 0; i < m.length; i++) if (i !== best && usable[i]) out.push(m[i]!.target);
  return out;
}

function byRendezvous(g: TargetGroup, view: RoutingView, keyHash: number): string[] {
  const scored: { target: string; score: number }[] = [];
  for (const member of g.members) {
    if (!view.usable(member.target)) continue;
    const score = g.weighted ? weightedScore(keyHash, member.seed, member.weight) : rendezvousScore(keyHash, member.seed);
    scored.push({ target: member.target, score });
  }
  scored.sort((a, b) => b.score - a.score);
  return scored.map((s) => s.target);
}

/** Usable members of `g` in the order the strategy gives them. */
export function orderMembers(g: TargetGroup, view: RoutingView, keyHash: number, advance: boolean): string[] {
  switch (g.strategy) {
    case "failover":
    case "dual":
      return usableInOrder(g.members, view);
    case "round-robin":
      return roundRobin(g, view, advance);
    case "weighted":
      return weighted(g, view, advance);
    case "hash":
      return byRendezvous(g, view, keyHash);
  }
}

/** Rendezvous order of every member (usable or not), for explain. */
export function rendezvousOrder(g: TargetGroup, keyHash: number): string[] {
  return byRendezvous(g, { usable: () => true }, keyHash);
}
