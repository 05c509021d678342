import { z } from "zod";
import { addressBytes, inNetwork, parseNetwork, type Network } from "./cidr.js";
import type { SwitchDelay } from "./spread.js";

/**
 * The device table (`proxy-rules/devices.yaml`, DESIGN.md §2.3): device
 * classes, what identifies them, and how fast they switch PBX. Validated
 * whole by `deviceTableSchema`, then compiled once by `compileDeviceTable`
 * into a frozen, ordered matcher (regexes and networks built at load time,
 * DESIGN.md §5.6).
 */

export type RegisterMode = "follow-active" | "dual" | "passthrough";

/** Longest switch delay accepted, in seconds: beyond a day it is surely a typo. */
const MAX_DELAY_SECONDS = 86_400;

const DELAY_RANGE = /^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?$/;

/** Parses `30`, `"30"` or `"60-105"` into seconds; null stays null. Undefined when malformed. */
export function parseSwitchDelay(v: number | string | null): SwitchDelay | undefined {
  if (v === null) return null;
  let min: number;
  let max: number;
  if (typeof v === "number") {
    min = v;
    max = v;
  } else {
    const m = DELAY_RANGE.exec(v);
    if (m === null) return undefined;
    min = Number(m[1]);
    max = m[2] === undefined ? min : Number(m[2]);
  }
  if (!Number.isFinite(min) || !Number.isFinite(max) || min < 0 || max < min || max > MAX_DELAY_SECONDS) return undefined;
  return { min, max };
}

const patterns = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

/**
 * Seconds to switch: a number, a range `"a-b"` (each device gets its own
 * value inside it), or `null` (`-` in the vendor's table): the device does
 * not fail over by itself, so only ops actions (force failover, failback
 * now, pin) move its home; its requests still avoid a target that is down.
 */
const delay = z.union([z.number(), z.string(), z.null()]).refine((v) => parseSwitchDelay(v) !== undefined, {
  message: `a number of seconds, a range "a-b" with a <= b, or null (0 to ${MAX_DELAY_SECONDS} s)`,
});

const deviceClassSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/, "letters, digits and _ . / - only"),
  description: z.string().optional(),
  /** Any one criterion matching selects the class. Absent: selected only by name (a rule's `set device class`). */
  match: z
    .strictObject({
      /** Regexes, case-insensitive, searched in the User-Agent header value. */
      userAgent: patterns.optional(),
      /** Networks (`10.0.0.0/8`, `2001:db8::/32`) or single addresses, IPv4 and IPv6. */
      source: patterns.optional(),
      /** Regexes, case-insensitive, searched in the AOR (`sip:user@host`). */
      aor: patterns.optional(),
    })
    .optional(),
  toBackup: delay,
  toMain: delay,
  /** Default `follow-active` (DESIGN.md §2.4). */
  register: z.enum(["follow-active", "dual", "passthrough"]).optional(),
  /** Informational: what the device uses, shown in status. */
  transport: z.enum(["udp", "tcp", "tls", "ws", "wss"]).optional(),
  port: z.number().int().min(1).max(65535).optional(),
});

function list(v: string | readonly string[] | undefined): readonly string[] {
  if (v === undefined) return [];
  return typeof v === "string" ? [v] : v;
}

function compileRegex(source: string): RegExp | string {
  try {
    return new RegExp(source, "i");
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function networkError(text: string): string | undefined {
  try {
    parseNetwork(text);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

export const DEFAULT_CLASS = "default";

/** The zod schema of the device table file; every check (regexes, networks, names) happens here, with a path. */
export const deviceTableSchema = z
  .strictObject({
    classes: z.array(deviceClassSchema).min(1),
  })
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    let defaults = 0;
    file.classes.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: "custom", path: ["classes", i, "name"], message: `duplicate class ${c.name}` });
      seen.add(c.name);
      if (c.name === DEFAULT_CLASS) {
        defaults++;
        if (c.match !== undefined) {
          ctx.addIssue({ code: "custom", path: ["classes", i, "match"], message: "the default class matches everything; it takes no match" });
        }
      }
      for (const key of ["userAgent", "aor"] as const) {
        list(c.match?.[key]).forEach((src, j) => {
          const r = compileRegex(src);
          if (typeof r === "string") ctx.addIssue({ code: "custom", path: ["classes", i, "match", key, j], message: `bad regex: ${r}` });
        });
      }
      list(c.match?.source).forEach((src, j) => {
        const err = networkError(src);
        if (err !== undefined) ctx.addIssue({ code: "custom", path: ["classes", i, "match", "source", j], message: err });
      });
    });
    if (defaults === 0) ctx.addIssue({ code: "custom", path: ["classes"], message: `a class named "${DEFAULT_CLASS}" is required` });
  });

export type DeviceTableFile = z.infer<typeof deviceTableSchema>;

export interface DeviceClass {
  readonly name: string;
  readonly description: string | undefined;
  readonly toBackup: SwitchDelay;
  readonly toMain: SwitchDelay;
  readonly register: RegisterMode;
  readonly transport: "udp" | "tcp" | "tls" | "ws" | "wss" | undefined;
  readonly port: number | undefined;
  readonly match: {
    readonly userAgent: readonly RegExp[];
    readonly source: readonly Network[];
    readonly aor: readonly RegExp[];
  };
}

/** What the edge knows about a device when it classifies one request. */
export interface DeviceInfo {
  readonly userAgent?: string | undefined;
  /** Source IP address (no port). */
  readonly source?: string | undefined;
  readonly aor?: string | undefined;
}

export interface DeviceTable {
  /** In match order; the default class is last. */
  readonly classes: readonly DeviceClass[];
  readonly defaultClass: DeviceClass;
  /** The first class with any matching criterion; the default class otherwise. */
  classify(d: DeviceInfo): DeviceClass;
  byName(name: string): DeviceClass | undefined;
}

/**
 * Regexes come from ops, header values from the network: only the start of
 * a header value is searched, which bounds the work one request can cause.
 */
const MAX_MATCHED_LENGTH = 512;

/** Bound of the classify() memo (User-Agent × source pairs); it starts afresh when full. */
const CLASS_MEMO_ENTRIES = 10_000;

function matches(c: DeviceClass, d: DeviceInfo, addr: Uint8Array | undefined): boolean {
  const ua = d.userAgent?.slice(0, MAX_MATCHED_LENGTH);
  if (ua !== undefined && c.match.userAgent.some((r) => r.test(ua))) return true;
  if (addr !== undefined && c.match.source.some((n) => inNetwork(addr, n))) return true;
  const aor = d.aor?.slice(0, MAX_MATCHED_LENGTH);
  return aor !== undefined && c.match.aor.some((r) => r.test(aor));
}

/**
 * Compiles a validated table. Throws when given something the schema would
 * have refused (a config error), so it is safe on unvalidated input too.
 */
export function compileDeviceTable(file: DeviceTableFile): DeviceTable {
  const checked = deviceTableSchema.safeParse(file);
  if (!checked.success) throw new Error(`device table: ${checked.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const compiled = checked.data.classes.map((c): DeviceClass => {
    const rx = (src: readonly string[]) => Object.freeze(src.map((s) => new RegExp(s, "i")));
    return Object.freeze({
      name: c.name,
      description: c.description,
      toBackup: parseSwitchDelay(c.toBackup) ?? null,
      toMain: parseSwitchDelay(c.toMain) ?? null,
      register: c.register ?? "follow-active",
      transport: c.transport,
      port: c.port,
      match: Object.freeze({
        userAgent: rx(list(c.match?.userAgent)),
        source: Object.freeze(list(c.match?.source).map(parseNetwork)),
        aor: rx(list(c.match?.aor)),
      }),
    });
  });
  const defaultClass = compiled.find((c) => c.name === DEFAULT_CLASS)!;
  const ordered = Object.freeze([...compiled.filter((c) => c !== defaultClass), defaultClass]);
  const matchers = ordered.slice(0, -1);
  const bySource = matchers.some((c) => c.match.source.length > 0);
  const byAor = matchers.some((c) => c.match.aor.length > 0);
  const byName = new Map(ordered.map((c) => [c.name, c]));
  const classOf = (d: DeviceInfo): DeviceClass => {
    const addr = bySource && d.source !== undefined ? addressBytes(d.source) : undefined;
    for (const c of matchers) if (matches(c, d, addr)) return c;
    return defaultClass;
  };
  // Without AOR patterns the class depends on User-Agent and source only,
  // which a fleet shares: every class's regexes then run once per (model,
  // address), not once per device. Keys hold only what matches() reads
  // (the source only when a class matches on it).
  const memo = new Map<string, DeviceClass>();
  return Object.freeze({
    classes: ordered,
    defaultClass,
    classify(d: DeviceInfo): DeviceClass {
      if (byAor) return classOf(d);
      const ua = d.userAgent;
      const src = bySource && d.source !== undefined ? d.source : "";
      const key = `${ua === undefined ? "-" : "+" + ua.slice(0, MAX_MATCHED_LENGTH)}\n${src}`;
      let c = memo.get(key);
      if (c === undefined) {
        c = classOf(d);
        if (memo.size >= CLASS_MEMO_ENTRIES) memo.clear();
        memo.set(key, c);
      }
      return c;
    },
    byName(name: string): DeviceClass | undefined {
      return byName.get(name);
    },
  });
}
