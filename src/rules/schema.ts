import { isIP } from "node:net";
import { z } from "zod";
import { expecting, showValue } from "../config/messages.js";
import { canonicalName } from "../sip/headers.js";
import { isToken } from "../sip/lex.js";
import { parseUri } from "../sip/uri.js";
import { parseNetwork } from "./address.js";

/**
 * The rules file schema (`proxy-rules/rules.yaml`, documented in the shipped
 * file's header comment). One file holds any of `groups`, `carriers` and
 * `rules`; several files are merged in order. Everything a person can get
 * wrong inside one file (types, unknown fields, regexes, networks, names,
 * mutually exclusive fields) is checked here, each issue at its own field.
 * References between files (a rule naming a group, a member naming a target
 * from the edge config, the default rule being last) are checked by
 * `crossCheck`, which runs with the whole set in view.
 */

export const STRATEGIES = ["failover", "dual", "round-robin", "weighted", "hash"] as const;
export type Strategy = (typeof STRATEGIES)[number];

export const HASH_KEYS = ["call-id", "from", "to", "request-uri"] as const;
export type HashKey = (typeof HASH_KEYS)[number];

export const RULE_TRANSPORTS = ["udp", "tcp", "tls", "ws", "wss"] as const;
export type RuleTransport = (typeof RULE_TRANSPORTS)[number];

/** Names of groups, carriers, rules, targets and device classes. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/;
const NAME_WORDS = "a name of letters, digits, _ . / - (starting with a letter or digit)";

/**
 * Headers the proxy core owns: rewriting them would break transaction and
 * dialog matching (Via, Call-ID, CSeq, From/To tags: RFC 3261 §16.6 leaves
 * them alone), the route set (Route, Record-Route, Path) or framing
 * (Content-Length), or the loop guard (Max-Forwards).
 */
const CORE_HEADERS: ReadonlySet<string> = new Set([
  "via",
  "call-id",
  "cseq",
  "from",
  "to",
  "contact",
  "route",
  "record-route",
  "path",
  "content-length",
  "max-forwards",
]);

/** Callee answers: they say the carrier works, so they may never count as breaker failures. */
const CALLEE_ANSWERS: ReadonlySet<number> = new Set([404, 480, 484, 486, 487, 600, 603, 604]);

const KNOWN_METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"];

// ---------------------------------------------------------------------------
// Field types, each worded once.

function intIn(min: number, max: number, what = `an integer from ${min} to ${max}`) {
  const error = expecting(what);
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

function oneOrMany<T extends z.ZodType>(item: T) {
  return z.union([item, z.array(item).min(1)]);
}

/** Normalizes `x | x[]` to a list. */
export function listOf<T>(v: T | readonly T[] | undefined): readonly T[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? (v as readonly T[]) : [v as T];
}

const name = z
  .string({ error: expecting(NAME_WORDS) })
  .regex(NAME, { error: expecting(NAME_WORDS) });

/**
 * A string a rule compares or writes. YAML reads `+4930` as the number 4930
 * and `0049` as 49, so a number is refused rather than turned back into
 * text that is not what was typed.
 */
const text = z
  .string({ error: expecting("a string (put numbers in quotes)") })
  .min(1, { error: expecting("a non-empty string") });

/** The detail of a RegExp syntax error without the repeated source. */
function regexProblem(source: string): string | undefined {
  try {
    new RegExp(source);
    return undefined;
  } catch (e) {
    const m = e instanceof Error ? e.message : String(e);
    const colon = m.lastIndexOf(": ");
    return colon >= 0 ? m.slice(colon + 2) : m;
  }
}

const regexSource = text.check((ctx) => {
  const problem = regexProblem(ctx.value);
  if (problem !== undefined) {
    ctx.issues.push({ code: "custom", input: ctx.value, message: `expected a valid regular expression, got ${showValue(ctx.value)} (${problem})` });
  }
});

const network = z.string({ error: expecting("an IPv4 or IPv6 address or network (CIDR)") }).check((ctx) => {
  const r = parseNetwork(ctx.value);
  if (!r.ok) ctx.issues.push({ code: "custom", input: ctx.value, message: r.message });
});

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

/** Header values and reason phrases are written onto the wire: a CR or LF would inject lines. */
const lineText = z
  .string({ error: expecting("a string (put numbers in quotes)") })
  .check((ctx) => {
    if (hasControlChar(ctx.value)) {
      ctx.issues.push({ code: "custom", input: ctx.value, message: `expected text on one line without control characters, got ${showValue(ctx.value)}` });
    }
  });

const methodName = z.string({ error: expecting("a SIP method name") }).check((ctx) => {
  const m = ctx.value;
  const upper = m.toUpperCase();
  if (!isToken(m)) ctx.issues.push({ code: "custom", input: m, message: `expected a SIP method name, got ${showValue(m)}` });
  else if (upper !== m && KNOWN_METHODS.includes(upper)) {
    // Methods are case-sensitive (RFC 3261 §7.1): "invite" would never match.
    ctx.issues.push({ code: "custom", input: m, message: `expected a method in upper case (methods are case-sensitive), got ${showValue(m)}; write ${upper}` });
  }
});

const transport = z.enum(RULE_TRANSPORTS, { error: expecting(`one of ${RULE_TRANSPORTS.join(", ")}`) });

const hostText = z.string({ error: expecting("a host name or IP address") }).check((ctx) => {
  if (isIP(ctx.value) !== 0) return;
  const r = parseUri(`sip:${ctx.value}`);
  if (!r.ok || r.uri.port !== undefined || r.uri.params.length > 0 || r.uri.user !== undefined) {
    ctx.issues.push({ code: "custom", input: ctx.value, message: `expected a host name or IP address, got ${showValue(ctx.value)}` });
  }
});

// ---------------------------------------------------------------------------
// Matching.

const stringMatchObject = z
  .strictObject({
    exact: oneOrMany(text).optional(),
    prefix: oneOrMany(text).optional(),
    regex: regexSource.optional(),
    /** ASCII case folding; hosts always compare without case (RFC 3261 §19.1.4). */
    ignoreCase: z.boolean({ error: expecting("true or false") }).optional(),
  })
  .superRefine((m, ctx) => {
    const given = (["exact", "prefix", "regex"] as const).filter((k) => m[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: "custom",
        input: m,
        message:
          given.length === 0
            ? "required field missing; expected one of exact, prefix, regex"
            : `expected one of exact, prefix, regex, got ${given.join(" and ")}`,
      });
    }
  });

/** `"1001"` (exact), `["1001", "1002"]` (any of), or `{ exact | prefix | regex, ignoreCase }`. */
const stringMatch = z.union([text, z.array(text).min(1), stringMatchObject], {
  // A bare number is the usual slip (`user: +4930`); say how to fix it. Other inputs get the loader's wording.
  error: (iss) =>
    typeof iss.input === "number" || typeof iss.input === "boolean"
      ? `expected a string (put numbers in quotes), a list or a mapping, got ${showValue(iss.input)}`
      : undefined,
});
export type StringMatchSpec = z.infer<typeof stringMatch>;

const uriMatch = z
  .strictObject({ user: stringMatch.optional(), host: stringMatch.optional() })
  .superRefine((m, ctx) => {
    if (m.user === undefined && m.host === undefined) {
      ctx.addIssue({ code: "custom", input: m, message: "required field missing; expected user or host (or both)" });
    }
  });

/** A header name as a map key: a token (RFC 3261 §7.3.1). */
function checkHeaderName(key: string, path: (string | number)[], ctx: z.RefinementCtx): void {
  if (!isToken(key)) ctx.addIssue({ code: "custom", path, input: key, message: `expected a header name (a token), got ${showValue(key)}` });
}

/** `true`: present; `false`: absent; otherwise the first value must match. */
const headerCondition = z.union([z.boolean(), stringMatch]);

const matchSchema = z
  .strictObject({
    method: oneOrMany(methodName).optional(),
    /** Source address in any of these networks (IPv4/IPv6, CIDR or single address). */
    source: oneOrMany(network).optional(),
    /** Source address in the sources of these carriers; `true`: of any carrier. */
    carrier: z.union([z.literal(true), oneOrMany(name)]).optional(),
    transport: oneOrMany(transport).optional(),
    /** The edge's own port the request arrived on. */
    localPort: oneOrMany(intIn(1, 65535, "a port from 1 to 65535")).optional(),
    requestUri: uriMatch.optional(),
    from: uriMatch.optional(),
    to: uriMatch.optional(),
    userAgent: stringMatch.optional(),
    headers: z.record(z.string(), headerCondition).optional(),
  })
  .superRefine((m, ctx) => {
    for (const key of Object.keys(m.headers ?? {})) checkHeaderName(key, ["headers", key], ctx);
  });
export type MatchSpec = z.infer<typeof matchSchema>;

// ---------------------------------------------------------------------------
// Actions.

/** Highest `$n` a replacement template refers to. */
function maxGroupRef(template: string): number {
  let max = 0;
  for (const m of template.matchAll(/\$(\d{1,2})/g)) max = Math.max(max, Number(m[1]));
  return max;
}

function captureGroups(source: string): number {
  return (new RegExp(`${source}|`).exec("")?.length ?? 1) - 1;
}

const userRewrite = z.union([
  text,
  z
    .strictObject({ regex: regexSource, replace: z.string({ error: expecting("a replacement string ($1 for the first group)") }) })
    .superRefine((r, ctx) => {
      if (regexProblem(r.regex) !== undefined) return;
      const groups = captureGroups(r.regex);
      const wanted = maxGroupRef(r.replace);
      if (wanted > groups) {
        const allowed = groups === 0 ? "no $n references (the regex has no groups)" : `references up to $${groups} (the regex has ${groups} group${groups === 1 ? "" : "s"})`;
        ctx.addIssue({ code: "custom", path: ["replace"], input: r.replace, message: `expected ${allowed}, got ${showValue(r.replace)}` });
      }
    }),
]);

const requestUriRewrite = z
  .strictObject({
    user: userRewrite.optional(),
    host: hostText.optional(),
    /** A port, or null to remove it. */
    port: z.union([intIn(1, 65535, "a port from 1 to 65535"), z.null()]).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.user === undefined && r.host === undefined && r.port === undefined) {
      ctx.addIssue({ code: "custom", input: r, message: "required field missing; expected user, host or port" });
    }
    if (typeof r.user === "string") {
      const u = parseUri(`sip:${r.user}@example.invalid`);
      if (!u.ok || u.uri.user !== r.user || u.uri.password !== undefined) {
        ctx.addIssue({ code: "custom", path: ["user"], input: r.user, message: `expected a URI user part (escape reserved characters as %HH), got ${showValue(r.user)}` });
      }
    }
  });

function checkWritableHeader(key: string, path: (string | number)[], ctx: z.RefinementCtx): void {
  if (!isToken(key)) {
    ctx.addIssue({ code: "custom", path, input: key, message: `expected a header name (a token), got ${showValue(key)}` });
  } else if (CORE_HEADERS.has(canonicalName(key))) {
    ctx.addIssue({ code: "custom", path, input: key, message: `expected a header the proxy does not manage, got ${showValue(key)} (Via, Call-ID, CSeq, From, To, Contact, Route, Record-Route, Path, Content-Length and Max-Forwards are kept by the proxy core)` });
  }
}

const headersRewrite = z
  .strictObject({
    /** Appended as new lines; a list adds one line per value. */
    add: z.record(z.string(), oneOrMany(lineText)).optional(),
    /** Replaces every line of the header with one, or adds it when absent. */
    replace: z.record(z.string(), lineText).optional(),
    remove: oneOrMany(z.string({ error: expecting("a header name") })).optional(),
  })
  .superRefine((h, ctx) => {
    for (const key of Object.keys(h.add ?? {})) checkWritableHeader(key, ["add", key], ctx);
    for (const key of Object.keys(h.replace ?? {})) checkWritableHeader(key, ["replace", key], ctx);
    const removed = listOf(h.remove);
    removed.forEach((key, i) => checkWritableHeader(key, typeof h.remove === "string" ? ["remove"] : ["remove", i], ctx));
  });

const rewriteSchema = z.strictObject({
  requestUri: requestUriRewrite.optional(),
  headers: headersRewrite.optional(),
});
export type RewriteSpec = z.infer<typeof rewriteSchema>;

const rejectSchema = z.strictObject({
  status: intIn(400, 699, "a final error status code from 400 to 699"),
  /** The reason phrase; the standard one for the status when absent. */
  reason: lineText.optional(),
});

const ruleSchema = z
  .strictObject({
    name,
    description: z.string({ error: expecting("a string") }).optional(),
    /** Absent or empty: matches every request (the default rule). */
    match: matchSchema.optional(),
    /** Forward to this target group. */
    route: name.optional(),
    /** Device class for the failover policy; the device table decides when absent. */
    deviceClass: name.optional(),
    rewrite: rewriteSchema.optional(),
    reject: rejectSchema.optional(),
    drop: z.literal(true, { error: expecting("true") }).optional(),
  })
  .superRefine((r, ctx) => {
    const given = (["route", "reject", "drop"] as const).filter((k) => r[k] !== undefined);
    if (given.length === 0) {
      ctx.addIssue({ code: "custom", input: r, message: "required field missing; expected one action: route, reject or drop" });
    } else if (given.length > 1) {
      ctx.addIssue({ code: "custom", path: [given[1]!], input: r[given[1]!], message: `expected one action, got ${given.join(" and ")}` });
    }
    if (r.route === undefined) {
      for (const k of ["deviceClass", "rewrite"] as const) {
        if (r[k] !== undefined) ctx.addIssue({ code: "custom", path: [k], input: r[k], message: `expected ${k} only on a rule that routes (with route:)` });
      }
    }
  });
export type RuleSpec = z.infer<typeof ruleSchema>;

// ---------------------------------------------------------------------------
// Groups and carriers.

const memberSchema = z.union([
  name,
  z.strictObject({
    target: name,
    /** Lower is preferred (failover, dual); the position in the list when absent. */
    priority: intIn(1, 1000).optional(),
    /** Share of traffic (weighted, hash); 1 when absent. */
    weight: intIn(1, 1000).optional(),
  }),
]);
export type MemberSpec = z.infer<typeof memberSchema>;

export function memberTarget(m: MemberSpec): string {
  return typeof m === "string" ? m : m.target;
}

const groupSchema = z
  .strictObject({
    description: z.string({ error: expecting("a string") }).optional(),
    strategy: z.enum(STRATEGIES, { error: expecting(`one of ${STRATEGIES.join(", ")}`) }).default("failover"),
    /** What the `hash` strategy hashes. */
    hashOn: z.enum(HASH_KEYS, { error: expecting(`one of ${HASH_KEYS.join(", ")}`) }).optional(),
    members: z.array(memberSchema, { error: expecting("a list of members") }).min(1, { error: "expected at least one member, got an empty list" }),
  })
  .superRefine((g, ctx) => {
    if (g.strategy === "hash" && g.hashOn === undefined) {
      ctx.addIssue({ code: "custom", path: ["hashOn"], message: `required field missing; expected one of ${HASH_KEYS.join(", ")} (strategy hash)` });
    }
    if (g.strategy !== "hash" && g.hashOn !== undefined) {
      ctx.addIssue({ code: "custom", path: ["hashOn"], input: g.hashOn, message: `expected hashOn only with strategy hash, got strategy ${g.strategy}` });
    }
    const first = new Map<string, number>();
    g.members.forEach((m, i) => {
      const t = memberTarget(m);
      const at = first.get(t);
      if (at !== undefined) {
        ctx.addIssue({ code: "custom", path: ["members", i], input: t, message: `expected each target once in a group, got ${showValue(t)} again (first at members[${at}])` });
      } else first.set(t, i);
    });
  });
export type GroupSpec = z.infer<typeof groupSchema>;

const breakerSchema = z
  .strictObject({
    /** Consecutive failures that trip the breaker; one bad call never does (DESIGN.md §2.5). */
    failures: intIn(2, 1000, "an integer from 2 to 1000 (one bad call never trips a breaker)").default(5),
    /** ...all within this many seconds. */
    windowSeconds: intIn(1, 86_400).default(60),
    /** Open this long before one call may test the carrier. */
    coolDownSeconds: intIn(1, 86_400).default(30),
    /** Each failed test doubles the cool-down, up to this. */
    maxCoolDownSeconds: intIn(1, 86_400).optional(),
    /** Final responses that count as failures, besides no response and transport errors. */
    failureCodes: z
      .array(
        intIn(400, 699, "a final error status code from 400 to 699").refine((c) => !CALLEE_ANSWERS.has(c), {
          error: (iss) => `expected a status code that says the carrier failed, got ${String(iss.input)} (a callee's answer never counts against a carrier)`,
        }),
        { error: expecting("a list of status codes") },
      )
      .default([408, 503]),
    /** A test call with no outcome after this long frees the half-open slot for another. */
    trialTimeoutSeconds: intIn(1, 3600).default(32),
  })
  .superRefine((b, ctx) => {
    if (b.maxCoolDownSeconds !== undefined && b.maxCoolDownSeconds < b.coolDownSeconds) {
      ctx.addIssue({
        code: "custom",
        path: ["maxCoolDownSeconds"],
        input: b.maxCoolDownSeconds,
        message: `expected at least coolDownSeconds (${b.coolDownSeconds}), got ${b.maxCoolDownSeconds}`,
      });
    }
  });
export type BreakerSpec = z.infer<typeof breakerSchema>;

const carrierSchema = z
  .strictObject({
    description: z.string({ error: expecting("a string") }).optional(),
    /** Where the carrier's inbound trunk traffic comes from. */
    sources: oneOrMany(network).optional(),
    /** The carrier's own targets (from the edge config), for outbound calls and its breaker. */
    targets: oneOrMany(name).optional(),
    breaker: breakerSchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.sources === undefined && c.targets === undefined) {
      ctx.addIssue({ code: "custom", input: c, message: "required field missing; expected sources (inbound), targets (outbound) or both" });
    }
  });
export type CarrierSpec = z.infer<typeof carrierSchema>;

function checkNames(map: Record<string, unknown> | undefined, section: string, ctx: z.RefinementCtx): void {
  for (const key of Object.keys(map ?? {})) {
    if (!NAME.test(key)) ctx.addIssue({ code: "custom", path: [section, key], input: key, message: `expected ${NAME_WORDS}, got ${showValue(key)}` });
  }
}

const fileShape = z
  .strictObject({
    groups: z.record(z.string(), groupSchema, { error: expecting("a mapping of group names to groups") }).optional(),
    carriers: z.record(z.string(), carrierSchema, { error: expecting("a mapping of carrier names to carriers") }).optional(),
    rules: z.array(ruleSchema, { error: expecting("a list of rules") }).optional(),
  }, { error: expecting("a mapping with groups, carriers and rules") })
  .superRefine((f, ctx) => {
    checkNames(f.groups, "groups", ctx);
    checkNames(f.carriers, "carriers", ctx);
  });
export type RulesFileSpec = z.infer<typeof fileShape>;

// ---------------------------------------------------------------------------
// References across the whole set of files.

interface Defined {
  readonly file: string;
  readonly field: string;
}

/** What the other files define, for the checks of one file. */
export interface CrossContext {
  readonly file: string;
  /** Target names from the edge config. */
  readonly knownTargets: ReadonlySet<string>;
  /** Device classes from the device table; not checked when undefined. */
  readonly knownDeviceClasses: ReadonlySet<string> | undefined;
  /** Every group and carrier of every file, first definition first. */
  readonly groups: ReadonlyMap<string, Defined>;
  readonly carriers: ReadonlyMap<string, Defined & { readonly hasSources: boolean }>;
  /** Rule names defined in earlier files. */
  readonly rulesBefore: ReadonlyMap<string, Defined>;
  /** Targets owned by carriers of earlier files. */
  readonly carrierTargetsBefore: ReadonlyMap<string, string>;
  /** A match-all rule in an earlier file (so this file's rules are unreachable). */
  readonly matchAllBefore: Defined | undefined;
  /** This file holds the last rule of the set (which must be the default). */
  readonly holdsLastRule: boolean;
  /** No file has any rule: this (first) file gets the error. */
  readonly noRulesAnywhere: boolean;
}

const MAX_LISTED = 12;

function oneOf(names: Iterable<string>): string {
  const all = [...names].sort();
  if (all.length === 0) return "none is defined";
  const shown = all.slice(0, MAX_LISTED).join(", ");
  return `one of: ${shown}${all.length > MAX_LISTED ? `, ... (${all.length} in all)` : ""}`;
}

/** A rule without conditions (`match` absent, empty, or with only an empty `headers`): the default. */
export function matchesAll(r: RuleSpec): boolean {
  const m = r.match;
  if (m === undefined) return true;
  return Object.entries(m).every(([k, v]) => v === undefined || (k === "headers" && Object.keys(v as object).length === 0));
}

function where(d: Defined, file: string): string {
  return d.file === file ? d.field : `${d.field} in ${d.file}`;
}

/** The reference checks, as a refinement of one file's schema. */
function crossCheck(f: RulesFileSpec, cx: CrossContext, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], input: unknown, message: string): void => {
    ctx.addIssue({ code: "custom", path, input, message });
  };
  for (const [g, spec] of Object.entries(f.groups ?? {})) {
    const first = cx.groups.get(g);
    if (first !== undefined && first.file !== cx.file) issue(["groups", g], g, `expected a unique group name, got ${showValue(g)} again (first defined at ${where(first, cx.file)})`);
    spec.members.forEach((m, i) => {
      const t = memberTarget(m);
      if (!cx.knownTargets.has(t)) {
        issue(typeof m === "string" ? ["groups", g, "members", i] : ["groups", g, "members", i, "target"], t, `expected a target defined in the edge config (${oneOf(cx.knownTargets)}), got ${showValue(t)}`);
      }
    });
  }
  const ownedHere = new Map<string, string>();
  for (const [c, spec] of Object.entries(f.carriers ?? {})) {
    const first = cx.carriers.get(c);
    if (first !== undefined && first.file !== cx.file) issue(["carriers", c], c, `expected a unique carrier name, got ${showValue(c)} again (first defined at ${where(first, cx.file)})`);
    const targets = listOf(spec.targets);
    targets.forEach((t, i) => {
      const path = typeof spec.targets === "string" ? ["carriers", c, "targets"] : ["carriers", c, "targets", i];
      if (!cx.knownTargets.has(t)) {
        issue(path, t, `expected a target defined in the edge config (${oneOf(cx.knownTargets)}), got ${showValue(t)}`);
        return;
      }
      const owner = cx.carrierTargetsBefore.get(t) ?? ownedHere.get(t);
      // A target's outcomes feed its carrier's breaker: it cannot belong to two.
      if (owner !== undefined) issue(path, t, `expected a target no other carrier uses, got ${showValue(t)} (already a target of carrier ${owner})`);
      else ownedHere.set(t, c);
    });
  }
  const rules = f.rules ?? [];
  if (cx.noRulesAnywhere) issue(["rules"], f.rules, "required field missing; expected a list of rules ending with the default rule (one without match)");
  const namesHere = new Map<string, number>();
  let matchAllAt: Defined | undefined = cx.matchAllBefore;
  rules.forEach((r, i) => {
    if (matchAllAt !== undefined) {
      issue(["rules", i], r.name, `expected no rule after the default: rule ${showValue(r.name)} can never match (${where(matchAllAt, cx.file)} matches everything)`);
    }
    if (matchesAll(r) && matchAllAt === undefined) matchAllAt = { file: cx.file, field: `rules[${i}]` };
    const dupe = cx.rulesBefore.get(r.name);
    const dupeHere = namesHere.get(r.name);
    if (dupe !== undefined || dupeHere !== undefined) {
      const at = dupe !== undefined ? where(dupe, cx.file) : `rules[${dupeHere}]`;
      issue(["rules", i, "name"], r.name, `expected a unique rule name, got ${showValue(r.name)} again (first at ${at})`);
    } else namesHere.set(r.name, i);
    if (r.route !== undefined && !cx.groups.has(r.route)) {
      issue(["rules", i, "route"], r.route, `expected a group defined under groups (${oneOf(cx.groups.keys())}), got ${showValue(r.route)}`);
    }
    const carrier = r.match?.carrier;
    if (carrier !== undefined && carrier !== true) {
      listOf(carrier).forEach((c, j) => {
        const path = typeof carrier === "string" ? ["rules", i, "match", "carrier"] : ["rules", i, "match", "carrier", j];
        const def = cx.carriers.get(c);
        if (def === undefined) {
          issue(path, c, `expected a carrier defined under carriers (${oneOf(cx.carriers.keys())}), got ${showValue(c)}`);
        } else if (!def.hasSources) {
          issue(path, c, `expected a carrier with sources (inbound networks), got ${showValue(c)}, which has none`);
        }
      });
    } else if (carrier === true && ![...cx.carriers.values()].some((c) => c.hasSources)) {
      issue(["rules", i, "match", "carrier"], true, "expected at least one carrier with sources for carrier: true, got none");
    }
    if (r.deviceClass !== undefined && cx.knownDeviceClasses !== undefined && !cx.knownDeviceClasses.has(r.deviceClass)) {
      issue(["rules", i, "deviceClass"], r.deviceClass, `expected a device class from the device table (${oneOf(cx.knownDeviceClasses)}), got ${showValue(r.deviceClass)}`);
    }
  });
  const last = rules.at(-1);
  // A match-all rule above it was already reported for every rule it shadows.
  if (cx.holdsLastRule && last !== undefined && !matchesAll(last) && matchAllAt === undefined) {
    issue(["rules", rules.length - 1, "match"], last.match, `expected the last rule to be the default (a rule without match), got rule ${showValue(last.name)} with match conditions`);
  }
}

/** Schema of one rules file; with a context it also checks references across the set. */
export function rulesFileSchema(cross?: CrossContext): z.ZodType<RulesFileSpec> {
  if (cross === undefined) return fileShape;
  return fileShape.superRefine((f, ctx) => crossCheck(f, cross, ctx));
}
