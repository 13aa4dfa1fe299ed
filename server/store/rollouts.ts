import type { DeviceId, DeviceProfileId, OtaPackageId, TenantId } from '../ids';
import type { UpdateState } from '../pipeline/ota-keys';
import type { PageData, PageLink } from './sqlite/database';
import type { OtaPackageType } from './ota-packages';

/** A rollout's id: a UUID, branded so it is never passed where a device or package id is meant. */
export type RolloutId = string & { readonly __entity: 'ROLLOUT' };

export type RolloutState = 'DRAFT' | 'RUNNING' | 'PAUSED' | 'COMPLETED' | 'ABORTED' | 'CANCELLED';
export type WaveState = 'PENDING' | 'RUNNING' | 'PASSED' | 'FAILED';

/** Who gets the package: a profile's devices (optionally those whose name contains a text), or a list. */
export type RolloutTarget = { deviceProfileId: DeviceProfileId; nameFilter?: string } | { deviceIds: DeviceId[] };
/** `percent`: the share of the target reached by the end of this wave (cumulative); `count`: devices in this wave. */
export type WaveSpec = { percent: number } | { count: number };

export interface Gate {
  /** Percent of the finished devices (all waves so far) that must have UPDATED. */
  minSuccessRate: number;
  /** Finished devices needed before the gate can open (or all assigned so far, when fewer). */
  minFinished: number;
  /** Wait after the gate passed before the next wave starts. */
  waitSeconds: number;
}

export interface AbortRule {
  /** Percent of the finished devices that FAILED at which the rollout stops by itself. */
  maxFailureRate: number;
  /** Finished devices needed before the rule applies. */
  minFinished: number;
}

export type Weekday = 'MON' | 'TUE' | 'WED' | 'THU' | 'FRI' | 'SAT' | 'SUN';

/** When devices may be notified: on `days`, from `from` to `to` (HH:MM, `to` before `from` = crossing midnight), in `timeZone`. */
export interface MaintenanceWindow {
  days: Weekday[];
  from: string;
  to: string;
  timeZone: string;
}

/** What the rollout was created with; never changes after. */
export interface RolloutSpec {
  target: RolloutTarget;
  waves: WaveSpec[];
  gate: Gate;
  abort: AbortRule;
  window: MaintenanceWindow | null;
  forceDowngrade: boolean;
}

export interface WaveProgress {
  state: WaveState;
  startedTime: number | null;
  /** When the gate after this wave opened (the next wave starts `waitSeconds` later). */
  gatePassedTime: number | null;
}

export interface Rollout {
  id: RolloutId;
  tenantId: TenantId;
  name: string;
  packageId: OtaPackageId;
  type: OtaPackageType;
  spec: RolloutSpec;
  state: RolloutState;
  /** Why it stopped by itself (auto-abort, a gate that failed), or what it waits for; null otherwise. */
  reason: string | null;
  /** Index of the wave under way (or next); `waves.length` once every wave passed. */
  currentWave: number;
  /** One per wave of the spec; empty until started. */
  waves: WaveProgress[];
  createdTime: number;
  startedTime: number | null;
  finishedTime: number | null;
  /** Bumped by every save: a save over a newer version is refused (another instance, an API call). */
  version: number;
}

/**
 * A device's part in a rollout. PENDING: not yet assigned (or taken back off the queue);
 * ASSIGNED: its own slot holds the rollout's package; UPDATED/FAILED: its outcome; SKIPPED: left
 * out (deleted, refused by the downgrade guard, already on the package).
 */
export type RolloutDeviceStatus = 'PENDING' | 'ASSIGNED' | 'UPDATED' | 'FAILED' | 'SKIPPED';

export interface RolloutDevice {
  rolloutId: RolloutId;
  deviceId: DeviceId;
  wave: number;
  /** Its place in the target, in the order waves take devices. */
  position: number;
  status: RolloutDeviceStatus;
  /** The device's own slot before the rollout assigned it (null: it followed its profile); what rollback and take-back restore. */
  previousPackageId: OtaPackageId | null;
}

/** A rollout's device with what the pipeline knows of it: its update state and whether it was notified. */
export interface RolloutDeviceView extends RolloutDevice {
  name: string | null;
  state: UpdateState | 'IDLE' | null;
  /** The package the state is about. */
  statePackageId: OtaPackageId | null;
  /** The last target the device was queued for, and whether it was notified of it. */
  targetPackageId: OtaPackageId | null;
  notified: boolean;
}

/** Rollouts per tenant and state, for /metrics. */
export interface RolloutCount {
  tenantId: TenantId;
  state: RolloutState;
  rollouts: number;
}

/** A running or paused rollout's devices by their recorded status, for /metrics. */
export interface RolloutDeviceCount {
  tenantId: TenantId;
  rolloutId: RolloutId;
  name: string;
  currentWave: number;
  status: RolloutDeviceStatus;
  devices: number;
}

/** The query behind `activeDeviceCounts`, the same in both databases. */
export const ACTIVE_DEVICE_COUNTS_SELECT = `
  SELECT r.tenant_id, r.id, r.name, r.current_wave, rd.status, count(*) AS n
  FROM rollouts r JOIN rollout_devices rd ON rd.rollout_id = r.id
  WHERE r.state IN ('RUNNING', 'PAUSED')
  GROUP BY r.tenant_id, r.id, r.name, r.current_wave, rd.status`;

export interface ActiveDeviceCountRow {
  tenant_id: string;
  id: string;
  name: string;
  current_wave: number;
  status: string;
  n: number | string;
}

export const activeDeviceCountFromRow = (r: ActiveDeviceCountRow): RolloutDeviceCount => ({
  tenantId: r.tenant_id as TenantId,
  rolloutId: r.id as RolloutId,
  name: r.name,
  currentWave: r.current_wave,
  status: r.status as RolloutDeviceStatus,
  devices: Number(r.n),
});

/**
 * Rollouts and their devices. Saves are versioned (optimistic): the driver and the REST API may
 * both change a rollout, on one instance or several. Only the instance holding a rollout's lease
 * drives it.
 */
export interface RolloutRepository {
  insert(rollout: Rollout): Promise<void>;
  /** Saves `rollout` if the stored version is `rollout.version - 1`; answers whether it was saved. */
  update(rollout: Rollout): Promise<boolean>;
  findById(tenantId: TenantId, id: RolloutId): Promise<Rollout | null>;
  page(tenantId: TenantId, link: PageLink): Promise<PageData<Rollout>>;
  /**
   * RUNNING rollouts free to drive (no lease, its lease ran out, or already `owner`'s), leased to
   * `owner` until `now + leaseMs`. Two instances claiming together never get the same rollout.
   */
  claim(owner: string, now: number, leaseMs: number, limit: number): Promise<Rollout[]>;
  /** Gives a rollout's lease up (the instance stops). */
  release(owner: string): Promise<void>;
  putDevices(devices: readonly RolloutDevice[]): Promise<void>;
  devices(rolloutId: RolloutId, type: OtaPackageType): Promise<RolloutDeviceView[]>;
  counts(): Promise<RolloutCount[]>;
  /** Devices of every RUNNING or PAUSED rollout, over all tenants, by recorded status. */
  activeDeviceCounts(): Promise<RolloutDeviceCount[]>;
}

/** A rollouts row as both databases return it; the JSON columns are text in SQLite, jsonb in PostgreSQL. */
export interface RolloutRow<Json> {
  id: string;
  tenant_id: string;
  name: string;
  package_id: string;
  type: string;
  spec: Json;
  state: string;
  reason: string | null;
  current_wave: number;
  waves: Json;
  created_time: number;
  started_time: number | null;
  finished_time: number | null;
  version: number;
}

export const rolloutFromRow = (r: RolloutRow<unknown>, spec: RolloutSpec, waves: WaveProgress[]): Rollout => ({
  id: r.id as RolloutId,
  tenantId: r.tenant_id as TenantId,
  name: r.name,
  packageId: r.package_id as OtaPackageId,
  type: r.type as OtaPackageType,
  spec,
  state: r.state as RolloutState,
  reason: r.reason,
  currentWave: r.current_wave,
  waves,
  createdTime: r.created_time,
  startedTime: r.started_time,
  finishedTime: r.finished_time,
  version: r.version,
});

export interface RolloutDeviceRow {
  rollout_id: string;
  device_id: string;
  wave: number;
  position: number;
  status: string;
  previous_package_id: string | null;
  name: string | null;
  state: string | null;
  state_package_id: string | null;
  target_package_id: string | null;
  notified: boolean | number | null;
}

export const rolloutDeviceFromRow = (r: RolloutDeviceRow): RolloutDeviceView => ({
  rolloutId: r.rollout_id as RolloutId,
  deviceId: r.device_id as DeviceId,
  wave: r.wave,
  position: r.position,
  status: r.status as RolloutDeviceStatus,
  previousPackageId: r.previous_package_id as OtaPackageId | null,
  name: r.name,
  state: r.state as RolloutDeviceView['state'],
  statePackageId: r.state_package_id as OtaPackageId | null,
  targetPackageId: r.target_package_id as OtaPackageId | null,
  notified: r.notified === true || r.notified === 1,
});

/** The columns `devices()` reads, the same in both databases (placeholders differ). */
export const ROLLOUT_DEVICES_SELECT = `
  SELECT rd.rollout_id, rd.device_id, rd.wave, rd.position, rd.status, rd.previous_package_id, d.name,
         s.state, s.target_package_id AS state_package_id, t.package_id AS target_package_id, t.notified
  FROM rollout_devices rd
  LEFT JOIN devices d ON d.id = rd.device_id
  LEFT JOIN ota_states s ON s.device_id = rd.device_id AND s.type = $type
  LEFT JOIN ota_targets t ON t.device_id = rd.device_id AND t.type = $type
  WHERE rd.rollout_id = $rollout
  ORDER BY rd.wave, rd.position`;

/** The values of a new `rollouts` row, in the column order both stores' INSERT lists. */
export function rolloutInsertValues(r: Rollout): unknown[] {
  return [
    r.id,
    r.tenantId,
    r.name,
    r.packageId,
    r.type,
    JSON.stringify(r.spec),
    r.state,
    r.reason,
    r.currentWave,
    JSON.stringify(r.waves),
    r.createdTime,
    r.startedTime,
    r.finishedTime,
    r.version,
  ];
}
