import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";

/**
 * Certificate checks at config time: a wrong file, a key that does not match
 * its certificate or an encrypted key is reported at load, with the field to
 * fix, instead of as a handshake failure when the first phone connects.
 */

export interface TlsFiles {
  cert: string;
  key: string;
  ca?: string | undefined;
}

export interface TlsProblem {
  field: "cert" | "key" | "ca";
  message: string;
}

/** The TLS settings the transports take: PEM text plus the policy fields, as in the config. */
export interface TlsPem {
  cert: string;
  key: string;
  ca?: string;
  minVersion: "TLSv1.2" | "TLSv1.3";
  verifyPeer: boolean;
  requireClientCert: boolean;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Why `pem` is not one or more PEM certificates; undefined when it is. */
function certificateProblem(pem: string): string | undefined {
  const blocks = pem.match(PEM_CERT);
  if (blocks === null) return "no PEM certificate (-----BEGIN CERTIFICATE-----) in it";
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (e) {
      return `certificate ${i + 1} in it cannot be parsed (${(e as Error).message})`;
    }
  }
  return undefined;
}

function opensslReason(e: unknown): string {
  const msg = (e as Error).message;
  // OpenSSL messages look like "error:1E08010C:DECODER routines::unsupported": keep the readable tail.
  const tail = msg.split("::").pop() ?? msg;
  return tail.trim();
}

/** Checks already-read PEM text; every problem found, each with the field it belongs to. */
export function checkTlsPem(pem: TlsFiles): TlsProblem[] {
  const problems: TlsProblem[] = [];
  const certWhy = certificateProblem(pem.cert);
  if (certWhy !== undefined) problems.push({ field: "cert", message: `expected a PEM certificate chain, got a file with ${certWhy}` });
  let keyOk = false;
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem.key)) {
    problems.push({ field: "key", message: "expected an unencrypted PEM private key, got an encrypted one (no passphrase can be given)" });
  } else {
    try {
      createSecureContext({ key: pem.key });
      keyOk = true;
    } catch (e) {
      problems.push({ field: "key", message: `expected a PEM private key, got a file OpenSSL cannot read (${opensslReason(e)})` });
    }
  }
  if (pem.ca !== undefined) {
    const caWhy = certificateProblem(pem.ca);
    if (caWhy !== undefined) problems.push({ field: "ca", message: `expected PEM CA certificates, got a file with ${caWhy}` });
  }
  if (certWhy === undefined && keyOk) {
    try {
      createSecureContext({ cert: pem.cert, key: pem.key });
    } catch (e) {
      problems.push({ field: "key", message: `expected the private key of tls.cert, got a key that does not match it (${opensslReason(e)})` });
    }
  }
  return problems;
}

/** Reads the PEM files named by a validated config; throws (config error) if they became unreadable since. */
export function readTlsPem(tls: TlsFiles & Omit<TlsPem, "cert" | "key" | "ca">): TlsPem {
  const read = (field: string, p: string): string => {
    try {
      return readFileSync(p, "utf8");
    } catch (e) {
      throw new Error(`tls.${field} ${p}: cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  const out: TlsPem = {
    cert: read("cert", tls.cert),
    key: read("key", tls.key),
    minVersion: tls.minVersion,
    verifyPeer: tls.verifyPeer,
    requireClientCert: tls.requireClientCert,
  };
  if (tls.ca !== undefined) out.ca = read("ca", tls.ca);
  return out;
}
