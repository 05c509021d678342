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
 * A device whose position in its class's ranges is hashed on first use: a
 * request routed while no switch window is open needs only its class, and
 * under many distinct devices (every REGISTER of a large fleet, every SIPp
 * call) the SHA-256 was a visible share of the CPU per request.
 */
class SpreadDevice implements Device {
  #fraction: number | undefined;

  constructor(
    readonly deviceClass: DeviceClass,
    readonly identity: string,
  ) {}

  get fraction(): number {
    return (this.#fraction ??= spreadFraction(this.identity));
  }

  get toBackupMs(): number | null {
    const d = this.deviceClass.toBackup;
    return d === null ? null : delayMs(d, this.fraction);
  }

  get toMainMs(): number | null {
    const d = this.deviceClass.toMain;
    return d === null ? null : delayMs(d, this.fraction);
  }

  /** The same fields as a device built by deviceAt(). */
  toJSON(): Device {
    return { identity: this.identity, deviceClass: this.deviceClass, fraction: this.fraction, toBackupMs: this.toBackupMs, toMainMs: this.toMainMs };
  }
}

/** Builds a device (its spread position is computed when first read). */
export function makeDevice(deviceClass: DeviceClass, identity: string): Device {
  return Object.freeze(new SpreadDevice(deviceClass, identity));
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
