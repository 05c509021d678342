/**
 * Wording of validation messages. Every message a person reads about a bad
 * config or rules file says what was expected and what was found, in the
 * same shape: `expected <what>, got <value>`, or `required field missing;
 * expected <what>` when the field is absent. Schemas use `expecting()` for
 * their own wording so that custom and built-in messages read alike.
 */

const MAX_SHOWN_CHARS = 60;

/** A short rendering of a value found in a file, for "got ..." in messages. */
export function showValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null (an empty value)";
  if (typeof v === "string") {
    const s = JSON.stringify(v);
    return s.length <= MAX_SHOWN_CHARS ? s : `${s.slice(0, MAX_SHOWN_CHARS - 4)}..."`;
  }
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return v.length === 0 ? "an empty list" : "a list";
  if (v instanceof Uint8Array) return "binary data";
  if (v instanceof Date) return `a date (${v.toISOString()})`;
  if (typeof v === "object") return "a mapping";
  return typeof v;
}

/** `expected <what>, got <value>`, or the missing-field form when nothing was given. */
export function describeMismatch(what: string, input: unknown): string {
  return input === undefined ? `required field missing; expected ${what}` : `expected ${what}, got ${showValue(input)}`;
}

/**
 * A zod `error` option that words every failure of one schema the same way,
 * e.g. `z.number({ error: expecting("a port from 0 to 65535") }).int(...)`.
 */
export function expecting(what: string): (issue: { readonly input?: unknown }) => string {
  return (issue) => describeMismatch(what, issue.input);
}

/** Edit distance, bounded: used only to suggest a field name for a typo. */
function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      const left = prev[j - 1] ?? 0;
      prev[j] = Math.min(up + 1, left + 1, diag + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

/** `unknown field (did you mean "port"?); expected one of: a, b, c`. */
export function unknownFieldMessage(key: string, allowed: readonly string[]): string {
  if (allowed.length === 0) return "unknown field; this mapping takes no fields";
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.floor(key.length / 2) + 1);
  for (const a of allowed) {
    const d = editDistance(key, a);
    if (d < bestDistance) {
      best = a;
      bestDistance = d;
    }
  }
  const hint = best === undefined ? "" : ` (did you mean "${best}"?)`;
  return `unknown field${hint}; expected one of: ${allowed.join(", ")}`;
}
