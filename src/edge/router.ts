import type { SipMessage } from "../sip/message.js";
import type { Endpoint, Listener } from "./ports.js";
import type { Target } from "./targets.js";

export interface RouteInput {
  readonly message: SipMessage;
  readonly source: Endpoint;
  readonly listener: Listener;
  /** The target the request came from, when it came from a PBX/carrier. */
  readonly fromTarget: Target | undefined;
}

export type RouteDecision =
  /** Ordered candidates: the first is tried, the rest are per-request failover. */
  | {
      action: "forward";
      targets: readonly Target[];
      why: string;
      /**
       * Targets that get a copy of the request (REGISTER `dual` mode): their
       * responses are absorbed and reported, the caller hears only `targets`.
       */
      fork?: readonly Target[];
      /** Retry on the next candidate after any failure final response, not only 408/5xx (grace after failback). */
      retryOnAnyFailure?: boolean;
      /** Called with a 2xx final response before it is relayed (e.g. to cap Expires). */
      shapeResponse?: (response: SipMessage) => void;
      /** Called with each final response from a `fork` target. */
      onForkResponse?: (target: Target, response: SipMessage) => void;
      /**
       * The changes the decision made to the request (the rules' rewrites),
       * made again on each copy sent later without asking the router: a
       * failover attempt to the next target, a retransmission, the CANCEL
       * and the ACK of a non-2xx answer.
       */
      rewrite?: (request: SipMessage) => void;
    }
  | { action: "reject"; status: number; reason?: string; why: string }
  | { action: "drop"; why: string };

/**
 * The decision seam of the proxy: where does an initial request from
 * outside go? Health, failover policy and the rules engine plug in here;
 * the forwarding code never names Main or Standby.
 */
export interface Router {
  route(input: RouteInput): RouteDecision;
}

/**
 * Priority order over the configured targets, skipping those the health
 * view says are unusable; 503 when none is usable.
 */
export class PriorityRouter implements Router {
  private readonly ordered: readonly Target[];

  constructor(
    targets: readonly Target[],
    private readonly usable: (t: Target) => boolean = () => true,
  ) {
    this.ordered = [...targets].sort((a, b) => a.priority - b.priority);
  }

  route(_input: RouteInput): RouteDecision {
    const targets = this.ordered.filter(this.usable);
    if (targets.length === 0) return { action: "reject", status: 503, why: "no usable target" };
    return { action: "forward", targets, why: `priority order: ${targets.map((t) => t.name).join(", ")}` };
  }
}
