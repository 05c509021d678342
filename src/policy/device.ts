import type { DeviceClass } from "./device-table.js";
import { delayMs, spreadFraction } from "./spread.js";

/** One device as the policy sees it: its class and its own delays inside the class's ranges. */
export interface Device {
  readonly identity: string;
  readonly deviceClass: DeviceClass;
  /** Position inside every range of the class, in [0, 1). */
  readonly fraction: number;
  /** Null: the device does not move in that direction by itself. */
  readonly toBackupMs: number | null;
  readonly toMainMs: number | null;
}

/**
 * Builds a device; cheap enough per request (one SHA-256 of a short
 * string), and a caller may keep it in its soft state.
 */
export function makeDevice(deviceClass: DeviceClass, identity: string): Device {
  const fraction = spreadFraction(identity);
  return deviceAt(deviceClass, identity, fraction);
}

/** A device at a given position in its class's ranges (status sampling, tests). */
export function deviceAt(deviceClass: DeviceClass, identity: string, fraction: number): Device {
  return Object.freeze({
    identity,
    deviceClass,
    fraction,
    toBackupMs: delayMs(deviceClass.toBackup, fraction),
    toMainMs: delayMs(deviceClass.toMain, fraction),
  });
}
