/**
 * The edge holds every message as one character per byte (latin1): that is
 * how the parser reads datagrams and streams, and how the transports write
 * text back (src/transport/bytes.ts). Text from config files (a rule's
 * header value, reason phrase or match value) is ordinary Unicode, and
 * RFC 3261 §25.1 puts UTF-8 on the wire. These two convert between the
 * forms at the edges of the rules engine, so a non-ASCII character from
 * rules.yaml goes out as its UTF-8 bytes and matches the bytes a phone sent.
 */

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

/** Unicode text as the edge's wire form: one character per byte of its UTF-8. ASCII comes back as it is. */
export function toWire(s: string): string {
  return isAscii(s) ? s : Buffer.from(s, "utf8").toString("latin1");
}

/** Wire-form text as Unicode (bytes that are not UTF-8 become U+FFFD). ASCII comes back as it is. */
export function fromWire(s: string): string {
  return isAscii(s) ? s : Buffer.from(s, "latin1").toString("utf8");
}
