import { generate } from "selfsigned";

export interface TestCerts {
  /** PEM of the test CA that signed `cert`; trust it on the client side. */
  ca: string;
  /** PEM certificate for localhost, 127.0.0.1 and ::1. */
  cert: string;
  /** PEM private key of `cert`. */
  key: string;
}

let cached: Promise<TestCerts> | undefined;
let cachedSelfSigned: Promise<TestCerts> | undefined;

const ONE_DAY_MS = 24 * 60 * 60 * 1000;

function validity(): { notBeforeDate: Date; notAfterDate: Date } {
  const now = Date.now();
  return { notBeforeDate: new Date(now - ONE_DAY_MS), notAfterDate: new Date(now + 30 * ONE_DAY_MS) };
}

const SERVER_EXTENSIONS = [
  { name: "basicConstraints" as const, cA: false },
  { name: "keyUsage" as const, digitalSignature: true, keyEncipherment: true },
  { name: "extKeyUsage" as const, serverAuth: true, clientAuth: true },
  {
    name: "subjectAltName" as const,
    altNames: [
      { type: 2 as const, value: "localhost" },
      { type: 7 as const, ip: "127.0.0.1" },
      { type: 7 as const, ip: "::1" },
    ],
  },
];

/** A test CA and a server certificate it signed, generated once per process, in memory. */
export function testCerts(): Promise<TestCerts> {
  cached ??= (async () => {
    const ca = await generate([{ name: "commonName", value: "sip-edge test CA" }], {
      keyType: "ec",
      algorithm: "sha256",
      ...validity(),
      extensions: [
        { name: "basicConstraints", cA: true, critical: true },
        { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    });
    const server = await generate([{ name: "commonName", value: "localhost" }], {
      keyType: "ec",
      algorithm: "sha256",
      ...validity(),
      ca: { key: ca.private, cert: ca.cert },
      extensions: SERVER_EXTENSIONS,
    });
    return { ca: ca.cert, cert: server.cert, key: server.private };
  })();
  return cached;
}

/** A certificate for the same names signed by nobody the tests trust (for verification failures). */
export function untrustedCerts(): Promise<TestCerts> {
  cachedSelfSigned ??= (async () => {
    const own = await generate([{ name: "commonName", value: "localhost" }], {
      keyType: "ec",
      algorithm: "sha256",
      ...validity(),
      extensions: SERVER_EXTENSIONS,
    });
    return { ca: own.cert, cert: own.cert, key: own.private };
  })();
  return cachedSelfSigned;
}
