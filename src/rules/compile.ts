import { canonicalName } from "../sip/headers.js";
import { parseNetwork, type Network } from "./address.js";
import { breakerSettings } from "./carrier-breaker.js";
import { memberSeed } from "./hash.js";
import {
  listOf,
  matchesAll,
  memberTarget,
  type CarrierSpec,
  type GroupSpec,
  type MatchSpec,
  type RewriteSpec,
  type RuleSpec,
  type RulesFileSpec,
  type StringMatchSpec,
} from "./schema.js";
import { compileStringTest, type StringTest } from "./string-match.js";
import { toWire } from "../sip/wire-text.js";
import { buildUserIndex } from "./user-index.js";
import {
  C_CARRIER,
  C_FROM_HOST,
  C_FROM_USER,
  C_HEADER_ABSENT,
  C_HEADER_PRESENT,
  C_HEADER_VALUE,
  C_LOCAL_PORT,
  C_METHOD,
  C_RURI_HOST,
  C_RURI_USER,
  C_SOURCE,
  C_TO_HOST,
  C_TO_USER,
  C_TRANSPORT,
  C_USER_AGENT,
  type Carrier,
  type Condition,
  type Decision,
  type GroupMember,
  type Rewrite,
  type Rule,
  type RuleAction,
  type RulesFileInfo,
  type RulesTable,
  type TargetGroup,
} from "./types.js";

/**
 * Builds the frozen table from files the schema accepted (load.ts). All the
 * work a rule can be done ahead of time is done here: regexes and networks
 * compiled, header names canonicalized, conditions ordered cheapest first,
 * the decisions of reject/drop rules built, so matching a request only
 * compares.
 */

export interface ValidatedFile {
  readonly file: string;
  readonly hash: string;
  readonly spec: RulesFileSpec;
  /** 1-based line of each rule of the file. */
  readonly ruleLines: readonly number[];
}

export interface CompileInfo {
  readonly version: number;
  readonly hash: string;
  readonly loadedAt: number;
}

export const TRANSPORT_BITS: Readonly<Record<string, number>> = Object.freeze({ udp: 1, tcp: 2, tls: 4, ws: 8, wss: 16 });

/**
 * One bit per method a SIP edge sees every day (RFC 3261 and its common
 * extensions), so a method condition is one AND per rule instead of a set
 * lookup; an extension method falls back to the set.
 */
export const METHOD_BITS: ReadonlyMap<string, number> = new Map(
  ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"].map((m, i) => [m, 1 << i]),
);

/** RFC 3261 §21 reason phrases for the codes a rule is likely to reject with. */
const REASONS: Readonly<Record<number, string>> = Object.freeze({
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  410: "Gone",
  413: "Request Entity Too Large",
  414: "Request-URI Too Long",
  415: "Unsupported Media Type",
  416: "Unsupported URI Scheme",
  420: "Bad Extension",
  421: "Extension Required",
  423: "Interval Too Brief",
  480: "Temporarily Unavailable",
  481: "Call/Transaction Does Not Exist",
  482: "Loop Detected",
  483: "Too Many Hops",
  484: "Address Incomplete",
  485: "Ambiguous",
  486: "Busy Here",
  487: "Request Terminated",
  488: "Not Acceptable Here",
  491: "Request Pending",
  493: "Undecipherable",
  500: "Server Internal Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Server Time-out",
  505: "Version Not Supported",
  513: "Message Too Large",
  600: "Busy Everywhere",
  603: "Decline",
  604: "Does Not Exist Anywhere",
  606: "Not Acceptable",
});

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? (status >= 600 ? "Global Failure" : status >= 500 ? "Server Error" : "Request Rejected");
}

// ---------------------------------------------------------------------------
// Conditions.

/** Rough relative cost, so cheap tests reject a request before dear ones run. */
function cost(c: Condition): number {
  const regex = "test" in c && c.test.kind === "regex" ? 3 : 0;
  switch (c.kind) {
    case C_METHOD:
    case C_TRANSPORT:
    case C_LOCAL_PORT:
      return 0;
    case C_SOURCE:
    case C_CARRIER:
      return 1;
    case C_RURI_USER:
    case C_RURI_HOST:
      return 2 + regex;
    case C_HEADER_PRESENT:
    case C_HEADER_ABSENT:
      return 3;
    case C_USER_AGENT:
    case C_HEADER_VALUE:
      return 4 + regex;
    case C_FROM_USER:
    case C_FROM_HOST:
    case C_TO_USER:
    case C_TO_HOST:
      // The header has to be parsed as a name-addr first.
      return 6 + regex;
  }
}

function stringTest(spec: StringMatchSpec, defaultIgnoreCase: boolean, forceIgnoreCase = false): StringTest {
  if (typeof spec === "string") return compileStringTest("exact", [spec], forceIgnoreCase || defaultIgnoreCase);
  if (Array.isArray(spec)) return compileStringTest("exact", spec, forceIgnoreCase || defaultIgnoreCase);
  const obj = spec as Exclude<StringMatchSpec, string | readonly string[]>;
  const ignoreCase = forceIgnoreCase || (obj.ignoreCase ?? defaultIgnoreCase);
  if (obj.regex !== undefined) return compileStringTest("regex", [obj.regex], ignoreCase);
  if (obj.prefix !== undefined) return compileStringTest("prefix", listOf(obj.prefix), ignoreCase);
  return compileStringTest("exact", listOf(obj.exact), ignoreCase);
}

function networksOf(texts: readonly string[]): Network[] {
  return texts.map((t) => {
    const r = parseNetwork(t);
    // The schema checked every network; a failure here is a programming error.
    if (!r.ok) throw new Error(`rules compile: ${r.message}`);
    return r.network;
  });
}

function conditionsOf(m: MatchSpec | undefined, carriers: ReadonlyMap<string, Carrier>): Condition[] {
  if (m === undefined) return [];
  const out: Condition[] = [];
  if (m.method !== undefined) {
    const methods = listOf(m.method);
    let mask = 0;
    for (const name of methods) mask |= METHOD_BITS.get(name) ?? 0;
    out.push({ kind: C_METHOD, mask, methods: new Set(methods), text: `method ${methods.join(" or ")}` });
  }
  if (m.transport !== undefined) {
    const ts = listOf(m.transport);
    let mask = 0;
    for (const t of ts) mask |= TRANSPORT_BITS[t] ?? 0;
    out.push({ kind: C_TRANSPORT, mask, text: `transport ${ts.join(" or ")}` });
  }
  if (m.localPort !== undefined) {
    const ports = listOf(m.localPort);
    out.push({ kind: C_LOCAL_PORT, ports: Object.freeze([...ports]), text: `arrived on port ${ports.join(" or ")}` });
  }
  if (m.source !== undefined) {
    const texts = listOf(m.source);
    out.push({ kind: C_SOURCE, networks: Object.freeze(networksOf(texts)), text: `source in ${texts.join(", ")}` });
  }
  if (m.carrier !== undefined) {
    const names = m.carrier === true ? [...carriers.keys()] : listOf(m.carrier);
    const networks: Network[] = [];
    const owners: string[] = [];
    for (const n of names) {
      for (const net of carriers.get(n)?.sources ?? []) {
        networks.push(net);
        owners.push(n);
      }
    }
    const what = m.carrier === true ? "any carrier" : `carrier ${names.join(" or ")}`;
    out.push({ kind: C_CARRIER, networks: Object.freeze(networks), owners: Object.freeze(owners), text: `source is ${what}` });
  }
  const uri = (spec: MatchSpec["requestUri"], user: typeof C_RURI_USER | typeof C_FROM_USER | typeof C_TO_USER, host: typeof C_RURI_HOST | typeof C_FROM_HOST | typeof C_TO_HOST, label: string): void => {
    if (spec?.user !== undefined) {
      const test = stringTest(spec.user, false);
      out.push({ kind: user, test, text: `${label} user ${test.text}` });
    }
    if (spec?.host !== undefined) {
      // Hosts compare without case (RFC 3261 §19.1.4).
      const test = stringTest(spec.host, true, true);
      out.push({ kind: host, test, text: `${label} host ${test.text}` });
    }
  };
  uri(m.requestUri, C_RURI_USER, C_RURI_HOST, "Request-URI");
  uri(m.from, C_FROM_USER, C_FROM_HOST, "From");
  uri(m.to, C_TO_USER, C_TO_HOST, "To");
  if (m.userAgent !== undefined) {
    const test = stringTest(m.userAgent, true);
    out.push({ kind: C_USER_AGENT, test, text: `User-Agent ${test.text}` });
  }
  for (const [wire, cond] of Object.entries(m.headers ?? {})) {
    const header = canonicalName(wire);
    if (cond === true) out.push({ kind: C_HEADER_PRESENT, header, text: `header ${wire} present` });
    else if (cond === false) out.push({ kind: C_HEADER_ABSENT, header, text: `header ${wire} absent` });
    else {
      const test = stringTest(cond, false);
      out.push({ kind: C_HEADER_VALUE, header, test, text: `header ${wire} ${test.text}` });
    }
  }
  // Stable: equal costs keep the order they were written in.
  return out.map((c, i) => ({ c, i })).sort((a, b) => cost(a.c) - cost(b.c) || a.i - b.i).map((x) => uniform(x.c));
}

const NO_METHODS: ReadonlySet<string> = new Set();
const NO_TEST: StringTest = compileStringTest("exact", [], false);

/**
 * Every condition object gets every field, in one order: one hidden class,
 * so the matcher's property loads stay monomorphic whatever mix of rule
 * kinds a table has (a mixed table otherwise made them megamorphic).
 */
function uniform(c: Condition): Condition {
  const u = {
    kind: c.kind,
    mask: "mask" in c ? c.mask : 0,
    methods: "methods" in c ? c.methods : NO_METHODS,
    ports: "ports" in c ? c.ports : Object.freeze([] as number[]),
    networks: "networks" in c ? c.networks : Object.freeze([] as Network[]),
    owners: "owners" in c ? c.owners : Object.freeze([] as string[]),
    test: "test" in c ? c.test : NO_TEST,
    header: "header" in c ? c.header : "",
    text: c.text,
  };
  return Object.freeze(u) as unknown as Condition;
}

// ---------------------------------------------------------------------------
// Groups, carriers, rewrites.

function compileCarrier(name: string, spec: CarrierSpec): Carrier {
  return Object.freeze({
    name,
    description: spec.description,
    sources: Object.freeze(networksOf(listOf(spec.sources))),
    targets: Object.freeze([...listOf(spec.targets)]),
    breaker: breakerSettings(spec.breaker),
  });
}

function compileGroup(name: string, spec: GroupSpec, carrierOfTarget: ReadonlyMap<string, string>): TargetGroup {
  const members = spec.members
    .map((m, i): GroupMember & { position: number } => {
      const target = memberTarget(m);
      return {
        target,
        priority: typeof m === "string" ? i + 1 : (m.priority ?? i + 1),
        weight: typeof m === "string" ? 1 : (m.weight ?? 1),
        seed: memberSeed(target),
        carrier: carrierOfTarget.get(target),
        position: i,
      };
    })
    .sort((a, b) => a.priority - b.priority || a.position - b.position)
    .map(({ position: _position, ...m }) => Object.freeze(m));
  const first = members[0]!.weight;
  return Object.freeze({
    name,
    description: spec.description,
    strategy: spec.strategy,
    hashOn: spec.hashOn,
    members: Object.freeze(members),
    weighted: members.some((m) => m.weight !== first),
    // Rotation counters are runtime state, deliberately left mutable.
    rotation: { next: 0, current: members.map(() => 0) },
  });
}

function compileRewrite(spec: RewriteSpec | undefined): Rewrite | undefined {
  if (spec === undefined) return undefined;
  const parts: string[] = [];
  const ru = spec.requestUri;
  let user: Rewrite["user"];
  if (ru?.user !== undefined) {
    if (typeof ru.user === "string") {
      user = Object.freeze({ literal: toWire(ru.user), regex: undefined, replace: "" });
      parts.push(`user → ${JSON.stringify(ru.user)}`);
    } else {
      const regex = new RegExp(ru.user.regex);
      user = Object.freeze({ literal: undefined, regex, replace: toWire(ru.user.replace) });
      parts.push(`user ${String(regex)} → ${JSON.stringify(ru.user.replace)}`);
    }
  }
  if (ru?.host !== undefined) parts.push(`host → ${ru.host}`);
  if (ru?.port !== undefined) parts.push(ru.port === null ? "port removed" : `port → ${ru.port}`);
  const h = spec.headers;
  const remove = listOf(h?.remove);
  // Values go onto the wire as they are stored: UTF-8 bytes, one character each (src/sip/wire-text.ts).
  const replace = Object.entries(h?.replace ?? {}).map(([k, v]) => Object.freeze([k, toWire(v)] as const));
  const add: (readonly [string, string])[] = [];
  for (const [k, v] of Object.entries(h?.add ?? {})) for (const value of listOf(v)) add.push(Object.freeze([k, toWire(value)] as const));
  if (remove.length > 0) parts.push(`remove ${remove.join(", ")}`);
  if (replace.length > 0) parts.push(`replace ${replace.map(([k]) => k).join(", ")}`);
  if (add.length > 0) parts.push(`add ${add.map(([k]) => k).join(", ")}`);
  return Object.freeze({
    user,
    host: ru?.host,
    port: ru?.port,
    removeHeaders: Object.freeze([...remove]),
    replaceHeaders: Object.freeze(replace),
    addHeaders: Object.freeze(add),
    text: parts.join("; "),
  });
}

function compileAction(r: RuleSpec, groups: ReadonlyMap<string, TargetGroup>): RuleAction {
  if (r.route !== undefined) {
    const group = groups.get(r.route);
    if (group === undefined) throw new Error(`rules compile: rule ${r.name} routes to unknown group ${r.route}`);
    return Object.freeze({ kind: "route", group, deviceClass: r.deviceClass, rewrite: compileRewrite(r.rewrite) });
  }
  if (r.reject !== undefined) return Object.freeze({ kind: "reject", status: r.reject.status, reason: r.reject.reason ?? reasonPhrase(r.reject.status) });
  return Object.freeze({ kind: "drop" });
}

/** The decision of a rule that does not depend on health: built once. */
function fixedDecision(rule: Rule): Decision | undefined {
  const a = rule.action;
  if (a.kind === "reject") {
    // The reason goes onto the wire as it is stored: UTF-8 bytes, one character each (src/sip/wire-text.ts).
    return Object.freeze({ action: "reject", rule, status: a.status, reason: toWire(a.reason), why: `rule "${rule.name}": reject ${a.status} ${a.reason}` });
  }
  if (a.kind === "drop") return Object.freeze({ action: "drop", rule, why: `rule "${rule.name}": drop` });
  return undefined;
}

/** A compiled rule with what decide() caches for it. */
export interface CompiledRule extends Rule {
  /** The decision of a reject/drop rule, built at load. */
  readonly fixed: Decision | undefined;
  /** Route decisions of failover/dual groups by usable-member bitmask (health changes rarely). */
  readonly memo: Map<number, Decision>;
}

/** Compiles validated files into the frozen table. Throws only for input the schema would refuse. */
export function compileTable(files: readonly ValidatedFile[], info: CompileInfo): RulesTable {
  const carriers = new Map<string, Carrier>();
  for (const f of files) for (const [name, spec] of Object.entries(f.spec.carriers ?? {})) carriers.set(name, compileCarrier(name, spec));
  const carrierOfTarget = new Map<string, string>();
  for (const c of carriers.values()) for (const t of c.targets) carrierOfTarget.set(t, c.name);
  const groups = new Map<string, TargetGroup>();
  for (const f of files) for (const [name, spec] of Object.entries(f.spec.groups ?? {})) groups.set(name, compileGroup(name, spec, carrierOfTarget));

  const rules: CompiledRule[] = [];
  for (const f of files) {
    (f.spec.rules ?? []).forEach((r, i) => {
      const conditions = matchesAll(r) ? [] : conditionsOf(r.match, carriers);
      const base = {
        index: rules.length,
        name: r.name,
        description: r.description,
        file: f.file,
        line: f.ruleLines[i] ?? 0,
        conditions: Object.freeze(conditions),
        action: compileAction(r, groups),
      };
      const rule = { ...base, fixed: undefined as Decision | undefined, memo: new Map<number, Decision>() };
      rule.fixed = fixedDecision(rule);
      rules.push(Object.freeze(rule));
    });
  }
  if (rules.length === 0 || rules.at(-1)!.conditions.length > 0) throw new Error("rules compile: the last rule must be the default (no match)");
  const fileInfo: RulesFileInfo[] = files.map((f) => Object.freeze({ file: f.file, hash: f.hash }));
  return Object.freeze({
    version: info.version,
    hash: info.hash,
    files: Object.freeze(fileInfo),
    loadedAt: info.loadedAt,
    rules: Object.freeze(rules),
    groups,
    carriers,
    carrierOfTarget,
    userIndex: buildUserIndex(rules),
  });
}
