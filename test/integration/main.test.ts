/**
 * The composition root and CLI: a config file in, a running edge out;
 * SIGHUP-style reload keeps the running config when the new file is bad;
 * `sip-edge check` reports file:line:column errors and exits 1.
 */
import t from "tap";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/main.js";
import { silentLogger } from "../../src/util/logger.js";
import { UdpPeer, pbxBehaviour, portOf } from "../helpers/edge-live.js";
import { waitFor } from "../helpers/wait.js";

const CLI = join(import.meta.dirname, "..", "..", "src", "cli.ts");

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // execArgv carries the TypeScript loader the test itself runs under.
    const p = spawn(process.execPath, [...process.execArgv, CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function configDir(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), "sip-edge-cfg-"));
  writeFileSync(join(dir, "edge.yaml"), yaml);
  return dir;
}

t.test("run(): an edge from a config file, with probing, forwarding and reload", async (t) => {
  const pbx = await UdpPeer.open(pbxBehaviour);
  const dir = configDir(
    [
      "log: { level: silent }",
      "listen:",
      "  - { transport: udp, address: 127.0.0.1, port: 0 }",
      "targets:",
      `  - { name: main, uri: "sip:127.0.0.1:${pbx.port}", acceptsPath: true }`,
      "  - { name: standby, uri: \"sip:127.0.0.1:9\" }",
      "health: { intervalSeconds: 1, intervalDownSeconds: 1, timeoutMs: 500 }",
      "overload: { shedAtMs: 400, resumeAtMs: 100, retryAfterSeconds: 7 }",
      "",
    ].join("\n"),
  );
  const running = await run(join(dir, "edge.yaml"), { logger: silentLogger });
  t.teardown(async () => {
    await running.stop();
    pbx.close();
  });
  // The first probe goes out at once and Main answers it.
  await waitFor(() => running.edge.status().health["main"]?.status === "up");
  t.ok(pbx.received.some((m) => m.startsWith("OPTIONS ")), "Main was probed");
  t.ok(running.config.flowToken.keyFile.startsWith(dir), "flow key file beside the config");

  const phone = await UdpPeer.open();
  t.teardown(() => phone.close());
  phone.send(
    ["REGISTER sip:127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKm1;rport", "Max-Forwards: 70", "From: <sip:1001@127.0.0.1>;tag=1", "To: <sip:1001@127.0.0.1>", "Call-ID: m1", "CSeq: 1 REGISTER", "Contact: <sip:1001@127.0.0.1:5999>", "Content-Length: 0", "", ""].join("\r\n"),
    portOf(running.edge, "udp"),
  );
  t.match(await phone.nth(1), /^SIP\/2\.0 200 OK\r\n/, "REGISTER answered through the edge");
  t.same(running.edge.overload?.options, { shedAtMs: 400, resumeAtMs: 100, retryAfterSeconds: 7, maxTimeoutDeferrals: 4, probeIntervalMs: 50, shedMethods: new Set(["INVITE"]), dropMethods: new Set(["REGISTER"]) }, "the overload section is in force");
  t.same(running.edge.overload?.retryAfter, ["Retry-After: 7"]);
  t.equal(running.edge.status().overload?.shedding, false);

  writeFileSync(join(dir, "edge.yaml"), "listen: [ { transport: udp, address: 127.0.0.1, port: nope } ]\n");
  t.equal(running.reload(), false, "a bad file is refused");
  t.equal(running.config.targets[0]!.name, "main", "the running config stays");
});

t.test("sip-edge check: ok, and file:line:column errors with exit 1", async (t) => {
  const good = configDir("log: { level: warn }\n");
  const ok = await cli(["check", "--config", join(good, "edge.yaml")]);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /edge\.yaml: ok \(sha256 [0-9a-f]{12}, 2 targets, \d+ device classes\)/);

  const bad = configDir("listen:\n  - { transport: udp, address: 127.0.0.1, port: 70000 }\n");
  const r = await cli(["check", "--config", join(bad, "edge.yaml")]);
  t.equal(r.code, 1);
  t.match(r.stderr, /edge\.yaml:2:\d+: listen\[0\]\.port: expected an integer from 0 to 65535, got 70000/);
});

t.test("sip-edge explain: the matched rule, the target and why, for a shipped example", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sip-edge-explain-"));
  const msg = join(dir, "invite.sip");
  writeFileSync(
    msg,
    ["INVITE sip:2001@edge.example.com SIP/2.0", "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKx1", "Max-Forwards: 70", "From: <sip:1001@edge.example.com>;tag=a", "To: <sip:2001@edge.example.com>", "Call-ID: x1", "CSeq: 1 INVITE", "Content-Length: 0", "", ""].join("\r\n"),
  );
  const rules = join(import.meta.dirname, "..", "..", "proxy-rules", "examples", "office-main-standby");
  const r = await cli(["explain", "--message", msg, "--source", "192.168.1.20:5062", "--rules", rules]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /matched: default \(.*rules\.yaml:\d+\)/);
  t.match(r.stdout, /action: route to group pbx \(failover\)/);
  t.match(r.stdout, /main\s+priority 1\s+usable\s+<- chosen/);
  const bad = await cli(["explain", "--message", join(dir, "missing.sip")]);
  t.equal(bad.code, 1);
});
