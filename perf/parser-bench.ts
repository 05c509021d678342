/**
 * Parser micro-benchmark (issue: foundation). One core, one process.
 * Prints ops/s for parse, parse + forward rewrite, and serialize of a
 * rewritten message, for a ~1 KB INVITE with SDP and a ~500-byte REGISTER.
 *
 *   npm run bench:parser
 */
import { parse } from "../src/sip/parse.js";
import { parseViaValue } from "../src/sip/via.js";
import { INVITE, REGISTER } from "./fixtures/messages.js";

const ourVia = parseViaValue("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-edge-0123456789abcdef");
if (!ourVia.ok) throw new Error("bad bench Via");

function forward(buf: Buffer): Buffer {
  const r = parse(buf);
  if (!r.ok) throw new Error(r.reason);
  const m = r.message;
  m.prependVia(ourVia.ok ? ourVia.via : m.topVia);
  m.setMaxForwards((m.maxForwards ?? 70) - 1);
  return m.toBuffer();
}

function bench(name: string, fn: () => unknown, seconds = 2): number {
  // warm up so the JIT has settled before timing
  const warmEnd = performance.now() + 300;
  while (performance.now() < warmEnd) fn();
  let ops = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 1000; i++) fn();
    ops += 1000;
    now = performance.now();
  }
  const rate = ops / ((now - start) / 1000);
  console.log(`${name.padEnd(40)} ${Math.round(rate).toLocaleString("en-US").padStart(12)} ops/s  ${(1e6 / rate).toFixed(2)} µs/op`);
  return rate;
}

const rounds = Number(process.env.ROUNDS ?? 5);
const results: Record<string, number[]> = {};
for (const [label, text] of [
  ["INVITE", INVITE],
  ["REGISTER", REGISTER],
] as const) {
  const buf = Buffer.from(text, "latin1");
  const parsed = parse(buf);
  if (!parsed.ok) throw new Error(parsed.reason);
  const rewritten = parsed.message;
  rewritten.prependVia(ourVia.via);
  rewritten.setMaxForwards(69);
  console.log(`${label}: ${buf.length} bytes`);
  for (let r = 0; r < rounds; r++) {
    (results[`${label} parse`] ??= []).push(bench(`${label} parse`, () => parse(buf)));
    (results[`${label} parse+forward rewrite`] ??= []).push(bench(`${label} parse+forward rewrite`, () => forward(buf)));
    (results[`${label} serialize (rewritten)`] ??= []).push(bench(`${label} serialize (rewritten)`, () => rewritten.toBuffer()));
  }
}
console.log(`\nmedian of ${rounds} rounds (node ${process.version}, ${process.arch}):`);
for (const [k, v] of Object.entries(results)) {
  const s = [...v].sort((a, b) => a - b);
  console.log(`${k.padEnd(40)} ${Math.round(s[Math.floor(s.length / 2)]!).toLocaleString("en-US").padStart(12)} ops/s`);
}
