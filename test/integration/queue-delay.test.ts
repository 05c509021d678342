/**
 * The UDP queue-delay probe through real sockets on 127.0.0.1
 * (src/transport/queue-delay.ts): each socket sends itself a stamped
 * datagram; the fake clock moves between the send and the read, so the
 * measured wait is exactly what the test moved it by.
 */
import t from "tap";
import { UDP_IOS } from "../helpers/udp-io.js";
import { createSocket } from "node:dgram";
import { TransportLayer } from "../../src/transport/layer.js";
import { encodeProbe } from "../../src/transport/queue-delay.js";
import type { UdpIo } from "../../src/transport/udp.js";
import type { InboundMessage } from "../../src/transport/types.js";
import { FakeClock } from "../../src/util/clock.js";
import { silentLogger } from "../../src/util/logger.js";
import { TEST_LIMITS } from "../helpers/transport-limits.js";
import { waitFor } from "../helpers/wait.js";

const LIMITS = TEST_LIMITS;

/** One probe per test: the interval is far longer than any test moves the clock. */
const ONE_PROBE = { intervalMs: 3_600_000, staleAfterMs: 7_200_000 };

async function start(t: { teardown(fn: () => unknown): void }, udpIo: UdpIo, privateSockets = false, queueProbe = ONE_PROBE) {
  const clock = new FakeClock();
  const layer = new TransportLayer({
    listeners: [{ transport: "udp", address: "127.0.0.1", port: 0 }],
    limits: LIMITS,
    clock,
    logger: silentLogger,
    queueProbe,
    udpIo,
    ...(privateSockets ? { udpPrivateSockets: true } : {}),
  });
  const received: InboundMessage[] = [];
  layer.onMessage = (m) => received.push(m);
  const [bound] = await layer.start();
  t.teardown(() => layer.stop());
  return { clock, layer, received, port: bound!.port };
}

for (const { name: ioName, io } of UDP_IOS) {
  t.test(`${ioName}: the probe sent at start is read back with the time it waited, and is never handed on as a message`, async (t) => {
    const { clock, layer, received, port } = await start(t, io);
    t.equal(layer.queueDelayMs(), 0, "nothing measured yet");
    // Synchronously after start: the probe is in flight, not read yet.
    clock.advance(250);
    await waitFor(() => layer.queueDelayMs() === 250, { what: "the probe back" });
    t.equal(received.length, 0);

    // Ordinary traffic still flows past the probe check.
    const phone = createSocket("udp4");
    t.teardown(() => phone.close());
    phone.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nCall-ID: q1\r\n\r\n", port, "127.0.0.1");
    await waitFor(() => received.length === 1, { what: "the OPTIONS" });
    t.match(received[0]!.data.toString("latin1"), /^OPTIONS /);
  });

  t.test(`${ioName}: once probes have come back, silence is the estimate (a full queue drops them); a worker counts only its private socket's silence`, async (t) => {
    for (const privateSockets of [false, true]) {
      const { clock, layer } = await start(t, io, privateSockets, { intervalMs: 3_600_000, staleAfterMs: 100 });
      clock.advance(40);
      await waitFor(() => layer.queueDelayMs() === 40, { what: "the probes back" });
      clock.advance(100);
      t.equal(layer.queueDelayMs(), 40, `${privateSockets ? "worker" : "one process"}: silence up to staleAfterMs is normal`);
      clock.advance(60);
      // In a worker the shared socket's probes may be read by another worker, so only the private socket's silence can say this.
      t.equal(layer.queueDelayMs(), 160, `${privateSockets ? "worker (private socket)" : "one process"}: 160 ms without a probe back`);
    }
  });

  t.test(`${ioName}: a probe-shaped datagram from anyone else is not a sample: it is an ordinary (unparseable) datagram`, async (t) => {
    const { clock, layer, received, port } = await start(t, io);
    clock.advance(5);
    await waitFor(() => layer.queueDelayMs() === 5, { what: "our own probe" });
    const forger = createSocket("udp4");
    t.teardown(() => forger.close());
    const forged = encodeProbe(1, -1_000_000);
    forger.send(forged, port, "127.0.0.1");
    await waitFor(() => received.length === 1, { what: "the forged probe" });
    // A UDP datagram reaches the edge as latin1 text, one char per byte.
    t.equal(received[0]!.data, forged.toString("latin1"), "handed on whole, as an ordinary datagram");
    t.equal(layer.queueDelayMs(), 5, "a remote peer cannot make the edge look overloaded");
  });

  t.test(`${ioName}: without queueProbe nothing is measured; stop ends the probing`, async (t) => {
    const clock = new FakeClock();
    const layer = new TransportLayer({ listeners: [{ transport: "udp", address: "127.0.0.1", port: 0 }], limits: LIMITS, clock, logger: silentLogger });
    await layer.start();
    t.equal(clock.pending, 0, "no probe timer");
    t.equal(layer.queueDelayMs(), 0);
    await layer.stop();

    const probed = await start(t, io);
    t.equal(probed.clock.pending, 1, "one probe timer");
    let rounds = 0;
    probed.layer.onQueueProbe = () => rounds++;
    probed.clock.advance(ONE_PROBE.intervalMs);
    t.equal(rounds, 1, "onQueueProbe after each round of probes");
    await probed.layer.stop();
    t.equal(probed.clock.pending, 0, "cleared at stop");
    t.equal(probed.layer.queueDelayMs(), 0);
  });
}
