import type { SipUri } from "../sip/uri.js";
import type { Network } from "./address.js";
import type { BreakerSettings } from "./carrier-breaker.js";
import type { HashKey, RuleTransport, Strategy } from "./schema.js";
import type { StringTest } from "./string-match.js";
import type { UserIndex } from "./user-index.js";

/**
 * The compiled rules table and what the edge hands it. A table is built
 * once per successful load, frozen, and swapped in as one reference
 * (DESIGN.md §5.6); a request keeps the table it started with.
 */

/**
 * What matching reads from one request. The edge fills it from the message
 * and the socket it came in on; every field is read only if some rule asks.
 */
export interface MatchInput {
  readonly method: string;
  /** Parsed Request-URI. */
  readonly requestUri: SipUri | undefined;
  /** Source IP address, no brackets, no port. */
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly transport: RuleTransport;
  /** The edge's own port the request arrived on. */
  readonly localPort: number;
  /** First value of a header by its lower-case long name ("user-agent", "from"); undefined when absent. */
  header(name: string): string | undefined;
}

/** Health as routing sees it: a target that is not usable is never chosen for a new request. */
export interface RoutingView {
  usable(target: string): boolean;
}

// ---------------------------------------------------------------------------
// Conditions. Numeric kinds keep the per-message switch cheap.

export const C_METHOD = 0;
export const C_TRANSPORT = 1;
export const C_LOCAL_PORT = 2;
export const C_SOURCE = 3;
export const C_CARRIER = 4;
export const C_RURI_USER = 5;
export const C_RURI_HOST = 6;
export const C_FROM_USER = 7;
export const C_FROM_HOST = 8;
export const C_TO_USER = 9;
export const C_TO_HOST = 10;
export const C_USER_AGENT = 11;
export const C_HEADER_PRESENT = 12;
export const C_HEADER_ABSENT = 13;
export const C_HEADER_VALUE = 14;

export type Condition =
  | {
      readonly kind: typeof C_METHOD;
      /** Bits of the standard methods listed (see METHOD_BITS); extension methods are only in `methods`. */
      readonly mask: number;
      readonly methods: ReadonlySet<string>;
      readonly text: string;
    }
  | { readonly kind: typeof C_TRANSPORT; readonly mask: number; readonly text: string }
  | { readonly kind: typeof C_LOCAL_PORT; readonly ports: readonly number[]; readonly text: string }
  | { readonly kind: typeof C_SOURCE; readonly networks: readonly Network[]; readonly text: string }
  | {
      readonly kind: typeof C_CARRIER;
      readonly networks: readonly Network[];
      /** Carrier of each network, same index. */
      readonly owners: readonly string[];
      readonly text: string;
    }
  | {
      readonly kind:
        | typeof C_RURI_USER
        | typeof C_RURI_HOST
        | typeof C_FROM_USER
        | typeof C_FROM_HOST
        | typeof C_TO_USER
        | typeof C_TO_HOST
        | typeof C_USER_AGENT;
      readonly test: StringTest;
      readonly text: string;
    }
  | { readonly kind: typeof C_HEADER_PRESENT | typeof C_HEADER_ABSENT; readonly header: string; readonly text: string }
  | { readonly kind: typeof C_HEADER_VALUE; readonly header: string; readonly test: StringTest; readonly text: string };

// ---------------------------------------------------------------------------
// Groups, carriers, actions.

export interface GroupMember {
  readonly target: string;
  readonly priority: number;
  readonly weight: number;
  /** Rendezvous seed of the target name. */
  readonly seed: number;
  /** The carrier that owns this target, if any (its breaker gates the member). */
  readonly carrier: string | undefined;
}

/**
 * Counters of the rotating strategies. Not part of the frozen table's
 * meaning: losing them on reload only restarts a rotation.
 */
export interface GroupRotation {
  /** Round-robin: index of the next member to start from. */
  next: number;
  /** Smooth weighted round-robin: current weight per member. */
  readonly current: number[];
}

export interface TargetGroup {
  readonly name: string;
  readonly description: string | undefined;
  readonly strategy: Strategy;
  readonly hashOn: HashKey | undefined;
  /** In priority order (lower first, ties in file order). */
  readonly members: readonly GroupMember[];
  /** Weights are not all equal (weighted rendezvous scores needed). */
  readonly weighted: boolean;
  readonly rotation: GroupRotation;
}

export interface Carrier {
  readonly name: string;
  readonly description: string | undefined;
  readonly sources: readonly Network[];
  readonly targets: readonly string[];
  readonly breaker: BreakerSettings;
}

export interface UserRewrite {
  /** Literal user part, or a regex replacement of the current one. */
  readonly literal: string | undefined;
  readonly regex: RegExp | undefined;
  readonly replace: string;
}

export interface Rewrite {
  readonly user: UserRewrite | undefined;
  readonly host: string | undefined;
  /** A port, null to remove it, undefined to keep it. */
  readonly port: number | null | undefined;
  readonly removeHeaders: readonly string[];
  /** [wire name, value] pairs. */
  readonly replaceHeaders: readonly (readonly [string, string])[];
  readonly addHeaders: readonly (readonly [string, string])[];
  /** One-line summary for why/explain. */
  readonly text: string;
}

export type RuleAction =
  | { readonly kind: "route"; readonly group: TargetGroup; readonly deviceClass: string | undefined; readonly rewrite: Rewrite | undefined }
  | { readonly kind: "reject"; readonly status: number; readonly reason: string }
  | { readonly kind: "drop" };

export interface Rule {
  /** Position in the table, 0-based. */
  readonly index: number;
  readonly name: string;
  readonly description: string | undefined;
  readonly file: string;
  /** 1-based line of the rule in its file. */
  readonly line: number;
  /** All must hold; cheapest first. Empty for the default rule. */
  readonly conditions: readonly Condition[];
  readonly action: RuleAction;
}

export interface RulesFileInfo {
  readonly file: string;
  /** sha256 hex of the file's text. */
  readonly hash: string;
}

export interface RulesTable {
  /** Load sequence number given by the store (1 for the first load). */
  readonly version: number;
  /** sha256 hex over every file's name and text. */
  readonly hash: string;
  readonly files: readonly RulesFileInfo[];
  /** Wall-clock ms of the load. */
  readonly loadedAt: number;
  /** In match order; the last one is the default (matches everything). */
  readonly rules: readonly Rule[];
  readonly groups: ReadonlyMap<string, TargetGroup>;
  readonly carriers: ReadonlyMap<string, Carrier>;
  /** Owning carrier of each carrier target. */
  readonly carrierOfTarget: ReadonlyMap<string, string>;
  /** Matching accelerator for Request-URI user tests (user-index.ts); undefined when few rules have one. */
  readonly userIndex: UserIndex | undefined;
}

// ---------------------------------------------------------------------------
// Decisions.

export type Decision =
  | {
      readonly action: "route";
      readonly rule: Rule;
      readonly group: TargetGroup;
      readonly strategy: Strategy;
      /** Usable members, the one to try first first; the rest are per-request failover. */
      readonly targets: readonly string[];
      /** REGISTER in a `dual` group: usable members that get a copy (their answers are absorbed). */
      readonly fork: readonly string[];
      readonly deviceClass: string | undefined;
      readonly rewrite: Rewrite | undefined;
      readonly why: string;
    }
  /** `reason` is wire text (UTF-8 bytes, src/sip/wire-text.ts); `why` is for people. */
  | { readonly action: "reject"; readonly rule: Rule; readonly status: number; readonly reason: string; readonly why: string }
  | { readonly action: "drop"; readonly rule: Rule; readonly why: string };
