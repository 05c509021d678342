/**
 * Rewrite operations on real-looking messages, asserting the exact bytes a
 * proxy sends: each operation touches only the lines it must (issue 2,
 * DESIGN.md §5.2), and an untouched message serializes to its own bytes.
 */
import t from "tap";
import { parse } from "../../src/sip/parse.js";
import { SipMessage } from "../../src/sip/message.js";
import { parseViaValue, type Via } from "../../src/sip/via.js";

const wire = (lines: string[]): string => lines.join("\r\n");

function parsed(text: string, stream = false): SipMessage {
  const r = parse(Buffer.from(text, "latin1"), { stream });
  if (!r.ok) throw new Error(`fixture does not parse: ${r.code} ${r.reason}`);
  return r.message;
}

function via(value: string): Via {
  const r = parseViaValue(value);
  if (!r.ok) throw new Error(r.reason);
  return r.via;
}

const SDP = wire(["v=0", "o=alice 2890844526 2890844526 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=audio 49170 RTP/AVP 0 8", "a=sendrecv", ""]);

const REGISTER = wire([
  "REGISTER sip:pbx.example.com SIP/2.0",
  "Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport",
  "Max-Forwards: 70",
  "To: <sip:1001@pbx.example.com>",
  "From: <sip:1001@pbx.example.com>;tag=456248",
  "Call-ID: 843817637684230@192.0.2.10",
  "CSeq: 1826 REGISTER",
  "Contact: <sip:1001@192.0.2.10:5060;transport=tcp>;expires=3600",
  "Supported: path, outbound",
  "Content-Length: 0",
  "",
  "",
]);

const INVITE = wire([
  "INVITE sip:2001@pbx.example.com SIP/2.0",
  "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-up-1",
  "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10",
  "Max-Forwards: 69",
  "Route: <sip:edge.example.com;lr>",
  "Route: <sip:pbx.example.com;lr>",
  "Record-Route: <sip:198.51.100.7;lr>",
  "To: <sip:2001@pbx.example.com>",
  'From: "Alice, Example" <sip:1001@pbx.example.com>;tag=1928301774',
  "Call-ID: a84b4c76e66710@192.0.2.10",
  "CSeq: 314159 INVITE",
  "Contact: <sip:1001@192.0.2.10:5060>",
  "Content-Type: application/sdp",
  `Content-Length: ${SDP.length}`,
  "",
  SDP,
]);

/** INVITE written with compact forms and multi-value lines. */
const COMPACT_INVITE = wire([
  "INVITE sip:2001@pbx.example.com SIP/2.0",
  "v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-a, SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-b",
  "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>",
  "t: <sip:2001@pbx.example.com>",
  "f: <sip:1001@pbx.example.com>;tag=88",
  "i: compact-1@192.0.2.10",
  "CSeq: 7 INVITE",
  "m: <sip:1001@192.0.2.10>",
  "c: application/sdp",
  `l: ${SDP.length}`,
  "",
  SDP,
]);

const OK200 = wire([
  "SIP/2.0 200 OK",
  "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1",
  "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10",
  "Record-Route: <sip:203.0.113.1;lr>",
  "To: <sip:2001@pbx.example.com>;tag=a6c85cf",
  "From: <sip:1001@pbx.example.com>;tag=1928301774",
  "Call-ID: a84b4c76e66710@192.0.2.10",
  "CSeq: 314159 INVITE",
  "Contact: <sip:2001@198.51.100.20:5060>",
  "Content-Length: 0",
  "",
  "",
]);

/** Replaces exactly one line of a fixture, failing loudly when it is not there. */
function replaceLine(text: string, from: string, to: string[]): string {
  const lines = text.split("\r\n");
  const i = lines.indexOf(from);
  if (i < 0) throw new Error(`no line ${from}`);
  lines.splice(i, 1, ...to);
  return lines.join("\r\n");
}

t.test("untouched messages serialize to the same bytes", async (tt) => {
  for (const [name, text] of [
    ["REGISTER", REGISTER],
    ["INVITE", INVITE],
    ["compact INVITE", COMPACT_INVITE],
    ["200 OK", OK200],
  ] as const) {
    const m = parsed(text);
    tt.equal(m.modified, false, `${name}: not modified`);
    tt.equal(m.toString(), text, `${name}: same text`);
    tt.ok(m.toBuffer().equals(Buffer.from(text, "latin1")), `${name}: same bytes`);
    // Reading lazily must not dirty the message.
    m.vias();
    m.routes();
    m.contacts();
    m.get("Supported");
    tt.equal(m.toString(), text, `${name}: same text after reads`);
  }
});

t.test("leading CRLFs and trailing datagram octets are not forwarded", async (tt) => {
  const r = parse(Buffer.from("\r\n\r\n" + REGISTER + "junk", "latin1"));
  if (!r.ok) return tt.fail(r.reason);
  tt.equal(r.trailingBytes, 4);
  tt.equal(r.message.toString(), REGISTER);
});

t.test("prependVia", async (tt) => {
  tt.test("a parsed Via goes above the Via block and becomes topVia", async (t2) => {
    const m = parsed(INVITE);
    const ours = via("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-77");
    m.prependVia(ours);
    t2.equal(m.toString(), replaceLine(INVITE, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-up-1", ["Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-77", "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-up-1"]));
    t2.equal(m.topVia.branch, "z9hG4bK-edge-77");
    t2.equal(m.topVia.host, "203.0.113.1");
    t2.equal(m.modified, true);
    t2.same(m.vias()!.map((v) => v.branch), ["z9hG4bK-edge-77", "z9hG4bK-up-1", "z9hG4bK776asdhds"]);
  });
  tt.test("a Via given as text is parsed into topVia", async (t2) => {
    const m = parsed(REGISTER);
    m.prependVia("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK-v6;rport");
    t2.equal(
      m.toString(),
      replaceLine(REGISTER, "Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport", [
        "Via: SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK-v6;rport",
        "Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport",
      ]),
    );
    t2.equal(m.topVia.host, "2001:db8::1");
    t2.equal(m.topVia.branch, "z9hG4bK-v6");
    t2.equal(m.topVia.rport, null);
  });
  tt.test("an explicit value overrides the Via's own text", async (t2) => {
    const m = parsed(REGISTER);
    const ours = via("SIP/2.0/TCP 203.0.113.1;branch=z9hG4bK-x");
    m.prependVia(ours, "SIP/2.0/TCP 203.0.113.1;branch=z9hG4bK-x;alias");
    t2.ok(m.toString().includes("\r\nVia: SIP/2.0/TCP 203.0.113.1;branch=z9hG4bK-x;alias\r\nVia: SIP/2.0/TCP 192.0.2.10"));
    t2.equal(m.topVia, ours);
  });
  tt.test("above a compact multi-value Via line", async (t2) => {
    const m = parsed(COMPACT_INVITE);
    m.prependVia("SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-e");
    t2.equal(
      m.toString(),
      replaceLine(COMPACT_INVITE, "v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-a, SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-b", [
        "Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-e",
        "v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-a, SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-b",
      ]),
    );
  });
});

t.test("removeTopVia", async (tt) => {
  tt.test("own line: the line goes, the next Via becomes topVia", async (t2) => {
    const m = parsed(OK200);
    t2.equal(m.removeTopVia(), true);
    t2.equal(m.toString(), replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", []));
    t2.equal(m.topVia.branch, "z9hG4bK776asdhds");
    t2.equal(m.topVia.received, "192.0.2.10");
    t2.equal(m.topVia.rport, 5060);
  });
  tt.test("first value of a multi-value line leaves the rest on the line", async (t2) => {
    const text = replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", [
      "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-mid",
    ]);
    const m = parsed(text);
    t2.equal(m.removeTopVia(), true);
    t2.equal(
      m.toString(),
      replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", ["Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-mid"]),
    );
    t2.equal(m.topVia.branch, "z9hG4bK-mid");
  });
  tt.test("`Via: a, b` becomes `Via: b`, also from a compact line", async (t2) => {
    const m = parsed(COMPACT_INVITE);
    m.removeTopVia();
    t2.ok(m.toString().includes("\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-b\r\nRoute:"));
    t2.equal(m.topVia.branch, "z9hG4bK-b");
    m.removeTopVia();
    t2.notOk(/\r\n(v|Via):/.test(m.toString()), "no Via left");
    t2.equal(m.removeTopVia(), false, "nothing left to remove");
  });
  tt.test("a comma inside a quoted Via parameter does not split the value", async (t2) => {
    const text = replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", [
      'Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-q;x="a, b", SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-r',
    ]);
    const m = parsed(text);
    m.removeTopVia();
    t2.equal(m.topVia.branch, "z9hG4bK-r");
    t2.ok(m.toString().includes("\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-r\r\nVia: SIP/2.0/UDP 192.0.2.10"));
  });
  tt.test("our value with nothing usable after it: a dangling comma, or an open quote further on, takes the line", async (t2) => {
    for (const line of ["Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-d ,  ", 'Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-d, SIP/2.0/UDP 198.51.100.7;x="open']) {
      const m = parsed(replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", [line]));
      m.removeTopVia();
      t2.equal(m.topVia.branch, "z9hG4bK776asdhds", "the next line's Via is on top");
      t2.notOk(m.toString().includes("z9hG4bK-d"), line);
    }
  });
  tt.test("a folded multi-value Via line", async (t2) => {
    const text = replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", [
      "Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-f1,",
      "  SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-f2",
    ]);
    const m = parsed(text);
    t2.equal(m.topVia.branch, "z9hG4bK-f1");
    m.removeTopVia();
    t2.equal(m.topVia.branch, "z9hG4bK-f2");
    t2.ok(m.toString().includes("\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-f2\r\nVia: SIP/2.0/UDP 192.0.2.10"));
  });
});

t.test("setMaxForwards", async (tt) => {
  tt.test("replaces the line in place", async (t2) => {
    const m = parsed(REGISTER);
    m.setMaxForwards(69);
    t2.equal(m.toString(), replaceLine(REGISTER, "Max-Forwards: 70", ["Max-Forwards: 69"]));
    t2.equal(m.maxForwards, 69);
  });
  tt.test("inserts one when absent", async (t2) => {
    const noMf = replaceLine(REGISTER, "Max-Forwards: 70", []);
    const m = parsed(noMf);
    t2.equal(m.maxForwards, undefined);
    m.setMaxForwards(70);
    t2.equal(m.toString(), replaceLine(noMf, "Content-Length: 0", ["Content-Length: 0", "Max-Forwards: 70"]));
    t2.equal(m.maxForwards, 70);
    const again = parse(m.toBuffer());
    t2.ok(again.ok && again.message.maxForwards === 70, "the result parses back");
  });
  tt.test("a message built with two lines keeps one", async (t2) => {
    const m = parsed(REGISTER);
    m.addHeader("Max-Forwards", "9");
    m.setMaxForwards(69);
    t2.same(m.getAll("Max-Forwards"), ["69"]);
  });
});

t.test("hasOptionTag reads the tags in place", async (tt) => {
  const cases: [string[], string, boolean][] = [
    [["Supported: path"], "path", true],
    [["Supported: outbound, PATH"], "path", true],
    [["Supported: outbound , path ,gruu"], "path", true],
    [["Supported:path"], "path", true],
    [["Supported: paths"], "path", false],
    [["Supported: xpath"], "path", false],
    [["Supported: pat"], "path", false],
    [["Supported: outbound", "k: gruu, path"], "path", true],
    [["Supported: ,, path,"], "path", true],
    [["Supported:"], "path", false],
    [["Require: path"], "path", false],
    [["Supported: path,", "\toutbound"], "outbound", true],
  ];
  for (const [lines, tag, want] of cases) {
    const m = parsed(replaceLine(REGISTER, "Supported: path, outbound", lines));
    tt.equal(m.hasOptionTag("Supported", tag), want, `${JSON.stringify(lines)} ${tag}`);
    tt.equal(m.hasOptionTag("supported", tag.toUpperCase()), want, "any case of name and tag");
  }
});

t.test("removeFirstRoute", async (tt) => {
  tt.test("own line", async (t2) => {
    const m = parsed(INVITE);
    t2.equal(m.removeFirstRoute(), true);
    t2.equal(m.toString(), replaceLine(INVITE, "Route: <sip:edge.example.com;lr>", []));
    t2.same(m.routes()!.map((r) => r.uri.host), ["pbx.example.com"]);
  });
  tt.test("first value inside `Route: <x>, <y>`", async (t2) => {
    const m = parsed(COMPACT_INVITE);
    t2.equal(m.removeFirstRoute(), true);
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", ["Route: <sip:pbx.example.com;lr>"]));
    t2.equal(m.removeFirstRoute(), true);
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", []));
    t2.equal(m.removeFirstRoute(), false, "no Route left");
  });
  tt.test("a comma inside a quoted display name or <uri> does not split", async (t2) => {
    const text = replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", [
      'Route: "Edge, West" <sip:edge.example.com;lr;x=a,b>, <sip:pbx.example.com;lr>',
    ]);
    const m = parsed(text);
    m.removeFirstRoute();
    t2.ok(m.toString().includes("\r\nRoute: <sip:pbx.example.com;lr>\r\n"));
  });
  tt.test("a dangling comma leaves no empty Route line", async (t2) => {
    const text = replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", ["Route: <sip:edge.example.com;lr>,"]);
    const m = parsed(text);
    m.removeFirstRoute();
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", []));
  });
  tt.test("a doubled comma: the rest starts at the next value", async (t2) => {
    const text = replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", ["Route: <sip:edge.example.com;lr>,, <sip:pbx.example.com;lr>"]);
    const m = parsed(text);
    m.removeFirstRoute();
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", ["Route: <sip:pbx.example.com;lr>"]));
  });
});

t.test("addRecordRoute / addPath / addRoute", async (tt) => {
  tt.test("Record-Route goes before the first existing one", async (t2) => {
    const m = parsed(INVITE);
    m.addRecordRoute("<sip:203.0.113.1;lr>");
    t2.equal(m.toString(), replaceLine(INVITE, "Record-Route: <sip:198.51.100.7;lr>", ["Record-Route: <sip:203.0.113.1;lr>", "Record-Route: <sip:198.51.100.7;lr>"]));
    t2.same(m.recordRoutes()!.map((r) => r.uri.host), ["203.0.113.1", "198.51.100.7"]);
  });
  tt.test("double Record-Route: the second call goes above the first", async (t2) => {
    const m = parsed(INVITE);
    m.addRecordRoute("<sip:10.0.0.1;lr>");
    m.addRecordRoute("<sip:203.0.113.1;lr;transport=tcp>");
    t2.same(m.recordRoutes()!.map((r) => r.uri.host), ["203.0.113.1", "10.0.0.1", "198.51.100.7"]);
  });
  tt.test("Record-Route after the Via block when none exists", async (t2) => {
    const m = parsed(COMPACT_INVITE);
    m.addRecordRoute("<sip:203.0.113.1;lr>");
    t2.equal(
      m.toString(),
      replaceLine(COMPACT_INVITE, "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>", [
        "Record-Route: <sip:203.0.113.1;lr>",
        "Route: <sip:edge.example.com;lr>, <sip:pbx.example.com;lr>",
      ]),
    );
  });
  tt.test("Record-Route after the last of several Via lines", async (t2) => {
    const text = replaceLine(INVITE, "Record-Route: <sip:198.51.100.7;lr>", []);
    const m = parsed(text);
    m.addRecordRoute("<sip:203.0.113.1;lr>");
    t2.equal(m.toString(), replaceLine(text, "Max-Forwards: 69", ["Record-Route: <sip:203.0.113.1;lr>", "Max-Forwards: 69"]));
  });
  tt.test("Path on a REGISTER without Path goes after the Via block", async (t2) => {
    const m = parsed(REGISTER);
    m.addPath("<sip:tok123@203.0.113.1;lr;ob>");
    t2.equal(m.toString(), replaceLine(REGISTER, "Max-Forwards: 70", ["Path: <sip:tok123@203.0.113.1;lr;ob>", "Max-Forwards: 70"]));
    t2.same(m.paths()!.map((p) => p.uri.user), ["tok123"]);
  });
  tt.test("Path before the first existing one", async (t2) => {
    const text = replaceLine(REGISTER, "Supported: path, outbound", ["Supported: path, outbound", "Path: <sip:198.51.100.7;lr>"]);
    const m = parsed(text);
    m.addPath("<sip:tok@203.0.113.1;lr>");
    t2.equal(m.toString(), replaceLine(text, "Path: <sip:198.51.100.7;lr>", ["Path: <sip:tok@203.0.113.1;lr>", "Path: <sip:198.51.100.7;lr>"]));
  });
  tt.test("Route before the first existing one", async (t2) => {
    const m = parsed(INVITE);
    m.addRoute("<sip:pbx-b.example.com;lr>");
    t2.equal(m.toString(), replaceLine(INVITE, "Route: <sip:edge.example.com;lr>", ["Route: <sip:pbx-b.example.com;lr>", "Route: <sip:edge.example.com;lr>"]));
  });
});

t.test("addHeader / setHeader / removeHeader", async (tt) => {
  tt.test("addHeader appends at the end of the header section", async (t2) => {
    const m = parsed(OK200);
    m.addHeader("Server", "sip-edge");
    t2.equal(m.toString(), replaceLine(OK200, "Content-Length: 0", ["Content-Length: 0", "Server: sip-edge"]));
    t2.equal(m.get("server"), "sip-edge");
  });
  tt.test("setHeader replaces the compact form in place", async (t2) => {
    const m = parsed(COMPACT_INVITE);
    m.setHeader("Content-Type", "application/sdp;charset=utf-8");
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, "c: application/sdp", ["Content-Type: application/sdp;charset=utf-8"]));
  });
  tt.test('setHeader("Content-Length") replaces `l:`', async (t2) => {
    const m = parsed(COMPACT_INVITE);
    m.setHeader("Content-Length", String(SDP.length));
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, `l: ${SDP.length}`, [`Content-Length: ${SDP.length}`]));
  });
  tt.test("setHeader keeps the first position and drops later duplicates", async (t2) => {
    const text = replaceLine(REGISTER, "Content-Length: 0", ["User-Agent: a", "Content-Length: 0", "user-agent: b"]);
    const m = parsed(text);
    m.setHeader("User-Agent", "edge-rewritten");
    t2.equal(m.toString(), replaceLine(REGISTER, "Content-Length: 0", ["User-Agent: edge-rewritten", "Content-Length: 0"]));
  });
  tt.test("setHeader appends when absent", async (t2) => {
    const m = parsed(OK200);
    m.setHeader("Expires", "60");
    t2.equal(m.toString(), replaceLine(OK200, "Content-Length: 0", ["Content-Length: 0", "Expires: 60"]));
  });
  tt.test("removeHeader removes every line, compact or long", async (t2) => {
    const text = replaceLine(COMPACT_INVITE, "m: <sip:1001@192.0.2.10>", ["m: <sip:1001@192.0.2.10>", "Contact: <sip:1001@198.51.100.9>"]);
    const m = parsed(text);
    t2.equal(m.removeHeader("Contact"), 2);
    t2.equal(m.toString(), replaceLine(COMPACT_INVITE, "m: <sip:1001@192.0.2.10>", []));
    t2.equal(m.removeHeader("m"), 0);
  });
  tt.test("removing nothing leaves the message untouched", async (t2) => {
    const m = parsed(REGISTER);
    t2.equal(m.removeHeader("X-Absent"), 0);
    t2.equal(m.modified, false);
    t2.equal(m.toString(), REGISTER);
  });
  tt.test("a folded line is kept verbatim when another header changes", async (t2) => {
    const text = replaceLine(REGISTER, "Supported: path, outbound", ["Supported: path,", "\toutbound"]);
    const m = parsed(text);
    t2.same(m.listValues("k"), ["path", "outbound"]);
    t2.equal(m.hasOptionTag("Supported", "PATH"), true);
    m.setMaxForwards(69);
    t2.equal(m.toString(), replaceLine(text, "Max-Forwards: 70", ["Max-Forwards: 69"]));
  });
});

t.test("setRequestUri", async (tt) => {
  const m = parsed(INVITE);
  m.setRequestUri("sip:2001@198.51.100.20:5060;transport=udp");
  tt.equal(m.toString(), replaceLine(INVITE, "INVITE sip:2001@pbx.example.com SIP/2.0", ["INVITE sip:2001@198.51.100.20:5060;transport=udp SIP/2.0"]));
  tt.equal(m.requestUri, "sip:2001@198.51.100.20:5060;transport=udp");
  const r = parse(m.toBuffer());
  tt.ok(r.ok && r.message.uri!.port === 5060, "the result parses back");
  tt.throws(() => parsed(OK200).setRequestUri("sip:x"), "a response has no Request-URI");
});

t.test("setBody", async (tt) => {
  const m = parsed(INVITE);
  const sdp2 = SDP.replace("192.0.2.10", "203.0.113.1").replace("192.0.2.10", "203.0.113.1");
  m.setBody(sdp2);
  const head = INVITE.slice(0, INVITE.length - SDP.length);
  tt.equal(m.toString(), replaceLine(head, `Content-Length: ${SDP.length}`, [`Content-Length: ${sdp2.length}`]) + sdp2);
  tt.equal(m.contentLength, sdp2.length);
  const empty = parsed(INVITE);
  empty.setBody("");
  tt.equal(empty.toString(), replaceLine(head, `Content-Length: ${SDP.length}`, ["Content-Length: 0"]));
  const compact = parsed(COMPACT_INVITE);
  compact.setBody("");
  tt.ok(compact.toString().endsWith("\r\nc: application/sdp\r\nContent-Length: 0\r\n\r\n"), "replaces l:");
});

t.test("fixContentLength", async (tt) => {
  tt.test("a datagram without Content-Length gets one", async (t2) => {
    const text = replaceLine(INVITE, `Content-Length: ${SDP.length}`, []);
    const m = parsed(text);
    t2.equal(m.contentLength, undefined);
    t2.equal(m.body, SDP);
    m.fixContentLength();
    const head = text.slice(0, text.length - SDP.length - 2);
    t2.equal(m.toString(), head + `Content-Length: ${SDP.length}\r\n\r\n` + SDP);
    const r = parse(m.toBuffer(), { stream: true });
    t2.ok(r.ok, "now acceptable on a stream");
  });
  tt.test("a correct Content-Length is left alone", async (t2) => {
    const m = parsed(INVITE);
    m.fixContentLength();
    t2.equal(m.modified, false);
    t2.equal(m.toString(), INVITE);
  });
  tt.test("a message without body gets Content-Length: 0", async (t2) => {
    const text = replaceLine(OK200, "Content-Length: 0", []);
    const m = parsed(text);
    m.fixContentLength();
    t2.equal(m.toString(), replaceLine(OK200, "Content-Length: 0", ["Content-Length: 0"]));
  });
});

t.test("a full forward rewrite touches only the lines it must", async (tt) => {
  const m = parsed(INVITE);
  m.removeFirstRoute();
  m.prependVia(via("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-9"));
  m.setMaxForwards(m.maxForwards! - 1);
  m.addRecordRoute("<sip:203.0.113.1;lr>");
  const expected = wire([
    "INVITE sip:2001@pbx.example.com SIP/2.0",
    "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-9",
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-up-1",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10",
    "Max-Forwards: 68",
    "Route: <sip:pbx.example.com;lr>",
    "Record-Route: <sip:203.0.113.1;lr>",
    "Record-Route: <sip:198.51.100.7;lr>",
    "To: <sip:2001@pbx.example.com>",
    'From: "Alice, Example" <sip:1001@pbx.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@192.0.2.10",
    "CSeq: 314159 INVITE",
    "Contact: <sip:1001@192.0.2.10:5060>",
    "Content-Type: application/sdp",
    `Content-Length: ${SDP.length}`,
    "",
    SDP,
  ]);
  tt.equal(m.toString(), expected);
  tt.ok(m.toBuffer().equals(Buffer.from(expected, "latin1")));
});

t.test("the response path: drop our Via, forward to the next one", async (tt) => {
  const m = parsed(OK200);
  m.removeTopVia();
  tt.equal(m.topVia.received, "192.0.2.10");
  const r = parse(m.toBuffer());
  tt.ok(r.ok && r.message.topVia.branch === "z9hG4bK776asdhds");
  tt.equal(m.toString(), replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", []));
});

t.test("latin1 octets above 0x7f survive a rewrite byte for byte", async (tt) => {
  const text = replaceLine(REGISTER, "From: <sip:1001@pbx.example.com>;tag=456248", ['From: "J\u00f6rg \u00e9\u00ff" <sip:1001@pbx.example.com>;tag=456248']);
  const bytes = Buffer.from(text, "latin1");
  const r = parse(bytes);
  if (!r.ok) return tt.fail(r.reason);
  r.message.setMaxForwards(69);
  const out = r.message.toBuffer();
  tt.ok(out.equals(Buffer.from(replaceLine(text, "Max-Forwards: 70", ["Max-Forwards: 69"]), "latin1")));
});

/** The plain definition of a rewritten message: start line, lines and body joined by CRLF. */
function reference(m: SipMessage): string {
  return [m.startLine, ...m.headers.map((h) => h.raw), "", m.body].join("\r\n");
}

t.test("serializing copies untouched runs of lines but equals the plain join", async (tt) => {
  tt.test("lines moved over from another message are written from their own text", async (t2) => {
    const req = parsed(INVITE);
    const resp = parsed(OK200);
    const rr = req.headers.filter((h) => h.name === "record-route");
    resp.removeHeader("Record-Route");
    resp.headers.splice(2, 0, ...rr);
    resp.addHeader("X-Moved", "1");
    t2.equal(resp.toString(), reference(resp));
    t2.ok(resp.toString().includes("\r\nRecord-Route: <sip:198.51.100.7;lr>\r\nTo:"));
  });
  tt.test("reordered lines", async (t2) => {
    const m = parsed(INVITE);
    m.setMaxForwards(5);
    m.headers = [...m.headers].reverse();
    t2.equal(m.toString(), reference(m));
    m.headers.sort((a, b) => a.name.localeCompare(b.name));
    t2.equal(m.toString(), reference(m));
  });
  tt.test("lines removed from the array directly, then a rewrite", async (t2) => {
    const m = parsed(INVITE);
    m.headers.splice(4, 2);
    m.setMaxForwards(10);
    t2.equal(m.toString(), reference(m));
  });
  tt.test("a changed start line and body", async (t2) => {
    const m = parsed(INVITE);
    m.setRequestUri("sip:2001@198.51.100.20");
    t2.equal(m.toString(), reference(m));
    m.setBody(SDP.toUpperCase());
    t2.equal(m.toString(), reference(m));
    m.setBody(SDP);
    t2.equal(m.toString(), reference(m), "an equal body again");
  });
  tt.test("a datagram without the empty line after its headers", async (t2) => {
    const text = REGISTER.slice(0, REGISTER.length - 2);
    const m = parsed(text);
    t2.equal(m.toString(), text, "untouched: the same bytes");
    m.setMaxForwards(1);
    t2.equal(m.toString(), reference(m));
    t2.ok(m.toString().endsWith("Content-Length: 0\r\n\r\n"), "the empty line is written");
    const bare = parsed(REGISTER.slice(0, REGISTER.length - 4));
    bare.addHeader("X-A", "b");
    t2.equal(bare.toString(), reference(bare), "last line without CRLF");
  });
  tt.test("leading CRLFs and trailing octets stay out", async (t2) => {
    const r = parse("\r\n\r\n" + INVITE + "\r\ngarbage");
    if (!r.ok) return t2.fail(r.reason);
    const m = r.message;
    m.prependVia(via("SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK-x"));
    t2.equal(m.toString(), reference(m));
    t2.notOk(m.toString().includes("garbage"));
  });
  tt.test("replaceTopVia keeps the rest of a shared line", async (t2) => {
    const text = replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", ["Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-mid"]);
    const m = parsed(text);
    m.replaceTopVia(via("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1;received=203.0.113.9"));
    t2.equal(
      m.toString(),
      replaceLine(OK200, "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1", ["Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-1;received=203.0.113.9, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-mid"]),
    );
    t2.equal(m.topVia.received, "203.0.113.9");
  });
});

t.test("a message built without its parsed input still serializes by the plain join", async (tt) => {
  const p = parsed(REGISTER);
  const m = new SipMessage({
    raw: p.raw,
    startLine: p.startLine,
    isRequest: p.isRequest,
    method: p.method,
    requestUri: p.requestUri,
    uri: p.uri,
    status: p.status,
    reason: p.reason,
    headers: [...p.headers],
    body: p.body,
    topVia: p.topVia,
    maxForwards: p.maxForwards,
    callId: p.callId,
    cseq: p.cseq,
    contentLength: p.contentLength,
  });
  tt.equal(m.toString(), REGISTER, "untouched: its raw text");
  m.setMaxForwards(69);
  tt.equal(m.toString(), replaceLine(REGISTER, "Max-Forwards: 70", ["Max-Forwards: 69"]));
  tt.equal(m.toString(), reference(m));
});

t.test("listValues keeps a value it cannot split whole", async (tt) => {
  const m = parsed(replaceLine(REGISTER, "Supported: path, outbound", ['Supported: "path, outbound']));
  tt.same(m.listValues("Supported"), ['"path, outbound']);
  tt.equal(m.hasOptionTag("Supported", "path"), false);
});

/** An OPTIONS whose Subject is `before`, a UTF-8 "à" (read as latin1, it ends in the byte 0xA0), then `after`. */
function withSubject(before: string, after: string) {
  return parse(
    Buffer.concat([
      Buffer.from(`OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nSubject: ${before}`),
      Buffer.from("à", "utf8"),
      Buffer.from(`${after}\r\nContent-Length: 0\r\n\r\n`),
    ]),
  );
}

t.test("a header value keeps a trailing 0xA0 byte (the end of a UTF-8 'à'); only SP/HT around it are trimmed", async (t) => {
  // Regression: values were trimmed with String.prototype.trim, which also
  // takes U+00A0, i.e. the byte 0xA0 of the latin1 text the parser reads.
  const r = withSubject(" voil", " \t");
  if (!r.ok) return t.fail(r.reason);
  const v = r.message.get("Subject")!;
  t.equal(Buffer.from(v, "latin1").toString("utf8"), "voilà");
  t.equal(r.message.getAll("Subject")[0], v);
});

t.test("a folded header value keeps its 0xA0 byte too", async (t) => {
  const r = withSubject("un\r\n  voil", "");
  if (!r.ok) return t.fail(r.reason);
  t.equal(Buffer.from(r.message.get("Subject")!, "latin1").toString("utf8"), "un voilà");
});

t.test("a response read for relaying (ownBranchPrefix): our Via by its branch alone, From/To unchecked", async (t) => {
  const OURS = "z9hG4bK-sE0123456789abcdef01234567";
  const response = (via: string, extra: string[] = [], from = "From: <sip:a@example.com>;tag=1"): string =>
    wire(["SIP/2.0 200 OK", via, ...extra, from, "To: <sip:b@example.com>;tag=2", "Call-ID: c1", "CSeq: 1 INVITE", "Content-Length: 0", "", ""]);
  const relay = (text: string) => parse(text, { ownBranchPrefix: "z9hG4bK-sE" });
  const phoneVia = "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKphone;rport=5062;received=192.0.2.99";

  await t.test("the branch is read, the rest on first use, equal to a full parse", async (t) => {
    const text = response(`Via: SIP/2.0/UDP 198.51.100.1:5060;branch=${OURS};rport=5060`, [phoneVia]);
    const r = relay(text);
    const full = parse(text);
    if (!r.ok || !full.ok) throw new Error("does not parse");
    t.equal(r.message.topViaBranch, OURS);
    t.same(r.message.topVia, full.message.topVia, "read on demand, the same Via");
    t.equal(r.message.toString(), text, "untouched bytes");
    t.equal(r.message.removeTopVia(), true);
    t.equal(r.message.topViaParses(), true);
    t.equal(r.message.topVia.received, "192.0.2.99", "the next Via, parsed");
    t.equal(r.message.topViaBranch, "z9hG4bKphone");
  });

  await t.test("ours as the first value of a line of several, and ours with a suffix", async (t) => {
    const r = relay(response(`Via: SIP/2.0/UDP 198.51.100.1:5060;branch=${OURS}.1;rport=5060 , ${phoneVia.slice(5)}`));
    if (!r.ok) throw new Error(r.reason);
    t.equal(r.message.topViaBranch, `${OURS}.1`);
    r.message.removeTopVia();
    t.equal(r.message.topVia.host, "192.0.2.10");
  });

  await t.test("another party's Via, or a branch that is not the first, is parsed in full as ever", async (t) => {
    for (const [via, branch] of [
      [phoneVia, "z9hG4bKphone"],
      [`Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKother;branch=${OURS}`, "z9hG4bKother"],
      [`Via: SIP/2.0/UDP 198.51.100.1;x="a,b";branch=${OURS}`, OURS],
    ] as const) {
      const r = relay(response(via));
      if (!r.ok) throw new Error(r.reason);
      t.equal(r.message.topViaBranch, branch, via);
    }
    const bad = relay(response("Via: SIP/2.0/UDP [198.51.100.1;branch=z9hG4bKother"));
    t.equal(bad.ok, false, "not ours: a malformed Via is still refused");
  });

  await t.test("our own Via mangled on the way back: known by its branch, reported as not parsing", async (t) => {
    const text = response(`Via: SIP/2.0/UDP [198.51.100.1;branch=${OURS}`, [phoneVia]);
    t.equal(parse(text).ok, false, "a full parse refuses it");
    const r = relay(text);
    if (!r.ok) throw new Error(r.reason);
    t.equal(r.message.topViaBranch, OURS);
    t.equal(r.message.topViaParses(), false);
    t.equal(r.message.topVia.branch, OURS);
    t.equal(r.message.topVia.raw, `SIP/2.0/UDP [198.51.100.1;branch=${OURS}`);
    r.message.removeTopVia();
    t.equal(r.message.topViaParses(), true, "the next one does");
  });

  await t.test("a malformed Via below ours is found when ours is removed", async (t) => {
    const r = relay(response(`Via: SIP/2.0/UDP 198.51.100.1:5060;branch=${OURS}`, ["Via: SIP/2.0/UDP bad host;branch=z9hG4bKx"]));
    if (!r.ok) throw new Error(r.reason);
    r.message.removeTopVia();
    t.equal(r.message.topViaParses(), false);
    t.equal(r.message.topVia.host, "", "no stale Via: ours is gone");
  });

  await t.test("From/To: unchecked on a response read for relaying, checked on requests and otherwise", async (t) => {
    const badFrom = 'From: "unterminated <sip:a@example.com>;tag=1';
    const text = response(`Via: SIP/2.0/UDP 198.51.100.1:5060;branch=${OURS}`, [], badFrom);
    t.equal(relay(text).ok, true);
    const plain = parse(text);
    t.equal(plain.ok ? "ok" : plain.code, "bad-from-to");
    const request = wire(["OPTIONS sip:b@example.com SIP/2.0", `Via: SIP/2.0/UDP 198.51.100.1:5060;branch=${OURS}`, "Max-Forwards: 70", badFrom, "To: <sip:b@example.com>", "Call-ID: c1", "CSeq: 1 OPTIONS", "Content-Length: 0", "", ""]);
    const req = relay(request);
    t.equal(req.ok ? "ok" : req.code, "bad-from-to", "a request is read in full");
    t.equal(relay(wire(["SIP/2.0 200 OK", badFrom, "To: <sip:b@example.com>;tag=2", "Call-ID: c1", "CSeq: 1 INVITE", "", ""])).ok, false, "a response still needs a Via");
  });
});
