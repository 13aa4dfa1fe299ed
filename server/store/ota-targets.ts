import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { OtaPackageType } from './ota-packages';

/**
 * The last package a device was queued for and whether it was notified: what reconciliation compares
 * with the effective package, and what keeps a device from being notified twice.
 */
export interface OtaTarget {
  deviceId: DeviceId;
  type: OtaPackageType;
  packageId: OtaPackageId | null;
  ts: number;
  notified: boolean;
}

/** A device whose effective package differs from its last target (or was released but never notified). */
export interface DriftedTarget {
  tenantId: TenantId;
  deviceId: DeviceId;
  /** The package the device should have now (its own, else its profile's). */
  effective: OtaPackageId | null;
  /** The last target recorded, and when. */
  target: OtaPackageId | null;
  ts: number | null;
}

export interface OtaTargetRepository {
  get(deviceId: DeviceId, type: OtaPackageType): Promise<OtaTarget | null>;
  /** The targets of these devices, of both types (a batch of notifications reads them at once). */
  getAll(deviceIds: readonly DeviceId[]): Promise<OtaTarget[]>;
  put(targets: readonly OtaTarget[]): Promise<void>;
  /** Every device, over all tenants, whose target is out of step with its effective package (the engine's start). */
  drifted(type: OtaPackageType): Promise<DriftedTarget[]>;
}
