import { headerValue, type SipMessage } from "../sip/message.js";
import type { SipUri } from "../sip/uri.js";
import type { RuleTransport } from "./schema.js";
import type { MatchInput } from "./types.js";

/**
 * A `MatchInput` over a parsed message and the socket it came from. The
 * edge can keep one instance and `set` it per request: matching is
 * synchronous and keeps no reference to it.
 */
export class MessageInput implements MatchInput {
  method = "";
  requestUri: SipUri | undefined;
  sourceAddress = "";
  sourcePort = 0;
  transport: RuleTransport = "udp";
  localPort = 0;
  private message: SipMessage | undefined;

  set(message: SipMessage, source: { readonly address: string; readonly port: number }, transport: RuleTransport, localPort: number): this {
    this.message = message;
    this.method = message.method;
    this.requestUri = message.uri;
    this.sourceAddress = source.address;
    this.sourcePort = source.port;
    this.transport = transport;
    this.localPort = localPort;
    return this;
  }

  header(name: string): string | undefined {
    const m = this.message;
    if (m === undefined) return undefined;
    // Names come from the compiled table, already in lower-case long form.
    const i = m.indexOf(name);
    return i < 0 ? undefined : headerValue(m.headers[i]!);
  }
}

export function messageInput(
  message: SipMessage,
  source: { readonly address: string; readonly port: number },
  transport: RuleTransport,
  localPort: number,
): MatchInput {
  return new MessageInput().set(message, source, transport, localPort);
}
