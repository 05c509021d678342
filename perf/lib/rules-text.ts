/**
 * Rules files for the benchmarks (issue 5: the cost of the rules engine).
 * The same rule kinds feed the in-process benchmark (perf/rules-bench.ts)
 * and the SIPp runs through the edge (perf/load.ts --edge-rules N), so the
 * two measure the same table.
 *
 *   prefix  a dial plan: every rule is `method INVITE` + a Request-URI user prefix
 *   mixed   rules cycle through six kinds: method + user prefix, source CIDR,
 *           User-Agent regex, Request-URI user exact list, header present,
 *           From host
 */
export type Mix = "prefix" | "mixed";

/** Width of the dial-plan prefixes, so no rule's prefix is a prefix of another's. */
export const prefixOf = (i: number): string => `+4930${String(i).padStart(4, "0")}`;

/** Rule i of a table; none of them matches a benchmark call except the one named `hit`. */
export function ruleText(i: number, mix: Mix): string {
  const k = mix === "prefix" ? 0 : i % 6;
  switch (k) {
    case 0:
      return `  - { name: r${i}, match: { method: INVITE, requestUri: { user: { prefix: "${prefixOf(i)}" } } }, route: pbx }`;
    case 1:
      return `  - { name: r${i}, match: { source: "10.${i % 250}.${Math.floor(i / 250)}.0/24" }, route: pbx }`;
    case 2:
      return `  - { name: r${i}, match: { userAgent: { regex: "^Vendor${i}/[0-9]+" } }, route: pbx }`;
    case 3:
      return `  - { name: r${i}, match: { requestUri: { user: ["9${i}1", "9${i}2", "9${i}3"] } }, route: pbx }`;
    case 4:
      return `  - { name: r${i}, match: { headers: { X-Tenant-${i}: true } }, route: pbx }`;
    default:
      return `  - { name: r${i}, match: { from: { host: "tenant${i}.example.com" } }, route: pbx }`;
  }
}

/**
 * A rules file of n rules over the Main/Standby group: n - 1 that fail for
 * the benchmark's calls, then the default (or, with `hit`, n - 2 that fail,
 * one that matches the user prefix `prefixOf(n - 2)`, then the default).
 * Every request is tried against every rule before the one that takes it:
 * the worst case for first-match.
 */
export function rulesFileText(n: number, mix: Mix, hit = false): string {
  const failing = Math.max(0, hit ? n - 2 : n - 1);
  const rules = Array.from({ length: failing }, (_, i) => ruleText(i, mix));
  if (hit && n >= 2) rules.push(`  - { name: hit, match: { method: INVITE, requestUri: { user: { prefix: "${prefixOf(n - 2)}" } } }, route: pbx }`);
  return `groups:\n  pbx:\n    members: [main, standby]\nrules:\n${rules.join("\n")}${rules.length > 0 ? "\n" : ""}  - { name: default, route: pbx }\n`;
}
