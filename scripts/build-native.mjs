#!/usr/bin/env node
/**
 * Builds the native UDP socket (native/udp/sip_udp.c) into
 * native/build/sip_udp.node with the machine's C compiler and Node's own
 * headers. Run by `npm ci` / `npm install` (the package's install script)
 * and by `npm run build`.
 *
 * Without a compiler or headers it says why and exits 0: the edge then
 * uses Node's dgram (`udp.io: auto`). With --required (CI) that is an error.
 * A plain compiler call instead of node-gyp: one C file, no dependencies,
 * and nothing to download (node-gyp fetches headers unless told where).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(root, "native", "udp", "sip_udp.c");
const out = join(root, "native", "build", "sip_udp.node");
const required = process.argv.includes("--required");

function give_up(why) {
  const msg = `native UDP socket not built: ${why}`;
  if (required) {
    console.error(msg);
    process.exit(1);
  }
  console.warn(`${msg}\n(the edge will use Node's dgram; install a C compiler and run \`npm run build:native\` for the faster socket)`);
  process.exit(0);
}

if (process.platform !== "linux") give_up(`recvmmsg and SO_REUSEPORT groups are Linux's; this is ${process.platform}`);
if (existsSync(out) && statSync(out).mtimeMs >= statSync(source).mtimeMs && !process.argv.includes("--force")) process.exit(0);

// Node's headers (node_api.h, uv.h): where this node was installed, or npm's nodedir.
const candidates = [process.env.npm_config_nodedir, join(dirname(process.execPath), "..")].filter(Boolean).map((d) => join(d, "include", "node"));
const headers = candidates.find((d) => existsSync(join(d, "node_api.h")) && existsSync(join(d, "uv.h")));
if (headers === undefined) give_up(`no node_api.h and uv.h in ${candidates.join(" or ")}`);

const cc = process.env.CC || "cc";
mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
try {
  execFileSync(cc, ["-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-DNODE_GYP_MODULE_NAME=sip_udp", `-I${headers}`, "-o", tmp, source], { stdio: ["ignore", "inherit", "inherit"] });
} catch (err) {
  give_up(`${cc} failed (${err.code ?? err.status ?? err.message})`);
}
renameSync(tmp, out);
console.log(`built ${join("native", "build", "sip_udp.node")}`);
