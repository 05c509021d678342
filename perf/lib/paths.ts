import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root, found from this module whether it runs from perf/ or dist/perf/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "perf", "kamailio", "kamailio.cfg"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("repository root (package.json with perf/kamailio) not found");
    dir = parent;
  }
}
