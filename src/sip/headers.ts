/**
 * Header names. Internally every header is known by its lower-case long
 * name; compact forms (RFC 3261 §7.3.3 and the extensions that registered
 * one) map to it. Lookup first tries the name exactly as received, which
 * covers nearly all real traffic without allocating a lower-cased copy.
 */
const COMPACT: Record<string, string> = {
  a: "accept-contact",
  b: "referred-by",
  c: "content-type",
  d: "request-disposition",
  e: "content-encoding",
  f: "from",
  i: "call-id",
  j: "reject-contact",
  k: "supported",
  l: "content-length",
  m: "contact",
  n: "identity-info",
  o: "event",
  r: "refer-to",
  s: "subject",
  t: "to",
  u: "allow-events",
  v: "via",
  x: "session-expires",
  y: "identity",
};

const COMMON = [
  "Via",
  "From",
  "To",
  "Call-ID",
  "CSeq",
  "Contact",
  "Max-Forwards",
  "Content-Length",
  "Content-Type",
  "Route",
  "Record-Route",
  "Path",
  "Supported",
  "Require",
  "Proxy-Require",
  "Allow",
  "User-Agent",
  "Server",
  "Expires",
  "Authorization",
  "Proxy-Authorization",
  "WWW-Authenticate",
  "Proxy-Authenticate",
  "Accept",
  "Allow-Events",
  "Event",
  "Subscription-State",
  "Session-Expires",
  "Min-SE",
  "Retry-After",
  "Date",
  "Timestamp",
  "Unsupported",
  "Reason",
];

const EXACT = new Map<string, string>();
for (const name of COMMON) {
  EXACT.set(name, name.toLowerCase());
  EXACT.set(name.toLowerCase(), name.toLowerCase());
}
EXACT.set("Call-Id", "call-id");
EXACT.set("CSEQ", "cseq");
EXACT.set("Cseq", "cseq");
for (const [k, v] of Object.entries(COMPACT)) {
  EXACT.set(k, v);
  EXACT.set(k.toUpperCase(), v);
}

/**
 * Lower-case long name of the header whose name occupies `s[start..end)`,
 * found without slicing the name out: candidates are bucketed by length and
 * compared case-insensitively in place. Returns undefined for names not in
 * the table (the caller then slices and lower-cases).
 */
const BY_LENGTH: string[][] = [];
for (const name of new Set([...COMMON.map((n) => n.toLowerCase()), ...Object.keys(COMPACT)])) {
  (BY_LENGTH[name.length] ??= []).push(name);
}

export function lookupNameAt(s: string, start: number, end: number): string | undefined {
  const bucket = BY_LENGTH[end - start];
  if (bucket === undefined) return undefined;
  outer: for (const cand of bucket) {
    for (let i = 0; i < cand.length; i++) {
      let c = s.charCodeAt(start + i);
      if (c >= 65 && c <= 90) c |= 0x20;
      if (c !== cand.charCodeAt(i)) continue outer;
    }
    return COMPACT[cand] ?? cand;
  }
  return undefined;
}

/** Lower-case long name for a header name as it appeared on the wire. */
export function canonicalName(wire: string): string {
  const hit = EXACT.get(wire);
  if (hit !== undefined) return hit;
  const lower = wire.toLowerCase();
  return COMPACT[lower] ?? lower;
}

/**
 * Headers whose value is a comma-separated list that may be split across
 * lines or combined on one (RFC 3261 §7.3.1). Used when a value must be
 * split; everything else is kept whole.
 */
export const LIST_HEADERS: ReadonlySet<string> = new Set([
  "via",
  "route",
  "record-route",
  "path",
  "contact",
  "supported",
  "require",
  "proxy-require",
  "unsupported",
  "allow",
  "accept",
  "allow-events",
]);
