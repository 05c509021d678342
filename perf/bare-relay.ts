/**
 * The floor of Node's UDP path on this machine: a relay that does no SIP
 * work at all, under the same SIPp phone and PBX as the load runs (a
 * benchmark, not a test). --native relays on the edge's native socket
 * (src/transport/native-udp.ts) instead of dgram.
 *
 *   npm run build && node dist/perf/bare-relay.js [--rate 2000] [--seconds 10] [--callback] [--literal-lookup] [--native]
 *
 * The relay (this file, started again as a child with --serve) has one
 * dgram socket like the edge's UDP listener: a datagram from the phone goes
 * to the Main PBX unchanged, one from the PBX goes to the last phone address
 * seen. The figure to read is CPU per relayed datagram, one receive and
 * one send, which is what every message costs the edge below its SIP logic
 * (a call is seven of them, as through the edge). --callback passes a
 * completion callback to socket.send(), as the edge's transport layer does.
 * Loopback only; every process is stopped by PID; bounded in time.
 */
import { createSocket } from "node:dgram";
import { NativeUdpSocket, nativeUdp } from "../src/transport/native-udp.js";
import { fileURLToPath } from "node:url";
import { freePort, isBound, startSipp } from "../test/helpers/sipp.js";
import { startChild } from "./lib/child.js";
import { sampleTree } from "./lib/proc.js";
import { machineInfo, startRun } from "./lib/run.js";
import { LOAD_BUFF_SIZE, settle, stepTimeoutS } from "./lib/steps.js";

const HOST = "127.0.0.1";

/** The same relay on the edge's native socket (src/transport/native-udp.ts). */
function serveNative(port: number, pbxPort: number): void {
  const { binding, error } = nativeUdp();
  if (binding === undefined) throw new Error(error);
  let phonePort = 0;
  let relayed = 0;
  let failed = 0;
  const socket: NativeUdpSocket = new NativeUdpSocket(binding, 4, (data, _address, from) => {
    let to: number;
    if (from === pbxPort) {
      if (phonePort === 0) return;
      to = phonePort;
    } else {
      phonePort = from;
      to = pbxPort;
    }
    relayed++;
    if (socket.send(data, to, HOST, () => failed++) !== 0) failed++;
  }, () => failed++);
  socket.bind(HOST, port, 0, LOAD_BUFF_SIZE);
  process.on("SIGUSR1", () => process.stdout.write(`relayed ${relayed}\n`));
  process.on("SIGTERM", () => {
    if (failed > 0) process.stderr.write(`${failed} sends or reads failed\n`);
    socket.close();
    process.exit(0);
  });
}

function serve(port: number, pbxPort: number, withCallback: boolean, literalLookup: boolean): void {
  const socket = literalLookup
    ? createSocket({ type: "udp4", lookup: (address, _family, cb) => (cb as (e: null, a: string, f: number) => void)(null, address, 4) })
    : createSocket("udp4");
  let phonePort = 0;
  let relayed = 0;
  const sent = (err: Error | null): void => {
    if (err) process.stderr.write(`send failed: ${err.message}\n`);
  };
  socket.on("message", (data, rinfo) => {
    let to: number;
    if (rinfo.port === pbxPort) {
      if (phonePort === 0) return;
      to = phonePort;
    } else {
      phonePort = rinfo.port;
      to = pbxPort;
    }
    relayed++;
    if (withCallback) socket.send(data, to, HOST, sent);
    else socket.send(data, to, HOST);
  });
  socket.bind(port, HOST, () => {
    socket.setRecvBufferSize(LOAD_BUFF_SIZE);
    socket.setSendBufferSize(LOAD_BUFF_SIZE);
  });
  // The parent reads the count around its measured step.
  process.on("SIGUSR1", () => process.stdout.write(`relayed ${relayed}\n`));
  process.on("SIGTERM", () => socket.close(() => process.exit(0)));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string, dflt: number): number => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  if (args[0] === "--serve" && args.includes("--native")) return serveNative(Number(args[1]), Number(args[2]));
  if (args[0] === "--serve") return serve(Number(args[1]), Number(args[2]), args.includes("--callback"), args.includes("--literal-lookup"));
  const rate = arg("--rate", 2000);
  const seconds = arg("--seconds", 10);
  const withCallback = args.includes("--callback");
  const literal = args.includes("--literal-lookup");
  const native = args.includes("--native");
  const run = await startRun(120 + 2 * stepTimeoutS(seconds));
  try {
    const port = await freePort(HOST);
    const self = fileURLToPath(import.meta.url);
    const relay = startChild("bare-relay", process.execPath, [self, "--serve", String(port), String(run.pbxs.main), ...(withCallback ? ["--callback"] : []), ...(literal ? ["--literal-lookup"] : []), ...(native ? ["--native"] : [])]);
    const deadline = Date.now() + 10_000;
    while (!isBound("udp", HOST, port)) {
      if (Date.now() > deadline || relay.exited) throw new Error(`relay not listening:\n${relay.output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const phone = (calls: number, r: number) =>
      startSipp({ scenario: "phone-call.xml", remote: { host: HOST, port }, transport: "udp", calls, rate: r, concurrentLimit: Math.max(100, r * 3), timeoutS: stepTimeoutS(seconds), buffSize: LOAD_BUFF_SIZE, workDir: run.workDir });
    // Warm-up (JIT), unmeasured.
    const warm = await phone(400, 200);
    run.started.push(warm);
    await warm.result();
    await settle([relay.pid, ...run.pbxPids]);
    const count = async (): Promise<number> => {
      const before = relay.output.length;
      relay.signal("SIGUSR1");
      for (let i = 0; i < 100 && relay.output.length === before; i++) await new Promise((res) => setTimeout(res, 10));
      const all = [...relay.output.matchAll(/relayed (\d+)/g)];
      return Number(all[all.length - 1]?.[1] ?? "0");
    };
    const n0 = await count();
    const cpu0 = sampleTree(relay.pid, false).cpuS;
    const p = await phone(rate * seconds, rate);
    run.started.push(p);
    const r = await p.result();
    const cpuS = sampleTree(relay.pid, false).cpuS - cpu0;
    const relayed = (await count()) - n0;
    await relay.stop();
    console.log(`# bare Node UDP relay, ${native ? "native socket (recvmmsg, sendto)" : "dgram"}, send ${withCallback ? "with" : "without"} callback, ${literal ? "literal" : "default"} lookup; ${machineInfo()}`);
    console.log(`calls ${r.successful} ok, ${r.failed} failed at ${rate}/s; datagrams relayed ${relayed} (${(relayed / Math.max(1, r.successful)).toFixed(2)} per call)`);
    console.log(`relay CPU: ${((cpuS * 1e6) / relayed).toFixed(2)} µs per relayed datagram (receive + send), ${((cpuS * 1e6) / Math.max(1, r.successful)).toFixed(1)} µs per call`);
  } finally {
    await run.finish();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
