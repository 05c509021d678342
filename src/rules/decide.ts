import type { CompiledRule } from "./compile.js";
import { acquireFacts, matchFacts, releaseFacts, type Facts } from "./match.js";
import { hashKeyOf, orderMembers } from "./strategy.js";
import type { Decision, MatchInput, Rewrite, RoutingView, Rule, RulesTable, TargetGroup } from "./types.js";

/**
 * The routing decision for one initial request: the matched rule, and for a
 * route the group's usable members in strategy order. Reject and drop rules
 * answer with a decision built at load; failover and dual groups cache their
 * decision per set of usable members, so the common case allocates nothing.
 */

/** Above this many members the usable-set bitmask would not fit; such groups are not cached. */
const MEMO_MAX_MEMBERS = 16;
const REGISTER_BIT = 1 << MEMO_MAX_MEMBERS;

const EMPTY: readonly string[] = Object.freeze([]);

function routeWhy(rule: Rule, g: TargetGroup, targets: readonly string[], fork: readonly string[], unusable: readonly string[]): string {
  const how = g.strategy === "hash" ? `hash on ${g.hashOn}` : g.strategy;
  let why = `rule "${rule.name}": group ${g.name} (${how}) → ${targets.join(", ")}`;
  if (unusable.length > 0) why += ` (${unusable.join(", ")} unusable)`;
  if (fork.length > 0) why += `; REGISTER copied to ${fork.join(", ")}`;
  return why;
}

function unusableMembers(g: TargetGroup, targets: readonly string[]): string[] {
  const out: string[] = [];
  for (const m of g.members) if (!targets.includes(m.target)) out.push(m.target);
  return out;
}

function build(
  rule: Rule,
  g: TargetGroup,
  targets: string[],
  isRegister: boolean,
  deviceClass: string | undefined,
  rewrite: Rewrite | undefined,
): Decision {
  const unusable = targets.length === g.members.length ? EMPTY : unusableMembers(g, targets);
  if (targets.length === 0) {
    return {
      action: "reject",
      rule,
      status: 503,
      reason: "Service Unavailable",
      why: `rule "${rule.name}": group ${g.name} (${g.strategy}): no usable member (${unusable.join(", ")} unusable)`,
    };
  }
  // RFC 3261 has no way to fork one INVITE and still answer the caller once
  // from a stateless edge; `dual` copies only REGISTER (DESIGN.md §2.4).
  const fork = g.strategy === "dual" && isRegister ? Object.freeze(targets.slice(1)) : EMPTY;
  return {
    action: "route",
    rule,
    group: g,
    strategy: g.strategy,
    targets: Object.freeze(targets),
    fork,
    deviceClass,
    rewrite,
    why: routeWhy(rule, g, targets, fork, unusable),
  };
}

/**
 * The decision for the rule a request matched. `advance: false` leaves
 * rotating strategies where they are (a dry run must not take a turn).
 */
export function decideForRule(rule: Rule, f: Facts, view: RoutingView, advance: boolean): Decision {
  const compiled = rule as CompiledRule;
  if (compiled.fixed !== undefined) return compiled.fixed;
  const a = rule.action;
  if (a.kind !== "route") throw new Error(`rules: rule ${rule.name} has no prepared decision`);
  const g = a.group;
  const isRegister = f.input!.method === "REGISTER";
  if ((g.strategy === "failover" || g.strategy === "dual") && g.members.length <= MEMO_MAX_MEMBERS) {
    let mask = g.strategy === "dual" && isRegister ? REGISTER_BIT : 0;
    for (let i = 0; i < g.members.length; i++) if (view.usable(g.members[i]!.target)) mask |= 1 << i;
    const memo = compiled.memo;
    const hit = memo.get(mask);
    if (hit !== undefined) return hit;
    const targets: string[] = [];
    for (let i = 0; i < g.members.length; i++) if ((mask & (1 << i)) !== 0) targets.push(g.members[i]!.target);
    const d = Object.freeze(build(rule, g, targets, isRegister, a.deviceClass, a.rewrite));
    memo.set(mask, d);
    return d;
  }
  const keyHash = g.strategy === "hash" && g.hashOn !== undefined ? hashKeyOf(f, g.hashOn) : 0;
  return build(rule, g, orderMembers(g, view, keyHash, advance), isRegister, a.deviceClass, a.rewrite);
}

/** Matches the request and decides where it goes now. */
export function decide(table: RulesTable, input: MatchInput, view: RoutingView): Decision {
  const f = acquireFacts(input);
  try {
    return decideForRule(matchFacts(table, f), f, view, true);
  } finally {
    releaseFacts(f);
  }
}
