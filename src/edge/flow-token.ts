import { createHmac, timingSafeEqual } from "node:crypto";
import { LRUCache } from "lru-cache";
import { ownString } from "../util/own-string.js";
import type { Endpoint, TransportName } from "./ports.js";

/**
 * Flow tokens (RFC 5626 §5.2 style): the phone's transport, address, port
 * and the edge connection it came in on, authenticated with an HMAC key that
 * every edge instance shares. A request from the PBX carrying the token (in
 * a Route from our Path/Record-Route, or in the Request-URI's `alias`
 * parameter) is sent back to the phone with no lookup table.
 *
 * Wire form (fits a SIP URI user part and a URI parameter value):
 *   <payload base64url> "." <first 12 bytes of HMAC-SHA256 base64url>
 * payload = transport "|" address "|" port "|" flowId "|" contactHostport
 */
export interface Flow {
  transport: TransportName;
  address: string;
  port: number;
  /** The connection the phone used (stream transports); "" for UDP. */
  flowId: string;
  /**
   * The host[:port] of the phone's own Contact, when the Contact was
   * rewritten to point at the edge (alias mode); "" otherwise.
   */
  contactHostport: string;
}

export type TokenResult = { ok: true; flow: Flow } | { ok: false; reason: "malformed" | "bad-mac" };

const TRANSPORTS: ReadonlySet<string> = new Set(["udp", "tcp", "tls", "ws", "wss"]);
const MAC_BYTES = 12;

export class FlowTokenCodec {
  /**
   * An HMAC per message was the largest single cost of a call: a phone's
   * token is the same for every request on its flow, so encoded tokens and
   * verified ones are kept in small bounded caches. Only tokens whose MAC
   * checked out are ever cached, so the cache cannot be used to skip it.
   */
  private readonly encoded: LRUCache<string, string>;
  private readonly verified: LRUCache<string, Flow>;

  constructor(
    private readonly key: Buffer,
    cacheSize = 20_000,
  ) {
    if (key.length < 16) throw new Error("flow token key must be at least 16 bytes");
    this.encoded = new LRUCache({ max: cacheSize });
    this.verified = new LRUCache({ max: cacheSize });
  }

  encode(flow: Flow): string {
    const payload = `${flow.transport}|${flow.address}|${flow.port}|${flow.flowId}|${flow.contactHostport}`;
    const hit = this.encoded.get(payload);
    if (hit !== undefined) return hit;
    const p = Buffer.from(payload, "latin1").toString("base64url");
    const token = `${p}.${this.mac(p).toString("base64url")}`;
    this.encoded.set(payload, token);
    return token;
  }

  decode(token: string): TokenResult {
    const hit = this.verified.get(token);
    if (hit !== undefined) return { ok: true, flow: hit };
    const r = this.verify(token);
    // A copy: the token is a slice of the request's text, which the cache would keep alive.
    if (r.ok) this.verified.set(ownString(token), Object.freeze(r.flow));
    return r;
  }

  private verify(token: string): TokenResult {
    const dot = token.lastIndexOf(".");
    if (dot <= 0 || dot === token.length - 1) return { ok: false, reason: "malformed" };
    const p = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const expected = this.mac(p);
    // Constant-time compare so the MAC cannot be guessed byte by byte.
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: "bad-mac" };
    const parts = Buffer.from(p, "base64url").toString("latin1").split("|");
    if (parts.length !== 5) return { ok: false, reason: "malformed" };
    const [transport, address, portText, flowId, contactHostport] = parts as [string, string, string, string, string];
    const port = Number(portText);
    if (!TRANSPORTS.has(transport) || address.length === 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
      return { ok: false, reason: "malformed" };
    }
    return { ok: true, flow: { transport: transport as TransportName, address, port, flowId, contactHostport } };
  }

  private mac(payload: string): Buffer {
    return createHmac("sha256", this.key).update(payload).digest().subarray(0, MAC_BYTES);
  }
}

/** Quick shape check before paying for an HMAC: base64url "." base64url. */
export function looksLikeToken(s: string | undefined): s is string {
  return s !== undefined && s.length > 20 && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}$/.test(s);
}

export function flowEndpoint(flow: Flow): Endpoint {
  return { transport: flow.transport, address: flow.address, port: flow.port };
}
