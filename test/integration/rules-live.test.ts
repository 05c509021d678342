/**
 * The rules engine in a running edge (real sockets on 127.0.0.1): rules
 * decide, Main/Standby groups go through the failover policy, a broken rules
 * file is refused on reload while the old rules keep routing real traffic,
 * and a good one takes over.
 */
import t from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/main.js";
import { silentLogger } from "../../src/util/logger.js";
import { UdpPeer, pbxBehaviour, portOf } from "../helpers/edge-live.js";
import { waitFor } from "../helpers/wait.js";

const RULES_V1 = [
  "groups:",
  "  pbx: { strategy: failover, members: [main, standby] }",
  "rules:",
  "  - name: no-messages",
  "    match: { method: MESSAGE }",
  '    reject: { status: 403, reason: "No Messages Here" }',
  "  - name: emergency",
  '    match: { requestUri: { user: "112" } }',
  "    route: pbx",
  '    rewrite: { requestUri: { user: "emergency" } }',
  "  - name: default",
  "    route: pbx",
  "",
].join("\n");

function request(method: string, user: string, id: string): string {
  return [
    `${method} sip:${user}@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK${id};rport`,
    "Max-Forwards: 70",
    "From: <sip:1001@127.0.0.1>;tag=f",
    `To: <sip:${user}@127.0.0.1>`,
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    "Contact: <sip:1001@127.0.0.1:5999>",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

t.test("rules decide in the running edge; a bad file never replaces a good one", async (t) => {
  const main = await UdpPeer.open(pbxBehaviour);
  const standby = await UdpPeer.open(pbxBehaviour);
  const dir = mkdtempSync(join(tmpdir(), "edge-rules-"));
  writeFileSync(
    join(dir, "edge.yaml"),
    [
      "log: { level: silent }",
      "listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]",
      "targets:",
      `  - { name: main, uri: "sip:127.0.0.1:${main.port}", acceptsPath: true }`,
      `  - { name: standby, uri: "sip:127.0.0.1:${standby.port}", acceptsPath: true }`,
      "",
    ].join("\n"),
  );
  writeFileSync(join(dir, "rules.yaml"), RULES_V1);
  const running = await run(join(dir, "edge.yaml"), { logger: silentLogger });
  const phone = await UdpPeer.open();
  t.teardown(async () => {
    await running.stop();
    phone.close();
    main.close();
    standby.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const edgePort = portOf(running.edge, "udp");
  let n = 0;
  const ask = async (method: string, user: string): Promise<string> => {
    const id = `r${++n}`;
    phone.send(request(method, user, id), edgePort);
    return waitFor(() => phone.received.find((m) => m.includes(`Call-ID: ${id}\r\n`)));
  };

  t.match(await ask("MESSAGE", "2001"), /^SIP\/2\.0 403 No Messages Here\r\n/, "reject rule");
  t.match(await ask("INVITE", "112"), /^SIP\/2\.0 200 OK\r\n/, "routed to the PBX group");
  t.ok(main.received.some((m) => m.startsWith("INVITE sip:emergency@127.0.0.1 SIP/2.0")), "Request-URI rewritten by the rule, Main chosen by the policy");

  writeFileSync(join(dir, "rules.yaml"), RULES_V1.replace("route: pbx\n", "route: nosuchgroup\n"));
  t.equal(running.reload(), false, "a rules file naming an unknown group is refused");
  t.match(await ask("MESSAGE", "2001"), /^SIP\/2\.0 403 No Messages Here\r\n/, "the old rules still route real traffic");

  writeFileSync(join(dir, "rules.yaml"), RULES_V1.replace('reject: { status: 403, reason: "No Messages Here" }', 'reject: { status: 488, reason: "Not Acceptable Here" }'));
  t.equal(running.reload(), true, "a good file is taken");
  t.match(await ask("MESSAGE", "2001"), /^SIP\/2\.0 488 Not Acceptable Here\r\n/, "the new rules apply");
});
