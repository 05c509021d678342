/**
 * The routing rules engine (DESIGN.md §2.5-2.6): rules files under
 * proxy-rules/ compiled into a frozen table, first-match decisions over
 * target groups and their strategies, hot reload, carrier breakers and the
 * dry run. Imports only sip, config and util: the edge adapts a `Decision`
 * (target names) into its own `Router` decision.
 */
export { parseNetwork, readAddress, type Network } from "./address.js";
export {
  breakerSettings,
  canAttempt,
  CarrierBreaker,
  classifyOutcome,
  DEFAULT_BREAKER,
  initialBreakerState,
  step as breakerStep,
  type BreakerInput,
  type BreakerListener,
  type BreakerSettings,
  type BreakerSnapshot,
  type BreakerState,
  type BreakerStatus,
  type BreakerStep,
  type BreakerTransition,
  type CallOutcome,
} from "./carrier-breaker.js";
export { CarrierBreakers, callOutcome, withBreakers } from "./carrier-breakers.js";
export { reasonPhrase } from "./compile.js";
export { decide } from "./decide.js";
export { dryRun, targetNamesOf, type DryRunOptions, type DryRunResult } from "./dry-run.js";
export {
  explain,
  OFFLINE_VIEW,
  parseMessageText,
  parseSource,
  type ExplainContext,
  type ExplainedMember,
  type ExplainView,
  type Explanation,
} from "./explain.js";
export { MessageInput, messageInput } from "./input.js";
export { compileRules, loadRules, readRulesSources, rulesFilesIn, RULES_DIR, RULES_FILE, type CompileOptions, type RulesResult, type RulesSource } from "./load.js";
export { match } from "./match.js";
export { applyRewrite, rewriteRequestUri, type ApplyResult, type UriRewriteResult } from "./rewrite.js";
export { HASH_KEYS, RULE_TRANSPORTS, STRATEGIES, type HashKey, type RuleTransport, type Strategy } from "./schema.js";
export { RulesStore, type OpenResult, type ReloadResult, type RulesLoadError, type RulesStatus, type RulesStoreOptions } from "./store.js";
export type {
  Carrier,
  Condition,
  Decision,
  GroupMember,
  MatchInput,
  Rewrite,
  RoutingView,
  Rule,
  RuleAction,
  RulesFileInfo,
  RulesTable,
  TargetGroup,
} from "./types.js";
