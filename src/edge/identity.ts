import { networkInterfaces } from "node:os";
import type { SipUri } from "../sip/uri.js";
import { defaultPort, type Listener } from "./ports.js";

/**
 * Answers "does this URI name the edge itself?" (RFC 3261 §16.4): a host
 * that is one of our listener addresses, advertised names or configured
 * domains, on one of our ports (or with no port, for a domain name).
 * Built once per configuration; the hot path is two Set lookups.
 */
export class EdgeIdentity {
  private readonly hosts = new Set<string>();
  private readonly domains = new Set<string>();
  private readonly ports = new Set<number>();

  constructor(listeners: readonly Listener[], domains: readonly string[]) {
    for (const l of listeners) {
      this.ports.add(l.port);
      this.hosts.add(l.advertise.toLowerCase());
      if (l.address !== "0.0.0.0" && l.address !== "::") this.hosts.add(l.address.toLowerCase());
      // A wildcard listener is reachable on every local address.
      else for (const a of localAddresses(l.family)) this.hosts.add(a);
    }
    for (const d of domains) this.domains.add(d.toLowerCase());
  }

  /** Adds the local addresses a wildcard listener is reachable on. */
  addHost(host: string): void {
    this.hosts.add(host.toLowerCase());
  }

  isUs(uri: SipUri | undefined): boolean {
    if (uri === undefined || (uri.scheme !== "sip" && uri.scheme !== "sips")) return false;
    const host = uri.host.toLowerCase();
    // A configured domain (the FQDN phones point at) means us whatever the port.
    if (this.domains.has(host)) return true;
    if (!this.hosts.has(host)) return false;
    const port = uri.port ?? defaultPort(uri.scheme === "sips" ? "tls" : "udp");
    return this.ports.has(port);
  }

  isOurSentBy(host: string, port: number | undefined): boolean {
    return this.hosts.has(host.toLowerCase()) && this.ports.has(port ?? 5060);
  }
}

function localAddresses(family: 4 | 6): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === (family === 4 ? "IPv4" : "IPv6")) out.push(a.address.toLowerCase());
  }
  return out;
}
