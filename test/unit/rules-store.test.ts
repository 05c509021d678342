import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import t, { type Test } from "tap";
import { decide } from "../../src/rules/decide.js";
import { rulesFilesIn } from "../../src/rules/load.js";
import { RulesStore, type RulesStoreOptions } from "../../src/rules/store.js";
import { FakeClock } from "../../src/util/clock.js";
import { createLogger } from "../../src/util/logger.js";
import { waitFor } from "../helpers/wait.js";
import { ALL_UP, input, request, TARGETS } from "../fixtures/rules/helpers.js";

const GOOD = (target: string): string => `groups:\n  g:\n    members: [${target}]\nrules:\n  - name: default\n    route: g\n`;
const BAD_REGEX = "groups:\n  g:\n    members: [a]\nrules:\n  - name: r\n    match: { userAgent: { regex: '(' } }\n    route: g\n  - name: default\n    route: g\n";

interface Fixture {
  dir: string;
  clock: FakeClock;
  logs: Array<{ level: number; msg: string; [k: string]: unknown }>;
  store: RulesStore;
  write(name: string, text: string): void;
}

function fixture(t: Test, initial = GOOD("a"), extra: Partial<RulesStoreOptions> = {}): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "rules-store-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Written atomically (temp file renamed over the old one), as editors do.
  const write = (name: string, text: string): void => {
    const tmp = join(dir, `.${name.replace(/\//g, "_")}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(dir, name));
  };
  write("rules.yaml", initial);
  const logs: Fixture["logs"] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n")) if (line !== "") logs.push(JSON.parse(line) as Fixture["logs"][number]);
      cb();
    },
  });
  const clock = new FakeClock(0);
  const opened = RulesStore.open({
    files: () => rulesFilesIn(dir),
    knownTargets: () => TARGETS,
    clock,
    logger: createLogger("info", sink),
    debounceMs: 200,
    ...extra,
  });
  if (!opened.ok) throw new Error(opened.messages.join("\n"));
  t.teardown(() => opened.store.close());
  return { dir, clock, logs, store: opened.store, write };
}

function target(store: RulesStore): string | undefined {
  const d = decide(store.current(), input(request()), ALL_UP);
  return d.action === "route" ? d.targets[0] : undefined;
}

t.test("reload swaps in valid changed rules with a new version; unchanged files change nothing", async (t) => {
  const swaps: Array<[number, number]> = [];
  const f = fixture(t, GOOD("a"), { onSwap: (next, prev) => swaps.push([prev.version, next.version]) });
  t.equal(f.store.version, 1);
  t.equal(target(f.store), "a");
  const first = f.store.current();
  t.same(f.store.reload(), { ok: true, changed: false, version: 1, hash: first.hash }, "same content: no new version");
  f.write("rules.yaml", GOOD("b"));
  const r = f.store.reload("admin");
  t.equal(r.ok && r.changed, true);
  t.equal(f.store.version, 2);
  t.not(f.store.hash, first.hash);
  t.equal(target(f.store), "b");
  t.equal(decide(first, input(request()), ALL_UP).action === "route" && (decide(first, input(request()), ALL_UP) as { targets: readonly string[] }).targets[0], "a", "a request holding the old table keeps routing by it");
  t.same(f.store.status().reloads, { ok: 1, failed: 0, unchanged: 1 });
  t.same(swaps, [[1, 2]], "onSwap hears of each new table once (e.g. to reconfigure the carrier breakers)");
  t.ok(f.logs.some((l) => l.msg === "rules reloaded" && l.version === 2 && l.reason === "admin"));
});

t.test("a bad file never replaces good rules; the error is kept and logged once", async (t) => {
  const f = fixture(t);
  const good = f.store.current();
  f.write("rules.yaml", BAD_REGEX);
  const r1 = f.store.reload();
  t.equal(r1.ok, false);
  t.same(!r1.ok && r1.messages, [
    `${join(f.dir, "rules.yaml")}:6:34: rules[0].match.userAgent.regex: expected a valid regular expression, got "(" (Unterminated group)`,
  ]);
  t.equal(f.store.current(), good, "the old table stays in force");
  t.equal(target(f.store), "a");
  t.equal(f.store.lastError?.messages.length, 1);
  const firstAt = f.store.lastError?.at;
  f.clock.advance(5000);
  f.store.reload("SIGHUP");
  f.store.reload("file change");
  const errorLines = f.logs.filter((l) => l.msg.startsWith("rules reload failed"));
  t.equal(errorLines.length, 1, "the same broken content is logged once");
  t.equal(f.store.lastError?.at, firstAt, "and keeps the time it was first seen");
  t.same(errorLines[0]?.errors, r1.ok ? [] : r1.messages);
  t.equal(errorLines[0]?.keptVersion, 1);

  f.write("rules.yaml", BAD_REGEX.replace("'('", "'(['"));
  f.store.reload();
  t.equal(f.logs.filter((l) => l.msg.startsWith("rules reload failed")).length, 2, "a different mistake is a new error line");

  f.write("rules.yaml", GOOD("a"));
  t.same(f.store.reload(), { ok: true, changed: false, version: 1, hash: good.hash }, "fixed back to the running content");
  t.equal(f.store.lastError, undefined, "the error is cleared once the files are good again");
  t.same(f.store.status().reloads, { ok: 0, failed: 4, unchanged: 1 });
});

t.test("an unknown target after the edge config changed: forced reload refuses, old rules stay", async (t) => {
  let known: ReadonlySet<string> = TARGETS;
  const f = fixture(t, GOOD("a"), { knownTargets: () => known });
  known = new Set(["b"]);
  t.same(f.store.reload(), { ok: true, changed: false, version: 1, hash: f.store.hash }, "unchanged files are not re-read without force");
  const r = f.store.reload("config reload", true);
  t.equal(r.ok, false);
  t.match(!r.ok && r.messages[0], /members\[0\]: expected a target defined in the edge config \(one of: b\), got "a"$/);
  t.equal(target(f.store), "a");
});

t.test("open refuses bad rules with every error", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "rules-open-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "rules.yaml"), "rules:\n  - name: x\n    route: nowhere\n");
  const r = RulesStore.open({ files: () => rulesFilesIn(dir), knownTargets: () => TARGETS, clock: new FakeClock(), logger: createLogger("silent") });
  t.same(!r.ok && r.messages, [`${join(dir, "rules.yaml")}:3:12: rules[0].route: expected a group defined under groups (none is defined), got "nowhere"`]);
  const missing = RulesStore.open({ files: () => [join(dir, "none.yaml")], knownTargets: () => TARGETS, clock: new FakeClock(), logger: createLogger("silent") });
  t.same(!missing.ok && missing.messages, [`${join(dir, "none.yaml")}: file not found`]);
});

t.test("watch: a burst of writes is one debounced reload; rules.d files are picked up", async (t) => {
  const f = fixture(t);
  f.store.watch();
  t.ok(f.store.status().watch.active);
  const events = (): number => f.store.status().watch.events;
  f.write("rules.yaml", GOOD("c"));
  await waitFor(() => f.store.reloadPending, { what: "a file event" });
  f.clock.advance(100);
  const seen = events();
  f.write("rules.yaml", GOOD("d"));
  await waitFor(() => events() > seen, { what: "the second write's event" });
  f.clock.advance(150);
  t.equal(f.store.version, 1, "no reload while writes keep coming");
  f.clock.advance(50);
  t.equal(f.store.version, 2, "one reload after the quiet time");
  t.equal(target(f.store), "d");

  // Splitting the rules: the new rules.d/ is seen in its parent directory...
  mkdirSync(join(f.dir, "rules.d"));
  f.write("rules.d/90-default.yaml", "rules:\n  - name: default\n    route: g\n");
  f.write("rules.yaml", "groups:\n  g:\n    members: [e]\n");
  await waitFor(() => f.store.reloadPending, { what: "events for the split files" });
  f.clock.advance(200);
  t.equal(target(f.store), "e", "the new file in rules.d/ is part of the set");
  // ...and watched itself from then on.
  const before = events();
  f.write("rules.d/90-default.yaml", "rules:\n  - name: default\n    reject: { status: 480 }\n");
  await waitFor(() => events() > before && f.store.reloadPending, { what: "an event from rules.d/" });
  f.clock.advance(200);
  const d = decide(f.store.current(), input(request()), ALL_UP);
  t.equal(d.action === "reject" && d.status, 480, "a change inside rules.d/ alone reloads");
  t.same(
    f.store.status().files,
    [join(f.dir, "rules.yaml"), join(f.dir, "rules.d", "90-default.yaml")],
  );

  f.store.close();
  f.write("rules.yaml", GOOD("a"));
  t.equal(f.store.reloadPending, false, "a closed store ignores events");
  t.equal(f.clock.pending, 0);
});
