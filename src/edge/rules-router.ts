import type { Logger } from "pino";
import type { CarrierBreakers } from "../rules/carrier-breakers.js";
import { decide } from "../rules/decide.js";
import { MessageInput } from "../rules/input.js";
import { applyRewrite } from "../rules/rewrite.js";
import type { Decision, Rewrite, RoutingView, RulesTable, TargetGroup } from "../rules/types.js";
import type { SipMessage } from "../sip/message.js";
import type { RouteDecision, RouteInput, Router } from "./router.js";
import type { Target } from "./targets.js";

/**
 * The rules engine as the proxy's router. The rules choose the group (and
 * the device class, rewrites, rejects, drops); health and the carrier
 * breakers choose the members. A group made of the Main/Standby pair is
 * handed to the failover-policy router, which knows each device's home.
 *
 * One table is read per request, at its start: a reload never changes the
 * rules under a request (the candidates are fixed in the decision the proxy
 * keeps for the transaction).
 */

export interface RulesRouterDeps {
  /** The table in force (`RulesStore.current`). */
  readonly rules: () => RulesTable;
  /** The edge config's targets; names the rules use are looked up here. */
  readonly targets: readonly Target[];
  /** Health: may a new request go to this target? */
  readonly usable: (t: Target) => boolean;
  /** Carrier breakers: a carrier whose breaker is open is skipped like a dead target. */
  readonly breakers?: CarrierBreakers | undefined;
  /**
   * The router of the Main/Standby pair (the failover policy). A failover
   * or dual group whose members are exactly its targets is routed by it, so
   * hold-down, failback and per-class delays apply. The rule's device class,
   * if any, is passed on as `deviceClass` in the input.
   */
  readonly pbx?: { readonly router: Router; readonly targets: readonly string[] } | undefined;
  /** Called with every decision (metrics: rule hits, rejects, drops). */
  readonly onDecision?: ((table: RulesTable, d: Decision) => void) | undefined;
  readonly logger?: Logger | undefined;
}

/** The proxy's route input, with the device class a rule set (for the policy router). */
export interface RulesRouteInput extends RouteInput {
  readonly deviceClass?: string | undefined;
}

export class RulesRouter implements Router {
  private readonly byName: ReadonlyMap<string, Target>;
  private readonly input = new MessageInput();
  private readonly view: RoutingView;
  private readonly pbxSet: ReadonlySet<string> | undefined;
  private table: RulesTable | undefined;
  /** The proxy's copy of each rewrite, for the copies it sends later (one function per rewrite, not per call). */
  private readonly again = new WeakMap<Rewrite, (request: SipMessage) => void>();

  constructor(private readonly d: RulesRouterDeps) {
    this.byName = new Map(d.targets.map((t) => [t.name, t]));
    this.pbxSet = d.pbx === undefined ? undefined : new Set(d.pbx.targets);
    this.view = {
      usable: (name) => {
        const t = this.byName.get(name);
        if (t === undefined || !d.usable(t)) return false;
        const carrier = this.table?.carrierOfTarget.get(name);
        return carrier === undefined || d.breakers === undefined || d.breakers.canAttempt(carrier);
      },
    };
  }

  route(ri: RouteInput): RouteDecision {
    const table = this.d.rules();
    this.table = table;
    const m = ri.message;
    const decision = decide(table, this.input.set(m, ri.source, ri.listener.transport, ri.listener.port), this.view);
    this.d.onDecision?.(table, decision);
    switch (decision.action) {
      case "reject":
        return { action: "reject", status: decision.status, reason: decision.reason, why: decision.why };
      case "drop":
        // The proxy counts drops by `why`: the rule name keeps that a small, stable set.
        return { action: "drop", why: `rule.${decision.rule.name}` };
      case "route":
        break;
    }
    if (decision.rewrite !== undefined) {
      const r = applyRewrite(m, decision.rewrite);
      if (!r.ok) {
        this.d.logger?.warn({ rule: decision.rule.name, reason: r.reason }, "rules rewrite refused; request rejected");
        return { action: "reject", status: 500, reason: "Server Internal Error", why: `rule "${decision.rule.name}": ${r.reason}` };
      }
    }
    const rewrite = decision.rewrite === undefined ? undefined : this.rewriteAgain(decision.rewrite);
    if (this.d.pbx !== undefined && this.isPbxGroup(decision.group)) {
      const input: RulesRouteInput = { ...ri, deviceClass: decision.deviceClass };
      const d = this.d.pbx.router.route(input);
      return rewrite === undefined || d.action !== "forward" ? d : { ...d, rewrite };
    }
    const targets = this.resolve(decision.targets);
    if (targets.length === 0) return { action: "reject", status: 503, reason: "Service Unavailable", why: `${decision.why}: no target of the edge config` };
    this.d.breakers?.noteRouted(table, decision);
    const fork = this.resolve(decision.fork);
    const extra = rewrite === undefined ? {} : { rewrite };
    if (fork.length > 0) return { action: "forward", targets: targets.filter((t) => !fork.includes(t)), fork, why: decision.why, ...extra };
    return { action: "forward", targets, why: decision.why, ...extra };
  }

  /**
   * The rewrite as the proxy makes it again on a later copy of the request
   * (a failover attempt, a retransmission, the CANCEL). The copy carries
   * what this request carried, which the rewrite already accepted.
   */
  private rewriteAgain(rw: Rewrite): (request: SipMessage) => void {
    let fn = this.again.get(rw);
    if (fn === undefined) {
      fn = (request) => void applyRewrite(request, rw);
      this.again.set(rw, fn);
    }
    return fn;
  }

  private isPbxGroup(g: TargetGroup): boolean {
    const set = this.pbxSet;
    if (set === undefined || (g.strategy !== "failover" && g.strategy !== "dual")) return false;
    return g.members.length === set.size && g.members.every((m) => set.has(m.target));
  }

  private resolve(names: readonly string[]): Target[] {
    const out: Target[] = [];
    for (const n of names) {
      const t = this.byName.get(n);
      if (t !== undefined) out.push(t);
    }
    return out;
  }
}
