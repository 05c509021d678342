import { randomBytes } from "node:crypto";
import * as nodeFs from "node:fs";
import { basename, dirname, join } from "node:path";
import { decodeFlowKey, MIN_FLOW_KEY_BYTES } from "./schema.js";

/**
 * The HMAC key of flow tokens (RFC 5626 §5.2 leaves the token format to the
 * edge; ours is signed). Every instance serving the same phones must use the
 * same key, and it must survive restarts, or tokens already stored in PBX
 * registrations stop verifying. Hence: the configured key, else the key file,
 * else a new random key written to the key file once and read by everyone
 * after that.
 */

/** The file operations used here; tests pass a wrapper to inject failures. */
export type FlowKeyFs = Pick<
  typeof nodeFs,
  "readFileSync" | "openSync" | "writeSync" | "fsyncSync" | "closeSync" | "linkSync" | "renameSync" | "unlinkSync"
>;

export interface FlowKeySettings {
  flowToken: { key?: string | undefined; keyFile: string };
}

const GENERATED_KEY_BYTES = 32;

/** Text that is only hex or base64 characters is an encoded key; anything else is raw bytes. */
const ENCODED = /^[A-Za-z0-9+/=_-]+$/;

function keyFromFileContent(content: Buffer, file: string): Buffer {
  const text = content.toString("latin1").trim();
  if (ENCODED.test(text)) {
    const decoded = decodeFlowKey(text);
    if (decoded !== undefined) return decoded;
    throw new Error(
      `flowToken.keyFile ${file}: the key is too short or not valid hex/base64; expected at least ${MIN_FLOW_KEY_BYTES} bytes`,
    );
  }
  if (content.length < MIN_FLOW_KEY_BYTES) {
    throw new Error(`flowToken.keyFile ${file}: holds ${content.length} bytes; expected at least ${MIN_FLOW_KEY_BYTES}`);
  }
  return Buffer.from(content);
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** Reads the key file; undefined when it does not exist, throws when it exists but cannot be used. */
function readKeyFile(fs: FlowKeyFs, file: string): Buffer | undefined {
  let content: Buffer;
  try {
    content = fs.readFileSync(file);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined;
    throw new Error(`flowToken.keyFile ${file}: exists but cannot be read (${errnoOf(e) ?? String(e)})`);
  }
  return keyFromFileContent(content, file);
}

/**
 * Writes a new key without ever exposing a partial or overwritten file: the
 * key goes to a private temp file (mode 0600, synced), which is then
 * hard-linked to the key file name. Unlike rename, link fails when the name
 * exists, so when two instances start at once only the first key lands and
 * the other instance reads it back instead of silently using its own.
 * Filesystems without hard links fall back to rename, then read back.
 */
function createKeyFile(fs: FlowKeyFs, file: string): Buffer {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const key = randomBytes(GENERATED_KEY_BYTES);
  let fd: number;
  try {
    fd = fs.openSync(tmp, "wx", 0o600);
  } catch (e) {
    throw new Error(`flowToken.keyFile ${file}: no key is configured and a new one cannot be created (${errnoOf(e) ?? String(e)})`);
  }
  try {
    fs.writeSync(fd, `${key.toString("hex")}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  let linked: "linked" | "exists" | "renamed";
  try {
    linked = publish(fs, tmp, file);
  } catch (e) {
    throw new Error(`flowToken.keyFile ${file}: cannot store the new key (${errnoOf(e) ?? String(e)})`);
  } finally {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // Already renamed away: nothing left to clean up.
    }
  }
  return linked === "linked" ? key : readBack(fs, file);
}

/** Puts the finished temp file in place under the key file name without overwriting another instance's key. */
function publish(fs: FlowKeyFs, tmp: string, file: string): "linked" | "exists" | "renamed" {
  try {
    fs.linkSync(tmp, file);
    return "linked";
  } catch (e) {
    const code = errnoOf(e);
    if (code === "EEXIST") return "exists";
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV") throw e;
  }
  fs.renameSync(tmp, file);
  return "renamed";
}

function readBack(fs: FlowKeyFs, file: string): Buffer {
  const k = readKeyFile(fs, file);
  if (k === undefined) throw new Error(`flowToken.keyFile ${file}: vanished while it was being created`);
  return k;
}

/**
 * The flow-token key for this instance. Throws (a config error, reported at
 * start) when the key file exists but is unreadable or too short, or when a
 * new key cannot be stored.
 */
export function obtainFlowKey(cfg: FlowKeySettings, fs: FlowKeyFs = nodeFs): Buffer {
  const { key, keyFile } = cfg.flowToken;
  if (key !== undefined) {
    const decoded = decodeFlowKey(key);
    if (decoded === undefined) throw new Error(`flowToken.key: expected at least ${MIN_FLOW_KEY_BYTES} bytes as hex or base64`);
    return decoded;
  }
  return readKeyFile(fs, keyFile) ?? createKeyFile(fs, keyFile);
}
