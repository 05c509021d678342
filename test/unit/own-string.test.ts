/**
 * src/util/own-string.ts, and the caches that use it: what a cache keeps
 * from a message must not keep the message's whole text alive. Measured
 * as live heap after a full GC, with a margin of ~10× between the two
 * outcomes (a count of bytes, not a speed).
 */
import t from "tap";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { FlowTokenCodec } from "../../src/edge/flow-token.js";
import { SoftState } from "../../src/edge/soft-state.js";
import { ownString } from "../../src/util/own-string.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const N = 20_000;
const PAD = "X".repeat(2048);

/** What a measurement holds on to while its heap is read. */
const held: unknown[] = [];

/** Live heap, in MB, that `fill` leaves behind while its result is held. */
function retainedMb(fill: () => unknown): number {
  gc();
  const before = process.memoryUsage().heapUsed;
  held.push(fill());
  gc();
  const mb = (process.memoryUsage().heapUsed - before) / 1e6;
  held.length = 0;
  return mb;
}

/** A 2 KiB "datagram" per i, with a 40-character value inside it. */
function datagram(i: number, value: string): string {
  return `INVITE sip:x SIP/2.0\r\nRoute: <sip:${value};lr>\r\n${PAD}${i}`;
}

t.test("a copy holds nothing of the text it was cut from; a plain slice holds all of it", async (t) => {
  const cut = (i: number) => {
    const d = datagram(i, `value-${i}-${"v".repeat(30)}`);
    return d.slice(d.indexOf("value-"), d.indexOf(";lr"));
  };
  const slices = retainedMb(() => Array.from({ length: N }, (_, i) => cut(i)));
  const copies = retainedMb(() => Array.from({ length: N }, (_, i) => ownString(cut(i))));
  t.ok(slices > 30, `slices keep the datagrams: ${slices.toFixed(1)} MB`);
  t.ok(copies < 8, `copies do not: ${copies.toFixed(1)} MB`);
  // A key built of slices holds them, and through them the datagrams.
  const keys = retainedMb(() => new Map(Array.from({ length: N }, (_, i) => [`${cut(i)}\n${i}`, i])));
  const ownKeys = retainedMb(() => new Map(Array.from({ length: N }, (_, i) => [ownString(`${cut(i)}\n${i}`), i])));
  t.ok(keys > 30, `concatenated keys keep the datagrams: ${keys.toFixed(1)} MB`);
  t.ok(ownKeys < 10, `copied keys do not: ${ownKeys.toFixed(1)} MB`);
  t.equal(ownString("abc"), "abc");
  t.equal(ownString(""), "");
});

t.test("the verified flow-token cache keeps the token, not the request it came in", async (t) => {
  const codec = new FlowTokenCodec(Buffer.alloc(32, 7), N);
  const tokens = Array.from({ length: N }, (_, i) => codec.encode({ transport: "udp", address: "192.0.2.9", port: 1024 + (i % 60_000), flowId: `f${i}`, contactHostport: "192.0.2.9:5060" }));
  const mb = retainedMb(() => {
    for (let i = 0; i < N; i++) {
      const d = datagram(i, tokens[i]!);
      const token = d.slice(d.indexOf("<sip:") + 5, d.indexOf(";lr"));
      if (!codec.decode(token).ok) throw new Error("token refused");
    }
    return codec;
  });
  // ~20,000 tokens of ~70 characters and their flows: a few MB; with the
  // datagrams kept alive it was over 40.
  t.ok(mb < 15, `${mb.toFixed(1)} MB held by the cache`);
});

t.test("the soft state keeps its transactions' keys, not their requests", async (t) => {
  const soft = new SoftState({ maxEntries: N, ttlMs: 60_000 });
  const mb = retainedMb(() => {
    for (let i = 0; i < N; i++) {
      const d = datagram(i, `${i}-call-id-of-forty-characters-or-so@192.0.2.9`);
      const callId = d.slice(d.indexOf("<sip:") + 5, d.indexOf(";lr"));
      soft.setByKey(SoftState.key(callId, `z9hG4bK-branch-${i}`), { dest: { transport: "udp", address: "192.0.2.1", port: 5060 }, target: undefined, branch: "b" });
    }
    return soft;
  });
  t.equal(soft.size, N);
  t.ok(mb < 15, `${mb.toFixed(1)} MB held by ${N} transactions`);
});
