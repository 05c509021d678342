/**
 * capRegisterExpires (src/edge/policy-router.ts): the 200 OK to a REGISTER
 * of a device with a switch pending has its granted expiries capped; with
 * nothing pending the answer is left exactly as the registrar sent it.
 */
import t from "tap";
import { capRegisterExpires } from "../../src/edge/policy-router.js";
import { parse } from "../../src/sip/parse.js";
import type { SipMessage } from "../../src/sip/message.js";

function ok200(extra: string[]): SipMessage {
  const text = [
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK-r1;received=192.168.1.20;rport=5062",
    "From: <sip:1001@pbx.example>;tag=f1",
    "To: <sip:1001@pbx.example>;tag=t1",
    "Call-ID: reg-1",
    "CSeq: 7 REGISTER",
    ...extra,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
  const r = parse(text);
  if (!r.ok) throw new Error(r.reason);
  return r.message;
}

const EXTRA = ["Expires: 3600", "Contact: <sip:1001@192.168.1.20:5062>;expires=3600, <sip:1001@10.0.0.5>;EXPIRES = 60", "Contact: <sip:1001@10.0.0.6>;q=0.5;expires=1800"];

t.test("a pending switch caps the Expires header and every Contact's expires; shorter ones stay", async (t) => {
  const m = capped(300);
  t.equal(m.get("Expires"), "300");
  const contacts = m.getAll("Contact").join(", ");
  t.match(contacts, /<sip:1001@192\.168\.1\.20:5062>;expires=300/);
  t.match(contacts, /<sip:1001@10\.0\.0\.5>;EXPIRES = 60/, "60 is below the cap: as granted");
  t.match(contacts, /<sip:1001@10\.0\.0\.6>;q=0\.5;expires=300/);
});

t.test("nothing pending: the answer is not touched", async (t) => {
  const m = ok200(EXTRA);
  const before = m.toString();
  const asked: number[] = [];
  capRegisterExpires(m, (n) => {
    asked.push(n);
    return n;
  });
  t.equal(m.toString(), before, "byte for byte as the registrar sent it");
  t.same(asked, [Number.MAX_SAFE_INTEGER], "asked once whether anything is capped; no header read");
});

t.test("a cap above every granted expiry changes nothing", async (t) => {
  const m = ok200(EXTRA);
  const before = m.toString();
  capRegisterExpires(m, (n) => Math.min(n, 7200));
  t.equal(m.toString(), before);
});

t.test("an answer without Expires or Contact", async (t) => {
  const m = ok200([]);
  const before = m.toString();
  capRegisterExpires(m, (n) => Math.min(n, 30));
  t.equal(m.toString(), before);
});

function capped(limit: number): SipMessage {
  const m = ok200(EXTRA);
  capRegisterExpires(m, (n) => Math.min(n, limit));
  return m;
}
