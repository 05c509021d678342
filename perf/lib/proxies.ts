/**
 * The proxies a load run can put between the SIPp phones and the SIPp PBXs:
 * none (phones talk to the Main PBX directly: the baseline), Kamailio with
 * perf/kamailio/kamailio.cfg, or sip-edge from dist/.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, isBound } from "../../test/helpers/sipp.js";
import { startChild } from "./child.js";
import type { Child } from "./child.js";
import { repoRoot } from "./paths.js";

export type ProxyKind = "none" | "kamailio" | "edge";

export interface Pbxs {
  main: number;
  standby: number;
}

export interface ProxyUnderTest {
  kind: ProxyKind;
  /** Where the phones send. */
  host: string;
  port: number;
  /** The root of the process tree whose CPU and memory are measured; none for the baseline. */
  child: Child | undefined;
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";

async function waitListening(child: Child, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(isBound("udp", HOST, port) && isBound("tcp", HOST, port))) {
    if (child.exited) throw new Error(`${child.name} exited before listening on ${port}:\n${child.output.slice(-4000)}`);
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`${child.name} not listening on UDP+TCP ${port} after ${timeoutMs} ms:\n${child.output.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function findKamailio(): string | undefined {
  const r = spawnSync("sh", ["-c", "PATH=$PATH:/usr/sbin:/usr/local/sbin command -v kamailio"], { encoding: "utf8" });
  const p = r.status === 0 ? r.stdout.trim() : "";
  return p === "" ? undefined : p;
}

/**
 * Kamailio in the foreground (-DD: the main process stays our child and its
 * workers are its children, so the whole tree is measured), logging to
 * stderr (-E), with the memory settings a stateful load needs.
 */
export async function startKamailio(pbxs: Pbxs, workDir: string): Promise<ProxyUnderTest> {
  const bin = findKamailio();
  if (bin === undefined) throw new Error("kamailio is not installed (Debian package kamailio)");
  const port = await freePort(HOST);
  const template = readFileSync(join(repoRoot(), "perf", "kamailio", "dispatcher.list.template"), "utf8");
  const list = join(workDir, "dispatcher.list");
  writeFileSync(list, template.replaceAll("MAIN_PORT", String(pbxs.main)).replaceAll("STANDBY_PORT", String(pbxs.standby)));
  const args = [
    "-f", join(repoRoot(), "perf", "kamailio", "kamailio.cfg"),
    "-DD", "-E", "-x", "tlsf", "-m", "1024", "-M", "16",
    "-Y", workDir,
    "-A", `SIP_PORT=${port}`,
    "-A", `DISPATCHER_LIST="${list}"`,
  ];
  const child = startChild("kamailio", bin, args, { cwd: workDir });
  await waitListening(child, port, 20_000);
  return { kind: "kamailio", host: HOST, port, child, stop: () => child.stop() };
}

/** The edge config a load run uses; see the assumption stated in perf/load.ts. */
export function edgeConfigYaml(port: number, pbxs: Pbxs, overload: "on" | "off" = "on", shedAtMs?: number, udpIo?: UdpIoChoice, softStateMax?: number): string {
  return [
    "# Written by perf/lib/proxies.ts for one load run.",
    // info: the edge's few lifecycle lines, among them its counters when it stops (perf/load.ts prints them).
    "log: { level: info }",
    "listen:",
    `  - { transport: udp, address: ${HOST}, port: ${port} }`,
    `  - { transport: tcp, address: ${HOST}, port: ${port} }`,
    "targets:",
    `  - { name: main, uri: "sip:${HOST}:${pbxs.main}", priority: 1 }`,
    `  - { name: standby, uri: "sip:${HOST}:${pbxs.standby}", priority: 2 }`,
    // An inline key: nothing is written next to the config.
    `flowToken: { key: "${randomBytes(32).toString("hex")}" }`,
    `admin: { address: ${HOST}, port: 0 }`,
    // Probe as often as Kamailio's dispatcher does in perf/kamailio/kamailio.cfg.
    "health: { intervalSeconds: 2, intervalDownSeconds: 2 }",
    // Off: no shedding and no deferred timeouts, as before src/edge/overload.ts.
    ...(overload === "off" ? ["overload: { shedAtMs: 0, maxTimeoutDeferrals: 0 }"] : shedAtMs === undefined ? [] : [`overload: { shedAtMs: ${shedAtMs} }`]),
    // Only when asked for: a build from before the udp section would refuse it (perf/edge-ab.ts).
    ...(udpIo === undefined ? [] : [`udp: { io: ${udpIo} }`]),
    ...(softStateMax === undefined ? [] : [`softState: { maxEntries: ${softStateMax} }`]),
    "",
  ].join("\n");
}

/** proxy-rules/edge.yaml `udp.io`. */
export type UdpIoChoice = "auto" | "native" | "dgram";

/** How the edge under test runs. */
export interface EdgeRunOptions {
  /** sip-edge --workers (default 1). */
  workers?: number;
  /**
   * The edge runs under `node --cpu-prof` and writes its profile (one
   * .cpuprofile per process) there when it exits, i.e. when the run stops it
   * with SIGTERM at the end.
   */
  cpuProfDir?: string;
  /** The checkout whose dist/ runs (an A/B against an older build in a git worktree, perf/edge-ab.ts). */
  root?: string;
  /** A rules.yaml written beside the config, so the rules engine routes (perf/lib/rules-text.ts). */
  rulesYaml?: string;
  /** "off": the edge neither sheds nor puts timeouts off (src/edge/overload.ts). */
  overload?: "on" | "off";
  /** With overload on: the queue wait at which INVITEs are shed (the default of proxy-rules/edge.yaml when absent). */
  shedAtMs?: number;
  /** `udp.io` of the edge; the config's default (auto) when absent. */
  udpIo?: UdpIoChoice;
  /** `softState.maxEntries` of the edge; the config's default when absent. */
  softStateMax?: number;
  /** Options for node itself, before the script (V8 flags such as `--max-semi-space-size=2`). */
  nodeArgs?: readonly string[];
}

export async function startEdge(pbxs: Pbxs, workDir: string, o: EdgeRunOptions = {}): Promise<ProxyUnderTest> {
  const cli = join(o.root ?? repoRoot(), "dist", "src", "cli.js");
  if (!existsSync(cli)) throw new Error(`${cli} not found: run npm run build first`);
  const port = await freePort(HOST);
  const config = join(workDir, "edge.yaml");
  writeFileSync(config, edgeConfigYaml(port, pbxs, o.overload, o.shedAtMs, o.udpIo, o.softStateMax));
  const rules = join(workDir, "rules.yaml");
  // The work directory may be reused by the next proxy of a run: a rules
  // file left there by an earlier edge must not route this one.
  if (o.rulesYaml !== undefined) writeFileSync(rules, o.rulesYaml);
  else rmSync(rules, { force: true });
  const prof = o.cpuProfDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", o.cpuProfDir];
  const args = [...(o.nodeArgs ?? []), ...prof, cli, "start", "--config", config];
  // Always explicit, so the recorded runs say how many processes they used.
  args.push("--workers", String(o.workers ?? 1));
  const child = startChild("sip-edge", process.execPath, args, { cwd: workDir });
  await waitListening(child, port, 20_000);
  return { kind: "edge", host: HOST, port, child, stop: () => child.stop() };
}

export function noProxy(pbxs: Pbxs): ProxyUnderTest {
  return { kind: "none", host: HOST, port: pbxs.main, child: undefined, stop: async () => undefined };
}

export async function startProxy(kind: ProxyKind, pbxs: Pbxs, workDir: string, edge: EdgeRunOptions = {}): Promise<ProxyUnderTest> {
  switch (kind) {
    case "none":
      return noProxy(pbxs);
    case "kamailio":
      return startKamailio(pbxs, workDir);
    case "edge":
      return startEdge(pbxs, workDir, edge);
  }
}
