import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { UpdateState } from '../pipeline/ota-keys';
import type { OtaPackageType } from './ota-packages';

export interface OtaStateRow {
  deviceId: DeviceId;
  tenantId: TenantId;
  type: OtaPackageType;
  state: UpdateState | 'IDLE' | null;
  stateTs: number;
  error: string | null;
  currentTitle: string | null;
  currentVersion: string | null;
  targetPackageId: OtaPackageId | null;
  retries: number;
}

/** An ota_states row as both databases return it (same column types in each). */
export interface OtaStateDbRow {
  device_id: string;
  tenant_id: string;
  type: string;
  state: string | null;
  state_ts: number;
  error: string | null;
  current_title: string | null;
  current_version: string | null;
  target_package_id: string | null;
  retries: number;
}

export const toOtaState = (r: OtaStateDbRow): OtaStateRow => ({
  deviceId: r.device_id as DeviceId,
  tenantId: r.tenant_id as TenantId,
  type: r.type as OtaPackageType,
  state: r.state as OtaStateRow['state'],
  stateTs: r.state_ts,
  error: r.error,
  currentTitle: r.current_title,
  currentVersion: r.current_version,
  targetPackageId: r.target_package_id as OtaPackageId | null,
  retries: r.retries,
});

export interface FleetCounts {
  targeted: number;
  pending: number;
  inProgress: number;
  updated: number;
  failed: number;
  /** Targeted devices whose current title and version are the target's. */
  onTarget: number;
}

/** Counts for one target package or one profile, with its label (the fleet read model's `counts`). */
export interface FleetGroupCounts extends FleetCounts {
  key: string;
  type: OtaPackageType;
  /** The package's title and version, or the profile's name (in `title`). */
  title: string;
  version: string;
}

/** One device's state, for `setStates`. */
export interface StateWrite {
  deviceId: DeviceId;
  tenantId: TenantId;
  type: OtaPackageType;
  state: OtaStateRow['state'];
  ts: number;
  error: string | null;
}

/** One device queued for a package, for `setQueuedAll`. */
export interface QueuedWrite {
  deviceId: DeviceId;
  tenantId: TenantId;
  type: OtaPackageType;
  packageId: OtaPackageId;
  ts: number;
}

/** The update state per device and type, as the tracker keeps it for metrics and timeouts. */
export interface OtaStateRepository {
  get(deviceId: DeviceId, type: OtaPackageType): Promise<OtaStateRow | null>;
  /**
   * Sets the state, and the current title and version reported with it (a null one leaves the
   * recorded one), if `ts` is not older than the recorded state; answers whether it was applied.
   * One write: a late report changes neither, and no reader sees the state without its version.
   */
  setState(
    deviceId: DeviceId,
    tenantId: TenantId,
    type: OtaPackageType,
    state: OtaStateRow['state'],
    ts: number,
    error: string | null,
    current?: { title: string | null; version: string | null },
  ): Promise<boolean>;
  setCurrent(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, title: string | null, version: string | null): Promise<void>;
  setError(deviceId: DeviceId, type: OtaPackageType, error: string | null): Promise<void>;
  /** A new target resets the retry count; the same target keeps it. */
  setTarget(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId | null): Promise<void>;
  /** `setState` for several devices in one statement per chunk, in order (a batch of notifications). */
  setStates(batch: readonly StateWrite[]): Promise<void>;
  /** `setTarget` then `setState(QUEUED)` (unless a newer state is recorded), in one write: what queueing a device does. */
  setQueued(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId, ts: number): Promise<void>;
  /** `setQueued` for several devices, in order (a page of queued devices). */
  setQueuedAll(batch: readonly QueuedWrite[]): Promise<void>;
  /** An unassignment: the device is no longer targeted, so it leaves the metrics, timeouts and retries. */
  clearTarget(deviceId: DeviceId, type: OtaPackageType): Promise<void>;
  /** Adds one retry; answers the count. */
  incrementRetries(deviceId: DeviceId, type: OtaPackageType): Promise<number>;
  /** Devices told about an update (INITIATED..UPDATING) whose state has not moved since `before`. */
  stuck(before: number, limit: number): Promise<OtaStateRow[]>;
}
