import type { SipMessage } from "./message.js";
import { findOpenAngle, parseNameAddr } from "./nameaddr.js";

/**
 * The address of record that identifies a device: To of a REGISTER, From of
 * anything else, as `scheme:user@host` (port and parameters left out, so a
 * phone is the same device whatever port or transport it comes from).
 */

/** The From/To line of `m` that names the device, undefined when absent. */
export function deviceAddressLine(m: SipMessage): string | undefined {
  return m.get(m.method === "REGISTER" ? "To" : "From");
}

/**
 * A From/To value without its header parameters: `"Alice" <sip:a@b>` of
 * `"Alice" <sip:a@b>;tag=9fx`. The tag changes with every call while the
 * device does not, so this is what a per-device cache is keyed by: equal
 * texts always name the same AoR. Inside `<...>` a `>` cannot occur (it
 * would be escaped), and an addr-spec without brackets ends at its first
 * `;` (RFC 3261 §20.10). A slice, no parse; a value left unterminated is
 * returned whole, for `aorOfAddress` to refuse.
 */
export function addressPart(value: string): string {
  const lt = findOpenAngle(value, 0, value.length);
  if (lt === -2) return value;
  if (lt >= 0) {
    const gt = value.indexOf(">", lt + 1);
    return gt < 0 ? value : value.slice(0, gt + 1);
  }
  const semi = value.indexOf(";");
  return semi < 0 ? value : value.slice(0, semi);
}

/**
 * `scheme:user@host` of an address (`addressPart`), `tel:number` of a tel
 * URI (RFC 3966: no host), undefined when it is not an address.
 */
export function aorOfAddress(address: string): string | undefined {
  const r = parseNameAddr(address);
  if (!r.ok) return undefined;
  const u = r.value.uri;
  if (u.user === undefined) return `${u.scheme}:${u.host}`;
  return u.host === "" ? `${u.scheme}:${u.user}` : `${u.scheme}:${u.user}@${u.host}`;
}

/** The device's AoR in `m`, undefined when it has none that parses. */
export function aorOf(m: SipMessage): string | undefined {
  const line = deviceAddressLine(m);
  return line === undefined ? undefined : aorOfAddress(addressPart(line));
}
