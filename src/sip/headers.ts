/**
 * Header names. Internally every header is known by its lower-case long
 * name; compact forms (RFC 3261 §7.3.3 and the extensions that registered
 * one) map to it. Names are written here as lower-case literals so the
 * strings handed out are the engine's internalized constants: comparing a
 * header's name with a literal (`h.name === "via"`, `switch (name)`) is then
 * a pointer check, not a character loop.
 */
const COMPACT: Readonly<Record<string, string>> = {
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

/** Long names recognized without allocating (everything else is lower-cased on demand). */
const KNOWN = [
  "via",
  "from",
  "to",
  "call-id",
  "cseq",
  "contact",
  "max-forwards",
  "content-length",
  "content-type",
  "route",
  "record-route",
  "path",
  "supported",
  "require",
  "proxy-require",
  "unsupported",
  "allow",
  "user-agent",
  "server",
  "expires",
  "min-expires",
  "authorization",
  "proxy-authorization",
  "www-authenticate",
  "proxy-authenticate",
  "authentication-info",
  "accept",
  "accept-encoding",
  "accept-language",
  "allow-events",
  "event",
  "subscription-state",
  "session-expires",
  "min-se",
  "retry-after",
  "date",
  "timestamp",
  "reason",
  "subject",
  "organization",
  "priority",
  "warning",
  "content-encoding",
  "content-disposition",
  "content-language",
  "mime-version",
  "alert-info",
  "call-info",
  "error-info",
  "in-reply-to",
  "reply-to",
  "refer-to",
  "referred-by",
  "replaces",
  "rseq",
  "rack",
  "privacy",
  "p-asserted-identity",
  "p-preferred-identity",
  "identity",
  "identity-info",
  "accept-contact",
  "reject-contact",
  "request-disposition",
  "security-client",
  "security-server",
  "security-verify",
];

interface NameEntry {
  /** The name as it may appear on the wire, lower-cased. */
  wire: string;
  /** Lower-case long name. */
  name: string;
}

/**
 * Candidates bucketed by (length, lower-cased first character): a lookup
 * touches one bucket, almost always of one entry, and compares in place.
 */
const MAX_NAME = 32;
const BUCKETS: (NameEntry[] | undefined)[] = new Array<NameEntry[] | undefined>(MAX_NAME * 128).fill(undefined);
function addName(wire: string, name: string): void {
  const k = wire.length * 128 + wire.charCodeAt(0);
  (BUCKETS[k] ??= []).push({ wire, name });
}
for (const name of KNOWN) addName(name, name);
for (const [letter, name] of Object.entries(COMPACT)) addName(letter, name);

/**
 * Lower-case long name of the header whose name occupies `s[start..end)`,
 * found without slicing the name out, case-insensitively. Returns undefined
 * for names not in the table (the caller then slices and lower-cases).
 */
export function lookupNameAt(s: string, start: number, end: number): string | undefined {
  const len = end - start;
  if (len <= 0 || len >= MAX_NAME) return undefined;
  let c0 = s.charCodeAt(start);
  if (c0 >= 65 && c0 <= 90) c0 |= 0x20;
  else if (c0 >= 128) return undefined;
  const bucket = BUCKETS[len * 128 + c0];
  if (bucket === undefined) return undefined;
  for (let k = 0; k < bucket.length; k++) {
    const e = bucket[k]!;
    const w = e.wire;
    let i = 1;
    for (; i < len; i++) {
      let c = s.charCodeAt(start + i);
      if (c >= 65 && c <= 90) c |= 0x20;
      if (c !== w.charCodeAt(i)) break;
    }
    if (i === len) return e.name;
  }
  return undefined;
}

/** Lower-case long name for a header name as it appeared on the wire. */
export function canonicalName(wire: string): string {
  return lookupNameAt(wire, 0, wire.length) ?? wire.toLowerCase();
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
