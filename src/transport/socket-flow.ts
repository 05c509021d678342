import type { Socket } from "node:net";
import { StreamFramer, type FramerLimits } from "../sip/framer.js";
import { Flow, type ErrorCallback, type FlowHost } from "./flow.js";
import { CRLF } from "./keepalive.js";
import type { BoundListener, Endpoint, TransportErrorCode } from "./types.js";

/**
 * A TCP or TLS connection: bytes are cut into SIP messages by the stream
 * framer (RFC 3261 §18.3); CRLFCRLF pings are answered with CRLF
 * (RFC 5626 §4.4.1); a framing error closes the connection because the
 * position of the next message can no longer be known.
 */
export class SocketFlow extends Flow {
  private readonly framer: StreamFramer;

  constructor(
    host: FlowHost,
    id: string,
    private readonly socket: Socket,
    remote: Endpoint,
    listener: BoundListener,
    outbound: boolean,
    /** Event that marks an outbound connection as usable: "connect" for TCP, "secureConnect" for TLS. */
    readyEvent: "connect" | "secureConnect" | undefined,
    framerLimits: FramerLimits,
  ) {
    super(host, id, remote.transport, remote, listener, outbound, readyEvent !== undefined);
    this.framer = new StreamFramer(framerLimits);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) => this.onSocketError(err));
    socket.on("close", () => {
      if (this.state === "connecting") this.fail("connect-failed", "closed before the connection was established");
      else this.close("closed");
    });
    if (readyEvent !== undefined) socket.once(readyEvent, () => this.opened());
  }

  protected backlog(): number {
    return this.socket.writableLength;
  }

  protected write(data: Buffer | string, onError: ErrorCallback | undefined): void {
    if (onError === undefined) {
      this.socket.write(data);
      return;
    }
    this.socket.write(data, (err) => {
      if (err) this.host.report(onError, { code: "write-failed", reason: err.message, dest: this.remote });
    });
  }

  protected teardown(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.touch();
    const events = this.framer.push(chunk);
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      switch (ev.kind) {
        case "message":
          this.host.deliver(this, ev.data);
          // The handler may have closed this flow.
          if (this.state === "closed") return;
          break;
        case "ping":
          this.host.keepalive();
          this.socket.write(CRLF);
          break;
        case "pong":
          this.host.keepalive();
          break;
        case "error":
          this.host.count(`framing-${ev.code}`);
          this.close(`framing error at byte ${ev.offset}: ${ev.reason}`);
          return;
      }
    }
  }

  private onSocketError(err: NodeJS.ErrnoException): void {
    if (this.state === "closed") return;
    if (this.state === "connecting") {
      this.fail(connectErrorCode(err), err.message);
      return;
    }
    this.host.count("socket-error");
    this.close(`socket error: ${err.code ?? err.message}`);
  }
}

/** Maps a failure while connecting to the code callers (health, 503 decisions) act on. */
export function connectErrorCode(err: NodeJS.ErrnoException): TransportErrorCode {
  const code = err.code ?? "";
  if (code === "ECONNREFUSED") return "connect-refused";
  if (code === "ETIMEDOUT") return "connect-timeout";
  if (code.startsWith("ERR_TLS") || code.startsWith("ERR_SSL") || code.includes("CERT") || code.startsWith("UNABLE_TO")) {
    return "tls";
  }
  if ("library" in err && typeof (err as { library?: unknown }).library === "string") return "tls";
  return "connect-failed";
}
