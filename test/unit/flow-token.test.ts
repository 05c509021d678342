import t from "tap";
import { FlowTokenCodec, looksLikeToken } from "../../src/edge/flow-token.js";
import { deriveBranch, hash96, isEdgeBranch } from "../../src/edge/branch.js";
import { parse } from "../../src/sip/parse.js";

const flow = { transport: "tcp" as const, address: "2001:db8::7", port: 40123, flowId: "ab12-9", contactHostport: "[2001:db8::7]:5060" };

t.test("flow tokens round-trip, fit a URI user part, and fail closed", async (t) => {
  const c = new FlowTokenCodec(Buffer.alloc(32, 3));
  const tok = c.encode(flow);
  t.ok(looksLikeToken(tok), "shape check passes");
  t.match(tok, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}$/, "only URI-safe characters");
  t.same(c.decode(tok), { ok: true, flow });
  t.same(c.decode(tok), { ok: true, flow }, "again, from the verified cache");
  t.equal(c.encode(flow), tok, "stable");
  const tampered = tok.slice(0, 5) + (tok[5] === "A" ? "B" : "A") + tok.slice(6);
  t.same(c.decode(tampered), { ok: false, reason: "bad-mac" }, "a changed payload fails even after the good one was cached");
  t.same(new FlowTokenCodec(Buffer.alloc(32, 4)).decode(tok), { ok: false, reason: "bad-mac" }, "another instance's key fails");
  t.same(c.decode("nodot"), { ok: false, reason: "malformed" });
  t.notOk(looksLikeToken("1001"));
  t.throws(() => new FlowTokenCodec(Buffer.alloc(8)), /at least 16 bytes/);
});

t.test("branches: stable per transaction, distinct across, RFC 2543 fallback", async (t) => {
  const req = (branch: string, method = "INVITE") =>
    parse(`${method} sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5060;branch=${branch}\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: k\r\nCSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`);
  const a = req("z9hG4bK1");
  const b = req("z9hG4bK1", "CANCEL");
  const c = req("z9hG4bK2");
  const old = req("oldstyle");
  if (!a.ok || !b.ok || !c.ok || !old.ok) return t.fail("fixtures parse");
  t.equal(deriveBranch(a.message), deriveBranch(b.message), "CANCEL maps to the INVITE's branch");
  t.not(deriveBranch(a.message), deriveBranch(c.message));
  t.ok(isEdgeBranch(deriveBranch(old.message)), "RFC 2543 request still gets a branch of ours");
  t.notOk(isEdgeBranch("z9hG4bKother"));
  const seen = new Set<string>();
  for (let i = 0; i < 20000; i++) seen.add(hash96(`z9hG4bK${i}|192.0.2.5|5060`));
  t.equal(seen.size, 20000, "no collisions over 20k inputs");
});

t.test("a branch is the hash of branch|host|port fed in parts: the same branches as before the parts were fed one by one", async (t) => {
  const via = (hostport: string) =>
    parse(`INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP ${hostport};branch=z9hG4bKpart\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: k\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`);
  for (const [hostport, host, port] of [
    ["192.0.2.5:5060", "192.0.2.5", "5060"],
    ["192.0.2.5:0", "192.0.2.5", "0"],
    ["192.0.2.5:7", "192.0.2.5", "7"],
    ["192.0.2.5:10", "192.0.2.5", "10"],
    ["192.0.2.5:65535", "192.0.2.5", "65535"],
    ["phone.invalid", "phone.invalid", ""],
    ["[2001:db8::1]:5062", "2001:db8::1", "5062"],
  ] as const) {
    const r = via(hostport);
    if (!r.ok) return t.fail(`${hostport} parses`);
    t.equal(deriveBranch(r.message), `z9hG4bK-sE${hash96(`z9hG4bKpart|${host}|${port}`)}`, hostport);
  }
});

t.test("hash96 is the three lanes as 24 lower-case hex digits (was base 36, a runtime call per branch)", async (t) => {
  for (const s of ["", "z9hG4bK1|192.0.2.5|5060", "x".repeat(300)]) t.match(hash96(s), /^[0-9a-f]{24}$/, JSON.stringify(s.slice(0, 20)));
  // Lane A alone, computed here from the FNV-1a definition: the first 8 digits.
  let a = 0x811c9dc5;
  for (const ch of "abc") a = Math.imul(a ^ ch.charCodeAt(0), 0x01000193);
  let h = a ^ 3;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  t.equal(hash96("abc").slice(0, 8), (h >>> 0).toString(16).padStart(8, "0"));
});
