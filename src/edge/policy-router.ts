import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import type { Device } from "../policy/device.js";
import type { FailoverPolicy } from "../policy/failover.js";
import type { SipMessage } from "../sip/message.js";
import { addressPart, aorOfAddress, deviceAddressLine } from "../sip/aor.js";
import type { Clock } from "../util/clock.js";
import { ownString } from "../util/own-string.js";
import type { RouteDecision, RouteInput, Router } from "./router.js";
import type { Target } from "./targets.js";

/** What the last `dual` copy to a PBX said, per device class (shown in status). */
export interface DualOutcome {
  target: string;
  status: number;
  at: number;
  /** The PBX challenged the copy: the phone cannot answer it (see README, REGISTER modes). */
  challenged: boolean;
}

/**
 * The router of a Main/Standby pair: the failover policy decides, per device
 * (class from the device table, own delay from its identity), which usable
 * targets a new request goes to, home first. REGISTER follows the class's
 * mode: `follow-active` (home only, failover to the other), `dual` (home,
 * plus a copy to the other PBX whose answer is tracked, not relayed) or
 * `passthrough` (the PBX the phone itself named).
 */
export class PolicyRouter implements Router {
  private readonly byName: ReadonlyMap<string, Target>;
  private readonly dual = new Map<string, DualOutcome>();
  private readonly devices = new LRUCache<string, Device>({ max: 50_000 });

  constructor(
    private readonly policy: FailoverPolicy,
    private readonly targets: readonly Target[],
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.byName = new Map(targets.map((t) => [t.name, t]));
  }

  route(input: RouteInput): RouteDecision {
    const m = input.message;
    if (input.fromTarget !== undefined) {
      // A PBX addressing the edge itself without a flow token: there is no
      // phone to deliver it to.
      return { action: "reject", status: 404, reason: "Not Found", why: "request from a PBX without a flow token" };
    }
    const device = this.deviceOf(m.get("User-Agent"), input.source.address, deviceAddressLine(m));
    const answer = this.policy.route(device);
    const cls = device.deviceClass.name;
    if (m.method === "REGISTER" && answer.register === "passthrough") {
      const named = this.targets.find((t) => m.uri !== undefined && t.host === m.uri.host && (m.uri.port === undefined || t.port === m.uri.port));
      if (named !== undefined) {
        if (!answer.targets.includes(named.name)) return { action: "reject", status: 503, reason: "Service Unavailable", why: `passthrough: ${named.name} is not usable` };
        return { action: "forward", targets: [named], why: `class ${cls}: passthrough to ${named.name}` };
      }
    }
    const targets: Target[] = [];
    for (const n of answer.targets) {
      const t = this.byName.get(n);
      if (t !== undefined) targets.push(t);
    }
    if (targets.length === 0) return { action: "reject", status: 503, reason: "Service Unavailable", why: `class ${cls}: no usable target` };
    const inGrace = answer.graceUntil !== undefined && this.clock.now() < answer.graceUntil;
    const why = `class ${cls}: home ${answer.home}${answer.pending === undefined ? "" : `, switch to ${answer.pending.to} pending`}${inGrace ? ", in grace" : ""}`;
    if (m.method !== "REGISTER") return { action: "forward", targets, why };

    const decision: RouteDecision = {
      action: "forward",
      targets,
      why,
      // Grace after failback: a REGISTER that fails on Main goes to the
      // Standby rather than leaving the device unregistered.
      retryOnAnyFailure: inGrace,
      shapeResponse: (r) => capRegisterExpires(r, (n) => this.policy.capExpires(device, n)),
    };
    if (answer.register === "dual" && targets.length > 1) {
      return {
        ...decision,
        targets: [targets[0]!],
        fork: targets.slice(1),
        onForkResponse: (t, r) => this.noteDual(cls, t, r),
      };
    }
    return decision;
  }

  /**
   * A device's class and own delays come from a table match and a hash of
   * its identity: the same for every request of the device, so they are
   * cached (bounded) instead of recomputed per request. A reload builds a
   * new router (Edge.replaceRouting), so a new device table starts afresh.
   *
   * Keyed by agent, source and the address without its tag (a slice of
   * the From/To text, which changes only its tag from call to call): the
   * AoR is parsed only on a miss. The key built per request is a
   * concatenation of slices of the datagram's text; the one the cache
   * keeps is a copy, or every cached device would keep its datagram alive
   * (src/util/own-string.ts).
   */
  private deviceOf(userAgent: string | undefined, source: string, addressLine: string | undefined): Device {
    const address = addressLine === undefined ? undefined : addressPart(addressLine);
    const key = `${userAgent ?? ""}\n${source}\n${address ?? ""}`;
    let d = this.devices.get(key, LOOKUP);
    if (d === undefined) {
      d = this.policy.device({ userAgent, source, aor: address === undefined ? undefined : aorOfAddress(address) });
      this.devices.set(ownString(key), d, STORE);
    }
    return d;
  }

  private noteDual(cls: string, t: Target, r: SipMessage): void {
    const challenged = r.status === 401 || r.status === 407;
    const prev = this.dual.get(cls);
    if (challenged && prev?.challenged !== true) {
      // Once per class: the phone cannot answer two PBXs' challenges.
      this.logger.warn(
        { deviceClass: cls, target: t.name, status: r.status },
        "dual registration challenged by the inactive PBX: it must trust the edge's address or share credentials with the active one",
      );
    }
    this.dual.set(cls, { target: t.name, status: r.status, at: this.clock.wallNow(), challenged });
  }

  /** Per device class, the outcome of the last `dual` copy. */
  dualStatus(): Record<string, DualOutcome> {
    return Object.fromEntries(this.dual);
  }
}

/** Shared options objects: without one, each lru-cache call allocates an empty default (as in src/edge/soft-state.ts). */
const LOOKUP: LRUCache.GetOptions<string, Device, unknown> = {};
const STORE: LRUCache.SetOptions<string, Device, unknown> = {};

/**
 * Caps the expiry a registrar granted (Expires header and each Contact's
 * `expires`, RFC 3261 §10.3 step 8), so a device with a switch pending
 * refreshes inside its switch window. `cap` never raises an expiry
 * (min(granted, limit), FailoverPolicy.capExpires).
 */
export function capRegisterExpires(r: SipMessage, cap: (granted: number) => number): void {
  // Nearly always no switch is pending: a cap that leaves the longest
  // expiry alone leaves every one alone, and the answer is not read at all
  // (its Contacts were a regex replace with a callback per 200 OK).
  if (cap(Number.MAX_SAFE_INTEGER) >= Number.MAX_SAFE_INTEGER) return;
  const exp = r.get("Expires");
  if (exp !== undefined && /^\d+$/.test(exp)) {
    const n = Number(exp);
    const c = cap(n);
    if (c < n) r.setHeader("Expires", String(c));
  }
  if (!r.has("Contact")) return;
  const all = r.getAll("Contact");
  let changed = false;
  const rewritten = all.map((line) =>
    line.replace(/(;\s*expires\s*=\s*)(\d+)/gi, (whole, pre: string, num: string) => {
      const n = Number(num);
      const c = cap(n);
      if (c >= n) return whole;
      changed = true;
      return `${pre}${c}`;
    }),
  );
  if (changed) r.setHeader("Contact", rewritten.join(", "));
}
