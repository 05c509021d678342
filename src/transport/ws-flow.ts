import { isUtf8 } from "node:buffer";
import type { RawData, WebSocket } from "ws";
import { Flow, type ErrorCallback, type FlowHost } from "./flow.js";
import { CRLF, classifyKeepalive } from "./keepalive.js";
import { connectErrorCode } from "./socket-flow.js";
import type { BoundListener, Endpoint } from "./types.js";

/** WebSocket readyState OPEN (RFC 6455 §4.1); a constant so no runtime import of ws is needed here. */
const OPEN = 1;

/**
 * A SIP-over-WebSocket connection (RFC 7118): each WebSocket message is one
 * whole SIP message, so no framer. Messages made only of CRLFs are the
 * keepalives some WebSocket clients send; a ping is answered with CRLF.
 */
export class WsFlow extends Flow {
  constructor(
    host: FlowHost,
    id: string,
    private readonly ws: WebSocket,
    remote: Endpoint,
    listener: BoundListener,
    outbound: boolean,
  ) {
    super(host, id, remote.transport, remote, listener, outbound, outbound);
    ws.on("message", (data: RawData) => this.onWsMessage(data));
    ws.on("ping", () => this.touch());
    ws.on("pong", () => this.touch());
    ws.on("error", (err: NodeJS.ErrnoException) => {
      // terminate() of a connecting WebSocket reports an error after we closed it.
      if (this.state === "closed") return;
      if (this.state === "connecting") {
        // The ws client itself refuses a handshake without our subprotocol.
        this.fail(/subprotocol/i.test(err.message) ? "ws-protocol" : connectErrorCode(err), err.message);
        return;
      }
      this.host.count("ws-error");
      this.close(`websocket error: ${err.message}`);
    });
    ws.on("close", (code: number) => {
      if (this.state === "connecting") this.fail("connect-failed", `closed with ${code} before opening`);
      else this.close(`websocket closed (${code})`);
    });
    if (outbound) {
      ws.once("open", () => {
        // RFC 7118 §4.1: the server must have agreed to the "sip" subprotocol.
        if (ws.protocol !== "sip") {
          this.fail("ws-protocol", `server chose subprotocol "${ws.protocol}" instead of "sip"`);
          return;
        }
        this.opened();
      });
    }
  }

  protected backlog(): number {
    return this.ws.bufferedAmount;
  }

  protected write(data: Buffer | string, onError: ErrorCallback | undefined): void {
    if (this.ws.readyState !== OPEN) {
      if (onError !== undefined) this.host.report(onError, { code: "flow-gone", reason: "websocket is closing", dest: this.remote });
      return;
    }
    // RFC 7118 §5.1: text frames carry UTF-8 only; anything else goes binary.
    const binary = typeof data !== "string" && !isUtf8(data);
    if (onError === undefined) {
      this.ws.send(data, { binary });
      return;
    }
    this.ws.send(data, { binary }, (err) => {
      if (err) this.host.report(onError, { code: "write-failed", reason: err.message, dest: this.remote });
    });
  }

  protected teardown(): void {
    this.ws.terminate();
  }

  private onWsMessage(raw: RawData): void {
    this.touch();
    const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
    const ka = classifyKeepalive(data);
    if (ka !== "none") {
      this.host.keepalive();
      if (ka === "ping") this.write(CRLF.toString("latin1"), undefined);
      return;
    }
    this.host.deliver(this, data);
  }
}
