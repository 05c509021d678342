import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import {
  defaultConfigPath,
  formatConfigError,
  loadConfig,
  loadYamlFile,
  packageRoot,
  parseConfigText,
  readTlsPem,
  reloadConfig,
  shippedRulesDir,
  type EdgeConfig,
  type LoadResult,
} from "../../src/config/index.js";
import { compileDeviceTable, deviceTableSchema } from "../../src/policy/device-table.js";
import { testCerts, untrustedCerts } from "../helpers/certs.js";

const here = dirname(fileURLToPath(import.meta.url));
/** As a user would type it from the package root, so the expected messages read like real ones. */
const fixtures = relative(process.cwd(), join(here, "..", "fixtures", "config"));
const fixture = (name: string): string => join(fixtures, name);

function messages(r: LoadResult<unknown>): string[] {
  return r.ok ? [] : r.errors.map(formatConfigError);
}

function ok(r: LoadResult<EdgeConfig>): EdgeConfig {
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  return r.value;
}

/** Every default, for a config file living in `dir`. */
function defaults(dir: string): EdgeConfig {
  return {
    log: { level: "info" },
    listen: [
      { transport: "udp", address: "0.0.0.0", port: 5060 },
      { transport: "tcp", address: "0.0.0.0", port: 5060 },
    ],
    domains: [],
    targets: [
      { name: "main", uri: "sip:127.0.0.1:5070", priority: 1, acceptsPath: true },
      { name: "standby", uri: "sip:127.0.0.1:5080", priority: 2, acceptsPath: true },
    ],
    limits: {
      maxMessageBytes: 65535,
      maxHeaders: 128,
      maxVias: 70,
      maxHeaderLineBytes: 8192,
      maxStreamBufferBytes: 262144,
      maxConnections: 10000,
      maxConnectionsPerSource: 100,
      connectTimeoutMs: 3000,
      idleTimeoutSeconds: 900,
      udpSocketBufferBytes: 4194304,
    },
    softState: { maxEntries: 100000, ttlSeconds: 180 },
    flowToken: { keyFile: join(dir, ".flow-key") },
    admin: { address: "127.0.0.1", port: 8080 },
    health: { intervalSeconds: 5, intervalDownSeconds: 5, timeoutMs: 2000, downAfter: 3, upAfter: 2, alive: "default", closeStreamAfterTimeouts: 3 },
    policy: {
      holdDownSeconds: 180,
      failbackStableSeconds: 600,
      graceSeconds: 300,
      failbackMode: "auto",
      deviceTable: join(shippedRulesDir(), "devices.yaml"),
    },
    failover: { requestTimeoutMs: 1000, retryOn: [408, 500, 503, 504] },
    overload: { shedAtMs: 100, resumeAtMs: 20, retryAfterSeconds: 2, probeIntervalMs: 50, maxTimeoutDeferrals: 4, shedMethods: ["INVITE"], dropMethods: ["REGISTER"] },
    udp: { io: "auto" },
    dns: { srvTtlSeconds: 300, minTtlSeconds: 5, maxTtlSeconds: 3600, negativeTtlSeconds: 60 },
  };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "config-edge-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test("the errors a person is most likely to make, each reported exactly", async (t) => {
  const cases: Array<[string, string[]]> = [
    ["bad-syntax.yaml", [`${fixture("bad-syntax.yaml")}:5:10: targets[0].uri: YAML syntax error: Missing closing "quote (opened here, noticed at line 6, column 1)`]],
    [
      "unknown-field.yaml",
      [
        `${fixture("unknown-field.yaml")}:4:3: health.intervalSecond: unknown field (did you mean "intervalSeconds"?); expected one of: intervalSeconds, intervalDownSeconds, timeoutMs, downAfter, upAfter, alive, closeStreamAfterTimeouts`,
      ],
    ],
    ["wrong-type.yaml", [`${fixture("wrong-type.yaml")}:2:15: softState.maxEntries: expected an integer from 1 to 100000000, got "lots"`]],
    ["bad-port.yaml", [`${fixture("bad-port.yaml")}:3:47: listen[1].port: expected an integer from 0 to 65535, got 70000`]],
    [
      "duplicate-target.yaml",
      [`${fixture("duplicate-target.yaml")}:4:13: targets[2].name: expected a unique target name, got "main" again (first used by targets[0])`],
    ],
    [
      "tls-without-section.yaml",
      [`${fixture("tls-without-section.yaml")}:3:18: listen[1].transport: a tls listener needs the top-level tls section (cert and key), which is missing`],
    ],
    [
      "bad-uri-scheme.yaml",
      [`${fixture("bad-uri-scheme.yaml")}:3:10: targets[0].uri: expected a sip: or sips: URI, got "http://127.0.0.1:5070" (scheme "http:")`],
    ],
  ];
  for (const [name, expected] of cases) t.same(messages(loadConfig(fixture(name))), expected, name);
});

t.test("all the mistakes of one file are reported together, in file order", async (t) => {
  const f = fixture("many-errors.yaml");
  t.same(messages(loadConfig(f)), [
    `${f}:2:15: log.level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"`,
    `${f}:4:18: listen[0].transport: expected one of udp, tcp, tls, ws, wss, got "sctp"`,
    `${f}:5:5: listen[1].port: required field missing; expected an integer from 0 to 65535`,
    `${f}:5:32: listen[1].address: expected an IPv4 or IPv6 address, got "localhost"`,
    `${f}:5:43: listen[1].prot: unknown field (did you mean "port"?); expected one of: transport, address, port, advertise`,
    `${f}:6:16: admin.port: expected an integer from 0 to 65535, got -1`,
    `${f}:8:16: health.alive[1]: expected a final status code from 200 to 699, got 1000`,
    `${f}:10:18: failover.retryOn[1]: expected a status code that says the target failed, got 486 (the callee's answer always goes back to the caller)`,
    `${f}:13:3: dns.minTtlSeconds: duplicate key; each key may appear once (first at line 12, column 3)`,
  ]);
});

t.test("a minimal file gets every default", async (t) => {
  const file = fixture("minimal.yaml");
  const r = loadConfig(file);
  t.same(ok(r), defaults(join(process.cwd(), fixtures)));
  t.equal(r.ok && r.hash, createHash("sha256").update(readFileSync(file)).digest("hex"));
});

t.test("the shipped proxy-rules/edge.yaml loads, states the defaults, and is found from src/ or dist/", async (t) => {
  const path = defaultConfigPath();
  t.ok(isAbsolute(path));
  t.equal(path, join(packageRoot(), "proxy-rules", "edge.yaml"));
  t.ok(existsSync(join(packageRoot(), "package.json")));
  const cfg = ok(loadConfig(path));
  const expected = defaults(dirname(path));
  expected.policy.deviceTable = join(dirname(path), "devices.yaml");
  t.same(cfg, expected, "every value written in the shipped file is the default");
});

t.test("the shipped device table loads through the same loader", async (t) => {
  const cfg = ok(loadConfig(defaultConfigPath()));
  const r = loadYamlFile(cfg.policy.deviceTable, deviceTableSchema);
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  t.ok(compileDeviceTable(r.value).byName("default"));
});

t.test("relative paths resolve against the config file's directory, not the working directory", async (t) => {
  const dir = tempDir(t);
  const certs = await testCerts();
  mkdirSync(join(dir, "etc", "certs"), { recursive: true });
  mkdirSync(join(dir, "shared"));
  writeFileSync(join(dir, "etc", "certs", "edge.crt"), certs.cert);
  writeFileSync(join(dir, "etc", "certs", "edge.key"), certs.key);
  writeFileSync(join(dir, "shared", "ca.crt"), certs.ca);
  writeFileSync(join(dir, "shared", "devices.yaml"), readFileSync(join(shippedRulesDir(), "devices.yaml")));
  const file = join(dir, "etc", "edge.yaml");
  writeFileSync(
    file,
    [
      "listen:",
      "  - { transport: tls, address: 127.0.0.1, port: 0 }",
      "tls: { cert: certs/edge.crt, key: ./certs/edge.key, ca: ../shared/ca.crt }",
      "flowToken: { keyFile: keys/flow.key }",
      "policy: { deviceTable: ../shared/devices.yaml }",
      "",
    ].join("\n"),
  );
  const cfg = ok(loadConfig(relative(process.cwd(), file)));
  t.same(cfg.tls, {
    cert: join(dir, "etc", "certs", "edge.crt"),
    key: join(dir, "etc", "certs", "edge.key"),
    ca: join(dir, "shared", "ca.crt"),
    minVersion: "TLSv1.2",
    verifyPeer: true,
    requireClientCert: false,
  });
  t.equal(cfg.flowToken.keyFile, join(dir, "etc", "keys", "flow.key"));
  t.equal(cfg.policy.deviceTable, join(dir, "shared", "devices.yaml"));
  t.same(readTlsPem(cfg.tls!), {
    cert: certs.cert,
    key: certs.key,
    ca: certs.ca,
    minVersion: "TLSv1.2",
    verifyPeer: true,
    requireClientCert: false,
  });
});

t.test("TLS files are checked at load: missing, not PEM, mismatched, encrypted", async (t) => {
  const dir = tempDir(t);
  const certs = await testCerts();
  const other = await untrustedCerts();
  writeFileSync(join(dir, "edge.crt"), certs.cert);
  writeFileSync(join(dir, "edge.key"), certs.key);
  writeFileSync(join(dir, "other.key"), other.key);
  writeFileSync(join(dir, "notes.txt"), "hello\n");
  writeFileSync(join(dir, "enc.key"), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n");
  writeFileSync(join(dir, "broken.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  const file = join(dir, "edge.yaml");
  const load = (tls: string): string[] => messages(parseConfigText(`tls: ${tls}\n`, file));

  t.same(load("{ cert: edge.crt, key: edge.key }"), []);
  t.same(load("{ cert: nope.crt, key: edge.key }"), [`${file}:1:14: tls.cert: expected a readable file, got "nope.crt" (${join(dir, "nope.crt")}: file not found)`]);
  t.same(load(`{ cert: ${dir}, key: edge.key }`), [`${file}:1:14: tls.cert: expected a readable file, got "${dir}" (${dir}: not a regular file)`]);
  t.same(load("{ cert: notes.txt, key: notes.txt, ca: notes.txt }"), [
    `${file}:1:14: tls.cert: expected a PEM certificate chain, got a file with no PEM certificate (-----BEGIN CERTIFICATE-----) in it`,
    `${file}:1:30: tls.key: expected a PEM private key, got a file OpenSSL cannot read (unsupported)`,
    `${file}:1:45: tls.ca: expected PEM CA certificates, got a file with no PEM certificate (-----BEGIN CERTIFICATE-----) in it`,
  ]);
  t.same(load("{ cert: edge.crt, key: other.key }"), [
    `${file}:1:29: tls.key: expected the private key of tls.cert, got a key that does not match it (key values mismatch)`,
  ]);
  t.same(load("{ cert: edge.crt, key: enc.key }"), [
    `${file}:1:29: tls.key: expected an unencrypted PEM private key, got an encrypted one (no passphrase can be given)`,
  ]);
  const broken = load("{ cert: broken.crt, key: edge.key }");
  t.equal(broken.length, 1);
  t.match(broken[0], new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:1:14: tls\\.cert: expected a PEM certificate chain, got a file with certificate 1 in it cannot be parsed`));
  t.same(load("{ cert: edge.crt, key: edge.key, minVersion: TLSv1.0 }"), [
    `${file}:1:51: tls.minVersion: expected "TLSv1.2" or "TLSv1.3", got "TLSv1.0"`,
  ]);
  t.throws(() => readTlsPem({ cert: join(dir, "gone.crt"), key: join(dir, "edge.key"), minVersion: "TLSv1.2", verifyPeer: true, requireClientCert: false }), {
    message: `tls.cert ${join(dir, "gone.crt")}: cannot be read (ENOENT)`,
  });
});

t.test("cross-field rules are reported at the field to fix", async (t) => {
  const file = "edge.yaml";
  const load = (text: string): string[] => messages(parseConfigText(text, file));
  t.same(load("listen:\n  - { transport: wss, address: '::', port: 8443 }\n"), [
    "edge.yaml:2:18: listen[0].transport: a wss listener needs the top-level tls section (cert and key), which is missing",
  ]);
  t.same(load("listen:\n  - { transport: ws, address: '::', port: 8080 }\n"), [], "plain ws needs no certificate");
  t.same(
    load(
      [
        "listen:",
        "  - { transport: udp, address: 0.0.0.0, port: 5060 }",
        "  - { transport: tcp, address: 0.0.0.0, port: 5060 }",
        "  - { transport: ws, address: 0.0.0.0, port: 5060 }",
        "  - { transport: udp, address: 0.0.0.0, port: 5060 }",
        "  - { transport: tcp, address: 127.0.0.1, port: 8080 }",
        "  - { transport: udp, address: 127.0.0.1, port: 0 }",
        "  - { transport: udp, address: 127.0.0.1, port: 0 }",
        "",
      ].join("\n"),
    ),
    [
      "edge.yaml:4:46: listen[2].port: expected a free port, got 5060 on 0.0.0.0, already used by listen[1] (tcp)",
      "edge.yaml:5:47: listen[3].port: expected a free port, got 5060 on 0.0.0.0, already used by listen[0] (udp)",
      "edge.yaml:6:49: listen[4].port: expected a free port, got 8080 on 127.0.0.1, already used by admin",
    ],
  );
  t.same(load("limits: { maxMessageBytes: 300000, maxHeaderLineBytes: 400000, maxConnections: 10, maxConnectionsPerSource: 20 }\n"), [
    "edge.yaml:1:9: limits.maxStreamBufferBytes: expected at least maxMessageBytes (300000), got 262144",
    "edge.yaml:1:56: limits.maxHeaderLineBytes: expected at most maxMessageBytes (300000), got 400000",
    "edge.yaml:1:109: limits.maxConnectionsPerSource: expected at most maxConnections (10), got 20",
  ]);
  t.same(load("dns: { minTtlSeconds: 600, maxTtlSeconds: 60 }\n"), ["edge.yaml:1:23: dns.minTtlSeconds: expected at most maxTtlSeconds (60), got 600"]);
  t.same(load("overload: { shedAtMs: 50, resumeAtMs: 50 }\n"), ["edge.yaml:1:39: overload.resumeAtMs: expected less than shedAtMs (50), got 50"]);
  t.same(load("udp: { io: fast }\n"), ["edge.yaml:1:12: udp.io: expected \"auto\", \"native\" or \"dgram\", got \"fast\""]);
  t.same(load("overload: { shedMethods: [INVITE, ACK, register] }\n"), [
    "edge.yaml:1:35: overload.shedMethods[1]: expected a method that starts a transaction of its own, got ACK (ACK and CANCEL are never shed)",
    "edge.yaml:1:40: overload.shedMethods[2]: expected a SIP method in capitals, got \"register\"",
  ]);
  t.same(load("overload: { shedAtMs: 0, resumeAtMs: 50, probeIntervalMs: 5 }\n"), ["edge.yaml:1:59: overload.probeIntervalMs: expected an integer from 10 to 10000, got 5"], "shedAtMs 0 (never shed) takes any resumeAtMs");
});

t.test("targets: URI forms, transports, priorities", async (t) => {
  const load = (text: string): LoadResult<EdgeConfig> => parseConfigText(text, "edge.yaml");
  const cfg = ok(
    load(
      [
        "targets:",
        '  - { name: pbx-a, uri: "sip:pbx-a.example.com;transport=tcp" }',
        '  - { name: pbx.b, uri: "sips:[2001:db8::1]:5061", acceptsPath: true }',
        '  - { name: c_3, uri: "sip:10.0.0.3:5060;transport=WSS", priority: 1 }',
        "",
      ].join("\n"),
    ),
  );
  t.same(cfg.targets, [
    { name: "pbx-a", uri: "sip:pbx-a.example.com;transport=tcp", priority: 1, acceptsPath: false },
    { name: "pbx.b", uri: "sips:[2001:db8::1]:5061", priority: 2, acceptsPath: true },
    { name: "c_3", uri: "sip:10.0.0.3:5060;transport=WSS", priority: 1, acceptsPath: false },
  ]);
  t.same(messages(load('targets:\n  - { name: a, uri: "sip:10.0.0.1;transport=sctp" }\n')), [
    'edge.yaml:2:21: targets[0].uri: expected ;transport= one of udp, tcp, tls, ws, wss, got "sip:10.0.0.1;transport=sctp"',
  ]);
  t.same(messages(load('targets:\n  - { name: a, uri: "sips:10.0.0.1;transport=udp" }\n')), [
    'edge.yaml:2:21: targets[0].uri: expected a secure transport for a sips: URI (RFC 3261 §26.2.2), got "sips:10.0.0.1;transport=udp"',
  ]);
  t.same(messages(load('targets:\n  - { name: a, uri: "sip:-pbx-.example.com" }\n')), [
    'edge.yaml:2:21: targets[0].uri: expected a sip: or sips: URI with a host name or IP address, got "sip:-pbx-.example.com"',
  ]);
  t.same(messages(load('targets:\n  - { name: a, uri: "sip:10.0.0.1 x" }\n')), [
    'edge.yaml:2:21: targets[0].uri: expected a sip: or sips: URI, got "sip:10.0.0.1 x" (whitespace inside URI)',
  ]);
  t.same(messages(load('targets:\n  - { name: "two words", uri: "sip:10.0.0.1", priority: 0 }\n')), [
    'edge.yaml:2:13: targets[0].name: expected a name of letters, digits, _ . -, got "two words"',
    "edge.yaml:2:57: targets[0].priority: expected an integer from 1 to 1000, got 0",
  ]);
  t.same(messages(load("targets: []\n")), ["edge.yaml:1:10: targets: expected at least one target, got an empty list"]);
  t.same(messages(load("listen: []\n")), ["edge.yaml:1:9: listen: expected at least one listener, got an empty list"]);
});

t.test("other field checks", async (t) => {
  const load = (text: string): string[] => messages(parseConfigText(text, "edge.yaml"));
  t.same(load("domains: [sip.example.com, 192.0.2.1, 'not a host']\n"), [
    'edge.yaml:1:39: domains[2]: expected a host name or IP address, got "not a host"',
  ]);
  t.same(load("listen:\n  - { transport: udp, address: 0.0.0.0, port: 5060, advertise: edge.example.com }\n"), []);
  t.same(load("health: { alive: strict }\n"), []);
  t.same(load("health: { alive: [200, 404] }\n"), []);
  t.same(load("health: { alive: [] }\n"), ["edge.yaml:1:18: health.alive: expected at least one status code, got an empty list"]);
  t.same(load("health: { alive: often }\n"), ['edge.yaml:1:18: health.alive: expected one of "default", "strict" or a list, got "often"']);
  t.same(load("failover: { retryOn: [200] }\n"), ["edge.yaml:1:23: failover.retryOn[0]: expected a final non-2xx status code from 300 to 699, got 200"]);
  t.same(load("policy: { failbackMode: later }\n"), ['edge.yaml:1:25: policy.failbackMode: expected "auto" or "manual", got "later"']);
  t.same(load("policy: { deviceTable: missing.yaml }\n"), [
    `edge.yaml:1:24: policy.deviceTable: expected a readable file, got "missing.yaml" (${join(process.cwd(), "missing.yaml")}: file not found)`,
  ]);
  t.same(load("admin: { address: localhost }\n"), ['edge.yaml:1:19: admin.address: expected an IPv4 or IPv6 address, got "localhost"']);
  t.same(load("log: info\n"), ['edge.yaml:1:6: log: expected a mapping, got "info"']);
});

t.test("inline flow-token keys: hex or base64, at least 32 bytes, never echoed in errors", async (t) => {
  const load = (key: string): LoadResult<EdgeConfig> => parseConfigText(`flowToken: { key: "${key}" }\n`, "edge.yaml");
  t.equal(ok(load("ab".repeat(32))).flowToken.key, "ab".repeat(32));
  t.equal(ok(load(Buffer.alloc(32, 7).toString("base64"))).flowToken.key, Buffer.alloc(32, 7).toString("base64"));
  t.same(messages(load("ab".repeat(31))), ["edge.yaml:1:19: flowToken.key: expected a secret of at least 32 bytes as hex or base64, got 31 bytes of hex"]);
  t.same(messages(load(Buffer.alloc(20).toString("base64"))), [
    "edge.yaml:1:19: flowToken.key: expected a secret of at least 32 bytes as hex or base64, got 20 bytes of base64",
  ]);
  t.same(messages(load("correct horse battery staple!!")), [
    "edge.yaml:1:19: flowToken.key: expected a secret of at least 32 bytes as hex or base64, got 30 characters that are neither hex nor base64",
  ]);
});

t.test("a loaded config is deeply frozen", async (t) => {
  const cfg = ok(loadConfig(fixture("minimal.yaml")));
  t.ok(Object.isFrozen(cfg));
  t.ok(Object.isFrozen(cfg.listen));
  t.ok(Object.isFrozen(cfg.listen[0]));
  t.ok(Object.isFrozen(cfg.failover.retryOn));
  t.throws(() => {
    (cfg.admin as { port: number }).port = 1;
  });
  const again = ok(loadConfig(fixture("minimal.yaml")));
  t.not(again.listen, cfg.listen, "defaults are fresh objects, not shared frozen ones");
});

t.test("reload: the whole new config or only the errors", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "edge.yaml");
  writeFileSync(file, "log: { level: info }\n");
  const first = ok(loadConfig(file));

  const same = reloadConfig(file, first);
  t.same(same.ok && { changed: same.changed, restartRequired: same.restartRequired }, { changed: [], restartRequired: [] });

  writeFileSync(file, "log: { level: debug }\nhealth: { downAfter: 5 }\nlisten:\n  - { transport: udp, address: 127.0.0.1, port: 5070 }\n");
  const r = reloadConfig(file, first);
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  t.same(r.changed, ["log", "listen", "health"]);
  t.same(r.restartRequired, ["log", "listen", "health"], "only targets change in place: the logger and the health machines are built at start");
  t.equal(r.value.log.level, "debug");
  t.equal(r.value.health.downAfter, 5);
  t.equal(r.hash, createHash("sha256").update(readFileSync(file)).digest("hex"));
  t.equal(first.log.level, "info", "the running config is untouched");

  writeFileSync(file, 'log: { level: info }\ntargets: [ { name: main, uri: "sip:127.0.0.1:5999" } ]\n');
  const targetsOnly = reloadConfig(file, first);
  t.same(targetsOnly.ok && { changed: targetsOnly.changed, restartRequired: targetsOnly.restartRequired }, { changed: ["targets"], restartRequired: [] }, "targets are applied in place");
  for (const section of ["domains: [ pbx.example.com ]", "failover: { requestTimeoutMs: 2000 }", "overload: { shedAtMs: 0 }", "dns: { minTtlSeconds: 1 }", "policy: { holdDownSeconds: 10 }"]) {
    writeFileSync(file, `log: { level: info }\n${section}\n`);
    const one = reloadConfig(file, first);
    const name = section.slice(0, section.indexOf(":"));
    t.same(one.ok && one.restartRequired, [name], `${name} needs a restart (it was reported reloaded and kept its old value)`);
  }

  writeFileSync(file, "log: { level: debug }\nhealth: { downAfter: zero }\n");
  t.same(reloadConfig(file, r.value), {
    ok: false,
    errors: [{ file, line: 2, column: 22, field: "health.downAfter", message: 'expected an integer from 1 to 100, got "zero"' }],
  });

  const certs = await testCerts();
  writeFileSync(join(dir, "c.pem"), certs.cert);
  writeFileSync(join(dir, "k.pem"), certs.key);
  writeFileSync(file, "tls: { cert: c.pem, key: k.pem }\n");
  const withTls = reloadConfig(file, first);
  t.same(withTls.ok && withTls.restartRequired, ["tls"]);
  writeFileSync(file, "{}\n");
  const withoutTls = reloadConfig(file, ok(loadConfig(join(dir, "edge.yaml"))));
  t.same(withoutTls.ok && withoutTls.changed, []);
  writeFileSync(file, "tls: { cert: c.pem, key: k.pem }\n");
  const tlsCfg = ok(loadConfig(file));
  writeFileSync(file, "{}\n");
  const dropped = reloadConfig(file, tlsCfg);
  t.same(dropped.ok && dropped.changed, ["tls"], "a section that disappears is a change too");

  rmSync(file);
  t.same(reloadConfig(file, first), { ok: false, errors: [{ file, line: 0, column: 0, field: "", message: "file not found" }] });
});
