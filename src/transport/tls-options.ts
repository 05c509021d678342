import { isIP } from "node:net";
import type { ConnectionOptions, TlsOptions } from "node:tls";
import type { TlsSettings } from "./types.js";

/** RFC 3261 §26.2.1 asks for TLS; nothing older than 1.2 is offered or accepted. */
const DEFAULT_MIN_VERSION = "TLSv1.2";

export function serverTlsOptions(s: TlsSettings): TlsOptions {
  const requireClientCert = s.requireClientCert ?? false;
  return {
    cert: s.cert,
    key: s.key,
    ...(s.ca === undefined ? {} : { ca: s.ca }),
    minVersion: s.minVersion ?? DEFAULT_MIN_VERSION,
    requestCert: requireClientCert,
    rejectUnauthorized: requireClientCert,
  };
}

/**
 * Options for an outbound TLS/WSS connection. Our own certificate is offered
 * in case the peer asks for one (mutual TLS towards a PBX). SNI is sent only
 * for a host name: RFC 6066 §3 forbids IP literals in server_name.
 */
export function clientTlsOptions(s: TlsSettings | undefined, servername: string | undefined): ConnectionOptions {
  const opts: ConnectionOptions = {
    minVersion: s?.minVersion ?? DEFAULT_MIN_VERSION,
    rejectUnauthorized: s?.verifyPeer ?? true,
  };
  if (s !== undefined) {
    opts.cert = s.cert;
    opts.key = s.key;
    if (s.ca !== undefined) opts.ca = s.ca;
  }
  if (servername !== undefined && servername !== "" && isIP(servername) === 0) opts.servername = servername;
  return opts;
}
