import type { SipMessage } from "../sip/message.js";
import { aorOf } from "../sip/aor.js";
import { parse } from "../sip/parse.js";
import { fromWire } from "../sip/wire-text.js";
import { readAddress } from "./address.js";
import type { CarrierBreakers } from "./carrier-breakers.js";
import { decideForRule } from "./decide.js";
import { MessageInput } from "./input.js";
import { acquireFacts, carrierOfSource, firstFailing, holds, releaseFacts, type Facts } from "./match.js";
import { rewriteRequestUri } from "./rewrite.js";
import type { RuleTransport } from "./schema.js";
import { hashKeyOf, rendezvousOrder } from "./strategy.js";
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
  type Decision,
  type RoutingView,
  type Rule,
  type RulesTable,
  type TargetGroup,
} from "./types.js";

/**
 * The dry run (DESIGN.md §2.6): which rule a request matches and why the
 * rules above it did not, where it would go now and why (health, breakers,
 * strategy, device class), and the request line after rewrites. The result
 * is plain data (for the admin API) plus the same as text (for the CLI).
 * Nothing is changed: rotations do not advance, no breaker test is taken,
 * the message is not rewritten.
 */

/** Health and the rest as explain may describe them; only `usable` is required. */
export interface ExplainView extends RoutingView {
  /** One line about the view as a whole, printed once (e.g. that there is no health data). */
  readonly note?: string;
  /** Words on a target's health ("up since 10:02:11", "down: 3 probe timeouts"). */
  health?(target: string): string | undefined;
  /** Words on a carrier's breaker ("open until 10:05:00: 5 failures in a row"). */
  breaker?(carrier: string): string | undefined;
  /** The device class the device table gives this request when no rule sets one. */
  deviceClassOf?(request: { readonly userAgent: string | undefined; readonly sourceAddress: string; readonly aor: string | undefined }): string | undefined;
  /** Where a device class is homed now and any pending switch. */
  deviceClassNote?(className: string): string | undefined;
}

/** A view for a dry run outside a running edge: every target presumed usable. */
export const OFFLINE_VIEW: ExplainView = {
  usable: () => true,
  note: "no health data (dry run outside a running edge): every target presumed usable",
};

export interface ExplainContext {
  /** `{ address, port }`, or text `IP:PORT` / `[IPv6]:PORT` / a bare address. */
  readonly source: { readonly address: string; readonly port: number } | string;
  readonly transport: RuleTransport;
  readonly localPort: number;
}

export interface ExplainedMember {
  readonly target: string;
  readonly priority: number;
  readonly weight: number;
  readonly carrier: string | undefined;
  readonly usable: boolean;
  readonly health: string | undefined;
  readonly breaker: string | undefined;
  /** 1-based place in the order tried; undefined when not usable. */
  readonly place: number | undefined;
}

export interface Explanation {
  readonly rules: { readonly version: number; readonly hash: string; readonly count: number; readonly files: readonly string[] };
  readonly request: { readonly method: string; readonly requestUri: string; readonly source: string; readonly transport: RuleTransport; readonly localPort: number };
  /** Rules above the matched one, each with the first condition that failed. */
  readonly notMatched: readonly { readonly rule: string; readonly file: string; readonly line: number; readonly failed: string }[];
  readonly matched: { readonly rule: string; readonly file: string; readonly line: number; readonly description: string | undefined; readonly because: readonly string[] };
  readonly action: "route" | "reject" | "drop";
  readonly status: number | undefined;
  readonly reason: string | undefined;
  readonly route:
    | {
        readonly group: string;
        readonly strategy: string;
        readonly hashOn: string | undefined;
        readonly members: readonly ExplainedMember[];
        readonly order: readonly string[];
        readonly chosen: string | undefined;
        readonly chosenWhy: string;
        readonly fork: readonly string[];
      }
    | undefined;
  readonly deviceClass: { readonly name: string | undefined; readonly from: "rule" | "device table" | "unknown"; readonly note: string | undefined } | undefined;
  readonly requestLine: { readonly before: string; readonly after: string; readonly changed: boolean; readonly rewrite: string | undefined; readonly error: string | undefined };
  readonly headerChanges: readonly string[];
  readonly why: string;
  /** The view's own note, if any. */
  readonly note: string | undefined;
  readonly text: string;
}

export type SourceResult = { ok: true; address: string; port: number } | { ok: false; reason: string };

/** `192.0.2.1:5060`, `[2001:db8::1]:5060`, or a bare address (port 5060). */
export function parseSource(text: string): SourceResult {
  const s = text.trim();
  let address = s;
  let portText: string | undefined;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) return { ok: false, reason: `expected [IPv6]:PORT, got ${JSON.stringify(text)}` };
    address = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return { ok: false, reason: `expected [IPv6]:PORT, got ${JSON.stringify(text)}` };
      portText = rest.slice(1);
    }
  } else if (s.indexOf(":") === s.lastIndexOf(":") && s.indexOf(":") >= 0) {
    address = s.slice(0, s.indexOf(":"));
    portText = s.slice(s.indexOf(":") + 1);
  }
  if (readAddress(address, [0, 0, 0, 0]) === 0) return { ok: false, reason: `expected an IP address, got ${JSON.stringify(address)}` };
  const port = portText === undefined ? 5060 : Number(portText);
  if (portText !== undefined && (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535)) {
    return { ok: false, reason: `expected a port from 1 to 65535, got ${JSON.stringify(portText)}` };
  }
  return { ok: true, address, port };
}

export type MessageFileResult = { ok: true; message: SipMessage } | { ok: false; reason: string };

/**
 * Parses a message written by hand for a dry run: LF line ends become CRLF,
 * and a missing empty line after the headers is added.
 */
export function parseMessageText(text: string): MessageFileResult {
  // A byte order mark, as read from a UTF-8 file (latin1, like the wire) or given as text.
  let s = text.replace(/^(?:\uFEFF|\xEF\xBB\xBF)/, "");
  if (s.indexOf("\r\n") < 0) s = s.replace(/\n/g, "\r\n");
  s = s.replace(/^(?:\r\n)+/, "");
  if (s.indexOf("\r\n\r\n") < 0) s = s.endsWith("\r\n") ? `${s}\r\n` : `${s}\r\n\r\n`;
  const r = parse(s);
  if (!r.ok) return { ok: false, reason: `not a valid SIP message: ${r.reason} (at offset ${r.offset})` };
  if (!r.message.isRequest) return { ok: false, reason: "expected a request, got a response: rules route requests" };
  return { ok: true, message: r.message };
}

// ---------------------------------------------------------------------------

function shown(v: string | undefined): string {
  return v === undefined ? "none" : JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
}

/** What the request had for a condition, to say why it failed. */
function actual(c: Condition, f: Facts): string {
  const input = f.input!;
  switch (c.kind) {
    case C_METHOD:
      return input.method;
    case C_TRANSPORT:
      return input.transport;
    case C_LOCAL_PORT:
      return String(input.localPort);
    case C_SOURCE:
    case C_CARRIER:
      return f.source() === 0 ? `${shown(input.sourceAddress)} (not an IP address)` : input.sourceAddress;
    case C_RURI_USER:
      return shown(f.requestUriUser());
    case C_RURI_HOST:
      return shown(f.requestUriHost());
    case C_FROM_USER:
      f.fromParts();
      return shown(f.fromUser);
    case C_FROM_HOST:
      f.fromParts();
      return shown(f.fromHost);
    case C_TO_USER:
      f.toParts();
      return shown(f.toUser);
    case C_TO_HOST:
      f.toParts();
      return shown(f.toHost);
    case C_USER_AGENT:
      return shown(f.ua());
    case C_HEADER_PRESENT:
    case C_HEADER_ABSENT:
      return input.header(c.header) === undefined ? "absent" : "present";
    case C_HEADER_VALUE:
      return shown(input.header(c.header));
  }
}

function chosenWhy(g: TargetGroup, order: readonly string[], f: Facts, isRegister: boolean): string {
  const first = order[0];
  if (first === undefined) return "no usable member: the request is answered 503";
  switch (g.strategy) {
    case "failover":
      return `${first}: the first usable member in priority order`;
    case "dual":
      return isRegister
        ? `${first}: the first usable member in priority order answers; ${order.slice(1).join(", ") || "no other member"} get${order.length === 2 ? "s" : ""} a copy of the REGISTER`
        : `${first}: the first usable member in priority order (only REGISTER is copied to the others)`;
    case "round-robin":
      return `${first}: next in the rotation over ${order.length} usable member${order.length === 1 ? "" : "s"}`;
    case "weighted":
      return `${first}: its turn in the weighted rotation (weights ${g.members.map((m) => `${m.target}=${m.weight}`).join(", ")})`;
    case "hash": {
      const all = rendezvousOrder(g, hashKeyOf(f, g.hashOn!));
      const top = all[0];
      const key = hashKeyText(f, g);
      return top === first
        ? `${first}: the highest rendezvous score for ${g.hashOn} ${key}`
        : `${first}: the highest rendezvous score for ${g.hashOn} ${key} among usable members (${top} scores higher but is unusable)`;
    }
  }
}

function hashKeyText(f: Facts, g: TargetGroup): string {
  const input = f.input!;
  switch (g.hashOn) {
    case "call-id":
      return shown(input.header("call-id"));
    case "from":
      f.fromParts();
      return shown(`${f.fromUser ?? ""}@${f.fromHost ?? ""}`);
    case "to":
      f.toParts();
      return shown(`${f.toUser ?? ""}@${f.toHost ?? ""}`);
    case "request-uri":
    case undefined:
      return shown(`${f.requestUriUser() ?? ""}@${f.requestUriHost() ?? ""}`);
  }
}

const MAX_LISTED_SKIPS = 20;

/**
 * Explains where `message` would go now. `view` says which targets are
 * usable (and may describe them); with `breakers`, a carrier whose breaker
 * is open makes its targets unusable, as on the live path.
 */
export function explain(
  table: RulesTable,
  message: SipMessage,
  ctx: ExplainContext,
  view: ExplainView = OFFLINE_VIEW,
  breakers?: CarrierBreakers,
): Explanation {
  let address: string;
  let port: number;
  if (typeof ctx.source === "string") {
    const s = parseSource(ctx.source);
    address = s.ok ? s.address : ctx.source;
    port = s.ok ? s.port : 0;
  } else {
    address = ctx.source.address;
    port = ctx.source.port;
  }
  const input = new MessageInput().set(message, { address, port }, ctx.transport, ctx.localPort);
  const usable = (t: string): boolean => {
    if (!view.usable(t)) return false;
    const carrier = table.carrierOfTarget.get(t);
    return carrier === undefined || breakers === undefined || breakers.canAttempt(carrier);
  };
  const breakerWords = (carrier: string | undefined): string | undefined => {
    if (carrier === undefined) return undefined;
    const fromView = view.breaker?.(carrier);
    if (fromView !== undefined) return fromView;
    const snap = breakers?.get(carrier)?.snapshot();
    if (snap === undefined) return undefined;
    if (snap.status === "open") return `open until ${new Date(snap.openUntil ?? 0).toISOString()} (${snap.history.at(-1)?.reason ?? ""})`;
    if (snap.status === "half-open") return snap.testInFlight ? "half-open, test call in flight" : "half-open, next call tests the carrier";
    return snap.consecutiveFailures > 0 ? `closed (${snap.consecutiveFailures} failure${snap.consecutiveFailures === 1 ? "" : "s"} in a row)` : "closed";
  };

  const f = acquireFacts(input);
  try {
    const notMatched: { rule: string; file: string; line: number; failed: string }[] = [];
    let rule: Rule | undefined;
    for (const r of table.rules) {
      const c = firstFailing(r, f);
      if (c === undefined) {
        rule = r;
        break;
      }
      notMatched.push({ rule: r.name, file: r.file, line: r.line, failed: `${c.text}, but the request has ${actual(c, f)}` });
    }
    // The last rule has no conditions, so a rule always matched.
    const matchedRule = rule!;
    const because =
      matchedRule.conditions.length === 0
        ? ["no conditions (the default rule)"]
        : matchedRule.conditions.map((c) => {
            const carrier = holds(c, f) ? carrierOfSource(c, f) : undefined;
            return `${c.text} (the request has ${actual(c, f)}${carrier !== undefined ? `, a ${carrier} network` : ""})`;
          });

    const decision: Decision = decideForRule(matchedRule, f, { usable }, false);
    const a = matchedRule.action;
    let route: Explanation["route"];
    let deviceClass: Explanation["deviceClass"];
    if (a.kind === "route") {
      const g = a.group;
      const order = decision.action === "route" ? decision.targets : [];
      const members: ExplainedMember[] = g.members.map((m) => {
        const i = order.indexOf(m.target);
        return {
          target: m.target,
          priority: m.priority,
          weight: m.weight,
          carrier: m.carrier,
          usable: usable(m.target),
          health: view.health?.(m.target),
          breaker: breakerWords(m.carrier),
          place: i < 0 ? undefined : i + 1,
        };
      });
      route = {
        group: g.name,
        strategy: g.strategy,
        hashOn: g.hashOn,
        members,
        order,
        chosen: order[0],
        chosenWhy: chosenWhy(g, order, f, input.method === "REGISTER"),
        fork: decision.action === "route" ? decision.fork : [],
      };
      let name = a.deviceClass;
      let from: "rule" | "device table" | "unknown" = "rule";
      if (name === undefined) {
        name = view.deviceClassOf?.({ userAgent: message.get("user-agent"), sourceAddress: address, aor: aorOf(message) });
        from = name === undefined ? "unknown" : "device table";
      }
      deviceClass = { name, from, note: name === undefined ? undefined : view.deviceClassNote?.(name) };
    }

    const before = `${message.method} ${message.requestUri} SIP/2.0`;
    let after = before;
    let changed = false;
    let rewriteError: string | undefined;
    const headerChanges: string[] = [];
    const rw = a.kind === "route" ? a.rewrite : undefined;
    if (rw !== undefined) {
      if (message.uri !== undefined) {
        const r = rewriteRequestUri(message.uri, rw);
        if (r.ok) {
          after = `${message.method} ${r.text} SIP/2.0`;
          changed = r.changed;
        } else rewriteError = r.reason;
      }
      for (const h of rw.removeHeaders) headerChanges.push(`remove ${h}`);
      for (const [h, v] of rw.replaceHeaders) headerChanges.push(`replace ${h}: ${fromWire(v)}`);
      for (const [h, v] of rw.addHeaders) headerChanges.push(`add ${h}: ${fromWire(v)}`);
    }

    const result: Omit<Explanation, "text"> = {
      rules: { version: table.version, hash: table.hash, count: table.rules.length, files: table.files.map((x) => x.file) },
      request: { method: message.method, requestUri: message.requestUri, source: `${address.includes(":") ? `[${address}]` : address}:${port}`, transport: ctx.transport, localPort: ctx.localPort },
      notMatched,
      matched: { rule: matchedRule.name, file: matchedRule.file, line: matchedRule.line, description: matchedRule.description, because },
      action: a.kind,
      status: decision.action === "reject" ? decision.status : undefined,
      reason: decision.action === "reject" ? fromWire(decision.reason) : undefined,
      route,
      deviceClass,
      requestLine: { before, after, changed, rewrite: rw?.text === "" ? undefined : rw?.text, error: rewriteError },
      headerChanges,
      why: decision.why,
      note: view.note,
    };
    return Object.freeze({ ...result, text: render(result) });
  } finally {
    releaseFacts(f);
  }
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + " ".repeat(n - s.length);
}

function render(e: Omit<Explanation, "text">): string {
  const lines: string[] = [];
  lines.push(`rules: version ${e.rules.version}, sha256 ${e.rules.hash.slice(0, 12)}, ${e.rules.count} rule${e.rules.count === 1 ? "" : "s"} from ${e.rules.files.join(", ")}`);
  lines.push(`request: ${e.request.method} ${e.request.requestUri} from ${e.request.source} over ${e.request.transport}, to port ${e.request.localPort}`);
  if (e.notMatched.length > 0) {
    lines.push("not matched:");
    for (const n of e.notMatched.slice(0, MAX_LISTED_SKIPS)) lines.push(`  ${n.rule} (${n.file}:${n.line}): ${n.failed}`);
    if (e.notMatched.length > MAX_LISTED_SKIPS) lines.push(`  ... and ${e.notMatched.length - MAX_LISTED_SKIPS} more`);
  }
  lines.push(`matched: ${e.matched.rule} (${e.matched.file}:${e.matched.line})${e.matched.description !== undefined ? ` - ${e.matched.description}` : ""}`);
  for (const b of e.matched.because) lines.push(`  ${b}`);
  if (e.action === "drop") lines.push("action: drop (no answer is sent)");
  if (e.action === "reject") lines.push(`action: reject ${e.status} ${e.reason}`);
  if (e.route !== undefined) {
    const r = e.route;
    lines.push(`action: route to group ${r.group} (${r.strategy}${r.hashOn !== undefined ? ` on ${r.hashOn}` : ""})`);
    if (e.deviceClass !== undefined) {
      const d = e.deviceClass;
      const name = d.name === undefined ? "not set by the rule; the device table decides" : `${d.name} (from the ${d.from})`;
      lines.push(`device class: ${name}${d.note !== undefined ? `; ${d.note}` : ""}`);
    }
    lines.push(e.note !== undefined ? `members (${e.note}):` : "members:");
    const width = Math.max(...r.members.map((m) => m.target.length));
    for (const m of r.members) {
      const parts = [pad(m.target, width), `priority ${m.priority}`];
      if (r.strategy === "weighted" || (r.strategy === "hash" && r.members.some((x) => x.weight !== 1))) parts.push(`weight ${m.weight}`);
      parts.push(m.usable ? "usable  " : "unusable");
      if (m.health !== undefined) parts.push(`health: ${m.health}`);
      if (m.carrier !== undefined) parts.push(`carrier ${m.carrier}${m.breaker !== undefined ? ` breaker ${m.breaker}` : ""}`);
      if (m.target === r.chosen) parts.push("<- chosen");
      else if (m.place !== undefined) parts.push(`(#${m.place} on failure)`);
      lines.push(`  ${parts.join("  ")}`);
    }
    lines.push(`chosen: ${r.chosenWhy}`);
  }
  const rl = e.requestLine;
  if (rl.error !== undefined) lines.push(`request line: ${rl.before} (rewrite not possible: ${rl.error})`);
  else if (rl.changed) lines.push(`request line: ${rl.before} -> ${rl.after}`);
  else lines.push(`request line: ${rl.before} (unchanged)`);
  for (const h of e.headerChanges) lines.push(`  ${h}`);
  lines.push(`why: ${e.why}`);
  return lines.join("\n") + "\n";
}
