import { isIP } from "node:net";
import { parseUri, uriParam } from "../sip/uri.js";
import { defaultPort, type Endpoint, type TransportName } from "./ports.js";

/** A PBX (or, later, a carrier) the edge forwards to. */
export interface Target {
  readonly name: string;
  readonly priority: number;
  readonly uri: string;
  readonly transport: TransportName;
  /** Host as configured: an IP literal or a DNS name (RFC 3263). */
  readonly host: string;
  /** Explicit port, or undefined to let DNS SRV / the transport default decide. */
  readonly port: number | undefined;
  /** The PBX understands Path (RFC 3327), so REGISTERs always get one. */
  readonly acceptsPath: boolean;
}

export interface TargetSpec {
  name: string;
  uri: string;
  priority: number;
  acceptsPath?: boolean;
}

/** Builds a Target from config; throws on a bad URI (config error, not network input). */
export function makeTarget(spec: TargetSpec): Target {
  const r = parseUri(spec.uri);
  if (!r.ok || (r.uri.scheme !== "sip" && r.uri.scheme !== "sips")) {
    throw new Error(`target ${spec.name}: ${spec.uri} is not a sip: or sips: URI`);
  }
  const u = r.uri;
  const tp = uriParam(u, "transport");
  let transport: TransportName = u.scheme === "sips" ? "tls" : "udp";
  if (typeof tp === "string") {
    const t = tp.toLowerCase();
    if (t === "udp" || t === "tcp" || t === "tls" || t === "ws" || t === "wss") transport = t;
    else throw new Error(`target ${spec.name}: unsupported transport ${tp}`);
  }
  if (u.scheme === "sips" && transport === "tcp") transport = "tls";
  return Object.freeze({
    name: spec.name,
    priority: spec.priority,
    uri: spec.uri,
    transport,
    host: u.host,
    port: u.port,
    acceptsPath: spec.acceptsPath ?? false,
  });
}

/**
 * Where a target is right now. IP literals resolve at once; a DNS name is
 * looked up through the RFC 3263 resolver (src/transport/dns.ts) whose cache
 * answers synchronously on the hot path.
 */
export interface TargetResolver {
  endpoint(t: Target): Endpoint | undefined;
}

export const literalResolver: TargetResolver = {
  endpoint(t: Target): Endpoint | undefined {
    if (isIP(t.host) === 0) return undefined;
    return { transport: t.transport, address: t.host, port: t.port ?? defaultPort(t.transport) };
  },
};
