import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where the shipped files are. The same code runs from `src/config/` (tests,
 * TypeScript) and from `dist/src/config/` (compiled), so the package root is
 * found by walking up to the directory that holds both `package.json` and the
 * shipped `proxy-rules/edge.yaml`, not by a fixed number of `..`.
 */

const SHIPPED_CONFIG = join("proxy-rules", "edge.yaml");

let cachedRoot: string | undefined;

/** Absolute path of the package root; throws if the install is broken (a programmer/packaging error). */
export function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, SHIPPED_CONFIG))) {
      cachedRoot = dir;
      return dir;
    }
    if (dirname(dir) === dir) break;
  }
  throw new Error(`sip-edge: cannot find the package root (package.json next to ${SHIPPED_CONFIG}) above ${start}`);
}

/** Absolute path of the shipped default config, `proxy-rules/edge.yaml`. */
export function defaultConfigPath(): string {
  return join(packageRoot(), SHIPPED_CONFIG);
}

/** Absolute path of the shipped `proxy-rules/` directory (rules, device table, examples). */
export function shippedRulesDir(): string {
  return join(packageRoot(), "proxy-rules");
}

/** A path from a config file, resolved against that file's directory (absolute paths stay as they are). */
export function resolveFrom(baseDir: string, p: string): string {
  return resolve(baseDir, p);
}
