import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import type { Endpoint, TransportName } from "./types.js";

const MAPPED_PREFIX = "::ffff:";

/**
 * An IPv4 peer reaching a dual-stack "::" socket shows up as ::ffff:a.b.c.d.
 * The edge writes addresses into Via `received` and flow tokens, so it gets
 * the plain IPv4 form that the peer itself knows.
 */
export function normalizeAddress(address: string): string {
  if (address.length > MAPPED_PREFIX.length && address.slice(0, MAPPED_PREFIX.length).toLowerCase() === MAPPED_PREFIX) {
    const v4 = address.slice(MAPPED_PREFIX.length);
    if (isIP(v4) === 4) return v4;
  }
  return address;
}

/** The IPv4-mapped form used to reach an IPv4 peer from a dual-stack IPv6 socket. */
export function mappedAddress(v4: string): string {
  return MAPPED_PREFIX + v4;
}

export function familyOf(address: string): 4 | 6 {
  return isIP(address) === 6 ? 6 : 4;
}

export function isWildcard(address: string): boolean {
  return address === "0.0.0.0" || address === "::";
}

/** Key of the one reusable connection towards a destination. */
export function endpointKey(transport: TransportName, address: string, port: number): string {
  return `${transport} ${address} ${port}`;
}

/** Host part of a URL or `host:port` text: IPv6 literals get brackets. */
export function hostRef(address: string): string {
  return isIP(address) === 6 ? `[${address}]` : address;
}

export function listenerId(transport: TransportName, address: string, port: number): string {
  return `${transport}:${hostRef(address)}:${port}`;
}

/**
 * A destination the sockets API accepts without throwing: an IP literal and
 * a port in 1..65535. Peers choose Via ports and addresses, so this is
 * checked before every send rather than trusted.
 */
export function isValidDestination(dest: Endpoint): boolean {
  return Number.isInteger(dest.port) && dest.port > 0 && dest.port < 65536 && isIP(dest.address) !== 0;
}

/**
 * What to advertise for a listener bound to a wildcard address when the
 * config gives nothing: the first external interface address of the family,
 * else loopback. Deployments should set `advertise` explicitly.
 */
export function defaultAdvertise(address: string, family: 4 | 6): string {
  if (!isWildcard(address)) return address;
  const wanted = family === 4 ? "IPv4" : "IPv6";
  for (const list of Object.values(networkInterfaces())) {
    for (const ni of list ?? []) {
      if (!ni.internal && ni.family === wanted && !(family === 6 && ni.address.toLowerCase().startsWith("fe80:"))) return ni.address;
    }
  }
  return family === 4 ? "127.0.0.1" : "::1";
}
