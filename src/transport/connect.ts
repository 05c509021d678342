import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { WebSocket } from "ws";
import { hostRef } from "./address.js";
import type { Endpoint } from "./types.js";

/**
 * Starts an outbound TCP or TLS connection. Failures arrive later as socket
 * events; the destination has already been validated, so nothing here
 * throws on peer-chosen values.
 */
export function openStream(dest: Endpoint, tls: ConnectionOptions | undefined, localAddress: string | undefined): Socket {
  const base = { host: dest.address, port: dest.port, ...(localAddress === undefined ? {} : { localAddress }) };
  return tls === undefined ? netConnect(base) : tlsConnect({ ...tls, ...base });
}

/**
 * Starts an outbound WebSocket (RFC 7118) offering only the "sip"
 * subprotocol; the flow checks the server's choice once open.
 */
export function openWebSocket(dest: Endpoint, tls: ConnectionOptions | undefined, localAddress: string | undefined, maxPayload: number): WebSocket {
  const scheme = dest.transport === "wss" ? "wss" : "ws";
  const url = `${scheme}://${hostRef(dest.address)}:${dest.port}/`;
  return new WebSocket(url, ["sip"], {
    perMessageDeflate: false,
    maxPayload,
    followRedirects: false,
    ...(localAddress === undefined ? {} : { localAddress }),
    ...(tls ?? {}),
  });
}
