/**
 * RFC 4475 and RFC 5118 torture messages (test/fixtures/conformance, external
 * data): for each message, the verdict a proxy must reach, the fields it must
 * extract, and byte-exact serialization of the untouched message.
 */
import t, { type Test } from "tap";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse, type ParseErrorCode } from "../../src/sip/parse.js";
import { parseViaValue } from "../../src/sip/via.js";

const ROOT = join(import.meta.dirname, "..", "fixtures", "conformance");

type Expect =
  | {
      verdict: "forward";
      /** Why a proxy forwards it although the RFC flags it, where it does. */
      note?: string;
      method?: string;
      status?: number;
      ruri?: string;
      branch?: string | undefined;
      contentLength?: number | undefined;
      callId?: string;
      trailing?: number;
      check?: (m: import("../../src/sip/message.js").SipMessage, tt: Test) => void;
    }
  | { verdict: "reject"; code: ParseErrorCode; status: number; request: boolean };

const RFC4475: Record<string, Expect> = {
  "wsinv.dat": {
    verdict: "forward",
    method: "INVITE",
    ruri: "sip:vivekg@chair-dnrc.example.com;unknownparam",
    branch: "390skdjuw",
    contentLength: 150,
    callId: "wsinv.ndaksdj@192.0.2.1",
    check: (m, tt) => {
      tt.equal(m.maxForwards, 68, "leading zeros in Max-Forwards");
      tt.same(m.cseq, { seq: 9, method: "INVITE" }, "folded CSeq");
      tt.equal(m.topVia.transport, "UDP");
      tt.equal(m.topVia.host, "192.0.2.2");
      tt.equal(m.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;", "unknown header carried opaquely");
      tt.equal(m.get("NewFangledHeader"), "newfangled value continued newfangled value", "folded value unfolds");
      tt.equal(m.get("s"), "", "empty Subject");
      const vias = m.vias()!;
      tt.same(vias.map((v) => v.branch), ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]);
      const routes = m.routes()!;
      tt.equal(routes.length, 1);
      tt.equal(routes[0]!.uri.host, "services.example.com");
      const c = m.contacts()!;
      tt.equal(c.star, false);
      if (!c.star) tt.equal(c.contacts[0]!.displayName, '"Quoted string \\"\\""');
    },
  },
  "intmeth.dat": {
    verdict: "forward",
    note: "unknown method: a proxy forwards it (or answers 404 for a URI it does not serve)",
    method: "!interesting-Method0123456789_*+`.%indeed'~",
    contentLength: 0,
    check: (m, tt) => {
      tt.equal(m.uri!.host, "example.com");
      tt.equal(m.uri!.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
      tt.ok(m.get("To")!.includes("\u0000"), "raw NUL inside the quoted display name survives");
    },
  },
  "esc01.dat": {
    verdict: "forward",
    method: "INVITE",
    ruri: "sip:sips%3Auser%40example.com@example.net",
    check: (m, tt) => tt.equal(m.uri!.user, "sips%3Auser%40example.com", "escapes kept as received"),
  },
  "escnull.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      const c = m.contacts()!;
      tt.equal(c.star, false);
      if (!c.star) {
        tt.equal(c.contacts.length, 2, "two distinct bindings");
        tt.not(c.contacts[0]!.uri.user, c.contacts[1]!.uri.user);
      }
    },
  },
  "esc02.dat": {
    verdict: "forward",
    note: "RE%47IST%45R is an unknown method, not REGISTER",
    method: "RE%47IST%45R",
    check: (m, tt) => {
      const c = m.contacts()!;
      tt.equal(c.star, false);
      if (!c.star) tt.equal(c.contacts.length, 2, "C%6Fntact is another header");
      tt.ok(m.has("C%6Fntact"));
    },
  },
  "lwsdisp.dat": { verdict: "forward", method: "OPTIONS" },
  "longreq.dat": {
    verdict: "forward",
    method: "INVITE",
    contentLength: 150,
    check: (m, tt) => {
      tt.equal(m.vias()!.length, 34);
      tt.equal(m.topVia.host, "sip33.example.com");
      tt.ok(m.callId.length > 100, "long Call-ID not truncated");
    },
  },
  "dblreq.dat": {
    verdict: "forward",
    note: "the trailing 450 octets in the datagram are ignored, never forwarded",
    method: "REGISTER",
    contentLength: 0,
    trailing: 450,
  },
  "semiuri.dat": {
    verdict: "forward",
    method: "OPTIONS",
    check: (m, tt) => {
      tt.equal(m.uri!.user, "user;par=u%40example.net");
      tt.equal(m.uri!.host, "example.com");
      tt.same(m.uri!.params, []);
    },
  },
  "transports.dat": {
    verdict: "forward",
    method: "OPTIONS",
    check: (m, tt) => tt.same(m.vias()!.map((v) => v.transport), ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]),
  },
  "mpart01.dat": {
    verdict: "forward",
    method: "MESSAGE",
    contentLength: 553,
    check: (m, tt) => tt.equal(m.body.length, 553, "binary body framed by Content-Length"),
  },
  "unreason.dat": {
    verdict: "forward",
    status: 200,
    check: (m, tt) => tt.ok(m.reason.startsWith("= 2**3 * 5**2")),
  },
  "noreason.dat": { verdict: "forward", status: 100, check: (m, tt) => tt.equal(m.reason, "") },
  "badinv01.dat": { verdict: "reject", code: "bad-via", status: 400, request: true },
  "clerr.dat": { verdict: "reject", code: "content-length-exceeds", status: 400, request: true },
  "ncl.dat": { verdict: "reject", code: "bad-content-length", status: 400, request: true },
  "scalar02.dat": { verdict: "reject", code: "bad-cseq", status: 400, request: true },
  "scalarlg.dat": { verdict: "reject", code: "bad-cseq", status: 400, request: false },
  "quotbal.dat": { verdict: "reject", code: "bad-from-to", status: 400, request: true },
  "ltgtruri.dat": { verdict: "reject", code: "bad-request-uri", status: 400, request: true },
  "lwsruri.dat": { verdict: "reject", code: "bad-start-line", status: 400, request: true },
  "lwsstart.dat": { verdict: "reject", code: "bad-start-line", status: 400, request: true },
  "trws.dat": { verdict: "reject", code: "bad-start-line", status: 400, request: true },
  "escruri.dat": { verdict: "reject", code: "bad-request-uri", status: 400, request: true },
  "baddate.dat": {
    verdict: "forward",
    note: "RFC-invalid Date (EST), but Date does not matter to a proxy: forwarded untouched",
    method: "INVITE",
    check: (m, tt) => tt.equal(m.get("Date"), "Fri, 01 Jan 2010 16:00:00 EST"),
  },
  "regbadct.dat": { verdict: "reject", code: "bad-contact", status: 400, request: true },
  "badaspec.dat": { verdict: "reject", code: "bad-from-to", status: 400, request: true },
  "baddn.dat": { verdict: "reject", code: "bad-from-to", status: 400, request: true },
  "badvers.dat": { verdict: "reject", code: "bad-version", status: 505, request: true },
  "mismatch01.dat": { verdict: "reject", code: "cseq-method-mismatch", status: 400, request: true },
  "mismatch02.dat": { verdict: "reject", code: "cseq-method-mismatch", status: 400, request: true },
  "bigcode.dat": { verdict: "reject", code: "bad-status-code", status: 400, request: false },
  "badbranch.dat": {
    verdict: "forward",
    note: "branch is the bare magic cookie: well-formed; the proxy derives its own branch per RFC 3261 §16.11",
    method: "OPTIONS",
    branch: "z9hG4bK",
  },
  "insuf.dat": { verdict: "reject", code: "missing-header", status: 400, request: true },
  "unkscm.dat": {
    verdict: "forward",
    note: "parses; the edge answers 416 for an unknown Request-URI scheme",
    method: "OPTIONS",
    ruri: "nobodyKnowsThisScheme:totallyopaquecontent",
    check: (m, tt) => tt.equal(m.uri!.scheme, "nobodyknowsthisscheme"),
  },
  "novelsc.dat": { verdict: "forward", method: "OPTIONS", check: (m, tt) => tt.equal(m.uri!.scheme, "soap.beep") },
  "unksm2.dat": { verdict: "forward", method: "REGISTER" },
  "bext01.dat": {
    verdict: "forward",
    note: "parses; the edge answers 420 because of Proxy-Require",
    method: "OPTIONS",
    check: (m, tt) => tt.ok(m.has("Proxy-Require")),
  },
  "invut.dat": { verdict: "forward", note: "unknown Content-Type: a proxy forwards it, only a UAS answers 415", method: "INVITE", contentLength: 40 },
  "regaut01.dat": { verdict: "forward", note: "unknown Authorization scheme is forwarded unmodified", method: "REGISTER" },
  "multi01.dat": { verdict: "reject", code: "duplicate-header", status: 400, request: true },
  "mcl01.dat": { verdict: "reject", code: "content-length-mismatch", status: 400, request: true },
  "bcast.dat": { verdict: "forward", note: "parses; the edge drops a response whose next hop is a broadcast address", status: 200 },
  "zeromf.dat": {
    verdict: "forward",
    note: "parses; the edge answers 483 instead of forwarding",
    method: "OPTIONS",
    check: (m, tt) => tt.equal(m.maxForwards, 0),
  },
  "cparam01.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      const c = m.contacts()!;
      if (c.star) return tt.fail("not *");
      tt.same(c.contacts[0]!.uri.params, [], "no URI parameter");
      tt.same(c.contacts[0]!.params, [{ name: "unknownparam", value: null }], "a contact parameter");
    },
  },
  "cparam02.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      const c = m.contacts()!;
      if (c.star) return tt.fail("not *");
      tt.same(c.contacts[0]!.uri.params, [{ name: "unknownparam", value: null }], "a URI parameter");
    },
  },
  "regescrt.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      const c = m.contacts()!;
      if (c.star) return tt.fail("not *");
      tt.equal(c.contacts[0]!.uri.headers, "Route=%3Csip:sip.example.com%3E");
    },
  },
  "sdp01.dat": { verdict: "forward", method: "INVITE" },
  "inv2543.dat": {
    verdict: "forward",
    note: "RFC 2543 syntax: no branch, no Content-Length (body is the rest of the datagram), no Max-Forwards",
    method: "INVITE",
    branch: undefined,
    contentLength: undefined,
    check: (m, tt) => {
      tt.equal(m.maxForwards, undefined);
      tt.ok(m.body.startsWith("v=0"));
    },
  },
};

const RFC5118: Record<string, Expect> = {
  "ipv6-good.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      tt.equal(m.uri!.host, "2001:db8::10");
      tt.equal(m.uri!.ipv6, true);
      tt.equal(m.topVia.host, "2001:db8::9:1");
      const c = m.contacts()!;
      if (!c.star) tt.equal(c.contacts[0]!.uri.host, "2001:db8::1");
    },
  },
  "ipv6-bad.dat": { verdict: "reject", code: "bad-request-uri", status: 400, request: true },
  "port-ambiguous.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      tt.equal(m.uri!.host, "2001:db8::10:5070", "the port inside the brackets is part of the address");
      tt.equal(m.uri!.port, undefined);
    },
  },
  "port-unambiguous.dat": {
    verdict: "forward",
    method: "REGISTER",
    check: (m, tt) => {
      tt.equal(m.uri!.host, "2001:db8::10");
      tt.equal(m.uri!.port, 5070);
    },
  },
  "via-received-param-with-delim.dat": {
    verdict: "forward",
    note: "bracketed received is not RFC 3261 grammar but must be accepted",
    method: "BYE",
    check: (m, tt) => tt.equal(m.topVia.received, "2001:db8::9:255"),
  },
  "via-received-param-no-delim.dat": {
    verdict: "forward",
    method: "OPTIONS",
    check: (m, tt) => {
      tt.equal(m.topVia.received, "2001:db8::9:255");
      tt.equal(m.topVia.branch, "z9hG4bKas3");
    },
  },
  "ipv6-in-sdp.dat": { verdict: "forward", method: "INVITE", check: (m, tt) => tt.ok(m.body.includes("c=IN IP6 2001:db8::20")) },
  "mult-ip-in-header.dat": {
    verdict: "forward",
    method: "BYE",
    check: (m, tt) => {
      const vias = m.vias()!;
      tt.same(
        vias.map((v) => [v.host, v.port, v.received]),
        [
          ["2001:db8::9:1", 6050, undefined],
          ["192.0.2.1", undefined, undefined],
          ["2001:db8::9:255", undefined, "192.0.2.200"],
        ].map(([h, p, r]) => [h, p, r]),
      );
    },
  },
  "mult-ip-in-sdp.dat": { verdict: "forward", method: "INVITE" },
  "ipv4-mapped-ipv6.dat": {
    verdict: "forward",
    method: "INVITE",
    check: (m, tt) => {
      tt.equal(m.topVia.host, "::ffff:192.0.2.10");
      tt.equal(m.topVia.port, 19823);
    },
  },
  "ipv6-bug-abnf-3-colons.dat": {
    verdict: "forward",
    note: "three colons: tolerated by robustness (RFC 5118 §4.10)",
    method: "OPTIONS",
    check: (m, tt) => tt.equal(m.uri!.host, "2001:db8:::192.0.2.1"),
  },
  "ipv6-correct-abnf-2-colons.dat": { verdict: "forward", method: "OPTIONS", check: (m, tt) => tt.equal(m.uri!.host, "2001:db8::192.0.2.1") },
};

/**
 * RFC 5118 archive bytes are LF-terminated and two bodies disagree with
 * their Content-Length: convert to wire form (CRLF) and recompute the
 * length, as the corpus README asks.
 */
function wireForm5118(bytes: string): string {
  const crlf = bytes.replace(/\n/g, "\r\n");
  const sep = crlf.indexOf("\r\n\r\n");
  if (sep < 0) return crlf;
  const body = crlf.slice(sep + 4);
  return crlf.slice(0, sep + 4).replace(/(Content-Length|l)\s*:\s*\d+/i, `Content-Length: ${body.length}`) + body;
}

function runTable(tt: Test, dir: string, table: Record<string, Expect>, transform: (s: string) => string): void {
  const files = readdirSync(dir).filter((f) => f.endsWith(".dat")).sort();
  tt.same(Object.keys(table).sort(), files, "every corpus file has a verdict");
  for (const f of files) {
    const e = table[f]!;
    tt.test(f, async (ft) => {
      const text = transform(readFileSync(join(dir, f), "latin1"));
      const r = parse(Buffer.from(text, "latin1"));
      if (e.verdict === "reject") {
        ft.equal(r.ok, false, "rejected");
        if (r.ok) return;
        ft.equal(r.code, e.code, "error code");
        ft.equal(r.status, e.status, "suggested status");
        ft.equal(r.isRequest, e.request, "request or response");
        ft.ok(r.offset >= 0 && r.offset <= text.length, "offset within message");
        ft.type(r.reason, "string");
        return;
      }
      ft.equal(r.ok, true, r.ok ? "parsed" : `parsed (got ${r.code}: ${r.reason})`);
      if (!r.ok) return;
      const m = r.message;
      if (e.method !== undefined) ft.equal(m.method, e.method, "method");
      if (e.status !== undefined) ft.equal(m.status, e.status, "status");
      if (e.ruri !== undefined) ft.equal(m.requestUri, e.ruri, "Request-URI");
      if ("branch" in e) ft.equal(m.topVia.branch, e.branch, "top Via branch");
      if ("contentLength" in e) ft.equal(m.contentLength, e.contentLength, "Content-Length");
      if (e.callId !== undefined) ft.equal(m.callId, e.callId, "Call-ID");
      ft.equal(r.trailingBytes, e.trailing ?? 0, "trailing octets");
      const expected = text.slice(0, text.length - r.trailingBytes);
      ft.equal(m.toString(), expected, "untouched message serializes to the same bytes");
      ft.ok(m.toBuffer().equals(Buffer.from(expected, "latin1")), "byte-identical buffer");
      e.check?.(m, ft);
      forwardRoundTrip(ft, expected);
    });
  }
}

const EDGE_VIA = (() => {
  const r = parseViaValue("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-conformance");
  if (!r.ok) throw new Error(r.reason);
  return r.via;
})();

/**
 * What a proxy does to an accepted message must leave a message it would
 * accept again, with the same identity: a request gets our Via on top and
 * Max-Forwards decremented (RFC 3261 §16.6), a response loses its top Via
 * (§16.7). Checked on the rewritten bytes, parsed afresh.
 */
function forwardRoundTrip(tt: Test, text: string): void {
  const r = parse(Buffer.from(text, "latin1"));
  if (!r.ok) return;
  const m = r.message;
  const vias = m.vias();
  if (m.isRequest) {
    m.prependVia(EDGE_VIA);
    m.setMaxForwards(Math.max((m.maxForwards ?? 70) - 1, 0));
  } else {
    if (vias === undefined || vias.length < 2) return;
    m.removeTopVia();
  }
  m.fixContentLength();
  const again = parse(m.toBuffer(), { stream: true });
  tt.ok(again.ok, again.ok ? "forwarded message parses again" : `forwarded message parses again (got ${again.code}: ${again.reason})`);
  if (!again.ok) return;
  const f = again.message;
  tt.equal(f.topVia.branch, m.isRequest ? EDGE_VIA.branch : vias![1]!.branch, "top Via after forwarding");
  tt.equal(f.callId, m.callId, "Call-ID kept");
  tt.same(f.cseq, m.cseq, "CSeq kept");
  tt.equal(f.body, m.body, "body kept");
  if (m.isRequest) tt.equal(f.requestUri, m.requestUri, "Request-URI kept");
  if (vias !== undefined) tt.equal(f.vias()?.length, vias.length + (m.isRequest ? 1 : -1), "one Via more (request) or less (response)");
}

t.test("RFC 4475 torture messages", async (tt) => {
  runTable(tt, join(ROOT, "rfc4475"), RFC4475, (s) => s);
});

t.test("RFC 5118 IPv6 torture messages (LF converted to CRLF)", async (tt) => {
  runTable(tt, join(ROOT, "rfc5118"), RFC5118, wireForm5118);
});

t.test("RFC 5118 archive bytes as they are (bare LF) are refused, not crashed on", async (tt) => {
  for (const f of readdirSync(join(ROOT, "rfc5118")).filter((x) => x.endsWith(".dat"))) {
    const r = parse(readFileSync(join(ROOT, "rfc5118", f)));
    tt.equal(r.ok, false, `${f}: LF-only framing is not SIP`);
  }
});
