import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { z } from "zod";
import { formatConfigError, formatField, loadYamlFile, MAX_REPORTED_ERRORS, parseYamlText, type LoadResult } from "../../src/config/load.js";
import { describeMismatch, expecting, showValue, unknownFieldMessage } from "../../src/config/messages.js";

/** A small schema standing in for a rules file: the loader is generic. */
const schema = z.strictObject({
  name: z.string(),
  port: z.number({ error: expecting("a port from 1 to 65535") }).int().min(1).max(65535),
  mode: z.enum(["fast", "slow"]).default("fast"),
  tags: z.array(z.string()).default([]),
  nested: z.strictObject({ depth: z.number().int().min(0), label: z.string().min(2).optional() }).optional(),
  either: z.union([z.literal("auto"), z.array(z.number().int().max(9))]).optional(),
});

function messages<T>(r: LoadResult<T>): string[] {
  return r.ok ? [] : r.errors.map(formatConfigError);
}

t.test("a valid file gives the value and the sha256 of its text", async (t) => {
  const text = "name: pbx\nport: 5060\n";
  const r = parseYamlText(text, "rules.yaml", schema);
  t.match(r, {
    ok: true,
    value: { name: "pbx", port: 5060, mode: "fast", tags: [] },
    hash: createHash("sha256").update(text).digest("hex"),
  });
});

t.test("a loaded file can still locate errors found after loading (cross-file references, compile steps)", async (t) => {
  const r = parseYamlText("name: pbx\nport: 5060\ntags:\n  - a\n  - b\n", "rules.yaml", schema);
  if (!r.ok) throw new Error("expected a valid file");
  t.same(r.errorAt(["tags", 1], 'expected a known tag, got "b"'), {
    file: "rules.yaml",
    line: 5,
    column: 5,
    field: "tags[1]",
    message: 'expected a known tag, got "b"',
  });
  t.equal(formatConfigError(r.errorAt(["nested", "depth"], "m")), "rules.yaml:1:1: nested.depth: m", "an absent field falls back to the enclosing mapping");
  t.equal(formatConfigError(r.errorAt([], "m")), "rules.yaml:1:1: (root): m");
});

t.test("YAML syntax errors are reported at the construct to fix, with the field around it", async (t) => {
  t.same(messages(parseYamlText('name: pbx\nport: "5060\nmode: fast\n', "r.yaml", schema)), [
    'r.yaml:2:7: port: YAML syntax error: Missing closing "quote (opened here, noticed at line 4, column 1)',
  ]);
  t.same(messages(parseYamlText("name: pbx\ntags: [a, b\nport: 1\n", "r.yaml", schema)), [
    "r.yaml:2:7: tags: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] (opened here, noticed at line 3, column 1)",
  ]);
  t.same(messages(parseYamlText("name: a: b\n", "r.yaml", schema)), [
    "r.yaml:1:7: name.a: YAML syntax error: Nested mappings are not allowed in compact mappings",
  ]);
  t.same(messages(parseYamlText("a: 1\n---\nb: 2\n", "r.yaml", schema)), [
    "r.yaml:2:1: YAML syntax error: expected one document, got a second one after a --- line",
  ]);
});

t.test("unknown fields are named, with the fields that are allowed and a guess for a typo", async (t) => {
  t.same(messages(parseYamlText("name: a\nport: 1\nprot: 2\ncolour: red\n", "r.yaml", schema)), [
    'r.yaml:3:1: prot: unknown field (did you mean "port"?); expected one of: name, port, mode, tags, nested, either',
    "r.yaml:4:1: colour: unknown field; expected one of: name, port, mode, tags, nested, either",
  ]);
  t.same(messages(parseYamlText("name: a\nport: 1\nnested: { depth: 1, lable: x }\n", "r.yaml", schema)), [
    'r.yaml:3:21: nested.lable: unknown field (did you mean "label"?); expected one of: depth, label',
  ]);
});

t.test("wrong types and ranges say what was expected and what was found", async (t) => {
  const text = [
    "name: 12",
    "port: abc",
    "mode: turbo",
    "tags: [a, 3]",
    "nested:",
    "  depth: -1",
    "  label: x",
    "",
  ].join("\n");
  t.same(messages(parseYamlText(text, "r.yaml", schema)), [
    "r.yaml:1:7: name: expected a string, got 12",
    'r.yaml:2:7: port: expected a port from 1 to 65535, got "abc"',
    'r.yaml:3:7: mode: expected one of "fast", "slow", got "turbo"',
    "r.yaml:4:11: tags[1]: expected a string, got 3",
    "r.yaml:6:10: nested.depth: expected a number of at least 0, got -1",
    'r.yaml:7:10: nested.label: expected at least 2 characters, got "x"',
  ]);
  t.same(messages(parseYamlText("name: a\nport: 70000\n", "r.yaml", schema)), ["r.yaml:2:7: port: expected a port from 1 to 65535, got 70000"]);
  t.same(messages(parseYamlText("name: a\nport:\n", "r.yaml", schema)), [
    "r.yaml:2:6: port: expected a port from 1 to 65535, got null (an empty value)",
  ]);
});

t.test("a missing field is reported at the mapping that lacks it", async (t) => {
  t.same(messages(parseYamlText("mode: slow\nport: 1\n", "r.yaml", schema)), ["r.yaml:1:1: name: required field missing; expected a string"]);
  t.same(messages(parseYamlText("name: a\nport: 1\nnested: { label: xy }\n", "r.yaml", schema)), [
    "r.yaml:3:9: nested.depth: required field missing; expected a number",
  ]);
});

t.test("unions: a value of the wrong kind lists the kinds; a value of the right kind reports inside it", async (t) => {
  t.same(messages(parseYamlText("name: a\nport: 1\neither: manual\n", "r.yaml", schema)), [
    'r.yaml:3:9: either: expected "auto" or a list, got "manual"',
  ]);
  t.same(messages(parseYamlText("name: a\nport: 1\neither: [1, 12]\n", "r.yaml", schema)), [
    "r.yaml:3:13: either[1]: expected a number of at most 9, got 12",
  ]);
});

t.test("duplicate keys are errors at the second key, and the rest of the file is still checked", async (t) => {
  t.same(messages(parseYamlText("name: a\nport: 1\nname: b\nmode: x\n", "r.yaml", schema)), [
    "r.yaml:3:1: name: duplicate key; each key may appear once (first at line 1, column 1)",
    'r.yaml:4:7: mode: expected one of "fast", "slow", got "x"',
  ]);
  t.same(messages(parseYamlText("name: a\nport: 1\nnested: {depth: 1, depth: 2}\n", "r.yaml", schema)), [
    "r.yaml:3:20: nested.depth: duplicate key; each key may appear once (first at line 3, column 10)",
  ]);
});

t.test("every error of the file comes back, sorted by position", async (t) => {
  const r = parseYamlText("port: 0\nname: [x]\nextra: 1\nmode: 2\n", "r.yaml", schema);
  t.same(messages(r), [
    'r.yaml:1:7: port: expected a port from 1 to 65535, got 0',
    "r.yaml:2:7: name: expected a string, got a list",
    "r.yaml:3:1: extra: unknown field; expected one of: name, port, mode, tags, nested, either",
    'r.yaml:4:7: mode: expected one of "fast", "slow", got 2',
  ]);
});

t.test("the document itself of the wrong kind, or empty", async (t) => {
  t.same(messages(parseYamlText("- a\n- b\n", "r.yaml", schema)), ["r.yaml:1:1: (root): expected a mapping, got a list"]);
  t.same(messages(parseYamlText("", "r.yaml", schema)), ["r.yaml:1:1: the file is empty; expected a mapping"]);
  t.same(messages(parseYamlText("# only a comment\n\n", "r.yaml", schema)), ["r.yaml:1:1: the file is empty; expected a mapping"]);
});

t.test("aliases: a missing anchor is located; an alias bomb is refused, not expanded", async (t) => {
  t.same(messages(parseYamlText("name: *who\nport: 1\n", "r.yaml", schema)), ["r.yaml:1:7: name: alias *who refers to no anchor defined before it"]);
  t.match(parseYamlText("name: &n pbx\nport: 1\ntags: [*n, *n]\n", "r.yaml", schema), {
    ok: true,
    value: { name: "pbx", port: 1, mode: "fast", tags: ["pbx", "pbx"] },
    hash: createHash("sha256").update("name: &n pbx\nport: 1\ntags: [*n, *n]\n").digest("hex"),
  });
  const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 0; i < 8; i++) {
    const prev = String.fromCharCode(97 + i);
    const next = String.fromCharCode(98 + i);
    lines.push(`${next}: &${next} [${Array(10).fill(`*${prev}`).join(", ")}]`);
  }
  const r = parseYamlText(`${lines.join("\n")}\n`, "bomb.yaml", schema);
  t.equal(r.ok, false);
  t.match(messages(r)[0], /^bomb\.yaml:1:1: YAML error: Excessive alias count/);
});

t.test("complex keys and unknown tags are refused", async (t) => {
  t.same(messages(parseYamlText("? [a, b]\n: 1\nname: a\nport: 1\n", "r.yaml", schema)), [
    "r.yaml:1:3: (root): expected a plain key (a name), got a complex key",
  ]);
  t.same(messages(parseYamlText("name: !secret a\nport: 1\n", "r.yaml", schema)), ["r.yaml:1:7: YAML: Unresolved tag: !secret"]);
});

t.test("a byte order mark does not shift column numbers", async (t) => {
  t.same(messages(parseYamlText("\uFEFFname: 1\nport: 1\n", "r.yaml", schema)), ["r.yaml:1:7: name: expected a string, got 1"]);
});

t.test("files: I/O errors are ConfigErrors at line 0", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "config-load-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "rules.yaml");
  t.same(messages(loadYamlFile(file, schema)), [`${file}: file not found`]);
  t.same(loadYamlFile(dir, schema), { ok: false, errors: [{ file: dir, line: 0, column: 0, field: "", message: "is a directory, not a file" }] });
  writeFileSync(file, "name: a\nport: 99999\n");
  t.same(messages(loadYamlFile(file, schema)), [`${file}:2:7: port: expected a port from 1 to 65535, got 99999`]);
});

t.test("formatting helpers", async (t) => {
  t.equal(formatField([]), "(root)");
  t.equal(formatField(["listen", 1, "port"]), "listen[1].port");
  t.equal(formatField(["headers", "X-Foo", "v"]), "headers.X-Foo.v");
  t.equal(formatField(["a", "with space", 0]), 'a["with space"][0]');
  t.equal(formatField([3]), "[3]");
  t.equal(formatConfigError({ file: "f", line: 0, column: 0, field: "", message: "m" }), "f: m");
  t.equal(formatConfigError({ file: "f", line: 2, column: 3, field: "", message: "m" }), "f:2:3: m");
  t.equal(formatConfigError({ file: "f", line: 2, column: 3, field: "x", message: "m" }), "f:2:3: x: m");
  t.equal(showValue("x".repeat(100)), `"${"x".repeat(55)}..."`);
  t.equal(showValue([]), "an empty list");
  t.equal(showValue({}), "a mapping");
  t.equal(showValue(true), "true");
  t.equal(showValue(Buffer.from("a")), "binary data");
  t.equal(showValue(new Date(0)), "a date (1970-01-01T00:00:00.000Z)");
  t.equal(describeMismatch("a port", undefined), "required field missing; expected a port");
  t.equal(unknownFieldMessage("x", []), "unknown field; this mapping takes no fields");
  t.equal(unknownFieldMessage("Port", ["port", "name"]), 'unknown field (did you mean "port"?); expected one of: port, name');
});

t.test("binary and date values from YAML tags are shown, not crashed on", async (t) => {
  t.same(messages(parseYamlText("name: !!binary aGVsbG8=\nport: 1\n", "r.yaml", schema)), ["r.yaml:1:16: name: expected a string, got binary data"]);
  const s = z.strictObject({ when: z.string() });
  t.same(messages(parseYamlText("when: !!timestamp 2026-01-01\n", "r.yaml", s)), [
    "r.yaml:1:19: when: expected a string, got a date (2026-01-01T00:00:00.000Z)",
  ]);
});

t.test("schema-level refinements with a path are located at that path", async (t) => {
  const s = z
    .strictObject({ items: z.array(z.strictObject({ id: z.string() })) })
    .superRefine((v, ctx) => {
      const seen = new Set<string>();
      v.items.forEach((it, i) => {
        if (seen.has(it.id)) ctx.addIssue({ code: "custom", path: ["items", i, "id"], message: `duplicate id ${it.id}` });
        seen.add(it.id);
      });
    });
  t.same(messages(parseYamlText("items:\n  - id: a\n  - id: b\n  - id: a\n", "r.yaml", s)), ["r.yaml:4:9: items[2].id: duplicate id a"]);
  const plain = z.strictObject({ n: z.number().refine((n) => n % 2 === 0) });
  t.same(messages(parseYamlText("n: 3\n", "r.yaml", plain)), ["r.yaml:1:4: n: invalid value 3"]);
});

t.test("a union of mappings reports the errors of the form that came closest", async (t) => {
  const action = z.union([z.strictObject({ route: z.string() }), z.strictObject({ reject: z.number().int(), reason: z.string().optional() })]);
  const s = z.strictObject({ action });
  t.same(messages(parseYamlText("action: { reject: '403' }\n", "r.yaml", s)), ['r.yaml:1:19: action.reject: expected a number, got "403"']);
  t.same(messages(parseYamlText("action: drop\n", "r.yaml", s)), ['r.yaml:1:9: action: expected a mapping, got "drop"']);
});

t.test("pathological files are refused with a bounded report, never a crash", async (t) => {
  const loose = z.record(z.string(), z.unknown());
  const deep = `a: ${"[".repeat(70)}${"]".repeat(70)}\n`;
  t.same(messages(parseYamlText(deep, "r.yaml", loose)), [
    "r.yaml:1:68: a[0][0][0][0][0]...(53 levels)...[0][0][0][0][0][0]: expected at most 64 levels of nesting, got more",
  ]);
  const abyss = parseYamlText(`a: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`, "r.yaml", loose);
  t.equal(abyss.ok, false);
  t.match(messages(abyss)[0], /^r\.yaml:1:\d+: a\[0\].*: YAML syntax error: expected at most 64 levels of nesting, got far more/);

  const many = ["name: a", "port: 1", ...Array.from({ length: 200 }, (_, i) => `extra${i}: 1`)].join("\n");
  const r = messages(parseYamlText(`${many}\n`, "r.yaml", schema));
  t.equal(r.length, MAX_REPORTED_ERRORS + 1);
  t.equal(r[0], "r.yaml:3:1: extra0: unknown field; expected one of: name, port, mode, tags, nested, either");
  t.equal(r[MAX_REPORTED_ERRORS], "r.yaml:53:1: 150 more errors not shown (fix these first)");
  const unclosed = messages(parseYamlText(`a: ${"[".repeat(100_000)}\n`, "r.yaml", loose));
  t.ok(unclosed.length <= MAX_REPORTED_ERRORS + 1);
});
