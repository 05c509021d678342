import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import type { Clock, TimerHandle } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import type { Endpoint, TransportName } from "./types.js";

/**
 * RFC 3263 target resolution: which address, port and transport a SIP URI
 * host means. Answers are cached with their TTLs and refreshed in the
 * background on the injected clock, so the hot path asks `lookup()` and gets
 * an answer synchronously. When DNS fails, the last good answer stays in use
 * and the failure is reported. NAPTR (RFC 3263 §4.1) is not used: the
 * transport always comes from the URI or the configured default.
 */

export interface AddressRecord {
  address: string;
  /** Seconds. */
  ttl: number;
}

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

/** The three queries RFC 3263 needs here. Production wraps node:dns; tests pass a stub. */
export interface DnsBackend {
  resolve4(host: string): Promise<AddressRecord[]>;
  resolve6(host: string): Promise<AddressRecord[]>;
  resolveSrv(name: string): Promise<SrvRecord[]>;
}

export interface NodeDnsOptions {
  /** Name servers ("ip" or "ip:port"); the system's when absent. */
  servers?: string[];
  /** Per-try timeout in ms. */
  timeoutMs?: number;
  tries?: number;
}

export function nodeDnsBackend(opts: NodeDnsOptions = {}): DnsBackend {
  const r = new Resolver({ timeout: opts.timeoutMs ?? 2000, tries: opts.tries ?? 2 });
  if (opts.servers !== undefined && opts.servers.length > 0) r.setServers(opts.servers);
  return {
    resolve4: (host) => r.resolve4(host, { ttl: true }),
    resolve6: (host) => r.resolve6(host, { ttl: true }),
    resolveSrv: (name) => r.resolveSrv(name),
  };
}

/** What a SIP URI says about where to send: host, optional port, transport. */
export interface SipTarget {
  host: string;
  port?: number | undefined;
  transport: TransportName;
}

export type RecordType = "A" | "AAAA" | "SRV";

export type DnsEvent =
  | { kind: "changed"; type: RecordType; name: string; records: string[] }
  | { kind: "failed"; type: RecordType; name: string; code: string; reason: string; usingStale: boolean }
  | { kind: "recovered"; type: RecordType; name: string };

export type EntryState = "pending" | "fresh" | "expired" | "stale" | "negative" | "failed";

export interface DnsEntryStatus {
  type: RecordType;
  name: string;
  state: EntryState;
  /** Addresses, or "priority weight port target" for SRV. */
  records: string[];
  /** Wall-clock ms of the last good answer, if any. */
  fetchedAt: number | undefined;
  /** Until when the answer is fresh, wall-clock ms. */
  expiresAt: number | undefined;
  /** Consecutive failed queries. */
  failures: number;
  lastError: { code: string; reason: string; at: number } | undefined;
}

export interface SipResolverOptions {
  backend: DnsBackend;
  clock: Clock;
  logger?: Logger;
  /** Node's SRV answers carry no TTL, so SRV answers live this long (default 300 s). */
  srvTtlMs?: number;
  /** Bounds applied to A/AAAA TTLs (defaults 5 s and 1 h). */
  minTtlMs?: number;
  maxTtlMs?: number;
  /** How long "no such name / no records" is believed (default 60 s). */
  negativeTtlMs?: number;
  /** First retry after a failed query, doubling up to maxRetryMs (defaults 2 s and 60 s). */
  retryMs?: number;
  maxRetryMs?: number;
  /** Fraction of the TTL after which a background refresh starts (default 0.8). */
  refreshAt?: number;
  /** An answer nobody asked for in this long is dropped instead of refreshed (default 10 min). */
  idleMs?: number;
  /** A last good answer older than this is no longer used while DNS fails (default 24 h). */
  maxStaleMs?: number;
  /** Most cached answers (default 1000); the least recently used goes first. */
  maxEntries?: number;
  /** Address families to query, in order of preference (default [4, 6]). */
  families?: ReadonlyArray<4 | 6>;
  /** Port when neither the URI nor SRV gives one (default 5061 for tls/wss, else 5060). */
  defaultPort?: (transport: TransportName) => number;
  /** Uniform in [0, 1); SRV weight selection (RFC 2782). */
  random?: () => number;
  onEvent?: (e: DnsEvent) => void;
}

interface Entry {
  readonly key: string;
  readonly type: RecordType;
  readonly name: string;
  /** Addresses (A/AAAA) of the last good answer; empty for a negative one. */
  addresses: string[];
  /** SRV records of the last good answer, in RFC 2782 order. */
  srv: SrvRecord[];
  /** Has there ever been an answer (positive or negative)? */
  answered: boolean;
  negative: boolean;
  failing: boolean;
  fetchedAt: number;
  expiresAt: number;
  lastUsed: number;
  failures: number;
  lastError: { code: string; reason: string; at: number } | undefined;
  inflight: Promise<void> | undefined;
  timer: TimerHandle | undefined;
}

interface Composed {
  generation: number;
  result: Endpoint[] | undefined;
  deps: Entry[];
}

/** DNS error codes that are answers ("this name has no such records"), not failures. */
const NEGATIVE_CODES = new Set(["ENODATA", "ENOTFOUND"]);

function defaultPortOf(t: TransportName): number {
  return t === "tls" || t === "wss" ? 5061 : 5060;
}

/** RFC 3263 §4.2 SRV service names per transport; WebSocket has none (RFC 7118 uses URLs). */
function srvName(transport: TransportName, host: string): string | undefined {
  switch (transport) {
    case "udp":
      return `_sip._udp.${host}`;
    case "tcp":
      return `_sip._tcp.${host}`;
    case "tls":
      return `_sips._tcp.${host}`;
    case "ws":
    case "wss":
      return undefined;
  }
}

export class SipResolver {
  private readonly backend: DnsBackend;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly srvTtlMs: number;
  private readonly minTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly retryMs: number;
  private readonly maxRetryMs: number;
  private readonly refreshAt: number;
  private readonly idleMs: number;
  private readonly maxStaleMs: number;
  private readonly maxEntries: number;
  private readonly families: ReadonlyArray<4 | 6>;
  private readonly portFor: (t: TransportName) => number;
  private readonly random: () => number;
  private readonly onEvent: ((e: DnsEvent) => void) | undefined;
  private readonly entries = new Map<string, Entry>();
  private readonly composed = new Map<string, Composed>();
  /** Bumped on every cache change; a composed answer from an older generation is rebuilt. */
  private generation = 0;
  private stopped = false;

  constructor(o: SipResolverOptions) {
    this.backend = o.backend;
    this.clock = o.clock;
    this.logger = o.logger;
    this.srvTtlMs = o.srvTtlMs ?? 300_000;
    this.minTtlMs = o.minTtlMs ?? 5_000;
    this.maxTtlMs = o.maxTtlMs ?? 3_600_000;
    this.negativeTtlMs = o.negativeTtlMs ?? 60_000;
    this.retryMs = o.retryMs ?? 2_000;
    this.maxRetryMs = o.maxRetryMs ?? 60_000;
    this.refreshAt = o.refreshAt ?? 0.8;
    this.idleMs = o.idleMs ?? 600_000;
    this.maxStaleMs = o.maxStaleMs ?? 86_400_000;
    this.maxEntries = o.maxEntries ?? 1000;
    this.families = o.families ?? [4, 6];
    this.portFor = o.defaultPort ?? defaultPortOf;
    this.random = o.random ?? Math.random;
    this.onEvent = o.onEvent;
    if (!(this.refreshAt > 0 && this.refreshAt <= 1)) throw new Error("refreshAt must be in (0, 1]");
    if (this.families.length === 0) throw new Error("families must not be empty");
    if (!(this.maxEntries > 0)) throw new Error("maxEntries must be positive");
  }

  /**
   * Where `target` goes now, from the cache, synchronously: endpoints in
   * preference order, `[]` when DNS says the name has no usable records, or
   * `undefined` while the first answer is still on its way (the query has
   * been started). IP literals never touch DNS.
   */
  lookup(target: SipTarget): Endpoint[] | undefined {
    const key = `${target.transport} ${target.host} ${target.port ?? ""}`;
    const c = this.composed.get(key);
    if (c !== undefined && c.generation === this.generation) {
      if (c.deps.length > 0) {
        const now = this.clock.now();
        for (const d of c.deps) d.lastUsed = now;
      }
      return c.result;
    }
    const deps: Entry[] = [];
    const result = this.compose(target, deps);
    // Composing may start queries, which never change the generation synchronously.
    this.composed.set(key, { generation: this.generation, result, deps });
    if (this.composed.size > this.maxEntries * 4) this.composed.clear();
    return result;
  }

  /** Like `lookup`, but waits for DNS when nothing is cached yet. */
  async resolve(target: SipTarget): Promise<Endpoint[]> {
    // SRV, then the A/AAAA of its targets: a few rounds at most.
    for (let round = 0; round < 4; round++) {
      const r = this.lookup(target);
      if (r !== undefined) return r;
      const c = this.composed.get(`${target.transport} ${target.host} ${target.port ?? ""}`);
      const waits = (c?.deps ?? []).map((d) => d.inflight).filter((p): p is Promise<void> => p !== undefined);
      if (waits.length === 0) break;
      await Promise.all(waits);
    }
    return this.lookup(target) ?? [];
  }

  /** Every cached answer, for status pages. */
  status(): DnsEntryStatus[] {
    const now = this.clock.now();
    const toWall = (t: number): number => this.clock.wallNow() - (now - t);
    return [...this.entries.values()].map((e) => ({
      type: e.type,
      name: e.name,
      state: this.stateOf(e, now),
      records: e.type === "SRV" ? e.srv.map((s) => `${s.priority} ${s.weight} ${s.port} ${s.name}`) : [...e.addresses],
      fetchedAt: e.answered ? toWall(e.fetchedAt) : undefined,
      expiresAt: e.answered ? toWall(e.expiresAt) : undefined,
      failures: e.failures,
      lastError: e.lastError === undefined ? undefined : { ...e.lastError, at: toWall(e.lastError.at) },
    }));
  }

  /** Clears every timer; answers arriving later are ignored. */
  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) this.clearTimer(e);
  }

  // ---- composing an answer from cached records -----------------------------------

  private compose(target: SipTarget, deps: Entry[]): Endpoint[] | undefined {
    const host = unbracket(target.host).toLowerCase();
    if (isIP(host) !== 0) {
      return [{ transport: target.transport, address: host, port: target.port ?? this.portFor(target.transport) }];
    }
    // RFC 3263 §4.2: with an explicit port, only A/AAAA are looked up.
    const service = target.port === undefined ? srvName(target.transport, host) : undefined;
    if (service === undefined) {
      return this.addresses(host, target.transport, target.port ?? this.portFor(target.transport), deps);
    }
    const srv = this.entry("SRV", service);
    deps.push(srv);
    if (!srv.answered) return srv.failing ? this.addresses(host, target.transport, this.portFor(target.transport), deps) : undefined;
    if (srv.srv.length === 0) {
      // No SRV records: the host itself, default port (RFC 3263 §4.2).
      return this.addresses(host, target.transport, this.portFor(target.transport), deps);
    }
    const out: Endpoint[] = [];
    let pending = false;
    for (const rec of srv.srv) {
      // RFC 2782: a target of "." means the service is decidedly not available here.
      if (rec.name === "." || rec.name === "") continue;
      const eps = this.addresses(rec.name.toLowerCase(), target.transport, rec.port, deps);
      if (eps === undefined) pending = true;
      else out.push(...eps);
    }
    return out.length === 0 && pending ? undefined : out;
  }

  private addresses(host: string, transport: TransportName, port: number, deps: Entry[]): Endpoint[] | undefined {
    if (isIP(host) !== 0) return [{ transport, address: host, port }];
    const out: Endpoint[] = [];
    let pending = false;
    for (const fam of this.families) {
      const e = this.entry(fam === 4 ? "A" : "AAAA", host);
      deps.push(e);
      if (!e.answered) {
        if (!e.failing) pending = true;
        continue;
      }
      for (const address of e.addresses) out.push({ transport, address, port });
    }
    // One family answered: use it now rather than wait for the other.
    return out.length === 0 && pending ? undefined : out;
  }

  // ---- cache entries ---------------------------------------------------------------

  private entry(type: RecordType, name: string): Entry {
    const key = `${type} ${name}`;
    const now = this.clock.now();
    let e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= this.maxEntries) this.evictLeastRecentlyUsed();
      e = {
        key,
        type,
        name,
        addresses: [],
        srv: [],
        answered: false,
        negative: false,
        failing: false,
        fetchedAt: now,
        expiresAt: now,
        lastUsed: now,
        failures: 0,
        lastError: undefined,
        inflight: undefined,
        timer: undefined,
      };
      this.entries.set(key, e);
      this.fetch(e);
    }
    e.lastUsed = now;
    return e;
  }

  private fetch(e: Entry): void {
    if (this.stopped || e.inflight !== undefined) return;
    const started = this.query(e).then(
      (answer) => this.onAnswer(e, answer),
      (err: unknown) => this.onQueryError(e, err),
    );
    e.inflight = started.finally(() => {
      e.inflight = undefined;
    });
  }

  private async query(e: Entry): Promise<{ addresses: string[]; srv: SrvRecord[]; ttlMs: number }> {
    switch (e.type) {
      case "A":
      case "AAAA": {
        const recs = e.type === "A" ? await this.backend.resolve4(e.name) : await this.backend.resolve6(e.name);
        let ttl = Infinity;
        for (const r of recs) ttl = Math.min(ttl, r.ttl * 1000);
        return { addresses: recs.map((r) => r.address), srv: [], ttlMs: recs.length === 0 ? this.negativeTtlMs : ttl };
      }
      case "SRV": {
        const recs = await this.backend.resolveSrv(e.name);
        return { addresses: [], srv: orderSrv(recs, this.random), ttlMs: recs.length === 0 ? this.negativeTtlMs : this.srvTtlMs };
      }
    }
  }

  private onAnswer(e: Entry, answer: { addresses: string[]; srv: SrvRecord[]; ttlMs: number }): void {
    if (this.stopped || this.entries.get(e.key) !== e) return;
    const now = this.clock.now();
    const before = this.recordsOf(e);
    const wasFailing = e.failing;
    e.addresses = answer.addresses;
    e.srv = answer.srv;
    e.negative = answer.addresses.length === 0 && answer.srv.length === 0;
    e.answered = true;
    e.failing = false;
    e.failures = 0;
    e.fetchedAt = now;
    const ttl = e.negative ? this.negativeTtlMs : Math.min(this.maxTtlMs, Math.max(this.minTtlMs, answer.ttlMs));
    e.expiresAt = now + ttl;
    this.generation++;
    this.schedule(e, Math.max(1, Math.floor(ttl * this.refreshAt)));
    if (wasFailing) this.emit({ kind: "recovered", type: e.type, name: e.name });
    const after = this.recordsOf(e);
    if (!sameRecords(before, after)) this.emit({ kind: "changed", type: e.type, name: e.name, records: after });
  }

  private onQueryError(e: Entry, err: unknown): void {
    if (this.stopped || this.entries.get(e.key) !== e) return;
    const code = typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : "EUNKNOWN";
    if (NEGATIVE_CODES.has(code)) {
      this.onAnswer(e, { addresses: [], srv: [], ttlMs: this.negativeTtlMs });
      return;
    }
    const now = this.clock.now();
    const reason = err instanceof Error ? err.message : String(err);
    e.failures++;
    e.failing = true;
    e.lastError = { code, reason, at: now };
    // Keep the last good answer while it is not too old (RFC 3263 leaves
    // this to the implementation; a PBX must stay reachable through a DNS outage).
    if (e.answered && now - e.fetchedAt > this.maxStaleMs) {
      e.answered = false;
      e.addresses = [];
      e.srv = [];
    }
    this.generation++;
    const usingStale = e.answered && !e.negative;
    this.schedule(e, Math.min(this.maxRetryMs, this.retryMs * 2 ** Math.min(e.failures - 1, 30)));
    this.logger?.warn({ type: e.type, name: e.name, code, usingStale }, "dns query failed");
    this.emit({ kind: "failed", type: e.type, name: e.name, code, reason, usingStale });
  }

  private schedule(e: Entry, ms: number): void {
    this.clearTimer(e);
    e.timer = this.clock.setTimer(ms, () => {
      e.timer = undefined;
      if (this.stopped || this.entries.get(e.key) !== e) return;
      if (this.clock.now() - e.lastUsed > this.idleMs) {
        this.entries.delete(e.key);
        this.generation++;
        return;
      }
      this.fetch(e);
    });
  }

  private clearTimer(e: Entry): void {
    if (e.timer !== undefined) {
      this.clock.clearTimer(e.timer);
      e.timer = undefined;
    }
  }

  private evictLeastRecentlyUsed(): void {
    let oldest: Entry | undefined;
    for (const e of this.entries.values()) if (oldest === undefined || e.lastUsed < oldest.lastUsed) oldest = e;
    if (oldest === undefined) return;
    this.clearTimer(oldest);
    this.entries.delete(oldest.key);
    this.generation++;
  }

  private stateOf(e: Entry, now: number): EntryState {
    if (!e.answered) return e.failing ? "failed" : "pending";
    if (e.failing) return "stale";
    if (e.negative) return "negative";
    return now > e.expiresAt ? "expired" : "fresh";
  }

  private recordsOf(e: Entry): string[] {
    return e.type === "SRV" ? e.srv.map((s) => `${s.priority} ${s.weight} ${s.port} ${s.name}`).sort() : [...e.addresses].sort();
  }

  private emit(ev: DnsEvent): void {
    if (this.onEvent === undefined) return;
    try {
      this.onEvent(ev);
    } catch (err) {
      this.logger?.error({ err }, "dns event handler threw");
    }
  }
}

/**
 * RFC 2782 order: ascending priority; within a priority, a weighted random
 * draw without replacement, zero-weight records first so they are picked
 * only rarely.
 */
export function orderSrv(records: readonly SrvRecord[], random: () => number): SrvRecord[] {
  const byPriority = new Map<number, SrvRecord[]>();
  for (const r of records) {
    const list = byPriority.get(r.priority);
    if (list === undefined) byPriority.set(r.priority, [r]);
    else list.push(r);
  }
  const out: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = byPriority.get(priority)!.slice().sort((a, b) => (a.weight === 0 ? 0 : 1) - (b.weight === 0 ? 0 : 1));
    while (group.length > 0) {
      let total = 0;
      for (const r of group) total += r.weight;
      const pick = Math.floor(random() * (total + 1));
      let running = 0;
      let chosen = group.length - 1;
      for (let i = 0; i < group.length; i++) {
        running += group[i]!.weight;
        if (running >= pick) {
          chosen = i;
          break;
        }
      }
      out.push(group.splice(chosen, 1)[0]!);
    }
  }
  return out;
}

function unbracket(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function sameRecords(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
