/**
 * Property tests for the SIP parser (issue 2):
 * - mutated and truncated messages never make parse() throw: the answer is
 *   always a value, and an accepted message still round-trips its bytes and
 *   survives the lazy readers and the forward rewrites;
 * - every generated valid message parses, extracts the fields it was built
 *   with, and serializes back to exactly its bytes;
 * - pathological inputs come back as a value (linear work, see below);
 * - each limit produces its own error code.
 *
 * Why parsing is linear (no assertion on time can be made reliably here, so
 * the argument is written down and the pathological inputs below exercise it):
 * - the header loop only moves forward: each line is found with one
 *   `indexOf("\r\n")` from the current position and the next line starts
 *   after it; continuation lines extend the same forward scan;
 * - per line, the work is bounded by that line: the name lookup is by length
 *   bucket, the Via value count reads only the line (a search for the next
 *   comma is reused by the following Via lines and never restarts before
 *   its last hit; a fresh `indexOf(",")` per Via line once made many Via
 *   lines quadratic: see the "many Via lines" case), and only the first
 *   Via, CSeq, Max-Forwards, Content-Length, Call-ID and From/To are read,
 *   each in one pass;
 * - the sub-parsers (URI, Via, params, name-addr, list splitting) advance an
 *   index on every iteration and skip a quoted string or an IPv6 reference
 *   as a unit, never re-scanning what was consumed;
 * - limits (size, header count, Via count, line length) end the work early.
 */
import t from "tap";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_LIMITS, parse, type ParseLimits, type ParseResult } from "../../src/sip/parse.js";
import type { SipMessage } from "../../src/sip/message.js";
import { parseViaValue } from "../../src/sip/via.js";
import { INVITE, REGISTER } from "../../perf/fixtures/messages.js";

const CORPUS = join(import.meta.dirname, "..", "fixtures", "conformance");
const corpus = (name: string): string => readFileSync(join(CORPUS, name), "latin1");
const crlf = (s: string): string => s.replace(/\r?\n/g, "\r\n");

const SEEDS: [string, string][] = [
  ["INVITE", INVITE],
  ["REGISTER", REGISTER],
  ["wsinv", corpus("rfc4475/wsinv.dat")],
  ["intmeth", corpus("rfc4475/intmeth.dat")],
  ["esc01", corpus("rfc4475/esc01.dat")],
  ["mpart01", corpus("rfc4475/mpart01.dat")],
  ["unreason", corpus("rfc4475/unreason.dat")],
  ["ipv6-good", crlf(corpus("rfc5118/ipv6-good.dat"))],
  ["mult-ip-in-header", crlf(corpus("rfc5118/mult-ip-in-header.dat"))],
];

const OUR_VIA = (() => {
  const r = parseViaValue("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-prop");
  if (!r.ok) throw new Error(r.reason);
  return r.via;
})();

const STATUSES = new Set([400, 505, 513]);

/** Leading CRLFs a parser skips (RFC 3261 §7.5). */
function leadingCrlf(s: string): number {
  let i = 0;
  while (i + 1 < s.length && s.charCodeAt(i) === 13 && s.charCodeAt(i + 1) === 10) i += 2;
  return i;
}

/**
 * Everything a caller may do with any parse result must work: the result is
 * well-formed, an accepted message gives back its own bytes, the lazy readers
 * return values, and a forward rewrite yields a message we accept again.
 * Returns a description of the first broken invariant, or undefined.
 */
function checkResult(text: string, r: ParseResult, stream: boolean): string | undefined {
  if (!r.ok) {
    if (typeof r.code !== "string" || typeof r.reason !== "string") return "error without code/reason";
    if (!(r.offset >= 0 && r.offset <= Math.max(text.length, DEFAULT_LIMITS.maxMessageBytes))) return `offset ${r.offset} out of range`;
    if (!STATUSES.has(r.status)) return `status ${r.status}`;
    return undefined;
  }
  const m = r.message;
  const expected = text.slice(leadingCrlf(text), text.length - r.trailingBytes);
  if (m.toString() !== expected) return "untouched message does not give back its bytes";
  if (stream && m.contentLength === undefined) return "stream message without Content-Length accepted";
  m.vias();
  m.routes();
  m.recordRoutes();
  m.paths();
  m.contacts();
  m.listValues("Supported");
  m.hasOptionTag("Require", "100rel");
  m.get("To");
  m.getAll("v");
  const mf = m.maxForwards ?? 70;
  m.removeFirstRoute();
  m.prependVia(OUR_VIA);
  m.setMaxForwards(mf > 0 ? mf - 1 : 0);
  m.addRecordRoute("<sip:203.0.113.1;lr>");
  m.fixContentLength();
  if (m.toString() !== reference(m)) return "rewritten message differs from the plain join of its parts";
  const again = parse(m.toBuffer(), { stream: true });
  if (!again.ok) return `rewritten message refused: ${again.code} ${again.reason}`;
  if (again.message.topVia.branch !== OUR_VIA.branch) return "our Via is not on top after the rewrite";
  if (again.message.callId !== m.callId) return "Call-ID changed";
  if (again.message.cseq.seq !== m.cseq.seq) return "CSeq changed";
  if (again.message.body !== m.body) return "body changed";
  const before = m.vias();
  again.message.removeTopVia();
  // A later Via line may be malformed (only the top one is checked up front).
  if (before !== undefined && again.message.topVia.branch !== before[1]?.branch) return "removeTopVia did not expose the previous top Via";
  return undefined;
}

/** The plain definition of a rewritten message: start line, lines and body joined by CRLF. */
function reference(m: SipMessage): string {
  return [m.startLine, ...m.headers.map((h) => h.raw), "", m.body].join("\r\n");
}

function parseAll(text: string): string | undefined {
  for (const stream of [false, true]) {
    const fromBuf = parse(Buffer.from(text, "latin1"), { stream });
    const problem = checkResult(text, fromBuf, stream);
    if (problem !== undefined) return `${stream ? "stream" : "datagram"}: ${problem}`;
    const fromStr = parse(text, { stream });
    if (fromStr.ok !== fromBuf.ok) return "string and Buffer input disagree";
  }
  return undefined;
}

/** Bytes that matter to the grammar, weighted above random octets. */
const INTERESTING = ["\r", "\n", "\r\n", "\r\n ", "\r\n\r\n", " ", "\t", ":", ";", ",", '"', "\\", "<", ">", "[", "]", "@", "=", "%", "/", "0", "9", "\u0000", "\u00ff"];
const octet = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c));
const chunk = fc.oneof(fc.constantFrom(...INTERESTING), octet, fc.array(octet, { maxLength: 8 }).map((a) => a.join("")));

type Edit = { kind: "flip"; at: number; bit: number } | { kind: "insert"; at: number; text: string } | { kind: "delete"; at: number; len: number } | { kind: "set"; at: number; text: string };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: chunk }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), text: fc.constantFrom(...INTERESTING) }),
);

function applyEdits(seed: string, edits: Edit[]): string {
  let s = seed;
  for (const e of edits) {
    const at = s.length === 0 ? 0 : e.at % (s.length + 1);
    switch (e.kind) {
      case "flip": {
        if (at >= s.length) break;
        s = s.slice(0, at) + String.fromCharCode(s.charCodeAt(at) ^ (1 << e.bit)) + s.slice(at + 1);
        break;
      }
      case "insert":
        s = s.slice(0, at) + e.text + s.slice(at);
        break;
      case "delete":
        s = s.slice(0, at) + s.slice(at + e.len);
        break;
      case "set":
        s = s.slice(0, at) + e.text + s.slice(at + 1);
        break;
    }
  }
  return s;
}

t.test("the seeds themselves are valid and pass every check", async (tt) => {
  for (const [name, text] of SEEDS) {
    const r = parse(Buffer.from(text, "latin1"));
    tt.ok(r.ok, `${name} parses`);
    tt.equal(parseAll(text), undefined, `${name}: invariants hold`);
  }
});

t.test("random mutations never throw and always give a sound value", async (tt) => {
  fc.assert(
    fc.property(fc.constantFrom(...SEEDS), fc.array(edit, { minLength: 1, maxLength: 6 }), ([, seed], edits) => {
      const problem = parseAll(applyEdits(seed, edits));
      if (problem !== undefined) throw new Error(problem);
    }),
    { numRuns: 1500 },
  );
  tt.pass("1500 mutated messages");
});

t.test("every truncation of the seeds gives a sound value", async (tt) => {
  let accepted = 0;
  for (const [name, seed] of SEEDS) {
    for (let len = 0; len <= seed.length; len++) {
      const text = seed.slice(0, len);
      const problem = parseAll(text);
      if (problem !== undefined) {
        tt.fail(`${name} cut at ${len}: ${problem}`);
        return;
      }
      if (parse(text, { stream: true }).ok) accepted++;
    }
  }
  tt.ok(accepted > 0, "complete messages among the prefixes are accepted on a stream");
});

t.test("arbitrary strings, including non-latin1 code units, give a value", async (tt) => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => {
      const r = parse(s);
      if (typeof r.ok !== "boolean") throw new Error("no verdict");
      const r2 = parse("INVITE sip:a@b SIP/2.0\r\n" + s);
      if (typeof r2.ok !== "boolean") throw new Error("no verdict");
    }),
    { numRuns: 500 },
  );
  tt.pass("500 strings");
});

// ---- generated valid messages ------------------------------------------

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const word = (min: number, max: number, extra = ""): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...(alnum + extra).split("")), { minLength: min, maxLength: max }).map((a) => a.join(""));
const tokenArb = word(1, 10, "-.!%*_+`'~");
const hostnameArb = fc.array(word(1, 8, "-"), { minLength: 1, maxLength: 3 }).map((labels) => labels.map((l) => (l.startsWith("-") ? `h${l}` : l)).join("."));
const ipv6Arb = fc.ipV6();
const hostArb = fc.oneof(
  hostnameArb.map((h) => ({ ref: h, host: h })),
  fc.ipV4().map((h) => ({ ref: h, host: h })),
  ipv6Arb.map((h) => ({ ref: `[${h}]`, host: h })),
);
const portArb = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined });
const lws = fc.constantFrom(" ", "", "  ", "\t", "\r\n ", "\r\n\t");

/** A name as written on the wire: long form in any case, or the compact form. */
function wireName(long: string, compact?: string): fc.Arbitrary<string> {
  const forms = [long, long.toLowerCase(), long.toUpperCase()];
  if (compact !== undefined) forms.push(compact, compact.toUpperCase());
  return fc.constantFrom(...forms);
}
const colon = fc.constantFrom(": ", ":", " : ", ":\t", ":  ");

interface ViaSpec {
  text: string;
  branch: string;
  host: string;
  port: number | undefined;
  rport: number | null | undefined;
  received: string | undefined;
}

const viaArb: fc.Arbitrary<ViaSpec> = fc
  .record({
    transport: fc.constantFrom("UDP", "TCP", "TLS", "WS", "WSS", "SCTP", "udp", "tls"),
    host: hostArb,
    port: portArb,
    branch: word(1, 16, "-.").map((b) => `z9hG4bK${b}`),
    rport: fc.option(fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 65535 })), { nil: undefined }),
    received: fc.option(fc.oneof(fc.ipV4(), ipv6Arb, ipv6Arb.map((h) => `[${h}]`)), { nil: undefined }),
    extra: fc.option(fc.constantFrom(";alias", ";keep", ';x="q, r; s"', ";maddr=192.0.2.1;ttl=1"), { nil: undefined }),
  })
  .map((v) => {
    let text = `SIP/2.0/${v.transport} ${v.host.ref}${v.port === undefined ? "" : `:${v.port}`};branch=${v.branch}`;
    if (v.rport !== undefined) text += v.rport === null ? ";rport" : `;rport=${v.rport}`;
    if (v.received !== undefined) text += `;received=${v.received}`;
    if (v.extra !== undefined) text += v.extra;
    const received = v.received === undefined ? undefined : v.received.replace(/^\[|\]$/g, "");
    return { text, branch: v.branch, host: v.host.host, port: v.port, rport: v.rport, received };
  });

/** Via lines: each line holds one or two values, sometimes folded after the comma. */
const viaLinesArb = fc.array(fc.tuple(wireName("Via", "v"), colon, fc.array(viaArb, { minLength: 1, maxLength: 2 }), fc.constantFrom(", ", ",", ",\r\n ", " ,\t")), {
  minLength: 1,
  maxLength: 3,
});

const quotedArb = fc
  .array(fc.constantFrom("a", "Z", " ", ",", ";", "<", ">", ":", "@", '\\"', "\\\\", "\u00e9", "\u00ff"), { maxLength: 12 })
  .map((parts) => `"${parts.join("")}"`);
const displayArb = fc.option(fc.oneof(quotedArb, fc.array(tokenArb, { minLength: 1, maxLength: 3 }).map((w) => w.join(" "))), { nil: undefined });

const sipUriArb = fc
  .record({
    scheme: fc.constantFrom("sip", "sips", "SIP"),
    user: fc.option(word(1, 10, "-_.!~*'()&=+$,;?/%"), { nil: undefined }),
    host: hostArb,
    port: portArb,
    params: fc.array(fc.constantFrom(";lr", ";transport=tcp", ";user=phone", ";ob", ";x=y"), { maxLength: 3 }),
  })
  .map((u) => {
    // An unescaped '%' must start an escape; keep the user part well-formed.
    const user = u.user?.replace(/%/g, "%25");
    return `${u.scheme}:${user === undefined ? "" : `${user}@`}${u.host.ref}${u.port === undefined ? "" : `:${u.port}`}${u.params.join("")}`;
  });
const uriArb = fc.oneof({ weight: 4, arbitrary: sipUriArb }, { weight: 1, arbitrary: fc.constantFrom("tel:+1-201-555-0123", "tel:7042;phone-context=example.com", "urn:service:sos") });

/** A name-addr; its URI is bracketed whenever it carries parameters or a display name. */
const nameAddrArb = (withTag: boolean): fc.Arbitrary<string> =>
  fc.record({ display: displayArb, uri: sipUriArb, tag: word(1, 12), bare: fc.boolean() }).map((n) => {
    const bare = n.bare && n.display === undefined && !/[;,?]/.test(n.uri);
    const addr = bare ? n.uri : `${n.display === undefined ? "" : `${n.display} `}<${n.uri}>`;
    return withTag ? `${addr};tag=${n.tag}` : addr;
  });

const routeLinesArb = fc.array(fc.tuple(wireName("Route"), fc.array(sipUriArb.map((u) => `<${u};lr>`), { minLength: 1, maxLength: 2 })), { maxLength: 2 });

const extraArb = fc.array(
  fc.oneof(
    fc.tuple(wireName("Supported", "k"), fc.constantFrom("path, outbound", "timer", "")),
    fc.tuple(wireName("Subject", "s"), fc.constantFrom("", "lunch", "a,b;c")),
    fc.tuple(wireName("User-Agent"), fc.constantFrom("Example Phone 4.2.1", "x (y) <z>")),
    fc.tuple(fc.constantFrom("X-Custom", "x-weird.name!%"), fc.constantFrom(";;,,;;,;", "\"quoted\"", "folded\r\n  value")),
    fc.tuple(wireName("Record-Route"), sipUriArb.map((u) => `<${u};lr>`)),
    fc.tuple(wireName("Allow"), fc.constant("INVITE, ACK, CANCEL, BYE")),
  ),
  { maxLength: 4 },
);

const bodyArb = fc.option(fc.array(fc.oneof(octet, fc.constantFrom("\r\n", "v=0\r\n", "\r\n\r\n")), { maxLength: 60 }).map((a) => a.join("")), { nil: undefined });

interface Generated {
  text: string;
  isRequest: boolean;
  method: string;
  status: number;
  requestUri: string;
  branches: string[];
  top: ViaSpec;
  callId: string;
  seq: number;
  maxForwards: number | undefined;
  contentLength: number | undefined;
  body: string;
}

const messageArb: fc.Arbitrary<Generated> = fc
  .record({
    isRequest: fc.boolean(),
    method: fc.oneof(fc.constantFrom("INVITE", "REGISTER", "OPTIONS", "BYE", "SUBSCRIBE", "MESSAGE"), tokenArb),
    requestUri: uriArb,
    status: fc.integer({ min: 100, max: 699 }),
    reason: fc.constantFrom("OK", "", "Ringing", "Not Found", "= 2**3 * 5**2 \u00e9"),
    vias: viaLinesArb,
    maxForwards: fc.option(fc.tuple(wireName("Max-Forwards"), colon, fc.integer({ min: 0, max: 255 }), fc.constantFrom("", "0", "00")), { nil: undefined }),
    from: fc.tuple(wireName("From", "f"), colon, nameAddrArb(true)),
    to: fc.tuple(wireName("To", "t"), colon, fc.oneof(nameAddrArb(false), nameAddrArb(true))),
    callId: fc.tuple(wireName("Call-ID", "i"), colon, word(1, 20, "-.!%*_+`'~()<>:\\\"/[]?{}"), fc.option(hostnameArb, { nil: undefined })),
    cseq: fc.tuple(wireName("CSeq"), colon, fc.integer({ min: 0, max: 4294967295 }), lws.filter((s) => s !== "").map((s) => (s.startsWith("\r") ? s : ` ${s}`))),
    routes: routeLinesArb,
    contact: fc.option(fc.tuple(wireName("Contact", "m"), colon, fc.oneof(fc.constant("*"), fc.array(nameAddrArb(false), { minLength: 1, maxLength: 2 }).map((a) => a.join(", ")))), {
      nil: undefined,
    }),
    extra: extraArb,
    body: bodyArb,
    contentLength: fc.tuple(wireName("Content-Length", "l"), colon, fc.boolean(), fc.constantFrom("", "0", "000")),
    order: fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
  })
  .map((g) => {
    const method = g.isRequest ? g.method : g.method.toUpperCase() === g.method ? g.method : "INVITE";
    const startLine = g.isRequest ? `${method} ${g.requestUri} SIP/2.0` : `SIP/2.0 ${g.status}${g.reason === "" ? " " : ` ${g.reason}`}`;
    const viaLines: string[] = [];
    const all: ViaSpec[] = [];
    for (const [name, c, values, sep] of g.vias) {
      viaLines.push(`${name}${c}${values.map((v) => v.text).join(sep)}`);
      all.push(...values);
    }
    const callId = `${g.callId[2]}${g.callId[3] === undefined ? "" : `@${g.callId[3]}`}`;
    const cseqLine = `${g.cseq[0]}${g.cseq[1]}${g.cseq[2]}${g.cseq[3]}${method}`;
    // Header order after the Via block is free (RFC 3261 §7.3.1): shuffle it.
    const rest: string[] = [`${g.from[0]}${g.from[1]}${g.from[2]}`, `${g.to[0]}${g.to[1]}${g.to[2]}`, `${g.callId[0]}${g.callId[1]}${callId}`, cseqLine];
    if (g.maxForwards !== undefined) rest.push(`${g.maxForwards[0]}${g.maxForwards[1]}${g.maxForwards[3]}${g.maxForwards[2]}`);
    for (const [name, values] of g.routes) rest.push(`${name}: ${values.join(", ")}`);
    // A REGISTER's Contact is checked up front; other methods carry one opaquely.
    if (g.contact !== undefined && !(g.contact[2] === "*" && method !== "REGISTER")) rest.push(`${g.contact[0]}${g.contact[1]}${g.contact[2]}`);
    for (const [name, value] of g.extra) rest.push(`${name}: ${value}`);
    const body = g.body ?? "";
    const withLength = g.contentLength[2] || g.body === undefined;
    if (withLength) rest.push(`${g.contentLength[0]}${g.contentLength[1]}${g.contentLength[3]}${body.length}`);
    for (let i = rest.length - 1; i > 0; i--) {
      const j = g.order[i % g.order.length]! % (i + 1);
      [rest[i], rest[j]] = [rest[j]!, rest[i]!];
    }
    const text = [startLine, ...viaLines, ...rest, "", body].join("\r\n");
    return {
      text,
      isRequest: g.isRequest,
      method,
      status: g.status,
      requestUri: g.requestUri,
      branches: all.map((v) => v.branch),
      top: all[0]!,
      callId,
      seq: g.cseq[2],
      maxForwards: g.maxForwards?.[2],
      contentLength: withLength ? body.length : undefined,
      body,
    };
  });

t.test("generated valid messages parse, extract their fields and serialize to the same bytes", async (tt) => {
  fc.assert(
    fc.property(messageArb, (g) => {
      const r = parse(Buffer.from(g.text, "latin1"));
      if (!r.ok) throw new Error(`refused: ${r.code} ${r.reason}\n${g.text}`);
      const m: SipMessage = r.message;
      const eq = (what: string, got: unknown, want: unknown): void => {
        if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}\n${g.text}`);
      };
      eq("serialized", m.toString(), g.text);
      eq("trailing", r.trailingBytes, 0);
      eq("isRequest", m.isRequest, g.isRequest);
      eq("method", m.method, g.method);
      if (g.isRequest) eq("Request-URI", m.requestUri, g.requestUri);
      else eq("status", m.status, g.status);
      eq("branch", m.topVia.branch, g.top.branch);
      eq("Via host", m.topVia.host, g.top.host);
      eq("Via port", m.topVia.port, g.top.port);
      eq("rport", m.topVia.rport, g.top.rport);
      eq("received", m.topVia.received, g.top.received);
      eq("Call-ID", m.callId, g.callId);
      eq("CSeq", m.cseq.seq, g.seq);
      eq("CSeq method", m.cseq.method, g.method);
      eq("Max-Forwards", m.maxForwards, g.maxForwards);
      eq("Content-Length", m.contentLength, g.contentLength);
      eq("body", m.body, g.body);
      eq("Via count", m.vias()?.map((v) => v.branch).join(" "), g.branches.join(" "));
      eq("stream", parse(g.text, { stream: true }).ok, g.contentLength !== undefined);
      // Our Via on top then removed again: the rebuilt message is the original.
      m.prependVia(OUR_VIA);
      eq("our Via on top", m.topVia.branch, OUR_VIA.branch);
      m.removeTopVia();
      eq("rebuilt after prepend+remove", m.toString(), g.text);
      eq("topVia restored", m.topVia.branch, g.top.branch);
    }),
    { numRuns: 1000 },
  );
  tt.pass("1000 generated messages");
});

type Op = (m: SipMessage) => void;
const OPS: [string, Op][] = [
  ["prependVia", (m) => m.prependVia(OUR_VIA)],
  ["removeTopVia", (m) => void m.removeTopVia()],
  ["setMaxForwards", (m) => m.setMaxForwards(42)],
  ["removeFirstRoute", (m) => void m.removeFirstRoute()],
  ["addRecordRoute", (m) => m.addRecordRoute("<sip:203.0.113.1;lr>")],
  ["addPath", (m) => m.addPath("<sip:tok@203.0.113.1;lr>")],
  ["addHeader", (m) => m.addHeader("X-Edge", "1")],
  ["setHeader", (m) => m.setHeader("Supported", "path")],
  ["removeHeader", (m) => void m.removeHeader("f")],
  ["setBody", (m) => m.setBody("v=0\r\n")],
  ["fixContentLength", (m) => m.fixContentLength()],
  ["reverse", (m) => m.headers.reverse()],
  ["drop one line", (m) => void m.headers.splice(1, 1)],
];

t.test("any sequence of rewrites serializes to the plain join of the parts", async (tt) => {
  fc.assert(
    fc.property(messageArb, fc.array(fc.constantFrom(...OPS), { minLength: 1, maxLength: 8 }), (g, ops) => {
      const r = parse(g.text);
      if (!r.ok) throw new Error(r.reason);
      const m = r.message;
      for (const [name, op] of ops) {
        op(m);
        if (m.modified && m.toString() !== reference(m)) throw new Error(`after ${name}: differs from the plain join`);
      }
      if (m.modified && !m.toBuffer().equals(Buffer.from(reference(m), "latin1"))) throw new Error("toBuffer differs");
    }),
    { numRuns: 500 },
  );
  tt.pass("500 rewrite sequences");
});

// ---- pathological inputs -----------------------------------------------

const UNLIMITED: ParseLimits = { maxMessageBytes: 4_000_000, maxHeaders: 100_000, maxVias: 100_000, maxHeaderLineBytes: 4_000_000 };

function withHeader(line: string, base = INVITE): string {
  return base.replace("Max-Forwards: 70\r\n", `Max-Forwards: 70\r\n${line}\r\n`);
}

t.test("pathological inputs come back as a value", async (tt) => {
  const K60 = 60 * 1024;
  const cases: [string, string, ParseLimits?][] = [
    ["60 KB of ';'", ";".repeat(K60)],
    ["60 KB of ';' as a header value", withHeader(`X-Semi: ${";".repeat(K60 - 1200)}`), UNLIMITED],
    ["60 KB of ';' as Via parameters", INVITE.replace(";rport", ";rport" + ";".repeat(K60)), UNLIMITED],
    ["60 KB of ';x' as Request-URI parameters", INVITE.replace("sip:2001@pbx.example.com SIP", `sip:2001@pbx.example.com${";x".repeat(K60 / 2)} SIP`), UNLIMITED],
    ["deep escaped quotes in a display name", INVITE.replace("To: <", `To: "${'\\"'.repeat(K60 / 2)}" <`), UNLIMITED],
    ["an unterminated quote of 60 KB", INVITE.replace("To: <", `To: "${"a".repeat(K60)}<`), UNLIMITED],
    ["60 KB of '<' in From", INVITE.replace('From: "Alice', `From: ${"<".repeat(K60)}"Alice`), UNLIMITED],
    ["60 KB of '<sip:a@b>' in a quoted From", INVITE.replace(";tag=1928301774", "<sip:a@b>".repeat(K60 / 9)), UNLIMITED],
    ["60 KB of '[' in Via", INVITE.replace("192.0.2.10:5060;branch", `[${"[".repeat(K60)}`), UNLIMITED],
    ["60 KB of '%' in the Request-URI", INVITE.replace("sip:2001@", `sip:${"%".repeat(K60)}@`), UNLIMITED],
    ["a very long header line (default limits)", withHeader(`X-Long: ${"a".repeat(K60 - 1200)}`)],
    ["a very long header line (raised limits)", withHeader(`X-Long: ${"a".repeat(K60)}`), UNLIMITED],
    ["a very long start line", `OPTIONS sip:${"a".repeat(K60)}@example.com SIP/2.0\r\n\r\n`, UNLIMITED],
    ["thousands of commas in a Via (default limits)", INVITE.replace(";rport", `;rport${",".repeat(5000)}`)],
    ["thousands of commas in a Via (raised limits)", INVITE.replace(";rport", `;rport${",".repeat(K60)}`), UNLIMITED],
    ["thousands of Via values on one line", INVITE.replace(";rport", `;rport${", SIP/2.0/UDP h".repeat(4000)}`), UNLIMITED],
    ["thousands of Via lines", withHeader("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".repeat(2000).slice(0, -2)), UNLIMITED],
    ["thousands of folded continuation lines", withHeader(`X-Fold: a${"\r\n b".repeat(K60 / 4)}`), UNLIMITED],
    ["60 KB of CRLF", "\r\n".repeat(K60 / 2)],
    ["60 KB of CR", "\r".repeat(K60)],
    ["60 KB of ':'", ":".repeat(K60)],
    ["60 KB of NUL", "\u0000".repeat(K60)],
    ["60 KB of spaces after the start line", `INVITE sip:a@b SIP/2.0\r\n${" ".repeat(K60)}`],
    ["thousands of Contact values on a REGISTER", REGISTER.replace("Contact: <sip:1001@192.0.2.10:5060;transport=udp>;expires=3600", `Contact: ${Array(4000).fill("<sip:a@b>").join(", ")}`), UNLIMITED],
    ["thousands of Route values", withHeader(`Route: ${Array(4000).fill("<sip:r@b;lr>").join(",")}`), UNLIMITED],
    ["a huge Content-Length", INVITE.replace(/Content-Length: \d+/, `Content-Length: ${"9".repeat(5000)}`), UNLIMITED],
    ["a huge CSeq number", INVITE.replace("CSeq: 314159", `CSeq: ${"1".repeat(K60)}`), UNLIMITED],
  ];
  for (const [name, text, limits] of cases) {
    const opts = limits === undefined ? {} : { limits };
    let r: ParseResult | undefined;
    tt.doesNotThrow(() => {
      r = parse(text, opts);
    }, name);
    tt.type(r?.ok, "boolean", `${name}: a verdict`);
    if (r?.ok) {
      const m = r.message;
      tt.doesNotThrow(() => {
        m.vias();
        m.routes();
        m.contacts();
        m.removeFirstRoute();
        m.prependVia(OUR_VIA);
        m.removeTopVia();
        m.toBuffer();
      }, `${name}: readers and rewrites`);
    }
  }
});

t.test("many headers parse with raised limits (N = 1k and 8k)", async (tt) => {
  for (const n of [1000, 8000]) {
    const text = withHeader(Array.from({ length: n }, (_, i) => `X-H${i}: v${i}`).join("\r\n"));
    const r = parse(text, { limits: UNLIMITED });
    if (!r.ok) return tt.fail(r.reason);
    tt.equal(r.message.headers.length, 12 + n, `${n} extra headers`);
    tt.equal(r.message.get(`X-H${n - 1}`), `v${n - 1}`);
    tt.equal(r.message.toString(), text);
    const d = parse(text);
    tt.ok(!d.ok && (d.code === "too-many-headers" || d.code === "too-large"), "the default limits refuse it");
  }
  const vias = withHeader("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".repeat(8000).slice(0, -2));
  const r = parse(vias, { limits: UNLIMITED });
  tt.ok(r.ok && r.message.vias()!.length === 8001, "8000 Via lines");
});

// ---- limits ---------------------------------------------------------------

t.test("each limit produces its own error code, and the limit itself is allowed", async (tt) => {
  const base = INVITE;
  const headerCount = 12;
  const limits = (over: Partial<ParseLimits>): ParseLimits => ({ ...DEFAULT_LIMITS, ...over });

  tt.ok(parse(base, { limits: limits({ maxMessageBytes: base.length }) }).ok, "size exactly at the limit");
  const big = parse(base, { limits: limits({ maxMessageBytes: base.length - 1 }) });
  tt.ok(!big.ok && big.code === "too-large" && big.status === 513, "one byte over: 513 too-large");
  const big2 = parse("x".repeat(DEFAULT_LIMITS.maxMessageBytes + 1));
  tt.ok(!big2.ok && big2.code === "too-large" && big2.status === 513, "default limit is 65,535 bytes");
  tt.ok(!parse(Buffer.alloc(DEFAULT_LIMITS.maxMessageBytes + 1, 65)).ok, "a Buffer over the limit too");

  tt.ok(parse(base, { limits: limits({ maxHeaders: headerCount }) }).ok, "header count at the limit");
  const many = parse(base, { limits: limits({ maxHeaders: headerCount - 1 }) });
  tt.ok(!many.ok && many.code === "too-many-headers" && many.status === 400, "one header over");

  const threeVias = withHeader("Via: SIP/2.0/UDP a;branch=z9hG4bK2, SIP/2.0/UDP b;branch=z9hG4bK3");
  tt.ok(parse(threeVias, { limits: limits({ maxVias: 3 }) }).ok, "Via values at the limit");
  const vias = parse(threeVias, { limits: limits({ maxVias: 2 }) });
  tt.ok(!vias.ok && vias.code === "too-many-vias", "values on one line count one by one");
  const viaLines = parse(withHeader("Via: SIP/2.0/UDP a;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK3"), { limits: limits({ maxVias: 2 }) });
  tt.ok(!viaLines.ok && viaLines.code === "too-many-vias", "Via lines count too");
  const defaultVias = parse(withHeader(Array(DEFAULT_LIMITS.maxVias).fill("Via: SIP/2.0/UDP a;branch=z9hG4bK2").join("\r\n")));
  tt.ok(!defaultVias.ok && defaultVias.code === "too-many-vias", "default Via limit");

  const line = "X-Pad: " + "a".repeat(93);
  tt.equal(line.length, 100);
  tt.ok(parse(withHeader(line), { limits: limits({ maxHeaderLineBytes: 100 }) }).ok, "line length at the limit");
  const long = parse(withHeader(line), { limits: limits({ maxHeaderLineBytes: 99 }) });
  tt.ok(!long.ok && long.code === "header-line-too-long", "one byte over");
  const folded = parse(withHeader("X-Pad: " + "a".repeat(50) + "\r\n " + "b".repeat(50)), { limits: limits({ maxHeaderLineBytes: 100 }) });
  tt.ok(!folded.ok && folded.code === "header-line-too-long", "continuation lines count toward the line");
  const start = parse(base, { limits: limits({ maxHeaderLineBytes: 20 }) });
  tt.ok(!start.ok && start.code === "header-line-too-long", "the start line is bounded too");
  const defaultLine = parse(withHeader("X-Pad: " + "a".repeat(DEFAULT_LIMITS.maxHeaderLineBytes)));
  tt.ok(!defaultLine.ok && defaultLine.code === "header-line-too-long", "default line limit");
});

t.test("errors carry what a 400 needs", async (tt) => {
  const r = parse(INVITE.replace("CSeq: 314159 INVITE", "CSeq: x INVITE"));
  if (r.ok) return tt.fail("accepted a bad CSeq");
  tt.equal(r.code, "bad-cseq");
  tt.equal(r.status, 400);
  tt.equal(r.isRequest, true);
  tt.equal(r.method, "INVITE");
  tt.equal(r.offset, INVITE.indexOf("CSeq:"), "offset points at the bad line");
  tt.ok(r.headers.some((h) => h.name === "via"), "headers split so far are returned");
  const resp = parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
  tt.ok(!resp.ok && resp.isRequest === false && resp.code === "missing-header");
  const empty = parse("");
  tt.ok(!empty.ok && empty.code === "empty" && empty.isRequest === undefined);
  const onlyCrlf = parse("\r\n\r\n");
  tt.ok(!onlyCrlf.ok && onlyCrlf.code === "empty");
});
