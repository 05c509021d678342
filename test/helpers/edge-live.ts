/**
 * A real edge on 127.0.0.1 (port 0) with fake PBXs and phones as plain
 * sockets, for integration tests. Everything is closed by `close()`.
 */
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { Edge, type EdgeOptions } from "../../src/edge/edge.js";
import { DEFAULT_FAILOVER } from "../../src/edge/proxy.js";
import { DEFAULT_LIMITS } from "../../src/sip/parse.js";
import { systemClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { parse } from "../../src/sip/parse.js";
import { waitFor } from "./wait.js";

export class UdpPeer {
  readonly received: string[] = [];
  private constructor(
    readonly sock: Socket,
    readonly port: number,
  ) {}

  static async open(answer?: (text: string, peer: UdpPeer, rinfo: { address: string; port: number }) => void): Promise<UdpPeer> {
    const sock = createSocket("udp4");
    sock.bind(0, "127.0.0.1");
    await once(sock, "listening");
    const p = new UdpPeer(sock, (sock.address() as AddressInfo).port);
    sock.on("message", (msg, rinfo) => {
      const text = msg.toString("latin1");
      p.received.push(text);
      answer?.(text, p, rinfo);
    });
    return p;
  }

  /** Text is one character per byte, as the edge reads and writes it. */
  send(text: string, port: number, address = "127.0.0.1"): void {
    this.sock.send(Buffer.from(text, "latin1"), port, address);
  }

  /** Waits for the n-th message (1-based) and returns it. */
  async nth(n: number, timeoutMs = 10_000): Promise<string> {
    return waitFor(() => this.received[n - 1], { timeoutMs });
  }

  close(): void {
    this.sock.close();
  }
}

/** A response to `req` copying Via/From/To/Call-ID/CSeq, plus extra lines. */
export function answer(req: string, statusLine: string, extra: string[] = [], toTag = "pbx1", body = ""): string {
  const r = parse(req);
  if (!r.ok) throw new Error(`cannot answer unparsable request: ${r.reason}`);
  const lines = [`SIP/2.0 ${statusLine}`];
  for (const h of r.message.headers) {
    if (h.name === "to" && !/;tag=/.test(h.raw)) lines.push(`${h.raw};tag=${toTag}`);
    else if (["via", "from", "to", "call-id", "cseq", "record-route"].includes(h.name)) lines.push(h.raw);
  }
  return [...lines, ...extra, `Content-Length: ${body.length}`, "", body].join("\r\n");
}

const PBX_SDP = ["v=0", "o=pbx 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0", "m=audio 41000 RTP/AVP 0", ""].join("\r\n");

/**
 * A PBX stand-in on UDP: 200 to REGISTER (echoing Contact and Path), 200
 * with SDP and a Contact to INVITE, 200 to BYE and OPTIONS.
 */
export function pbxBehaviour(text: string, p: UdpPeer, rinfo: { address: string; port: number }): void {
  const method = /^([A-Z]+) /.exec(text)?.[1];
  const contact = /\r\n(?:Contact|m): ([^\r]+)\r\n/i.exec(text)?.[1];
  const path = /\r\nPath: ([^\r]+)\r\n/.exec(text)?.[1];
  let reply: string | undefined;
  if (method === "REGISTER") reply = answer(text, "200 OK", [...(contact === undefined ? [] : [`Contact: ${contact}`]), ...(path === undefined ? [] : [`Path: ${path}`])]);
  else if (method === "INVITE") reply = answer(text, "200 OK", [`Contact: <sip:pbx@127.0.0.1:${p.port}>`, "Content-Type: application/sdp"], "pbx1", PBX_SDP);
  else if (method === "BYE" || method === "OPTIONS") reply = answer(text, "200 OK");
  if (reply !== undefined) p.send(reply, rinfo.port, rinfo.address);
}

export async function startEdge(targets: EdgeOptions["targets"], over: Partial<EdgeOptions> = {}): Promise<Edge> {
  return Edge.start({
    listeners: [
      { transport: "udp", address: "127.0.0.1", port: 0 },
      { transport: "tcp", address: "127.0.0.1", port: 0 },
    ],
    domains: ["edge.example.com"],
    targets,
    transportLimits: { maxMessageBytes: 65535, maxStreamBufferBytes: 262144, maxConnections: 1000, maxConnectionsPerSource: 100, connectTimeoutMs: 2000, idleTimeoutMs: 600_000 },
    parseLimits: DEFAULT_LIMITS,
    softState: { maxEntries: 10_000, ttlMs: 180_000 },
    flowKey: Buffer.alloc(32, 9),
    failover: DEFAULT_FAILOVER,
    clock: systemClock,
    logger: silentLogger,
    ...over,
  });
}

export function portOf(edge: Edge, transport: "udp" | "tcp" | "tls" | "ws" | "wss"): number {
  const l = edge.listeners.find((x) => x.transport === transport);
  if (l === undefined) throw new Error(`no ${transport} listener`);
  return l.port;
}
