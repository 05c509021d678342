import { nativeUdp } from "../../src/transport/native-udp.js";
import type { UdpIo } from "../../src/transport/udp.js";

/**
 * The UDP I/O kinds a test runs over: dgram always, and the native socket
 * when it is built (test/integration/native-udp.test.ts fails when it is
 * not, so a missing build never passes unseen).
 */
export const UDP_IOS: ReadonlyArray<{ name: string; io: UdpIo }> = [
  { name: "dgram", io: { kind: "dgram" } },
  ...(nativeUdp().binding === undefined ? [] : [{ name: "native", io: { kind: "native", group: 0 } as const }]),
];
