import type { SipMessage } from "../sip/message.js";
import { hostRef, parseUri, type SipUri } from "../sip/uri.js";
import type { Rewrite } from "./types.js";

/**
 * Applying a rule's rewrite to a request: the Request-URI's user, host and
 * port (RFC 3261 §16.6 step 2 lets a proxy replace the Request-URI), and
 * header lines the proxy core does not own (the schema refuses the others).
 * A rewrite that would produce an unparsable URI (a regex replacement fed
 * with odd input) is refused as a value and leaves the message untouched.
 */

export type UriRewriteResult = { ok: true; text: string; uri: SipUri; changed: boolean } | { ok: false; reason: string };

function newUser(uri: SipUri, rw: Rewrite): string | undefined {
  const u = rw.user;
  if (u === undefined) return uri.user;
  if (u.literal !== undefined) return u.literal;
  // A user part that does not match keeps its value; an absent one stays absent.
  return uri.user === undefined ? undefined : uri.user.replace(u.regex!, u.replace);
}

/** The rewritten Request-URI, or why it cannot be built. */
export function rewriteRequestUri(uri: SipUri, rw: Rewrite): UriRewriteResult {
  if (rw.user === undefined && rw.host === undefined && rw.port === undefined) return { ok: true, text: uri.raw, uri, changed: false };
  const user = newUser(uri, rw);
  let text: string;
  if (uri.scheme === "sip" || uri.scheme === "sips") {
    text = `${uri.scheme}:`;
    if (user !== undefined) text += uri.password === undefined ? `${user}@` : `${user}:${uri.password}@`;
    text += rw.host !== undefined ? hostRef(rw.host) : uri.ipv6 ? `[${uri.host}]` : uri.host;
    const port = rw.port === undefined ? uri.port : rw.port;
    if (port !== null && port !== undefined) text += `:${port}`;
    for (const p of uri.params) text += p.value === null ? `;${p.name}` : `;${p.name}=${p.value}`;
    if (uri.headers !== undefined) text += `?${uri.headers}`;
  } else if (uri.scheme === "tel") {
    // Removing a port a tel: URI cannot have is no change; setting a host or port is impossible.
    if (rw.host !== undefined || typeof rw.port === "number") return { ok: false, reason: "a tel: Request-URI has no host or port to rewrite" };
    text = `tel:${user ?? ""}`;
    for (const p of uri.params) text += p.value === null ? `;${p.name}` : `;${p.name}=${p.value}`;
  } else {
    return { ok: false, reason: `a ${uri.scheme}: Request-URI cannot be rewritten` };
  }
  const r = parseUri(text);
  if (!r.ok) return { ok: false, reason: `rewritten Request-URI ${JSON.stringify(text)} is not valid (${r.reason})` };
  return { ok: true, text, uri: r.uri, changed: text !== uri.raw };
}

export type ApplyResult = { ok: true; requestUri: string } | { ok: false; reason: string };

/** Rewrites the request in place; on failure nothing is changed. */
export function applyRewrite(message: SipMessage, rw: Rewrite): ApplyResult {
  let uriText = message.requestUri;
  if (message.uri !== undefined) {
    const r = rewriteRequestUri(message.uri, rw);
    if (!r.ok) return r;
    if (r.changed) {
      message.setRequestUri(r.text, r.uri);
      uriText = r.text;
    }
  } else if (rw.user !== undefined || rw.host !== undefined || rw.port !== undefined) {
    return { ok: false, reason: "the request has no parsed Request-URI to rewrite" };
  }
  for (const name of rw.removeHeaders) message.removeHeader(name);
  for (const [name, value] of rw.replaceHeaders) message.setHeader(name, value);
  for (const [name, value] of rw.addHeaders) message.addHeader(name, value);
  return { ok: true, requestUri: uriText };
}
