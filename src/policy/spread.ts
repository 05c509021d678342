import { createHash } from "node:crypto";

/**
 * A switch delay from the device table: a fixed number of seconds, a range
 * spread over devices, or `null` for a device class that does not switch by
 * itself (only ops actions move it).
 */
export type SwitchDelay = { readonly min: number; readonly max: number } | null;

/**
 * Where a device sits inside every range of its class, in [0, 1). Derived
 * from a hash of its identity, so it is the same on every edge instance and
 * across restarts (no state), and uniform over devices, so a failover or
 * failback reaches the PBX spread over the whole range instead of as one
 * storm (DESIGN.md §2.3). SHA-256 rather than a short hash: identities share
 * long prefixes (`sip:1001@`, `sip:1002@`), and its output bits are uniform
 * for any input.
 */
export function spreadFraction(identity: string): number {
  const d = createHash("sha256").update(identity, "utf8").digest();
  // 48 bits: exactly representable in a double.
  return d.readUIntBE(0, 6) / 2 ** 48;
}

/** The device's delay in ms for one direction, or null when the class does not switch by itself. */
export function delayMs(delay: SwitchDelay, fraction: number): number | null {
  if (delay === null) return null;
  return Math.round((delay.min + fraction * (delay.max - delay.min)) * 1000);
}

/**
 * The identity a device is spread by (DESIGN.md §2.3): its AOR, else its
 * source address. Pass the AOR as `scheme:user@host` without parameters;
 * scheme and host are compared case-insensitively, the user part as written (RFC
 * 3261 §19.1.4). The source address excludes the port, which NAT changes.
 */
export function deviceIdentity(aor: string | undefined, sourceAddress: string | undefined): string {
  if (aor !== undefined && aor !== "") {
    const colon = aor.indexOf(":");
    const at = aor.lastIndexOf("@");
    if (at < 0) return aor.toLowerCase();
    return aor.slice(0, colon + 1).toLowerCase() + aor.slice(colon + 1, at) + aor.slice(at).toLowerCase();
  }
  return sourceAddress ?? "";
}
