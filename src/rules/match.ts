import { parseNameAddr } from "../sip/nameaddr.js";
import { unescape } from "../sip/uri.js";
import { inNetwork, readAddress, type AddressWords, type Network } from "./address.js";
import { METHOD_BITS, TRANSPORT_BITS } from "./compile.js";
import { testString } from "./string-match.js";
import { candidateScratch, collectCandidates, type CandidateScratch } from "./user-index.js";
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
  type Condition,
  type MatchInput,
  type Rule,
  type RulesTable,
} from "./types.js";

/**
 * First-match evaluation. What a condition needs from the request is
 * derived at most once per request and only when some rule asks (the source
 * address read into words, the From header parsed, ...), in a scratch
 * `Facts` that is reused across requests: matching allocates nothing unless
 * a rule looks at From/To (which must be parsed).
 */

const F_SOURCE = 1;
const F_RURI = 2;
const F_FROM = 4;
const F_TO = 8;
const F_UA = 16;
const F_METHOD = 32;
const F_TRANSPORT = 64;

/** What has been derived from one request so far. */
export class Facts {
  input: MatchInput | undefined;
  private known = 0;
  /** 0 when the source is not an IP address. */
  family: 0 | 4 | 6 = 0;
  readonly words: AddressWords = [0, 0, 0, 0];
  ruriUser: string | undefined;
  ruriHost: string | undefined;
  fromUser: string | undefined;
  fromHost: string | undefined;
  toUser: string | undefined;
  toHost: string | undefined;
  userAgent: string | undefined;
  /** METHOD_BITS of the request's method; 0 for an extension method. */
  methodBit = 0;
  /** TRANSPORT_BITS of the request's transport. */
  transportBit = 0;
  /** Rules whose indexed user test holds (see user-index.ts). */
  readonly candidates: CandidateScratch = candidateScratch();

  reset(input: MatchInput | undefined): void {
    this.input = input;
    this.known = 0;
  }

  private in(): MatchInput {
    return this.input!;
  }

  method(): number {
    if ((this.known & F_METHOD) === 0) {
      this.known |= F_METHOD;
      this.methodBit = METHOD_BITS.get(this.in().method) ?? 0;
    }
    return this.methodBit;
  }

  transport(): number {
    if ((this.known & F_TRANSPORT) === 0) {
      this.known |= F_TRANSPORT;
      this.transportBit = TRANSPORT_BITS[this.in().transport] ?? 0;
    }
    return this.transportBit;
  }

  source(): 0 | 4 | 6 {
    if ((this.known & F_SOURCE) === 0) {
      this.known |= F_SOURCE;
      this.family = readAddress(this.in().sourceAddress, this.words);
    }
    return this.family;
  }

  private ruri(): void {
    if ((this.known & F_RURI) !== 0) return;
    this.known |= F_RURI;
    const u = this.in().requestUri;
    // User parts compare after unescaping (RFC 3261 §19.1.4); tel: numbers are in `user` too.
    this.ruriUser = u?.user === undefined ? undefined : unescape(u.user);
    this.ruriHost = u === undefined || u.host === "" ? undefined : u.host;
  }

  requestUriUser(): string | undefined {
    this.ruri();
    return this.ruriUser;
  }

  requestUriHost(): string | undefined {
    this.ruri();
    return this.ruriHost;
  }

  private nameAddr(flag: number, header: string): [string | undefined, string | undefined] | undefined {
    if ((this.known & flag) !== 0) return undefined;
    this.known |= flag;
    const v = this.in().header(header);
    if (v === undefined) return [undefined, undefined];
    const r = parseNameAddr(v);
    // A From/To the parser let through but that is not a name-addr matches no user/host test.
    if (!r.ok) return [undefined, undefined];
    const u = r.value.uri;
    return [u.user === undefined ? undefined : unescape(u.user), u.host === "" ? undefined : u.host];
  }

  fromParts(): void {
    const r = this.nameAddr(F_FROM, "from");
    if (r !== undefined) [this.fromUser, this.fromHost] = r;
  }

  toParts(): void {
    const r = this.nameAddr(F_TO, "to");
    if (r !== undefined) [this.toUser, this.toHost] = r;
  }

  ua(): string | undefined {
    if ((this.known & F_UA) === 0) {
      this.known |= F_UA;
      this.userAgent = this.in().header("user-agent");
    }
    return this.userAgent;
  }
}

/** One scratch for the common, non-reentrant case; a nested call gets its own. */
const shared = new Facts();
let sharedBusy = false;

export function acquireFacts(input: MatchInput): Facts {
  if (sharedBusy) {
    const f = new Facts();
    f.reset(input);
    return f;
  }
  sharedBusy = true;
  shared.reset(input);
  return shared;
}

export function releaseFacts(f: Facts): void {
  if (f === shared) {
    shared.reset(undefined);
    sharedBusy = false;
  }
}

function inAny(f: Facts, networks: readonly Network[]): number {
  if (f.source() === 0) return -1;
  const w = f.words;
  for (let i = 0; i < networks.length; i++) if (inNetwork(w[0], w[1], w[2], w[3], networks[i]!)) return i;
  return -1;
}

export function holds(c: Condition, f: Facts): boolean {
  const input = f.input!;
  switch (c.kind) {
    case C_METHOD: {
      const bit = f.method();
      return bit !== 0 ? (c.mask & bit) !== 0 : c.methods.has(input.method);
    }
    case C_TRANSPORT:
      return (f.transport() & c.mask) !== 0;
    case C_LOCAL_PORT: {
      const p = input.localPort;
      const ports = c.ports;
      for (let i = 0; i < ports.length; i++) if (ports[i] === p) return true;
      return false;
    }
    case C_SOURCE:
    case C_CARRIER:
      return inAny(f, c.networks) >= 0;
    case C_RURI_USER:
      return testString(c.test, f.requestUriUser());
    case C_RURI_HOST:
      return testString(c.test, f.requestUriHost());
    case C_FROM_USER:
      f.fromParts();
      return testString(c.test, f.fromUser);
    case C_FROM_HOST:
      f.fromParts();
      return testString(c.test, f.fromHost);
    case C_TO_USER:
      f.toParts();
      return testString(c.test, f.toUser);
    case C_TO_HOST:
      f.toParts();
      return testString(c.test, f.toHost);
    case C_USER_AGENT:
      return testString(c.test, f.ua());
    case C_HEADER_PRESENT:
      return input.header(c.header) !== undefined;
    case C_HEADER_ABSENT:
      return input.header(c.header) === undefined;
    case C_HEADER_VALUE:
      return testString(c.test, input.header(c.header));
  }
}

/** The first rule whose conditions all hold (the default rule always does). */
export function matchFacts(table: RulesTable, f: Facts): Rule {
  const rules = table.rules;
  const n = rules.length - 1;
  const index = table.userIndex;
  if (index === undefined) {
    outer: for (let i = 0; i < n; i++) {
      const conds = rules[i]!.conditions;
      for (let j = 0; j < conds.length; j++) if (!holds(conds[j]!, f)) continue outer;
      return rules[i]!;
    }
    return rules[n]!;
  }
  // Only rules without an indexed test, and the indexed rules whose user
  // test holds, can match: walk both ascending lists in step, so first
  // match is kept while the rest of the dial plan is never looked at.
  const keyOf = index.keyOf;
  const plain = index.unindexed;
  const c = f.candidates;
  collectCandidates(index, f.requestUriUser(), c);
  const cands = c.list;
  const count = c.count;
  let a = 0;
  let b = 0;
  indexed: for (;;) {
    const ia = a < plain.length ? plain[a]! : n;
    const ib = b < count ? cands[b]! : n;
    let i: number;
    if (ia < ib) {
      i = ia;
      a++;
    } else {
      i = ib;
      b++;
    }
    if (i >= n) return rules[n]!;
    const key = keyOf[i]!;
    const conds = rules[i]!.conditions;
    for (let j = 0; j < conds.length; j++) if (j !== key && !holds(conds[j]!, f)) continue indexed;
    return rules[i]!;
  }
}

/** The rule a request matches. */
export function match(table: RulesTable, input: MatchInput): Rule {
  const f = acquireFacts(input);
  try {
    return matchFacts(table, f);
  } finally {
    releaseFacts(f);
  }
}

/** The first condition of `rule` that does not hold, or undefined when the rule matches. */
export function firstFailing(rule: Rule, f: Facts): Condition | undefined {
  for (const c of rule.conditions) if (!holds(c, f)) return c;
  return undefined;
}

/** For explain: which carrier's network a source address is in. */
export function carrierOfSource(c: Condition, f: Facts): string | undefined {
  if (c.kind !== C_CARRIER) return undefined;
  const i = inAny(f, c.networks);
  return i < 0 ? undefined : c.owners[i];
}
