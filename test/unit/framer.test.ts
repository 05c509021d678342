import t from "tap";
import fc from "fast-check";
import { StreamFramer, type FrameEvent, type FramerLimits } from "../../src/sip/framer.js";

const LIMITS: FramerLimits = { maxMessageBytes: 65535, maxBufferBytes: 131072 };

function msg(headers: string[], body = ""): string {
  return `OPTIONS sip:edge.example.com SIP/2.0\r\n${headers.join("\r\n")}\r\n\r\n${body}`;
}

function invite(body: string | Buffer, clName = "Content-Length"): Buffer {
  const b = typeof body === "string" ? Buffer.from(body, "latin1") : body;
  const head =
    "INVITE sip:bob@example.com SIP/2.0\r\n" +
    "Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n" +
    "Max-Forwards: 70\r\n" +
    "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n" +
    "CSeq: 314159 INVITE\r\n" +
    `${clName}: ${b.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), b]);
}

/** Everything except pongs, which a split may add (a CRLF pair cut in two reads as pong+ping). */
interface Summary {
  messages: string[];
  pings: number;
  pongs: number;
  errors: Array<{ code: string; offset: number }>;
}

function summarize(events: FrameEvent[]): Summary {
  const s: Summary = { messages: [], pings: 0, pongs: 0, errors: [] };
  for (const e of events) {
    switch (e.kind) {
      case "message":
        s.messages.push(e.data.toString("latin1"));
        break;
      case "ping":
        s.pings++;
        break;
      case "pong":
        s.pongs++;
        break;
      case "error":
        s.errors.push({ code: e.code, offset: e.offset });
        break;
    }
  }
  return s;
}

function feed(chunks: Buffer[], limits: FramerLimits = LIMITS): FrameEvent[] {
  const f = new StreamFramer(limits);
  const out: FrameEvent[] = [];
  for (const c of chunks) out.push(...f.push(c));
  return out;
}

function one(input: string | Buffer, limits: FramerLimits = LIMITS): FrameEvent[] {
  return feed([typeof input === "string" ? Buffer.from(input, "latin1") : input], limits);
}

t.test("one message with a body, and one without", async (t) => {
  const a = invite("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
  const ev = one(a);
  t.equal(ev.length, 1);
  t.same(summarize(ev).messages, [a.toString("latin1")]);

  const b = msg(["Content-Length: 0"]);
  t.same(summarize(one(b)).messages, [b]);
});

t.test("several messages in one read come out in order, untouched", async (t) => {
  const a = invite("first");
  const b = invite("second body\r\n\r\nwith an empty line inside");
  const c = msg(["l: 0"]);
  const ev = one(Buffer.concat([a, b, Buffer.from(c, "latin1")]));
  t.same(summarize(ev).messages, [a.toString("latin1"), b.toString("latin1"), c]);
});

t.test("Content-Length spellings (RFC 3261 §7.3.1, §7.3.3)", async (t) => {
  const cases: Array<[string, string[]]> = [
    ["long name", ["Content-Length: 4"]],
    ["lower case", ["content-length: 4"]],
    ["odd case", ["CONTENT-length:4"]],
    ["compact", ["l: 4"]],
    ["compact upper case", ["L:4"]],
    ["whitespace before colon", ["Content-Length \t: 4"]],
    ["compact with whitespace before colon", ["l  : 4"]],
    ["trailing whitespace", ["Content-Length: 4  \t"]],
    ["leading zeros", ["Content-Length: 0004"]],
    ["folded value", ["Content-Length:\r\n 4"]],
    ["folded twice", ["Content-Length:\r\n\t\r\n  4"]],
    ["repeated with the same value", ["Content-Length: 4", "l: 4"]],
    ["other headers around", ["Via: SIP/2.0/TCP h;branch=z9hG4bKx", "Content-Length: 4", "Lorem: l: 99", "Contact: <sip:l@h>"]],
    ["a folded header that mentions l:", ["Subject: x\r\n l: 99", "Content-Length: 4"]],
  ];
  for (const [name, headers] of cases) {
    const m = msg(headers, "body");
    t.same(summarize(one(m)).messages, [m], name);
  }
});

t.test("Content-Length errors close the framing", async (t) => {
  const cases: Array<[string, string[], string]> = [
    ["missing", ["Via: SIP/2.0/TCP h;branch=z9hG4bKx"], "content-length-missing"],
    ["no headers at all", [], "content-length-missing"],
    ["negative", ["Content-Length: -1"], "content-length-invalid"],
    ["non-numeric", ["Content-Length: abc"], "content-length-invalid"],
    ["empty", ["Content-Length:"], "content-length-invalid"],
    ["digits split by space", ["Content-Length: 1 2"], "content-length-invalid"],
    ["list", ["Content-Length: 4, 4"], "content-length-invalid"],
    ["fraction", ["Content-Length: 4.0"], "content-length-invalid"],
    ["absurdly long", ["Content-Length: 1234567890123456789"], "content-length-invalid"],
    ["duplicated with different values", ["Content-Length: 4", "l: 5"], "content-length-conflict"],
    ["a name that only starts like Content-Length", ["Content-Lengthy: 4"], "content-length-missing"],
    ["hyphen replaced", ["Content_Length: 4"], "content-length-missing"],
  ];
  for (const [name, headers, code] of cases) {
    const raw = headers.length === 0 ? "OPTIONS sip:e SIP/2.0\r\n\r\n" : msg(headers, "body");
    const f = new StreamFramer(LIMITS);
    const ev = f.push(Buffer.from(raw, "latin1"));
    t.equal(ev.length, 1, name);
    t.equal(ev[0]?.kind, "error", name);
    if (ev[0]?.kind === "error") {
      t.equal(ev[0].code, code, name);
      t.ok(ev[0].offset >= 0 && ev[0].offset <= raw.length, `${name}: offset inside the stream`);
      t.type(ev[0].reason, "string");
    }
    t.equal(f.dead, true, name);
    t.same(f.push(Buffer.from(msg(["l: 0"]), "latin1")), [], `${name}: dead framer returns nothing`);
    t.equal(f.buffered, 0);
  }
});

t.test("the error offset counts from the start of the stream", async (t) => {
  const good = msg(["l: 0"]);
  const bad = msg(["Via: x"]);
  const ev = one(good + bad);
  t.equal(ev.length, 2);
  const err = ev[1];
  t.equal(err?.kind, "error");
  if (err?.kind === "error") t.equal(err.offset, good.length);
});

t.test("limits are enforced while reading", async (t) => {
  const limits = { maxMessageBytes: 200, maxBufferBytes: 1000 };

  t.test("a header block that never ends", async (t) => {
    const f = new StreamFramer(limits);
    t.same(f.push(Buffer.from("INVITE sip:a SIP/2.0\r\n")), []);
    let ev: FrameEvent[] = [];
    for (let i = 0; i < 20 && ev.length === 0; i++) ev = f.push(Buffer.from("X-Filler: 0123456789\r\n"));
    t.equal(ev[0]?.kind, "error");
    if (ev[0]?.kind === "error") t.equal(ev[0].code, "header-too-large");
    t.equal(f.dead, true);
  });

  t.test("a complete header block over the limit", async (t) => {
    const m = msg([`X-Filler: ${"a".repeat(300)}`, "l: 0"]);
    const ev = one(m, limits);
    t.equal(ev[0]?.kind, "error");
    if (ev[0]?.kind === "error") t.equal(ev[0].code, "header-too-large");
  });

  t.test("a body that would exceed the limit fails before it arrives", async (t) => {
    const f = new StreamFramer(limits);
    const ev = f.push(Buffer.from(msg(["Content-Length: 500"]), "latin1"));
    t.equal(ev[0]?.kind, "error");
    if (ev[0]?.kind === "error") {
      t.equal(ev[0].code, "message-too-large");
      t.equal(ev[0].offset, 0);
    }
  });

  t.test("exactly at the limit is fine", async (t) => {
    const head = msg(["Content-Length: 000"]);
    const body = "b".repeat(200 - head.length);
    const m = msg([`Content-Length: ${String(body.length).padStart(3, "0")}`], body);
    t.equal(m.length, 200);
    t.same(summarize(one(m, limits)).messages, [m]);
  });

  t.test("the per-connection buffer limit", async (t) => {
    const small = { maxMessageBytes: 1000, maxBufferBytes: 100 };
    const f = new StreamFramer(small);
    const m = msg(["Content-Length: 300"], "x".repeat(50));
    const ev = f.push(Buffer.from(m, "latin1"));
    t.equal(ev[0]?.kind, "error");
    if (ev[0]?.kind === "error") t.equal(ev[0].code, "buffer-overflow");
    t.equal(f.buffered, 0);
  });

  t.test("bad limits are a programmer error", async (t) => {
    t.throws(() => new StreamFramer({ maxMessageBytes: 0, maxBufferBytes: 10 }));
    t.throws(() => new StreamFramer({ maxMessageBytes: 10, maxBufferBytes: Number.NaN }));
  });
});

t.test("keepalives between messages (RFC 5626 §4.4.1)", async (t) => {
  const m = msg(["l: 0"]);
  t.same(summarize(one("\r\n\r\n")), { messages: [], pings: 1, pongs: 0, errors: [] }, "CRLFCRLF is a ping");
  t.same(summarize(one("\r\n")), { messages: [], pings: 0, pongs: 1, errors: [] }, "a lone CRLF is a pong");
  t.same(summarize(one("\r\n\r\n\r\n")), { messages: [], pings: 1, pongs: 1, errors: [] });
  t.same(summarize(one("\r\n\r\n\r\n\r\n")), { messages: [], pings: 2, pongs: 0, errors: [] });
  t.same(summarize(one(`\r\n\r\n${m}\r\n${m}`)), { messages: [m, m], pings: 1, pongs: 1, errors: [] });
  t.same(summarize(one(`${m}\r\n\r\n`)), { messages: [m], pings: 1, pongs: 0, errors: [] });

  t.test("a ping split across reads is still a ping", async (t) => {
    for (const parts of [["\r\n", "\r\n"], ["\r", "\n\r\n"], ["\r\n\r", "\n"], ["\r\n", "\r", "\n"], ["\r", "\n", "\r", "\n"]]) {
      const s = summarize(feed(parts.map((p) => Buffer.from(p))));
      t.equal(s.pings, 1, JSON.stringify(parts));
      t.same(s.messages, []);
    }
  });

  t.test("a pong is reported as soon as it arrives", async (t) => {
    const f = new StreamFramer(LIMITS);
    t.same(summarize(f.push(Buffer.from("\r\n"))).pongs, 1);
    t.equal(f.buffered, 0);
    t.same(summarize(f.push(Buffer.from(m, "latin1"))).messages, [m], "a message after a pong");
  });

  t.test("a lone CR waits for its LF", async (t) => {
    const f = new StreamFramer(LIMITS);
    t.same(f.push(Buffer.from("\r")), []);
    t.equal(f.buffered, 1);
    t.same(summarize(f.push(Buffer.from("\n"))).pongs, 1);
  });

  t.test("CRLFs inside a body are body bytes", async (t) => {
    const b = msg(["l: 8"], "\r\n\r\n\r\n\r\n");
    t.same(summarize(one(b)), { messages: [b], pings: 0, pongs: 0, errors: [] });
  });

  t.test("a CR that does not start a CRLF starts a message", async (t) => {
    const ev = one("\rX: y\r\n\r\n");
    t.equal(ev[0]?.kind, "error");
  });
});

t.test("buffered reports the bytes held for an incomplete message", async (t) => {
  const f = new StreamFramer(LIMITS);
  const m = invite("hello world");
  t.same(f.push(m.subarray(0, 50)), []);
  t.equal(f.buffered, 50);
  const ev = f.push(m.subarray(50));
  t.same(summarize(ev).messages, [m.toString("latin1")]);
  t.equal(f.buffered, 0);
  t.equal(f.dead, false);
  t.same(f.push(Buffer.alloc(0)), [], "an empty read is a no-op");
});

/** A stream of several messages and keepalives, bodies full of traps. */
function sampleStream(): Buffer {
  const bin = Buffer.from([0, 1, 2, 13, 10, 13, 10, 0, 255, 58, 13, 10]);
  return Buffer.concat([
    Buffer.from("\r\n\r\n"),
    invite("v=0\r\n\r\ns=-\r\n"),
    Buffer.from("\r\n"),
    invite(bin, "l"),
    Buffer.from(msg(["content-length :\r\n 0"]), "latin1"),
    Buffer.from("\r\n\r\n\r\n\r\n"),
    invite("Content-Length: 99\r\n\r\n", "CONTENT-LENGTH"),
    Buffer.from("\r\n"),
  ]);
}

t.test("the same messages whatever the split: every single offset", async (t) => {
  const stream = sampleStream();
  const whole = summarize(one(stream));
  t.equal(whole.messages.length, 4);
  t.equal(whole.pings, 3);
  t.same(whole.errors, []);
  for (let i = 0; i <= stream.length; i++) {
    const s = summarize(feed([stream.subarray(0, i), stream.subarray(i)]));
    t.same(s.messages, whole.messages, `split at ${i}`);
    t.equal(s.pings, whole.pings, `pings, split at ${i}`);
    t.same(s.errors, [], `split at ${i}`);
    // A CRLF pair cut in two is reported as a pong and then a ping.
    t.ok(s.pongs === whole.pongs || s.pongs === whole.pongs + 1, `pongs, split at ${i}`);
  }
});

t.test("the same messages fed one byte at a time", async (t) => {
  const stream = sampleStream();
  const whole = summarize(one(stream));
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) chunks.push(stream.subarray(i, i + 1));
  const s = summarize(feed(chunks));
  t.same(s.messages, whole.messages);
  t.equal(s.pings, whole.pings);
});

t.test("an error is found at the same place whatever the split", async (t) => {
  const stream = Buffer.concat([invite("abc"), Buffer.from(msg(["Content-Length: 3", "l: 4"], "abcd"), "latin1"), invite("never")]);
  const whole = summarize(one(stream));
  t.equal(whole.messages.length, 1);
  t.equal(whole.errors.length, 1);
  for (let i = 0; i <= stream.length; i++) {
    const s = summarize(feed([stream.subarray(0, i), stream.subarray(i)]));
    t.same(s.messages, whole.messages, `split at ${i}`);
    t.same(s.errors, whole.errors, `split at ${i}`);
  }
});

// ---- property tests ------------------------------------------------------------

const headerName = fc.constantFrom("Content-Length", "content-length", "CONTENT-LENGTH", "l", "L");
const colon = fc.constantFrom(":", " :", "\t:", ":  ", ":\r\n ");
const body = fc.uint8Array({ maxLength: 300 }).chain((bytes) =>
  fc.constantFrom(
    Buffer.from(bytes),
    Buffer.concat([Buffer.from("\r\n\r\n"), Buffer.from(bytes), Buffer.from([0, 0, 13, 10, 13, 10])]),
    Buffer.from("INVITE sip:x SIP/2.0\r\nContent-Length: 5\r\n\r\n"),
  ),
);
const sipMessage = fc.record({ name: headerName, colon, body, extra: fc.constantFrom("", "X-A: 1\r\n", "Subject: l: 3\r\n") }).map(({ name, colon, body, extra }) =>
  Buffer.concat([Buffer.from(`MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n${extra}${name}${colon}${body.length}\r\n\r\n`, "latin1"), body]),
);
const keepalive = fc.constantFrom("", "", "\r\n\r\n", "\r\n", "\r\n\r\n\r\n\r\n");

t.test("property: random chunking of concatenated messages gives the messages back", async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(keepalive, sipMessage), { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 40 }),
      (items, sizes) => {
        const parts: Buffer[] = [];
        for (const [ka, m] of items) parts.push(Buffer.from(ka), m);
        const stream = Buffer.concat(parts);
        const chunks: Buffer[] = [];
        let at = 0;
        for (let i = 0; at < stream.length; i++) {
          const size = sizes[i % sizes.length]!;
          chunks.push(stream.subarray(at, at + size));
          at += size;
        }
        const s = summarize(feed(chunks));
        const expected = items.map(([, m]) => m.toString("latin1"));
        const pings = summarize(one(stream)).pings;
        return s.errors.length === 0 && s.pings === pings && JSON.stringify(s.messages) === JSON.stringify(expected);
      },
    ),
    { numRuns: 300 },
  );
  t.pass("held for every sampled chunking");
});

t.test("property: arbitrary bytes never throw and never exceed the buffer limit", async (t) => {
  const limits = { maxMessageBytes: 512, maxBufferBytes: 600 };
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (chunks) => {
      const f = new StreamFramer(limits);
      for (const c of chunks) {
        f.push(Buffer.from(c));
        if (f.buffered > limits.maxBufferBytes) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass("no throw, bounded buffer");
});
