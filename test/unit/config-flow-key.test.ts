import * as fs from "node:fs";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { obtainFlowKey, type FlowKeyFs } from "../../src/config/flow-key.js";

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "flow-key-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const settings = (keyFile: string, key?: string) => ({ flowToken: key === undefined ? { keyFile } : { key, keyFile } });

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

t.test("generated once, stored privately, and reused by every later start", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, ".flow-key");
  const first = obtainFlowKey(settings(keyFile));
  t.equal(first.length, 32);
  t.equal(statSync(keyFile).mode & 0o777, 0o600, "readable by the owner only");
  t.equal(readFileSync(keyFile, "utf8"), `${first.toString("hex")}\n`, "stored as hex text, so ops can copy it to another host");
  t.same(readdirSync(dir), [".flow-key"], "no temp file left behind");
  const second = obtainFlowKey(settings(keyFile));
  t.ok(second.equals(first), "a restart gets the same key");
  const otherDir = tempDir(t);
  const elsewhere = obtainFlowKey(settings(join(otherDir, ".flow-key")));
  t.notOk(elsewhere.equals(first), "a new key really is random");
});

t.test("the configured key wins and no file is written", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, ".flow-key");
  const key = obtainFlowKey(settings(keyFile, "0f".repeat(32)));
  t.ok(key.equals(Buffer.alloc(32, 0x0f)));
  t.same(readdirSync(dir), []);
  t.ok(obtainFlowKey(settings(keyFile, Buffer.alloc(40, 1).toString("base64"))).equals(Buffer.alloc(40, 1)));
  t.throws(() => obtainFlowKey(settings(keyFile, "abcd")), { message: "flowToken.key: expected at least 32 bytes as hex or base64" });
});

t.test("key files written by hand: hex, base64 or raw bytes", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, "k");
  writeFileSync(keyFile, `  ${"ab".repeat(32)}\r\n`);
  t.ok(obtainFlowKey(settings(keyFile)).equals(Buffer.alloc(32, 0xab)));
  writeFileSync(keyFile, `${Buffer.alloc(33, 9).toString("base64")}\n`);
  t.ok(obtainFlowKey(settings(keyFile)).equals(Buffer.alloc(33, 9)));
  const raw = Buffer.alloc(32, 0);
  raw[0] = 0xff;
  writeFileSync(keyFile, raw);
  t.ok(obtainFlowKey(settings(keyFile)).equals(raw));
});

t.test("a key file that is too short or unreadable is a config error, never silently replaced", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, "k");
  writeFileSync(keyFile, "abcdef\n");
  t.throws(() => obtainFlowKey(settings(keyFile)), {
    message: `flowToken.keyFile ${keyFile}: the key is too short or not valid hex/base64; expected at least 32 bytes`,
  });
  writeFileSync(keyFile, Buffer.from([0xff, 0x00, 0x01]));
  t.throws(() => obtainFlowKey(settings(keyFile)), { message: `flowToken.keyFile ${keyFile}: holds 3 bytes; expected at least 32` });
  writeFileSync(keyFile, "");
  t.throws(() => obtainFlowKey(settings(keyFile)), { message: `flowToken.keyFile ${keyFile}: holds 0 bytes; expected at least 32` });
  t.equal(readFileSync(keyFile, "utf8"), "", "left as it was");
  t.throws(() => obtainFlowKey(settings(dir)), { message: `flowToken.keyFile ${dir}: exists but cannot be read (EISDIR)` });
  const denied: FlowKeyFs = {
    ...fs,
    readFileSync: (() => {
      throw errno("EACCES");
    }) as FlowKeyFs["readFileSync"],
  };
  t.throws(() => obtainFlowKey(settings(keyFile), denied), { message: `flowToken.keyFile ${keyFile}: exists but cannot be read (EACCES)` });
});

t.test("a key that cannot be stored is a config error", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, "missing-dir", "k");
  t.throws(() => obtainFlowKey(settings(keyFile)), {
    message: `flowToken.keyFile ${keyFile}: no key is configured and a new one cannot be created (ENOENT)`,
  });
  const failingLink: FlowKeyFs = {
    ...fs,
    linkSync: () => {
      throw errno("EIO");
    },
  };
  const k2 = join(dir, "k2");
  t.throws(() => obtainFlowKey(settings(k2), failingLink), { message: `flowToken.keyFile ${k2}: cannot store the new key (EIO)` });
  t.same(readdirSync(dir), [], "the temp file is removed");
});

t.test("two instances starting at once end up with the same key", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, ".flow-key");
  const theirs = Buffer.alloc(32, 0x5a);
  // The other instance publishes its key between our check and our link: link(2) refuses to overwrite it.
  const racing: FlowKeyFs = {
    ...fs,
    linkSync: (existing, name) => {
      writeFileSync(keyFile, `${theirs.toString("hex")}\n`);
      fs.linkSync(existing, name);
    },
  };
  const ours = obtainFlowKey(settings(keyFile), racing);
  t.ok(ours.equals(theirs), "we use the key that landed, not the one we generated");
  t.same(readdirSync(dir), [".flow-key"]);
});

t.test("filesystems without hard links fall back to rename and read back what landed", async (t) => {
  const dir = tempDir(t);
  const keyFile = join(dir, ".flow-key");
  const noLinks: FlowKeyFs = {
    ...fs,
    linkSync: () => {
      throw errno("EPERM");
    },
  };
  const key = obtainFlowKey(settings(keyFile), noLinks);
  t.equal(readFileSync(keyFile, "utf8"), `${key.toString("hex")}\n`);
  t.equal(statSync(keyFile).mode & 0o777, 0o600);
  t.same(readdirSync(dir), [".flow-key"]);
  t.ok(obtainFlowKey(settings(keyFile)).equals(key));
});
