import { isIP } from "node:net";
import type { Logger } from "pino";
import type { Param } from "../sip/lex.js";
import { HeaderLine, headerValue, type HeaderField, type SipMessage } from "../sip/message.js";
import { hasTagParam, parseNameAddrList, type NameAddr } from "../sip/nameaddr.js";
import { DEFAULT_LIMITS, parse, type ParseLimits, type ParseOptions } from "../sip/parse.js";
import { hostRef, type SipUri } from "../sip/uri.js";
import { proxyVia, responseTarget } from "../sip/via.js";
import type { Clock } from "../util/clock.js";
import { CounterFamily, type Counters } from "../util/counters.js";
import { EDGE_BRANCH_PREFIX, deriveBranch, isEdgeBranch } from "./branch.js";
import { looksLikeToken, type Flow, type FlowTokenCodec } from "./flow-token.js";
import type { EdgeIdentity } from "./identity.js";
import { buildLocalResponse } from "./local-response.js";
import { defaultPort, familyOf, isStream, transportFromVia, viaTransport, type Endpoint, type Inbound, type Listener, type TransportPort } from "./ports.js";
import type { Router } from "./router.js";
import { SoftState, type RetryState, type RetryTimeout, type TxnState } from "./soft-state.js";
import type { OverloadGate } from "./overload.js";
import { TimeoutQueue } from "./timeout-queue.js";
import type { Target, TargetResolver } from "./targets.js";

export interface ProxyDeps {
  transport: TransportPort;
  identity: EdgeIdentity;
  /** Reads the current router: swapped as one reference on reload (DESIGN.md §5.6). */
  router: () => Router;
  targets: () => readonly Target[];
  resolver: TargetResolver;
  flowTokens: FlowTokenCodec;
  softState: SoftState;
  counters: Counters;
  logger: Logger;
  clock: Clock;
  failover?: FailoverOptions;
  /** Passive health signals from real traffic (DESIGN.md §2.2). */
  observer?: ProxyObserver;
  /** The health view: is this target down (never for a target without health)? */
  isDown?: (t: Target) => boolean;
  limits?: ParseLimits;
  serverName?: string;
  /** Sheds new requests and distrusts timeouts while the edge is behind; never when absent. */
  overload?: OverloadGate;
  /**
   * Other processes reading the same listeners (cluster workers,
   * src/cluster/txn-owner.ts), asked before a request timeout fails over;
   * absent in one process, which then asks nobody and stamps nothing.
   */
  peers?: TxnPeers;
}

/** What this process knows of a transaction that another may hold too. */
export interface TxnStamp {
  /** When this process first forwarded it, by `TxnPeers.stamp()`. */
  readonly firstAt: number;
  /** A target has answered it here (any response to the attempt in use). */
  readonly heard: boolean;
}

/**
 * With several workers on one shared UDP socket a phone's retransmission
 * may be read, and forwarded again, by another worker than the original:
 * the target answers only the first copy's worker, and the other one's
 * timer fires although the target is alive. Before failing over on a
 * timeout the proxy asks whether another worker owns the transaction.
 */
export interface TxnPeers {
  /** The time a transaction is first forwarded, on a clock every peer reads alike. */
  stamp(): number;
  /**
   * Does another process own the transaction `key` rather than this one
   * (`mine`)? `done(true)`: yes, leave the failover to it. `done` is called
   * exactly once, possibly before this returns; with no answer in time it
   * is called with false, so a timeout is never lost.
   */
  confirmTimeout(key: string, mine: TxnStamp, done: (yieldToPeer: boolean) => void): void;
}

export interface FailoverOptions {
  /** No response at all from a target within this time: try the next one. */
  requestTimeoutMs: number;
  /** Final responses that send the request to the next target. */
  retryOn: ReadonlySet<number>;
}

export const DEFAULT_FAILOVER: Readonly<FailoverOptions> = Object.freeze({
  requestTimeoutMs: 1000,
  retryOn: new Set([408, 500, 503, 504]),
});

export type TargetOutcome = "timeout" | "transport-error" | "failure-response" | "response";

export interface ProxyObserver {
  targetOutcome(target: Target, outcome: TargetOutcome, status?: number): void;
}

/** What a routing decision asks of the transaction beyond its targets. */
interface DecisionExtras {
  shapeResponse: ((response: SipMessage) => void) | undefined;
  onForkResponse: ((target: Target, response: SipMessage) => void) | undefined;
  fork: readonly Target[] | undefined;
  rewrite: ((request: SipMessage) => void) | undefined;
}

/** Methods that create a dialog and so get Record-Route (RFC 3261 §16.6 step 4; RFC 6665; RFC 3515). */
const DIALOG_CREATING: ReadonlySet<string> = new Set(["INVITE", "SUBSCRIBE", "REFER"]);

/**
 * The stateless proxy core (RFC 3261 §16, §16.11). One call per inbound
 * message; every decision about where an initial request goes is delegated
 * to the router. Bad input is answered (400/505/513) or dropped and counted;
 * nothing a peer sends throws out of here.
 */
export class Proxy {
  private readonly limits: ParseLimits;
  private readonly server: string;
  private readonly debug: boolean;
  private readonly failover: FailoverOptions;
  private readonly rxRequest: CounterFamily;
  private readonly rxResponse: CounterFamily;
  private readonly txRequest: CounterFamily;
  private readonly txResponse: CounterFamily;
  /** The target list `literalEndpoints` belongs to (see targetAt). */
  private literalsOf: readonly Target[] | undefined;
  private literalEndpoints: readonly (Endpoint | undefined)[] = [];
  /** Every attempt's "no response in time" timeout (one duration, so one queue). */
  private readonly retryTimeouts: TimeoutQueue<RetryTimeout>;
  private readonly onResponseSendError = (e: { code: string }): void => this.d.counters.inc(`tx.error.${e.code}`);
  /** How an inbound message is read, made once (ParseOptions.ownBranchPrefix: a response only as far as relaying needs). */
  private readonly datagramRead: ParseOptions;
  private readonly streamRead: ParseOptions;

  constructor(private readonly d: ProxyDeps) {
    this.limits = d.limits ?? DEFAULT_LIMITS;
    this.datagramRead = { limits: this.limits, stream: false, ownBranchPrefix: EDGE_BRANCH_PREFIX };
    this.streamRead = { limits: this.limits, stream: true, ownBranchPrefix: EDGE_BRANCH_PREFIX };
    this.rxRequest = new CounterFamily(d.counters, "rx.request.");
    this.rxResponse = new CounterFamily(d.counters, "rx.response.");
    this.txRequest = new CounterFamily(d.counters, "tx.request.");
    this.txResponse = new CounterFamily(d.counters, "tx.response.");
    this.failover = d.failover ?? DEFAULT_FAILOVER;
    this.retryTimeouts = new TimeoutQueue(d.clock, this.failover.requestTimeoutMs, (t) => this.onRetryTimeout(t));
    this.server = d.serverName ?? "sip-edge";
    this.debug = d.logger.isLevelEnabled("debug");
  }

  /** Entry point from the transport layer. */
  onMessage(inb: Inbound): void {
    // Behind: a share of new REGISTERs from UDP is dropped before any work
    // (src/edge/overload.ts), never one from a target.
    const overload = this.d.overload;
    // (A datagram arrives as text, src/transport/udp.ts; stream messages as bytes.)
    if (overload !== undefined && typeof inb.data === "string" && overload.dropUnread(inb.data) && this.targetFromSource(inb.source) === undefined) {
      this.d.counters.inc("drop.overload.unread");
      return;
    }
    // A response is read only as far as relaying needs (our own Via unread).
    const r = parse(inb.data, isStream(inb.source.transport) ? this.streamRead : this.datagramRead);
    if (!r.ok) {
      this.d.counters.inc(`drop.parse.${r.code}`);
      if (r.isRequest === true && r.method !== "ACK") {
        this.replyRaw(inb, r.status, r.reason, r.headers);
      }
      return;
    }
    if (r.trailingBytes > 0) this.d.counters.inc("rx.trailing-octets-ignored");
    const m = r.message;
    if (this.debug) this.d.logger.debug({ src: inb.source, start: m.startLine, callId: m.callId }, "rx");
    if (m.isRequest) {
      this.rxRequest.inc(m.method);
      this.onRequest(m, inb);
    } else {
      this.rxResponse.inc(m.status);
      this.onResponse(m, inb);
    }
  }

  // ---- requests ---------------------------------------------------------------

  /**
   * `retry` re-runs a request on the next failover candidate: the original
   * bytes are processed again with the target and branch already chosen.
   */
  private onRequest(m: SipMessage, inb: Inbound, retry?: { target: Target; branch: string; state: RetryState; rewrite: ((request: SipMessage) => void) | undefined }): void {
    // The ACK of a final answer the edge gave itself (a 503 while shedding,
    // a 483, ...) ends here: the edge was the UAS (RFC 3261 §17.2.1), and a
    // target would only drop an ACK for a transaction it never saw.
    if (m.method === "ACK" && isAckOfOwnAnswer(m)) {
      this.d.counters.inc("absorb.ack.own-answer");
      return;
    }
    this.stampTopVia(m, inb.source);

    const scheme = m.uri!.scheme;
    if (scheme !== "sip" && scheme !== "sips" && scheme !== "tel") return this.reply(m, inb, 416);

    // RFC 3261 §16.3 step 5: we support no extension a proxy must understand.
    if (m.indexOf("proxy-require") >= 0) {
      const tags = m.listValues("Proxy-Require").join(", ");
      return this.reply(m, inb, 420, undefined, [`Unsupported: ${tags}`]);
    }

    // Loose routing (RFC 3261 §16.4): pop every Route that names us; a flow
    // token in one of them says which phone flow the request belongs to.
    let flow: Flow | undefined;
    let poppedOurRoute = false;
    if (m.indexOf("route") >= 0) {
      const routes = m.routes();
      if (routes === undefined) return this.reply(m, inb, 400, "Malformed Route");
      for (const r of routes) {
        if (!this.d.identity.isUs(r.uri)) break;
        if (looksLikeToken(r.uri.user)) {
          const t = this.d.flowTokens.decode(r.uri.user);
          if (!t.ok) {
            this.d.counters.inc("reject.flow-token");
            return this.reply(m, inb, 403, "Invalid Flow Token");
          }
          // The caller-facing Record-Route carries the caller's own flow: in
          // its in-dialog requests that token points back at the sender and
          // means nothing; it only routes requests coming the other way.
          if (!isSameFlow(t.flow, inb)) flow = t.flow;
        }
        m.removeFirstRoute();
        poppedOurRoute = true;
      }
    }
    const remainingRoute = poppedOurRoute || m.indexOf("route") >= 0 ? this.firstRoute(m) : undefined;
    if (remainingRoute === null) return this.reply(m, inb, 400, "Malformed Route");

    const ruriIsUs = this.d.identity.isUs(m.uri);
    if (remainingRoute === undefined && ruriIsUs) {
      // Alias mode: the PBX sends to the Contact we rewrote; the token in its
      // `alias` parameter names the phone flow, and the phone gets its own
      // Contact back as Request-URI.
      const alias = aliasParam(m.uri!);
      if (alias !== undefined) {
        const t = this.d.flowTokens.decode(alias);
        if (!t.ok) {
          this.d.counters.inc("reject.flow-token");
          return this.reply(m, inb, 403, "Invalid Flow Token");
        }
        flow = t.flow;
        m.setRequestUri(restoreContactUri(m.uri!, t.flow));
      } else if (m.method === "OPTIONS" && flow === undefined && m.uri!.user === undefined) {
        // Phones and carriers ping the edge itself (no user part) as a keepalive.
        return this.reply(m, inb, 200, undefined, ["Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK, MESSAGE", "Accept: application/sdp", "Supported: path, outbound"]);
      }
    }

    // RFC 3261 §16.3 step 3.
    if (m.maxForwards === 0) return this.reply(m, inb, 483);

    let branch = deriveBranch(m);
    if (retry === undefined && this.isLoop(m, branch)) return this.reply(m, inb, 482);

    // ---- where does it go? ----
    const fromTarget = this.targetFromSource(inb.source);
    let dest: Endpoint | undefined;
    let target: Target | undefined;
    let candidates: readonly Target[] | undefined;
    let destFlowId: string | undefined;

    let retryState: RetryState | undefined;
    let extras: DecisionExtras | undefined;
    // The soft-state key of an INVITE/REGISTER, built once for every lookup
    // of this message (neither the router nor a rule's rewrite touches Via or
    // Call-ID).
    let txnKey: string | undefined;
    // What the soft state held under txnKey when it was looked up below.
    let known: TxnState | undefined;
    if (retry !== undefined) {
      target = retry.target;
      dest = this.d.resolver.endpoint(target);
      branch = retry.branch;
      retryState = retry.state;
      // The router never sees this copy: its rewrites are applied again.
      retry.rewrite?.(m);
      if (dest === undefined) {
        this.nextAttempt(SoftState.key(m.callId, m.topVia.branch), "unresolvable");
        return;
      }
    } else if (m.method === "CANCEL" || m.method === "ACK" || m.method === "INVITE" || m.method === "REGISTER") {
      // The CANCEL and the non-2xx ACK must reach the target, and use the
      // branch, that the INVITE is on now (after any failover); an INVITE or
      // REGISTER seen before is a retransmission and goes the same way.
      txnKey = SoftState.key(m.callId, m.topVia.branch);
      const st = this.d.softState.getByKey(txnKey);
      known = st;
      if (st !== undefined) {
        dest = st.dest;
        target = st.target;
        branch = st.branch;
        retryState = st.retry;
        // The retransmission, the CANCEL and the non-2xx ACK carry the
        // Request-URI the INVITE was sent with (RFC 3261 §9.1, §17.1.1.3).
        st.rewrite?.(m);
      }
    }
    if (dest === undefined && flow !== undefined) {
      dest = { transport: flow.transport, address: flow.address, port: flow.port };
      if (flow.flowId !== "") destFlowId = flow.flowId;
    }
    if (dest === undefined && remainingRoute !== undefined) {
      dest = this.endpointOfUri(remainingRoute.uri);
      if (dest === undefined) return this.reply(m, inb, 503, "Next Hop Unresolvable");
    }
    if (dest === undefined && !ruriIsUs && (poppedOurRoute || fromTarget !== undefined)) {
      // (An in-dialog request to a PBX known to be down is answered below.)
      // After our own Record-Route (an in-dialog request of a dialog we are
      // on) the Request-URI is the remote target (RFC 3261 §16.6 step 6);
      // likewise for a PBX sending to a URI outside the edge (a phone's
      // Contact, a carrier).
      dest = this.endpointOfUri(m.uri!);
      if (dest === undefined) return this.reply(m, inb, 404, "Not Found");
    }
    if (dest === undefined) {
      // A new request while the edge is behind: 503 now costs far less than
      // the call it would start (src/edge/overload.ts). An in-dialog request
      // belongs to a call already up; ACK and CANCEL are never new work, and
      // the config refuses them in `shedMethods`. The share is read first:
      // while nothing is shed, a request pays no To-tag check.
      const overload = this.d.overload;
      if (overload?.shed(m.method) === true && !hasToTag(m)) {
        this.d.counters.inc("reject.overload");
        return this.reply(m, inb, 503, "Overloaded", overload.retryAfter);
      }
      const decision = this.d.router().route({ message: m, source: inb.source, listener: inb.listener, fromTarget });
      if (decision.action === "reject") return this.reply(m, inb, decision.status, decision.reason);
      if (decision.action === "drop") {
        this.d.counters.inc(`drop.route.${decision.why}`);
        return;
      }
      candidates = decision.targets;
      let i = 0;
      for (; i < candidates.length; i++) {
        dest = this.d.resolver.endpoint(candidates[i]!);
        if (dest !== undefined) {
          target = candidates[i];
          break;
        }
      }
      if (dest === undefined) return this.reply(m, inb, 503, "No Target Reachable");
      if ((m.method === "INVITE" || m.method === "REGISTER") && i + 1 < candidates.length) {
        retryState = { rest: candidates.slice(i + 1), original: inb.data, inbound: inb, attempt: 0, timer: undefined, anyFailure: decision.retryOnAnyFailure === true, deferrals: 0, trying: false, question: undefined };
      }
      if (decision.shapeResponse !== undefined || decision.onForkResponse !== undefined || decision.fork !== undefined || decision.rewrite !== undefined) {
        extras = { shapeResponse: decision.shapeResponse, onForkResponse: decision.onForkResponse, fork: decision.fork, rewrite: decision.rewrite };
      }
    }

    const fromPhoneSide = flow === undefined && fromTarget === undefined;
    if (target === undefined && hasToTag(m) && m.method !== "ACK" && this.d.isDown !== undefined) {
      // In-dialog towards a PBX the health view says is down: answer now
      // rather than let the phone retransmit into a black hole for 32 s; a
      // 408 to BYE ends the dialog for the phone (RFC 3261 §15.1.2).
      const t = this.targetAt(dest);
      if (t !== undefined && this.d.isDown(t)) return this.reply(m, inb, 408, "Target Down");
    }
    this.forwardRequest(m, inb, dest, target, branch, destFlowId, fromPhoneSide, retryState, extras, false, txnKey, known);
  }

  /**
   * Which target sits at an address: asked for every request (is it from a
   * PBX?). A target given as an IP literal always resolves to the same
   * endpoint, so those are resolved once per target list; DNS names are
   * resolved on each use, as their answers change.
   */
  private targetAt(ep: Endpoint): Target | undefined {
    const ts = this.d.targets();
    if (ts !== this.literalsOf) {
      this.literalsOf = ts;
      this.literalEndpoints = ts.map((t) => (isIP(t.host) === 0 ? undefined : this.d.resolver.endpoint(t)));
    }
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      const e = this.literalEndpoints[i] ?? this.d.resolver.endpoint(t);
      if (e !== undefined && e.address === ep.address && e.port === ep.port) return t;
    }
    return undefined;
  }

  /**
   * REGISTER `dual` mode: a copy of the request, as received, goes to each
   * fork target on its own branch; the caller never hears those answers.
   */
  private forwardForks(inb: Inbound, fork: readonly Target[], branch: string): Map<string, Target> {
    const forks = new Map<string, Target>();
    fork.forEach((t, i) => {
      const dest = this.d.resolver.endpoint(t);
      const r = parse(inb.data, { limits: this.limits, stream: isStream(inb.source.transport) });
      if (dest === undefined || !r.ok) return;
      this.stampTopVia(r.message, inb.source);
      const forkBranch = `${branch}.d${i}`;
      forks.set(forkBranch, t);
      this.forwardRequest(r.message, inb, dest, t, forkBranch, undefined, true, undefined, undefined, true);
    });
    return forks;
  }

  private forwardRequest(
    m: SipMessage,
    inb: Inbound,
    dest: Endpoint,
    target: Target | undefined,
    branch: string,
    destFlowId: string | undefined,
    fromPhoneSide: boolean,
    retry: RetryState | undefined,
    extras?: DecisionExtras,
    isFork = false,
    txnKey?: string,
    /** With txnKey: what the soft state held under it when onRequest looked. */
    known?: TxnState,
  ): void {
    const callerBranch = m.topVia.branch;
    const out = this.d.transport.listenerFor(dest.transport, familyOf(dest.address));
    if (out === undefined) return this.reply(m, inb, 503, `No ${dest.transport.toUpperCase()} Listener`);

    // RFC 3261 §16.6 step 3.
    m.setMaxForwards(m.maxForwards === undefined ? 70 : m.maxForwards - 1);

    const isInitial = !hasToTag(m);
    const token = fromPhoneSide ? this.tokenFor(inb, "") : undefined;

    if (DIALOG_CREATING.has(m.method) && isInitial) {
      // Double Record-Route when the request changes transport or interface
      // (RFC 5658): the lower entry faces the caller, the upper the callee.
      if (out.id !== inb.listener.id) {
        m.addRecordRoute(`<${ourUri(inb.listener, token)}>`);
        m.addRecordRoute(`<${ourUri(out, undefined)}>`);
      } else {
        m.addRecordRoute(`<${ourUri(out, token)}>`);
      }
    }

    if (m.method === "REGISTER" && fromPhoneSide && token !== undefined) {
      if (m.hasOptionTag("Supported", "path") || target?.acceptsPath === true) {
        // RFC 3327 §5.1: the PBX will route requests to the phone through us.
        m.addPath(`<${ourUri(out, token)}>`);
      } else {
        this.aliasContacts(m, inb, out);
      }
    }

    // Our Via as an object: the message need not parse back what we wrote.
    m.prependVia(proxyVia(viaTransport(out.transport), out.advertise, out.port, branch));
    if (isStream(dest.transport)) m.fixContentLength();

    if ((m.method === "INVITE" || m.method === "REGISTER") && !isFork) {
      const st: TxnState = { dest, target, branch };
      const key = txnKey ?? SoftState.key(m.callId, callerBranch);
      // A retry or a retransmission keeps what the original routing decision
      // asked for, and the copies already forked. Looked up once: nothing
      // since onRequest's lookup has stored this transaction.
      const prev = txnKey !== undefined ? known : this.d.softState.getByKey(key);
      const shape = extras?.shapeResponse ?? prev?.shapeResponse;
      if (shape !== undefined) st.shapeResponse = shape;
      const rewrite = extras?.rewrite ?? prev?.rewrite;
      if (rewrite !== undefined) st.rewrite = rewrite;
      if (prev?.forks !== undefined) st.forks = prev.forks;
      if (prev?.onForkResponse !== undefined) st.onForkResponse = prev.onForkResponse;
      if (prev?.ackBase !== undefined) st.ackBase = prev.ackBase;
      if (this.d.peers !== undefined) {
        // Stamped when this process first forwards it; retransmissions and
        // retries keep the stamp (who owns it is decided by the first copy).
        st.firstAt = prev?.firstAt ?? this.d.peers.stamp();
        if (prev?.heard === true) st.heard = true;
      }
      if (retry !== undefined) {
        if (m.method === "INVITE") st.ackBase = { requestUri: m.requestUri, routes: m.headers.filter((h) => h.name === "route").map((h) => h.raw) };
        if (retry.rest.length > 0) {
          st.retry = retry;
          // Armed once per attempt: a retransmission from the caller must not
          // push the failover back, nor arm a second timer while the first
          // one's question to the other workers is out.
          if (retry.timer === undefined && retry.question === undefined && !retry.trying) this.armRetryTimer(key, retry);
        } else {
          // On the last candidate the caller's own timers decide how long to
          // wait: a slow last target is better than a 408 from us.
          this.cancelRetryTimer(retry);
        }
      }
      this.d.softState.setByKey(key, st);
      this.send(m, dest, destFlowId, inb, target, callerBranch, target !== undefined, key);
      if (extras?.fork !== undefined && extras.fork.length > 0) {
        st.forks = this.forwardForks(inb, extras.fork, branch);
        if (extras.onForkResponse !== undefined) st.onForkResponse = extras.onForkResponse;
      }
      return;
    }
    this.send(m, dest, destFlowId, inb, isFork ? undefined : target, callerBranch, target !== undefined);
  }

  // ---- per-request failover ---------------------------------------------------

  private armRetryTimer(key: string, retry: RetryState): void {
    retry.timer = this.retryTimeouts.add({ key, retry });
  }

  private onRetryTimeout({ key, retry }: RetryTimeout): void {
    retry.timer = undefined;
    const st = this.d.softState.getByKey(key);
    // A late timer for a transaction that has moved on changes nothing.
    if (st === undefined || st.retry !== retry) return;
    const o = this.d.overload;
    if (o !== undefined && retry.deferrals < o.options.maxTimeoutDeferrals && o.behind()) {
      // The answer may be waiting, unread, in our own receive queue: not the target's fault.
      retry.deferrals++;
      this.d.counters.inc("failover.timeout-deferred");
      this.armRetryTimer(key, retry);
      return;
    }
    const peers = this.d.peers;
    if (peers !== undefined && st.firstAt !== undefined) {
      // Another worker may have forwarded this transaction first (a phone's
      // retransmission read by us): the target answers that worker only,
      // and failing over here would ring the Standby too. The owner has a
      // timer of its own and fails over itself if the target is silent.
      const question = {};
      retry.question = question;
      peers.confirmTimeout(key, { firstAt: st.firstAt, heard: st.heard === true }, (yieldToPeer) => this.onTimeoutConfirmed(key, retry, question, yieldToPeer));
      return;
    }
    this.timedOut(key, st);
  }

  private onTimeoutConfirmed(key: string, retry: RetryState, question: object, yieldToPeer: boolean): void {
    const st = this.d.softState.getByKey(key);
    // While the question was out the transaction may have moved on: an
    // answer settled it, a 100 Trying showed the target alive, health sent
    // it to the next target (each clears the question), or it was evicted.
    if (st === undefined || st.retry !== retry || retry.question !== question) return;
    retry.question = undefined;
    if (yieldToPeer) {
      // Silently: the caller's answers come through the owner, and a 408
      // or a Standby attempt from here would be a second answer.
      this.d.counters.inc("failover.timeout-yielded");
      if (this.debug) this.d.logger.debug({ callId: SoftState.callIdOf(key) }, "request timeout yielded: another worker forwarded it first");
      this.settle(st);
      return;
    }
    this.timedOut(key, st);
  }

  /** No answer in time from the target in use: the next candidate, or 408. */
  private timedOut(key: string, st: TxnState): void {
    this.d.counters.inc("failover.timeout");
    if (st.target !== undefined) this.d.observer?.targetOutcome(st.target, "timeout");
    this.nextAttempt(key, "timeout");
  }

  /** Stops the attempt's timeout, and forgets a question about it still out (its answer changes nothing then). */
  private cancelRetryTimer(retry: RetryState): void {
    retry.question = undefined;
    if (retry.timer === undefined) return;
    this.retryTimeouts.cancel(retry.timer);
    retry.timer = undefined;
  }

  /** Stops failover for a transaction: it has an answer from beyond its target. */
  private settle(st: TxnState): void {
    if (st.retry !== undefined) this.cancelRetryTimer(st.retry);
    // Not `delete`: that turns the entry into a dictionary twice its size.
    st.retry = undefined;
  }

  /**
   * What this process knows of a transaction, for another worker asking
   * who owns it (TxnPeers); undefined when it holds none or stamps none.
   * A peek: a peer's question must not keep the entry from eviction.
   */
  transactionStamp(key: string): TxnStamp | undefined {
    const st = this.d.softState.peekByKey(key);
    if (st?.firstAt === undefined) return undefined;
    return { firstAt: st.firstAt, heard: st.heard === true };
  }

  /**
   * A target went down (health): every transaction still waiting on it with
   * another candidate left moves on now, even one the target had answered
   * with 100 Trying before it died.
   */
  targetDown(name: string): void {
    for (const key of this.d.softState.waitingOn(name)) {
      const st = this.d.softState.getByKey(key);
      if (st?.retry === undefined || st.target?.name !== name) continue;
      this.d.counters.inc("failover.target-down");
      this.nextAttempt(key, "target-down");
    }
  }

  /**
   * Sends the transaction's request to its next candidate. With none left
   * (after a timeout or a transport error), the caller gets 408 or 503.
   */
  private nextAttempt(key: string, why: string): "retried" | "exhausted" | "none" {
    const st = this.d.softState.getByKey(key);
    const retry = st?.retry;
    if (st === undefined || retry === undefined) return "none";
    const next = retry.rest[0];
    if (next === undefined) {
      this.settle(st);
      this.answerOriginal(retry, why === "timeout" ? 408 : 503);
      return "exhausted";
    }
    this.d.counters.inc(`failover.retry.${why}`);
    this.cancelRetryTimer(retry);
    retry.rest = retry.rest.slice(1);
    retry.attempt += 1;
    retry.deferrals = 0;
    retry.trying = false;
    const r = parse(retry.original, { limits: this.limits });
    if (!r.ok) return "none";
    const base = st.branch.replace(/\.[0-9]+$/, "");
    this.onRequest(r.message, retry.inbound, { target: next, branch: `${base}.${retry.attempt}`, state: retry, rewrite: st.rewrite });
    return "retried";
  }

  /** Answers the caller of a request whose every candidate failed. */
  private answerOriginal(retry: RetryState, status: number): void {
    const r = parse(retry.original, { limits: this.limits });
    if (!r.ok) return;
    this.stampTopVia(r.message, retry.inbound.source);
    this.reply(r.message, retry.inbound, status, status === 503 ? "All Targets Failed" : undefined);
  }

  /** ACK for a non-2xx INVITE response the edge absorbed to fail over (RFC 3261 §17.1.1.3). */
  private ackAbsorbed(m: SipMessage, st: TxnState, ourVia: HeaderField, to: Endpoint): void {
    const ackBase = st.ackBase;
    if (ackBase === undefined) return;
    const lines = [`ACK ${ackBase.requestUri} SIP/2.0`, ourVia.raw, ...ackBase.routes, "Max-Forwards: 70"];
    for (const h of m.headers) if (h.name === "from" || h.name === "to" || h.name === "call-id") lines.push(h.raw);
    lines.push(`CSeq: ${m.cseq.seq} ACK`, "Content-Length: 0", "", "");
    this.d.transport.send(to, lines.join("\r\n"));
    this.d.counters.inc("tx.request.ACK.absorbed");
  }

  /** `toTarget`: a request towards a target leaves from this worker's own UDP port, so its answer comes back here (src/transport/udp.ts). */
  private send(m: SipMessage, dest: Endpoint, flowId: string | undefined, inb: Inbound, target?: Target, callerBranch?: string, toTarget = false, txnKey?: string): void {
    // Text, one character per byte: the native UDP socket writes it straight
    // into its send area; other transports make the Buffer (src/transport/bytes.ts).
    const data = m.toString();
    // A response's error only counts (no target, nothing to retry or answer):
    // one callback serves them all instead of a closure per response.
    const onError = !m.isRequest && target === undefined ? this.onResponseSendError : (e: { code: string }): void => {
      this.d.counters.inc(`tx.error.${e.code}`);
      if (target !== undefined) this.d.observer?.targetOutcome(target, "transport-error");
      if (!m.isRequest || m.method === "ACK") return;
      // A transport error moves the request to the next candidate at once;
      // with none left the caller learns now instead of by its own timer.
      if (flowId !== undefined) {
        // The phone's flow broke while we wrote to it (RFC 5626 §5.3).
        this.d.counters.inc("tx.flow-failed");
        this.replyAfterForward(m, inb, 430);
      } else if (this.nextAttempt(txnKey ?? SoftState.key(m.callId, callerBranch), "transport-error") === "none") {
        this.replyAfterForward(m, inb, 503, "Next Hop Failed");
      }
    };
    const ok = this.d.transport.send(dest, data, flowId === undefined ? { onError, fromPrivatePort: toTarget } : { flowId, onError });
    if (!ok) {
      if (m.isRequest) {
        // RFC 5626 §5.3: the flow to the phone is gone.
        this.d.counters.inc("tx.flow-failed");
        if (m.method !== "ACK") this.replyAfterForward(m, inb, 430);
      } else {
        this.d.counters.inc("drop.response.flow-gone");
      }
      return;
    }
    if (m.isRequest) this.txRequest.inc(m.method);
    else this.txResponse.inc(m.status);
  }

  // ---- responses --------------------------------------------------------------

  private onResponse(m: SipMessage, inb: Inbound): void {
    // RFC 3261 §16.7 step 3: the top Via must be ours (parse read no more of it).
    const ourBranch = m.topViaBranch;
    if (!isEdgeBranch(ourBranch)) {
      this.d.counters.inc("drop.response.not-our-via");
      return;
    }
    // Our Via line, read only to ACK an absorbed answer.
    const ourVia = m.headers[m.indexOf("via")]!;
    m.removeTopVia();
    if (m.indexOf("via") < 0) {
      this.d.counters.inc("drop.response.no-next-via");
      return;
    }
    if (!m.topViaParses()) {
      // Nowhere to send it (before, the stale top Via, ours, sent it back to the edge itself).
      this.d.counters.inc("drop.response.bad-next-via");
      return;
    }
    if ((m.method === "INVITE" || m.method === "REGISTER") && !this.onTransactionResponse(m, ourBranch!, ourVia, inb.source)) return;
    const via = m.topVia;
    const transport = transportFromVia(via.transport);
    if (transport === undefined) {
      this.d.counters.inc("drop.response.unsupported-transport");
      return;
    }
    const { address, port } = responseTarget(via, defaultPort(transport));
    if (address === "255.255.255.255" || isMulticastV4(address)) {
      // RFC 4475 §3.3.10: never forward a response to a broadcast/multicast address.
      this.d.counters.inc("drop.response.broadcast");
      return;
    }
    if (m.method === "REGISTER" && m.status >= 200 && m.status < 300) this.unaliasContacts(m);
    if (isStream(transport)) m.fixContentLength();
    this.send(m, { transport, address, port }, undefined, inb);
  }

  /**
   * Failover bookkeeping for a response to an INVITE/REGISTER. Returns false
   * when the response is absorbed (the request moves to another target, or
   * the response belongs to an attempt already abandoned).
   */
  private onTransactionResponse(m: SipMessage, ourBranch: string, ourVia: HeaderField, from: Endpoint): boolean {
    const key = SoftState.key(m.callId, m.topVia.branch);
    const st = this.d.softState.getByKey(key);
    if (st === undefined) return true;
    const status = m.status;
    const forkTarget = st.forks?.get(ourBranch);
    if (forkTarget !== undefined) {
      // A `dual` REGISTER copy: tracked, never relayed.
      if (status >= 200) st.onForkResponse?.(forkTarget, m);
      this.d.counters.inc("fork.response-absorbed");
      return false;
    }
    if (ourBranch !== st.branch) return this.abandonedAttempt(m, st, ourVia, from);
    // A worker the target answers owns the transaction, whatever the stamps say.
    if (this.d.peers !== undefined) st.heard = true;
    if (st.target !== undefined && status >= 200) {
      const attempt = st.retry?.attempt;
      this.d.observer?.targetOutcome(st.target, this.failover.retryOn.has(status) ? "failure-response" : "response", status);
      // Health hears the outcome at once: if it took the target down, the
      // request has already moved on (targetDown), and this answer is from
      // an attempt given up on.
      if (st.retry !== undefined && st.retry.attempt !== attempt) return this.abandonedAttempt(m, st, ourVia, from);
    }
    if (status >= 200 && status < 300) st.shapeResponse?.(m);
    if (this.isDone(m, st)) {
      // Nothing in this process will need the transaction again: a late
      // retransmission is routed afresh, and reaches the same target while
      // it is up. With peers the entry stays, trimmed: another worker that
      // forwarded a retransmission may still ask who owns it
      // (transactionStamp), and "none" would make it fail over.
      this.settle(st);
      if (this.d.peers === undefined) {
        this.d.softState.forget(key);
      } else {
        // Assigned, not deleted: a delete turns the object into a slow
        // dictionary twice its size, and it lives until evicted.
        st.shapeResponse = undefined;
        st.ackBase = undefined;
      }
      return true;
    }
    const retry = st.retry;
    if (retry === undefined) return true;
    if (status === 100) {
      // The target is alive (RFC 3261 §16.7: 100 is hop-by-hop); a later
      // 5xx from it may still move the request.
      this.cancelRetryTimer(retry);
      retry.trying = true;
      return true;
    }
    const retryable = this.failover.retryOn.has(status) || (retry.anyFailure && status >= 300);
    if (status < 200 || !retryable) {
      // Ringing or a real answer from beyond the target: never retried.
      this.settle(st);
      return true;
    }
    if (retry.rest.length === 0) {
      // Nothing left to try: the caller gets this final response.
      this.settle(st);
      return true;
    }
    if (m.method === "INVITE") this.ackAbsorbed(m, st, ourVia, from);
    this.nextAttempt(key, `status-${status}`);
    return false;
  }

  /**
   * A response to an attempt we gave up on. A 2xx is relayed all the same
   * (the caller handles it like a forked answer); anything else is absorbed.
   */
  private abandonedAttempt(m: SipMessage, st: TxnState, ourVia: HeaderField, from: Endpoint): boolean {
    const status = m.status;
    if (status >= 200 && status < 300) return true;
    if (status >= 300 && m.method === "INVITE") this.ackAbsorbed(m, st, ourVia, from);
    this.d.counters.inc("failover.late-response-absorbed");
    return false;
  }

  /**
   * A final answer the caller gets as it is, after which no CANCEL, no
   * non-2xx ACK and no retry can refer to the transaction: any final
   * response to a REGISTER, a 2xx to an INVITE (its ACK is a new transaction
   * that follows the route set) — unless the response is one that moves the
   * request to another target.
   */
  private isDone(m: SipMessage, st: TxnState): boolean {
    // A `dual` copy's answer is still to come and must find the state.
    if (m.status < 200 || st.forks !== undefined) return false;
    const retry = st.retry;
    if (retry !== undefined && retry.rest.length > 0 && (this.failover.retryOn.has(m.status) || (retry.anyFailure && m.status >= 300))) return false;
    return m.method === "REGISTER" || m.status < 300;
  }

  // ---- helpers ------------------------------------------------------------------

  /** RFC 3261 §18.2.1 `received` and RFC 3581 §4 `rport` on the top Via. */
  private stampTopVia(m: SipMessage, source: Endpoint): void {
    const via = m.topVia;
    const needReceived = via.host !== source.address;
    // On a stream the response must go back over the request's connection
    // (RFC 3261 §18.2.2): its source port is recorded even when the client
    // did not ask for rport (WebSocket clients send a .invalid sent-by).
    const addRport = via.rport === undefined && isStream(source.transport);
    const needRport = via.rport === null || addRport;
    if (!needReceived && !needRport) return;
    let value = via.raw;
    if (addRport) value += `;rport=${source.port}`;
    // Where the bare rport's `=port` goes is known from parsing: no search.
    else if (needRport) value = `${value.slice(0, via.rportAt)}=${source.port}${value.slice(via.rportAt)}`;
    if (via.received !== undefined) value = value.replace(/;\s*received\s*=\s*[^;]*/i, "");
    value += `;received=${source.address}`;
    m.replaceTopVia({ ...via, raw: value, received: source.address, rport: needRport ? source.port : via.rport, rportAt: -1 });
  }

  private firstRoute(m: SipMessage): NameAddr | undefined | null {
    const i = m.indexOf("route");
    if (i < 0) return undefined;
    const h = m.headers[i]!;
    const r = parseNameAddrList(headerValue(h));
    if (!r.ok || r.values[0] === undefined) return null;
    return r.values[0];
  }

  /**
   * RFC 3261 §16.3 step 4: the request has been here before if one of its
   * Vias is ours and carries the branch we would derive from the Via below
   * it, i.e. the same transaction came back unchanged. A spiral (a
   * different Request-URI or caller Via) derives another branch and passes.
   */
  private isLoop(m: SipMessage, branch: string): boolean {
    // Nearly every request carries no Via of ours: one search of the text as
    // received (the rewrites so far add no Via) instead of each Via line's.
    if (m.raw.indexOf(EDGE_BRANCH_PREFIX) < 0) return false;
    let seen = false;
    for (const h of m.headers) {
      if (h.name !== "via") continue;
      if (h.raw.includes(branch)) return true;
      if (h.raw.includes(EDGE_BRANCH_PREFIX)) seen = true;
    }
    if (!seen) return false;
    const vias = m.vias();
    if (vias === undefined) return false;
    for (let i = 0; i + 1 < vias.length; i++) {
      const v = vias[i]!;
      if (isEdgeBranch(v.branch) && v.branch === deriveBranch(m, vias[i + 1]!)) return true;
    }
    return false;
  }

  /**
   * Address and port: a PBX sends from its SIP port, or over the connection
   * we opened to it; several peers may share one address.
   */
  private targetFromSource(source: Endpoint): Target | undefined {
    return this.targetAt(source);
  }

  private endpointOfUri(u: SipUri): Endpoint | undefined {
    if (u.scheme !== "sip" && u.scheme !== "sips") return undefined;
    const tp = u.params.find((p) => p.name.toLowerCase() === "transport")?.value?.toLowerCase();
    const transport = tp === "tcp" || tp === "tls" || tp === "ws" || tp === "wss" ? tp : u.scheme === "sips" ? "tls" : "udp";
    const maddrLike = u.host;
    const t: Target = { name: "uri", priority: 0, uri: u.raw, transport, host: maddrLike, port: u.port, acceptsPath: false };
    return this.d.resolver.endpoint(t);
  }

  private tokenFor(inb: Inbound, contactHostport: string): string {
    return this.d.flowTokens.encode({
      transport: inb.source.transport,
      address: inb.source.address,
      port: inb.source.port,
      flowId: inb.flowId ?? "",
      contactHostport,
    });
  }

  /**
   * Alias mode for a PBX without Path support: each Contact is rewritten to
   * point at the edge, with the phone's flow and its own host:port in a
   * token (`alias` parameter), so requests to the phone come through us.
   */
  private aliasContacts(m: SipMessage, inb: Inbound, out: Listener): void {
    const contacts = m.contacts();
    if (contacts === undefined || contacts.star) return;
    const values = contacts.contacts.map((c) => {
      const hp = c.uri.port === undefined ? hostRef(c.uri.host) : `${hostRef(c.uri.host)}:${c.uri.port}`;
      const token = this.tokenFor(inb, hp);
      const keep = paramsText(c.uri.params.filter((p) => p.name.toLowerCase() !== "transport"));
      const user = c.uri.user === undefined ? "" : `${c.uri.user}@`;
      const tp = out.transport === "udp" ? "" : `;transport=${out.transport}`;
      const uri = `${c.uri.scheme}:${user}${hostRef(out.advertise)}:${out.port}${keep}${tp};alias=${token}`;
      const params = paramsText(c.params);
      return `${c.displayName === undefined ? "" : `${c.displayName} `}<${uri}>${params}`;
    });
    m.setHeader("Contact", values.join(", "));
  }

  /** The 2xx to an aliased REGISTER lists our rewritten Contacts: give the phone its own back. */
  private unaliasContacts(m: SipMessage): void {
    // Most answers carry no alias of ours (the phone registered with Path):
    // their Contacts are not parsed at all. `aliasParam` matches the name
    // as the edge wrote it, so the raw check finds every one it would.
    let aliased = false;
    for (const h of m.headers) {
      if (h.name === "contact" && h.raw.includes("alias=")) {
        aliased = true;
        break;
      }
    }
    if (!aliased) return;
    const contacts = m.contacts();
    if (contacts === undefined || contacts.star) return;
    let changed = false;
    const values = contacts.contacts.map((c) => {
      const alias = aliasParam(c.uri);
      if (alias === undefined) return c.raw;
      const t = this.d.flowTokens.decode(alias);
      if (!t.ok) return c.raw;
      changed = true;
      const params = paramsText(c.params);
      return `${c.displayName === undefined ? "" : `${c.displayName} `}<${restoreContactUri(c.uri, t.flow)}>${params}`;
    });
    if (changed) m.setHeader("Contact", values.join(", "));
  }

  /** Answers a request the edge will not forward (stateless, RFC 3261 §16.3). */
  private reply(m: SipMessage, inb: Inbound, status: number, reason?: string, extra?: readonly string[]): void {
    this.d.counters.inc(`reply.${status}`);
    if (m.method === "ACK") return; // never answer an ACK
    const text = buildLocalResponse({
      status,
      ...(reason === undefined ? {} : { reason }),
      requestHeaders: m.headers,
      toTag: toTagFor(m),
      ...(extra === undefined ? {} : { extraHeaders: extra }),
      server: this.server,
    });
    if (text !== undefined) this.sendReply(text, inb);
  }

  /**
   * A reply after the request was already rewritten for forwarding: our own
   * Via is on top, so answer from the caller's Via lines only.
   */
  private replyAfterForward(m: SipMessage, inb: Inbound, status: number, reason?: string): void {
    this.d.counters.inc(`reply.${status}`);
    const headers = m.headers.filter((h, i) => !(h.name === "via" && i === m.indexOf("via")));
    const text = buildLocalResponse({ status, ...(reason === undefined ? {} : { reason }), requestHeaders: headers, toTag: toTagFor(m), server: this.server });
    if (text !== undefined) this.sendReply(text, inb);
  }

  private replyRaw(inb: Inbound, status: number, reason: string, headers: SipMessage["headers"]): void {
    this.d.counters.inc(`reply.${status}`);
    const text = buildLocalResponse({ status, reason: `${status === 400 ? "Bad Request" : status === 505 ? "Version Not Supported" : "Message Too Large"} (${reason})`, requestHeaders: headers, server: this.server });
    if (text !== undefined) this.sendReply(text, inb);
    else this.d.counters.inc("drop.parse.unanswerable");
  }

  /** Local responses go back where the request came from (RFC 3581: received/rport). */
  private sendReply(text: string, inb: Inbound): void {
    const ok = this.d.transport.send(inb.source, text, inb.flowId === undefined ? {} : { flowId: inb.flowId });
    if (!ok) this.d.counters.inc("drop.reply.flow-gone");
  }
}

/** Is the request inside a dialog (a To tag, RFC 3261 §12.2)? */
function hasToTag(m: SipMessage): boolean {
  const i = m.indexOf("to");
  if (i < 0) return false;
  const h = m.headers[i]!;
  return h instanceof HeaderLine ? hasTagParam(h.base, h.offset + h.valueStart, h.end) : hasTagParam(h.raw, h.valueStart, h.raw.length);
}

/**
 * 224.0.0.0/4 written as a dotted quad (a first octet of 224-239), read by
 * character: asked of every response's destination, where a regex test cost
 * more than the rest of the check.
 */
export function isMulticastV4(address: string): boolean {
  if (address.charCodeAt(3) !== 46 /* . */ || address.charCodeAt(0) !== 50 /* 2 */) return false;
  const d1 = address.charCodeAt(1) - 48;
  const d2 = address.charCodeAt(2) - 48;
  return (d1 === 2 && d2 >= 4 && d2 <= 9) || (d1 === 3 && d2 >= 0 && d2 <= 9);
}

/** A stable To tag for our own responses, so a retransmission gets the same one. */
function toTagFor(m: SipMessage): string {
  return `se${deriveBranch(m).slice(-12)}`;
}

/**
 * Does this ACK answer a response of our own? Its To tag is the one
 * toTagFor gave the INVITE (a non-2xx ACK has the INVITE's branch, so the
 * same tag). The ACK copies our To header verbatim, so a substring test
 * rules out nearly every other ACK before the hash.
 */
function isAckOfOwnAnswer(m: SipMessage): boolean {
  const to = m.get("To");
  if (to === undefined) return false;
  const at = to.indexOf(";tag=se");
  if (at < 0) return false;
  const tag = toTagFor(m);
  const end = at + 5 + tag.length;
  return to.startsWith(tag, at + 5) && (end === to.length || to[end] === ";" || to[end] === " " || to[end] === "\t");
}

/** `;name` / `;name=value` text of URI or header parameters. */
function paramsText(params: readonly Param[]): string {
  let s = "";
  for (const p of params) s += p.value === null ? `;${p.name}` : `;${p.name}=${p.value}`;
  return s;
}

function isSameFlow(f: Flow, inb: Inbound): boolean {
  return f.transport === inb.source.transport && f.address === inb.source.address && f.port === inb.source.port;
}

function aliasParam(u: SipUri): string | undefined {
  for (const p of u.params) if (p.name === "alias" && p.value !== null && looksLikeToken(p.value)) return p.value;
  return undefined;
}

function restoreContactUri(u: SipUri, flow: Flow): string {
  const user = u.user === undefined ? "" : `${u.user}@`;
  const hp = flow.contactHostport !== "" ? flow.contactHostport : `${hostRef(flow.address)}:${flow.port}`;
  const params = paramsText(u.params.filter((p) => p.name !== "alias" && p.name.toLowerCase() !== "transport"));
  return `${u.scheme}:${user}${hp}${params}`;
}

/** Our URI on a listener: `sip:[token@]host:port[;transport=x];lr`. */
function ourUri(l: Listener, token: string | undefined): string {
  const user = token === undefined ? "" : `${token}@`;
  const tp = l.transport === "udp" ? "" : `;transport=${l.transport}`;
  return `sip:${user}${hostRef(l.advertise)}:${l.port}${tp};lr`;
}

