import { accessSync, constants as fsConstants, readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { z } from "zod";
import { parseUri, uriParam } from "../sip/uri.js";
import { expecting, showValue } from "./messages.js";
import { resolveFrom, shippedRulesDir } from "./paths.js";
import { checkTlsPem, type TlsFiles } from "./tls.js";

/**
 * The edge config (`proxy-rules/edge.yaml`, documented field by field in
 * `proxy-rules/README.md`). Every field has a default, so `{}` is a working
 * config; every object is strict, so a misspelt field is an error rather than
 * a silently ignored setting. Cross-field rules (a TLS listener needs
 * certificates, names unique, listeners not clashing) are checked here too,
 * each reported at the field to fix.
 */

export const TRANSPORTS = ["udp", "tcp", "tls", "ws", "wss"] as const;
export type TransportName = (typeof TRANSPORTS)[number];

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** The callee's own answers: they go back to the caller and never send a request to another target (DESIGN.md §2.1). */
const CALLEE_ANSWERS: ReadonlySet<number> = new Set([404, 486, 600, 603]);

// ---------------------------------------------------------------------------
// Field types, each worded once.

function intIn(min: number, max: number, what = `an integer from ${min} to ${max}`) {
  const error = expecting(what);
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

const port = intIn(0, 65535);

const ipLiteral = z
  .string({ error: expecting("an IPv4 or IPv6 address") })
  .refine((s) => isIP(s) !== 0, { error: expecting("an IPv4 or IPv6 address") });

/** RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function isHost(s: string): boolean {
  return isIP(s) !== 0 || HOSTNAME.test(s);
}

const host = z
  .string({ error: expecting("a host name or IP address") })
  .refine(isHost, { error: expecting("a host name or IP address") });

const nonEmptyPath = z.string({ error: expecting("a file path") }).min(1, { error: expecting("a file path") });

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export const MIN_FLOW_KEY_BYTES = 32;

/**
 * A flow-token key given inline: hex (even length, hex digits only) or
 * base64/base64url, at least 32 bytes once decoded. Hex is tried first, so
 * 64 hex digits are 32 bytes, not 48.
 */
export function decodeFlowKey(text: string): Buffer | undefined {
  const s = text.trim();
  let buf: Buffer | undefined;
  if (/^(?:[0-9a-fA-F]{2})+$/.test(s)) buf = Buffer.from(s, "hex");
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s) && s.replace(/=+$/, "").length % 4 !== 1) buf = Buffer.from(s, "base64");
  return buf !== undefined && buf.length >= MIN_FLOW_KEY_BYTES ? buf : undefined;
}

function readableFile(p: string): string | undefined {
  try {
    if (!statSync(p).isFile()) return "not a regular file";
    accessSync(p, fsConstants.R_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "file not found" : code === "EACCES" ? "permission denied" : `cannot read it (${code ?? "error"})`;
  }
}

/**
 * A file the edge reads at start: resolved against the config file's
 * directory and checked now, so a missing certificate is reported with the
 * line that names it rather than when the first TLS client connects.
 */
function existingFile(baseDir: string) {
  return nonEmptyPath.transform((p, ctx) => {
    const abs = resolveFrom(baseDir, p);
    const why = readableFile(abs);
    if (why !== undefined) ctx.addIssue({ code: "custom", input: p, message: `expected a readable file, got ${showValue(p)} (${abs}: ${why})` });
    return abs;
  });
}

function sipTargetUri(s: string): string | undefined {
  const r = parseUri(s);
  if (!r.ok) return `expected a sip: or sips: URI, got ${showValue(s)} (${r.reason})`;
  const u = r.uri;
  if (u.scheme !== "sip" && u.scheme !== "sips") return `expected a sip: or sips: URI, got ${showValue(s)} (scheme "${u.scheme}:")`;
  if (!isHost(u.host)) return `expected a sip: or sips: URI with a host name or IP address, got ${showValue(s)}`;
  const tp = uriParam(u, "transport");
  if (tp !== undefined && (tp === null || !(TRANSPORTS as readonly string[]).includes(tp.toLowerCase()))) {
    return `expected ;transport= one of ${TRANSPORTS.join(", ")}, got ${showValue(s)}`;
  }
  if (u.scheme === "sips" && typeof tp === "string" && tp.toLowerCase() === "udp") {
    return `expected a secure transport for a sips: URI (RFC 3261 §26.2.2), got ${showValue(s)}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Sections.

const listenerSchema = z.strictObject({
  transport: z.enum(TRANSPORTS, { error: expecting(`one of ${TRANSPORTS.join(", ")}`) }),
  address: ipLiteral,
  port,
  /** Host put in Via / Record-Route / Path by this listener; the bound address when absent. */
  advertise: host.optional(),
});

const targetSchema = z.strictObject({
  name: z
    .string({ error: expecting("a name of letters, digits, _ . -") })
    .regex(NAME, { error: expecting("a name of letters, digits, _ . -") }),
  uri: z.string({ error: expecting("a sip: or sips: URI") }).check((ctx) => {
    const why = sipTargetUri(ctx.value);
    if (why !== undefined) ctx.issues.push({ code: "custom", input: ctx.value, message: why });
  }),
  /** Lower is preferred; the position in the list (1, 2, ...) when absent. */
  priority: intIn(1, 1000).optional(),
  /** The PBX understands Path (RFC 3327): REGISTERs always get one. */
  acceptsPath: z.boolean({ error: expecting("true or false") }).default(false),
});

const DEFAULT_LISTENERS = [
  { transport: "udp", address: "0.0.0.0", port: 5060 },
  { transport: "tcp", address: "0.0.0.0", port: 5060 },
] as const;

const DEFAULT_TARGETS = [
  { name: "main", uri: "sip:127.0.0.1:5070", priority: 1, acceptsPath: true },
  { name: "standby", uri: "sip:127.0.0.1:5080", priority: 2, acceptsPath: true },
] as const;

function tlsSchema(baseDir: string) {
  return z
    .strictObject({
    cert: existingFile(baseDir),
    key: existingFile(baseDir),
    /** CAs trusted for peers; the system store when absent. */
    ca: existingFile(baseDir).optional(),
    minVersion: z.enum(["TLSv1.2", "TLSv1.3"], { error: expecting('"TLSv1.2" or "TLSv1.3"') }).default("TLSv1.2"),
    /** Check the certificate of PBXs and carriers we connect to. */
    verifyPeer: z.boolean({ error: expecting("true or false") }).default(true),
    /** Ask TLS/WSS clients for a certificate and refuse those without a valid one. */
    requireClientCert: z.boolean({ error: expecting("true or false") }).default(false),
  })
    .superRefine((t, ctx) => {
      let pem: TlsFiles;
      try {
        pem = {
          cert: readFileSync(t.cert, "utf8"),
          key: readFileSync(t.key, "utf8"),
          ca: t.ca === undefined ? undefined : readFileSync(t.ca, "utf8"),
        };
      } catch (e) {
        // Readable a moment ago (checked per field); a file that vanished in between is reported on the section.
        ctx.addIssue({ code: "custom", input: t, message: `cannot read the TLS files (${(e as NodeJS.ErrnoException).code ?? String(e)})` });
        return;
      }
      for (const p of checkTlsPem(pem)) ctx.addIssue({ code: "custom", path: [p.field], input: t[p.field], message: p.message });
    });
}

const limitsSchema = z
  .strictObject({
    maxMessageBytes: intIn(256, 16_777_216).default(65535),
    maxHeaders: intIn(8, 10_000).default(128),
    maxVias: intIn(1, 1000).default(70),
    maxHeaderLineBytes: intIn(256, 1_048_576).default(8192),
    maxStreamBufferBytes: intIn(1024, 67_108_864).default(262_144),
    maxConnections: intIn(1, 1_000_000).default(10_000),
    maxConnectionsPerSource: intIn(1, 1_000_000).default(100),
    connectTimeoutMs: intIn(100, 120_000).default(3000),
    idleTimeoutSeconds: intIn(1, 86_400).default(900),
    /** SO_RCVBUF/SO_SNDBUF of the UDP sockets: bursts beyond the kernel's small default are dropped otherwise. */
    udpSocketBufferBytes: intIn(65_536, 67_108_864).default(4_194_304),
  })
  .superRefine((l, ctx) => {
    // A message that passes maxMessageBytes must also fit the stream buffer, or TCP peers could never send it.
    if (l.maxStreamBufferBytes < l.maxMessageBytes) {
      ctx.addIssue({
        code: "custom",
        path: ["maxStreamBufferBytes"],
        input: l.maxStreamBufferBytes,
        message: `expected at least maxMessageBytes (${l.maxMessageBytes}), got ${l.maxStreamBufferBytes}`,
      });
    }
    if (l.maxHeaderLineBytes > l.maxMessageBytes) {
      ctx.addIssue({
        code: "custom",
        path: ["maxHeaderLineBytes"],
        input: l.maxHeaderLineBytes,
        message: `expected at most maxMessageBytes (${l.maxMessageBytes}), got ${l.maxHeaderLineBytes}`,
      });
    }
    if (l.maxConnectionsPerSource > l.maxConnections) {
      ctx.addIssue({
        code: "custom",
        path: ["maxConnectionsPerSource"],
        input: l.maxConnectionsPerSource,
        message: `expected at most maxConnections (${l.maxConnections}), got ${l.maxConnectionsPerSource}`,
      });
    }
  });

const softStateSchema = z.strictObject({
  maxEntries: intIn(1, 100_000_000).default(100_000),
  ttlSeconds: intIn(1, 86_400).default(180),
});

/** Why an inline key is refused, without echoing the secret itself. */
function flowKeyProblem(s: string): string {
  const t = s.trim();
  if (/^(?:[0-9a-fA-F]{2})+$/.test(t)) return `${t.length / 2} bytes of hex`;
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) return `${Buffer.from(t, "base64").length} bytes of base64`;
  return `${t.length} characters that are neither hex nor base64`;
}

const FLOW_KEY_WANTED = `a secret of at least ${MIN_FLOW_KEY_BYTES} bytes as hex or base64`;

const flowKeyText = z.string({ error: expecting(FLOW_KEY_WANTED) }).refine((s) => decodeFlowKey(s) !== undefined, {
  error: (iss) => `expected ${FLOW_KEY_WANTED}, got ${typeof iss.input === "string" ? flowKeyProblem(iss.input) : showValue(iss.input)}`,
});

function flowTokenSchema(baseDir: string) {
  return z.strictObject({
    /** Inline secret; wins over keyFile. */
    key: flowKeyText.optional(),
    /** Read, or created on first start (mode 0600) and reused, when key is absent. */
    keyFile: nonEmptyPath.default(".flow-key").transform((p) => resolveFrom(baseDir, p)),
  });
}

const adminSchema = z.strictObject({
  address: ipLiteral.default("127.0.0.1"),
  port: port.default(8080),
});

const finalStatus = intIn(200, 699, "a final status code from 200 to 699");

const healthSchema = z.strictObject({
  /** OPTIONS probe interval while the target is up. */
  intervalSeconds: intIn(1, 3600).default(5),
  /** Probe interval while suspect, down or recovering. */
  intervalDownSeconds: intIn(1, 3600).default(5),
  /** Probe timeout, independent of SIP transaction timers. */
  timeoutMs: intIn(50, 60_000).default(2000),
  /** Consecutive failures before a target is down. */
  downAfter: intIn(1, 100).default(3),
  /** Consecutive successes before a down target is up again. */
  upAfter: intIn(1, 100).default(2),
  /** Which probe responses prove a target alive (DESIGN.md §2.2). */
  alive: z
    .union([
      z.enum(["default", "strict"]),
      z
        .array(finalStatus, { error: expecting("a list of status codes") })
        .min(1, { error: "expected at least one status code, got an empty list" }),
    ])
    .default("default"),
  /** A TCP/TLS probe connection is closed after this many probe timeouts in a row. */
  closeStreamAfterTimeouts: intIn(1, 100).default(3),
});

function policySchema(baseDir: string) {
  return z.strictObject({
    /** Main must be unusable this long before any device is re-homed on the Standby. */
    holdDownSeconds: intIn(0, 86_400).default(180),
    /** Main must be usable and stable this long before devices move back. */
    failbackStableSeconds: intIn(0, 86_400).default(600),
    /** After failback, requests that fail on Main are served by the Standby this long. */
    graceSeconds: intIn(0, 86_400).default(300),
    failbackMode: z.enum(["auto", "manual"], { error: expecting('"auto" or "manual"') }).default("auto"),
    /** The device table; the shipped reference table when absent. */
    deviceTable: existingFile(baseDir).optional(),
  });
}

/** src/transport/udp.ts: how the UDP sockets do their I/O. */
const udpSchema = z.strictObject({
  /**
   * native: the addon of native/udp (batched reads, SO_REUSEPORT per
   * worker); dgram: Node's own; auto: native when it is built, else dgram
   * (logged at start).
   */
  io: z.enum(["auto", "native", "dgram"], { error: expecting('"auto", "native" or "dgram"') }).default("auto"),
});

/** Methods overload control may refuse (`shedMethods`, `dropMethods`): never ACK or CANCEL, which start no work of their own. */
function overloadMethods(what: string) {
  return z.array(
    z
      .string({ error: expecting("a SIP method name") })
      .regex(/^[A-Z]+$/, { error: (iss) => `expected a SIP method in capitals, got ${showValue(iss.input)}` })
      .refine((m) => m !== "ACK" && m !== "CANCEL", { error: (iss) => `expected a method that starts a transaction of its own, got ${String(iss.input)} (ACK and CANCEL are never ${what})` }),
  );
}

/** src/edge/overload.ts: what the edge does when it is behind. */
const overloadSchema = z
  .strictObject({
    /** UDP queue delay (ms) at which new requests are answered 503; 0 never sheds. */
    shedAtMs: intIn(0, 60_000).default(100),
    /** Queue delay (ms) at or below which shedding stops and request timeouts are trusted again. */
    resumeAtMs: intIn(0, 60_000).default(20),
    retryAfterSeconds: intIn(0, 86_400).default(2),
    /** How often each UDP socket measures its queue delay. */
    probeIntervalMs: intIn(10, 10_000).default(50),
    /** How many times one request's timeout may be put off while the edge is behind. */
    maxTimeoutDeferrals: intIn(0, 100).default(4),
    /** Methods of new requests that may be shed (src/edge/overload.ts says why only INVITE by default). */
    shedMethods: overloadMethods("shed").default(["INVITE"]),
    /** Methods of requests from UDP dropped unread with the same share (src/edge/overload.ts, dropMethods). */
    dropMethods: overloadMethods("dropped").default(["REGISTER"]),
  })
  .superRefine((o, ctx) => {
    if (o.shedAtMs > 0 && o.resumeAtMs >= o.shedAtMs) {
      ctx.addIssue({ code: "custom", path: ["resumeAtMs"], input: o.resumeAtMs, message: `expected less than shedAtMs (${o.shedAtMs}), got ${o.resumeAtMs}` });
    }
  });

const failoverSchema = z.strictObject({
  /** No response at all from a target within this time: try the next one. */
  requestTimeoutMs: intIn(100, 60_000).default(1000),
  /** Final responses that send an INVITE/REGISTER to the next target. */
  retryOn: z
    .array(
      intIn(300, 699, "a final non-2xx status code from 300 to 699").refine((c) => !CALLEE_ANSWERS.has(c), {
        error: (iss) => `expected a status code that says the target failed, got ${String(iss.input)} (the callee's answer always goes back to the caller)`,
      }),
      { error: expecting("a list of status codes") },
    )
    .default([408, 500, 503, 504]),
});

const dnsSchema = z
  .strictObject({
    /** TTL used for SRV answers (the stub resolver API does not return theirs). */
    srvTtlSeconds: intIn(1, 86_400).default(300),
    /** Answers are kept at least this long, whatever their TTL. */
    minTtlSeconds: intIn(0, 86_400).default(5),
    /** ...and at most this long. */
    maxTtlSeconds: intIn(1, 86_400).default(3600),
    /** An empty or failed answer is retried after this long. */
    negativeTtlSeconds: intIn(1, 86_400).default(60),
  })
  .superRefine((d, ctx) => {
    if (d.minTtlSeconds > d.maxTtlSeconds) {
      ctx.addIssue({
        code: "custom",
        path: ["minTtlSeconds"],
        input: d.minTtlSeconds,
        message: `expected at most maxTtlSeconds (${d.maxTtlSeconds}), got ${d.minTtlSeconds}`,
      });
    }
  });

/** Streams (tcp, tls, ws, wss) share the TCP port space; UDP has its own. */
function socketKind(t: TransportName): "udp" | "tcp" {
  return t === "udp" ? "udp" : "tcp";
}

/**
 * The edge config schema. `baseDir` is the config file's directory: relative
 * paths inside the file resolve against it, and the files it names are
 * checked to be readable.
 */
export function edgeConfigSchema(baseDir: string) {
  const shippedDeviceTable = join(shippedRulesDir(), "devices.yaml");
  return z
    .strictObject({
      log: z
        .strictObject({ level: z.enum(LOG_LEVELS, { error: expecting(`one of ${LOG_LEVELS.join(", ")}`) }).default("info") })
        .prefault({}),
      listen: z
        .array(listenerSchema, { error: expecting("a list of listeners") })
        .min(1, { error: "expected at least one listener, got an empty list" })
        .default(() => DEFAULT_LISTENERS.map((l) => ({ ...l }))),
      domains: z.array(host, { error: expecting("a list of host names") }).default(() => []),
      targets: z
        .array(targetSchema, { error: expecting("a list of targets") })
        .min(1, { error: "expected at least one target, got an empty list" })
        .default(() => DEFAULT_TARGETS.map((t) => ({ ...t })))
        .superRefine((ts, ctx) => {
          const firstIndex = new Map<string, number>();
          ts.forEach((t, i) => {
            const first = firstIndex.get(t.name);
            if (first === undefined) firstIndex.set(t.name, i);
            else {
              ctx.addIssue({
                code: "custom",
                path: [i, "name"],
                input: t.name,
                message: `expected a unique target name, got ${showValue(t.name)} again (first used by targets[${first}])`,
              });
            }
          });
        })
        .transform((ts) => ts.map((t, i) => ({ ...t, priority: t.priority ?? i + 1 }))),
      tls: tlsSchema(baseDir).optional(),
      limits: limitsSchema.prefault({}),
      softState: softStateSchema.prefault({}),
      flowToken: flowTokenSchema(baseDir).prefault({}),
      admin: adminSchema.prefault({}),
      health: healthSchema.prefault({}),
      policy: policySchema(baseDir)
        .prefault({})
        .transform((p) => ({ ...p, deviceTable: p.deviceTable ?? shippedDeviceTable })),
      failover: failoverSchema.prefault({}),
      overload: overloadSchema.prefault({}),
      udp: udpSchema.prefault({}),
      dns: dnsSchema.prefault({}),
    })
    .superRefine((c, ctx) => {
      c.listen.forEach((l, i) => {
        if ((l.transport === "tls" || l.transport === "wss") && c.tls === undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["listen", i, "transport"],
            input: l.transport,
            message: `a ${l.transport} listener needs the top-level tls section (cert and key), which is missing`,
          });
        }
      });
      // Two sockets on one address, port and protocol cannot both bind; say so now rather than at start.
      const taken = new Map<string, string>();
      taken.set(`tcp ${c.admin.address} ${c.admin.port}`, "admin");
      c.listen.forEach((l, i) => {
        if (l.port === 0) return;
        const key = `${socketKind(l.transport)} ${l.address} ${l.port}`;
        const holder = taken.get(key);
        if (holder !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["listen", i, "port"],
            input: l.port,
            message: `expected a free port, got ${l.port} on ${l.address}, already used by ${holder}`,
          });
        } else {
          taken.set(key, `listen[${i}] (${l.transport})`);
        }
      });
    });
}

/** The validated, fully defaulted edge config; paths in it are absolute. */
export type EdgeConfig = z.output<ReturnType<typeof edgeConfigSchema>>;
export type ListenerConfig = EdgeConfig["listen"][number];
export type TargetConfig = EdgeConfig["targets"][number];
export type TlsConfig = NonNullable<EdgeConfig["tls"]>;
