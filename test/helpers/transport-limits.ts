import type { TransportLimits } from "../../src/transport/types.js";

/** Small limits for transport tests, so nothing in them depends on the production defaults. */
export const TEST_LIMITS: Readonly<TransportLimits> = Object.freeze({
  maxMessageBytes: 4096,
  maxStreamBufferBytes: 8192,
  maxConnections: 50,
  maxConnectionsPerSource: 20,
  connectTimeoutMs: 2000,
  idleTimeoutMs: 60_000,
});
