/**
 * The rules engine plugged into an edge started by `run()` (real UDP sockets
 * on 127.0.0.0/8): source and method rejects, a carrier group routed in the
 * rules' own order with a Request-URI rewrite seen at the far end, the PBX
 * group through the failover policy (with a rewrite); the rewrite kept on
 * every copy the router does not see (the failover attempt to the next
 * target, the ACK of an absorbed 503, the CANCEL); a rules file with a YAML
 * error, and one naming an unknown group, refused on reload (the YAML error
 * logged with file:line:column) while the old rules keep routing, and a
 * good file then takes over. Also `sip-edge explain` on the shipped
 * least-cost-routing example.
 */
import t from "tap";
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { run } from "../../src/main.js";
import { createLogger } from "../../src/util/logger.js";
import { UdpPeer, answer, pbxBehaviour, portOf } from "../helpers/edge-live.js";
import { waitFor } from "../helpers/wait.js";

/** A second loopback address, so a source rule can tell two phones apart. */
const BLOCKED_IP = "127.0.0.2";

const RULES_V1 = [
  "groups:",
  "  pbx: { strategy: failover, members: [main, standby] }",
  "  carriers:",
  "    strategy: failover",
  "    members:",
  "      - { target: carrier-a, priority: 1 }",
  "      - { target: carrier-b, priority: 2 }",
  "rules:",
  "  - name: blocked-source",
  `    match: { source: "${BLOCKED_IP}" }`,
  '    reject: { status: 403, reason: "Source Blocked" }',
  "  - name: no-subscribe",
  "    match: { method: SUBSCRIBE }",
  '    reject: { status: 403, reason: "No Subscriptions" }',
  "  - name: emergency",
  '    match: { requestUri: { user: "112" } }',
  "    route: pbx",
  '    rewrite: { requestUri: { user: "emergency" } }',
  "  - name: international",
  "    match:",
  "      method: INVITE",
  "      requestUri:",
  "        user: { regex: '^00[1-9][0-9]{5,14}$' }",
  "    route: carriers",
  "    rewrite:",
  "      requestUri:",
  '        user: { regex: "^00", replace: "+" }',
  "  - name: default",
  "    route: pbx",
  "",
].join("\n");

/** v2: carrier-b becomes the first choice and SUBSCRIBE gets a different answer. */
const RULES_V2 = RULES_V1.replace("target: carrier-a, priority: 1", "target: carrier-a, priority: 3").replace(
  'reject: { status: 403, reason: "No Subscriptions" }',
  'reject: { status: 489, reason: "Bad Event" }',
);

/** Valid YAML, but the default rule routes to a group that does not exist. */
const RULES_UNKNOWN_GROUP = RULES_V1.replace("  - name: default\n    route: pbx\n", "  - name: default\n    route: nosuchgroup\n");

/** A mapping opened with `{` and never closed: a YAML syntax error. */
const RULES_BROKEN = ["rules:", "  - name: half-written", "    match: { method: INVITE", "    route: pbx", ""].join("\n");

/** A request from a phone; a CANCEL shares its INVITE's id (branch, Call-ID) and CSeq number (RFC 3261 §9.1). */
function request(method: string, user: string, id: string, from: { ip: string; port: number }, extra: readonly string[] = []): string {
  return [
    `${method} sip:${user}@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP ${from.ip}:${from.port};branch=z9hG4bK${id};rport`,
    "Max-Forwards: 70",
    "From: <sip:1001@127.0.0.1>;tag=f",
    `To: <sip:${user}@127.0.0.1>`,
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    `Contact: <sip:1001@${from.ip}:${from.port}>`,
    ...(method === "SUBSCRIBE" ? ["Event: presence", "Expires: 60"] : []),
    ...extra,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** Collects the JSON log lines of the edge. */
/**
 * How a switchable peer answers an INVITE: like a PBX, refusing it (503,
 * then absorbing the ACK), or ringing until the caller cancels (180; 200 to
 * the CANCEL and 487 to the INVITE).
 */
type Mode = "answer" | "refuse" | "ring";

function switchable(mode: () => Mode): (text: string, p: UdpPeer, rinfo: { address: string; port: number }) => void {
  return (text, p, rinfo) => {
    const m = mode();
    const reply = (r: string): void => p.send(r, rinfo.port, rinfo.address);
    if (m === "refuse" && text.startsWith("INVITE ")) return reply(answer(text, "503 Service Unavailable"));
    if (m === "ring" && text.startsWith("INVITE ")) return reply(answer(text, "180 Ringing"));
    if (m === "ring" && text.startsWith("CANCEL ")) {
      reply(answer(text, "200 OK"));
      // The 487 answers the INVITE: same Via, From, To, Call-ID and CSeq number, method INVITE.
      const invite = text.replace(/^CANCEL /, "INVITE ").replace(/\r\nCSeq: (\d+) CANCEL/, "\r\nCSeq: $1 INVITE");
      return reply(answer(invite, "487 Request Terminated"));
    }
    if (text.startsWith("ACK ")) return;
    pbxBehaviour(text, p, rinfo);
  };
}

class LogLines extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter((l) => l !== ""));
    done();
  }
}

t.test("rules in the running edge: reject, route, rewrite; a broken file keeps the old rules; a good one takes over", async (t) => {
  let mainMode: Mode = "answer";
  let carrierAMode: Mode = "answer";
  const main = await UdpPeer.open(switchable(() => mainMode));
  const standby = await UdpPeer.open(pbxBehaviour);
  const carrierA = await UdpPeer.open(switchable(() => carrierAMode));
  const carrierB = await UdpPeer.open(pbxBehaviour);
  const phone = await UdpPeer.open();
  const blocked = createSocket("udp4");
  const blockedReplies: string[] = [];
  blocked.on("message", (b) => blockedReplies.push(b.toString("utf8")));
  await new Promise<void>((resolve, reject) => {
    blocked.once("error", reject);
    blocked.bind(0, BLOCKED_IP, () => resolve());
  });
  const dir = mkdtempSync(join(tmpdir(), "rules-edge-"));
  writeFileSync(
    join(dir, "edge.yaml"),
    [
      "listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]",
      "targets:",
      `  - { name: main, uri: "sip:127.0.0.1:${main.port}", priority: 1, acceptsPath: true }`,
      `  - { name: standby, uri: "sip:127.0.0.1:${standby.port}", priority: 2, acceptsPath: true }`,
      `  - { name: carrier-a, uri: "sip:127.0.0.1:${carrierA.port}", priority: 10 }`,
      `  - { name: carrier-b, uri: "sip:127.0.0.1:${carrierB.port}", priority: 20 }`,
      "",
    ].join("\n"),
  );
  writeFileSync(join(dir, "rules.yaml"), RULES_V1);
  const log = new LogLines();
  const running = await run(join(dir, "edge.yaml"), { logger: createLogger("info", log) });
  t.teardown(async () => {
    await running.stop();
    blocked.close();
    for (const p of [phone, main, standby, carrierA, carrierB]) p.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const edgePort = portOf(running.edge, "udp");
  let n = 0;
  const ask = async (method: string, user: string): Promise<string> => {
    const id = `e${++n}`;
    phone.send(request(method, user, id, { ip: "127.0.0.1", port: phone.port }), edgePort);
    return waitFor(() => phone.received.find((m) => m.includes(`Call-ID: ${id}\r\n`)), { what: `answer to ${method} ${id}` });
  };
  const arrivedAt = (p: UdpPeer, requestLine: string): boolean => p.received.some((m) => m.startsWith(`${requestLine}\r\n`));

  // A source rule: the same INVITE from another loopback address is refused.
  const blockedId = `e${++n}`;
  const blockedPort = blocked.address().port;
  blocked.send(request("INVITE", "2001", blockedId, { ip: BLOCKED_IP, port: blockedPort }), edgePort, "127.0.0.1");
  const refused = await waitFor(() => blockedReplies.find((m) => m.includes(`Call-ID: ${blockedId}\r\n`)), { what: "answer to the blocked source" });
  t.match(refused, /^SIP\/2\.0 403 Source Blocked\r\n/, "a source rule rejects with its status and reason");
  t.notOk(
    [main, standby, carrierA, carrierB].some((p) => p.received.some((m) => m.includes(`Call-ID: ${blockedId}\r\n`))),
    "a rejected request reaches no target",
  );

  t.match(await ask("SUBSCRIBE", "2001"), /^SIP\/2\.0 403 No Subscriptions\r\n/, "a method rule rejects");

  t.match(await ask("INVITE", "00493012345678"), /^SIP\/2\.0 200 OK\r\n/, "the carrier group answers");
  t.ok(arrivedAt(carrierA, "INVITE sip:+493012345678@127.0.0.1 SIP/2.0"), "the rules' first carrier got the call with the rewritten Request-URI");
  t.notOk(carrierB.received.some((m) => m.startsWith("INVITE ")), "the second carrier was not needed");

  t.match(await ask("INVITE", "2001"), /^SIP\/2\.0 200 OK\r\n/, "the PBX group answers");
  t.ok(arrivedAt(main, "INVITE sip:2001@127.0.0.1 SIP/2.0"), "the default rule sends the call to Main through the failover policy");
  t.match(await ask("INVITE", "112"), /^SIP\/2\.0 200 OK\r\n/, "a PBX group rule with a rewrite answers");
  t.ok(arrivedAt(main, "INVITE sip:emergency@127.0.0.1 SIP/2.0"), "Request-URI rewritten by the rule, Main chosen by the policy");

  // The rewrite on copies the router never sees. Main refuses: the
  // per-request failover takes the call to the Standby.
  mainMode = "refuse";
  const standbyInvites = standby.received.length;
  t.match(await ask("INVITE", "112"), /^SIP\/2\.0 200 OK\r\n/, "Main refuses with 503, the Standby answers");
  mainMode = "answer";
  t.ok(standby.received.slice(standbyInvites).some((m) => m.startsWith("INVITE sip:emergency@127.0.0.1 SIP/2.0\r\n")), "the failover attempt carries the rule's rewrite");
  t.ok(await waitFor(() => main.received.some((m) => m.startsWith("ACK sip:emergency@127.0.0.1 SIP/2.0\r\n")), { what: "the ACK of the absorbed 503" }), "the ACK of the absorbed 503 has the INVITE's rewritten Request-URI");
  // A carrier refusing: the next carrier gets the rewritten number too.
  carrierAMode = "refuse";
  t.match(await ask("INVITE", "0031201234567"), /^SIP\/2\.0 200 OK\r\n/, "carrier-a refuses, carrier-b answers");
  carrierAMode = "answer";
  t.ok(arrivedAt(carrierA, "INVITE sip:+31201234567@127.0.0.1 SIP/2.0"), "carrier-a was tried first");
  t.ok(arrivedAt(carrierB, "INVITE sip:+31201234567@127.0.0.1 SIP/2.0"), "carrier-b got the rewritten Request-URI");
  t.notOk(arrivedAt(carrierB, "INVITE sip:0031201234567@127.0.0.1 SIP/2.0"), "never the number as dialled");
  // A ringing call cancelled by the phone: the CANCEL names what the carrier got.
  carrierAMode = "ring";
  const ringId = `e${++n}`;
  const phoneAt = { ip: "127.0.0.1", port: phone.port };
  phone.send(request("INVITE", "0041441234567", ringId, phoneAt), edgePort);
  await waitFor(() => phone.received.find((m) => m.startsWith("SIP/2.0 180 ") && m.includes(`Call-ID: ${ringId}\r\n`)), { what: "180 from carrier-a" });
  phone.send(request("CANCEL", "0041441234567", ringId, phoneAt), edgePort);
  await waitFor(() => phone.received.find((m) => m.startsWith("SIP/2.0 487 ") && m.includes(`Call-ID: ${ringId}\r\n`)), { what: "487 after the CANCEL" });
  carrierAMode = "answer";
  t.ok(arrivedAt(carrierA, "CANCEL sip:+41441234567@127.0.0.1 SIP/2.0"), "the CANCEL has the INVITE's rewritten Request-URI (RFC 3261 §9.1)");

  // A YAML syntax error: refused, logged with file:line:column, old rules stay.
  writeFileSync(join(dir, "rules.yaml"), RULES_BROKEN);
  t.equal(running.reload(), false, "a rules file with a YAML error is refused");
  const logged = await waitFor(() => log.lines.find((l) => l.includes("rules reload failed")), { what: "the refused reload in the log" });
  t.match(logged, /rules\.yaml:\d+:\d+/, "the error names file:line:column");
  t.match(await ask("SUBSCRIBE", "2001"), /^SIP\/2\.0 403 No Subscriptions\r\n/, "the old reject rule still answers");
  t.match(await ask("INVITE", "0044201234567"), /^SIP\/2\.0 200 OK\r\n/, "the old route rule still routes");
  t.ok(arrivedAt(carrierA, "INVITE sip:+44201234567@127.0.0.1 SIP/2.0"), "with the old rewrite, to the old first carrier");

  // Valid YAML naming a group that does not exist: refused too.
  writeFileSync(join(dir, "rules.yaml"), RULES_UNKNOWN_GROUP);
  t.equal(running.reload(), false, "a rules file naming an unknown group is refused");
  t.match(await ask("SUBSCRIBE", "2001"), /^SIP\/2\.0 403 No Subscriptions\r\n/, "the old rules still route real traffic");

  // A good file: the new rules apply to the next requests.
  writeFileSync(join(dir, "rules.yaml"), RULES_V2);
  t.equal(running.reload(), true, "a good rules file is taken");
  t.match(await ask("SUBSCRIBE", "2001"), /^SIP\/2\.0 489 Bad Event\r\n/, "the new reject applies");
  t.match(await ask("INVITE", "0033123456789"), /^SIP\/2\.0 200 OK\r\n/, "the carrier group still answers");
  t.ok(arrivedAt(carrierB, "INVITE sip:+33123456789@127.0.0.1 SIP/2.0"), "the new order puts carrier-b first");
  t.notOk(arrivedAt(carrierA, "INVITE sip:+33123456789@127.0.0.1 SIP/2.0"), "carrier-a is now second and not needed");
});

/** What a phone puts on the wire for UTF-8 text: its bytes, here one character each (as UdpPeer sends and reads). */
const utf8Wire = (s: string): string => Buffer.from(s, "utf8").toString("latin1");

t.test("non-ASCII text in rules.yaml: matched against the phone's UTF-8, and sent as UTF-8 in added headers and reason phrases", async (t) => {
  const main = await UdpPeer.open(pbxBehaviour);
  const phone = await UdpPeer.open();
  const dir = mkdtempSync(join(tmpdir(), "rules-edge-utf8-"));
  writeFileSync(join(dir, "edge.yaml"), ["listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]", "targets:", `  - { name: main, uri: "sip:127.0.0.1:${main.port}", priority: 1 }`, ""].join("\n"));
  writeFileSync(
    join(dir, "rules.yaml"),
    [
      "groups:",
      "  pbx: { strategy: failover, members: [main] }",
      "rules:",
      "  - name: exact",
      '    match: { headers: { X-Name: "Müller" } }',
      '    reject: { status: 403, reason: "Gesperrt – später" }',
      "  - name: any-case",
      '    match: { headers: { X-Name: { exact: "ÖZTÜRK-ABC", ignoreCase: true } } }',
      '    reject: { status: 403, reason: "Any Case" }',
      "  - name: regex",
      "    match: { headers: { X-Name: { regex: '^Jür.en$' } } }",
      '    reject: { status: 403, reason: "Regex" }',
      "  - name: default",
      "    route: pbx",
      '    rewrite: { headers: { add: { X-Greeting: "Grüße" } } }',
      "",
    ].join("\n"),
  );
  // Registered before the edge starts: a config it refuses must not leave the peers' sockets holding the test open.
  let running: Awaited<ReturnType<typeof run>> | undefined;
  t.teardown(async () => {
    await running?.stop();
    for (const p of [phone, main]) p.close();
    rmSync(dir, { recursive: true, force: true });
  });
  running = await run(join(dir, "edge.yaml"), { logger: createLogger("warn", new LogLines()) });
  const edgePort = portOf(running.edge, "udp");
  let n = 0;
  const ask = async (name: string): Promise<string> => {
    const id = `u${++n}`;
    phone.send(request("OPTIONS", "2001", id, { ip: "127.0.0.1", port: phone.port }, [`X-Name: ${utf8Wire(name)}`]), edgePort);
    return waitFor(() => phone.received.find((m) => m.includes(`Call-ID: ${id}\r\n`)), { what: `answer to ${id}` });
  };

  t.ok((await ask("Müller")).startsWith(`SIP/2.0 403 ${utf8Wire("Gesperrt – später")}\r\n`), "an exact value matches the UTF-8 bytes, and the reason phrase goes out as UTF-8");
  t.ok((await ask("ÖzTÜrk-abc")).startsWith("SIP/2.0 403 Any Case\r\n"), "ignoreCase folds the ASCII letters, and the UTF-8 around them still matches");
  t.ok((await ask("öztürk-abc")).startsWith("SIP/2.0 200 "), "but only the ASCII letters: ö is not Ö (routed on, to main)");
  t.ok((await ask("Jürgen")).startsWith("SIP/2.0 403 Regex\r\n"), "a regex sees characters, not bytes: `.` is one character");
  t.ok((await ask("Jü")).startsWith("SIP/2.0 200 "), "no rule matches: routed to main");
  const forwarded = main.received.find((m) => m.includes(`Call-ID: u${n}\r\n`)) ?? "";
  t.ok(forwarded.includes(`\r\nX-Greeting: ${utf8Wire("Grüße")}\r\n`), "an added header carries its value as UTF-8");
});

const CLI = join(import.meta.dirname, "..", "..", "src", "cli.ts");
const SHIPPED_LCR = join(import.meta.dirname, "..", "..", "proxy-rules", "examples", "two-carriers-lcr");

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // execArgv carries the TypeScript loader the test itself runs under.
    const p = spawn(process.execPath, [...process.execArgv, CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

t.test("sip-edge explain on the shipped least-cost-routing example; broken rules exit 1 with the errors", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "rules-edge-explain-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const msg = join(dir, "invite.sip");
  writeFileSync(
    msg,
    [
      "INVITE sip:0049301234567@edge.example.com SIP/2.0",
      "Via: SIP/2.0/UDP 10.20.0.10:5060;branch=z9hG4bKx1",
      "Max-Forwards: 70",
      "From: <sip:2001@edge.example.com>;tag=a",
      "To: <sip:0049301234567@edge.example.com>",
      "Call-ID: x1",
      "CSeq: 1 INVITE",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
  );
  const r = await cli(["explain", "--message", msg, "--source", "10.20.0.10:5060", "--transport", "udp", "--rules", SHIPPED_LCR]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /matched: pbx-outbound \(.*rules\.yaml:\d+\)/, "names the rule and where it is");
  t.match(r.stdout, /action: route to group carriers-lcr \(failover\)/);
  t.match(r.stdout, /carrier-a\s+priority 1\s+usable.*<- chosen/);
  t.match(r.stdout, /request line: INVITE sip:0049301234567@edge\.example\.com SIP\/2\.0 -> INVITE sip:\+49301234567@edge\.example\.com SIP\/2\.0/, "shows the rewrite");

  const badRules = join(dir, "bad");
  mkdirSync(badRules);
  writeFileSync(join(badRules, "rules.yaml"), RULES_BROKEN);
  const bad = await cli(["explain", "--message", msg, "--rules", badRules, "--config", join(SHIPPED_LCR, "edge.yaml")]);
  t.equal(bad.code, 1, "rules that do not load exit 1");
  t.match(bad.stderr, /rules\.yaml:\d+:\d+/, "and print the errors with file:line:column");
  t.equal(bad.stdout, "", "no explanation is printed");
});
