/** The transport layer's public surface, for the composition root and the edge. */
export { TransportLayer, type TransportLayerOptions } from "./layer.js";
export { SipResolver, nodeDnsBackend, orderSrv } from "./dns.js";
export type { DnsBackend, DnsEvent, DnsEntryStatus, SipResolverOptions, SipTarget, AddressRecord, SrvRecord } from "./dns.js";
export { familyOf, hostRef, normalizeAddress } from "./address.js";
export * from "./types.js";
