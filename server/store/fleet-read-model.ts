import type { DeviceId, TenantId } from '../ids';
import { UPDATE_STATES, type UpdateState } from '../pipeline/ota-keys';
import type { OtaPackageType } from './ota-packages';
import type { FleetGroupCounts } from './ota-states';
import type { PageData } from './sqlite/database';

/** One slot (firmware or software) of a device as the dashboard shows it. */
export interface SlotInfo {
  state: UpdateState | 'IDLE' | null;
  /** When the state was last set (ms); null for a device that never had one. */
  stateTs: number | null;
  error: string | null;
  /** What the device reports it runs (`current_fw_title`, `current_fw_version`). */
  current: { title: string | null; version: string | null } | null;
  /** The package the pipeline is moving the device to (null once unassigned). */
  target: { packageId: string; title: string; version: string } | null;
  retries: number;
}

export interface DeviceRow {
  id: DeviceId;
  name: string;
  label: string | null;
  createdTime: number;
  deviceProfileId: string;
  deviceProfileName: string;
  /** How the device authenticates (ACCESS_TOKEN, MQTT_BASIC, X509_CERTIFICATE, LWM2M_CREDENTIALS): the type only, never the secret. */
  credentialsType: string;
  /** The device provisioned itself with its profile's provision key and secret. */
  provisioned: boolean;
  firmware: SlotInfo;
  software: SlotInfo;
}

/** `NONE`: devices with no update state of that type. */
export type StateFilter = UpdateState | 'IDLE' | 'NONE';
export const STATE_FILTERS: readonly StateFilter[] = [...UPDATE_STATES, 'NONE'];

export interface DeviceFilter {
  /** The slot that `states` and the state sorts look at. */
  type: OtaPackageType;
  states?: readonly StateFilter[];
  deviceProfileId?: string;
  /** Devices whose target (of the package's own type) is this package. */
  packageId?: string;
  /** Case-insensitive substring of the device name. */
  textSearch?: string;
}

/** Sort properties of the device list; the state ones read the slot of `filter.type`. */
export const DEVICE_LIST_SORT = ['name', 'createdTime', 'deviceProfileName', 'state', 'stateTs', 'currentVersion', 'targetVersion'] as const;
export type DeviceListSort = (typeof DEVICE_LIST_SORT)[number];

export interface DevicePageLink {
  pageSize: number;
  page: number;
  sortProperty?: DeviceListSort;
  sortOrder?: 'ASC' | 'DESC';
}

export type StateCounts = Record<UpdateState | 'OTHER', number>;
/** The states counted on their own; any other (IDLE, none yet) counts as OTHER. */
export const COUNTED_STATES: readonly UpdateState[] = ['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED', 'FAILED'];
export const emptyCounts = (): StateCounts => ({ QUEUED: 0, INITIATED: 0, DOWNLOADING: 0, DOWNLOADED: 0, VERIFIED: 0, UPDATING: 0, UPDATED: 0, FAILED: 0, OTHER: 0 });

/** The state distribution of a tenant's targeted devices at one time: a point of the chart. */
export interface DistributionPoint {
  ts: number;
  counts: StateCounts;
}

/** Targeted devices of one tenant, type and state (`NONE`: targeted, no state yet), for /metrics. */
export interface StateTotal {
  tenantId: TenantId;
  type: OtaPackageType;
  state: string;
  devices: number;
}

/** One entry of the state change log: a device whose update state was written. */
export interface StateChangeEntry {
  seq: number;
  tenantId: TenantId;
  deviceId: DeviceId;
}

/**
 * What the dashboard and /metrics read: the device list with both update slots (filtered, sorted and
 * paged in the database, never the fleet in memory), the counts behind the metrics, the change log
 * the live stream follows, and the snapshots behind the chart. Every tenant's data is its own; the
 * all-tenant totals exist for Prometheus, whose scrape is not a tenant's.
 */
export interface FleetReadModel {
  /** One page of the device list; an unknown or foreign `packageId` gives an empty page. */
  devicePage(tenantId: TenantId, filter: DeviceFilter, link: DevicePageLink): Promise<PageData<DeviceRow>>;
  /** The rows of these devices that belong to the tenant (deleted or foreign ones are left out), in no set order. */
  deviceRows(tenantId: TenantId, ids: readonly string[]): Promise<DeviceRow[]>;
  /** How many targeted devices are in each state, per type. */
  distribution(tenantId: TenantId): Promise<Record<OtaPackageType, StateCounts>>;
  /** Counts over a tenant's targeted devices, grouped by target package or by profile. */
  counts(tenantId: TenantId, groupBy: 'package' | 'profile'): Promise<FleetGroupCounts[]>;
  /** Every tenant's id, in id order. */
  tenantIds(): Promise<TenantId[]>;
  /** Targeted devices per tenant, type and state, every tenant (only non-zero groups). */
  stateTotals(): Promise<StateTotal[]>;
  /** Devices waiting in the queue (not handed on to the notifier) per tenant, every tenant (only tenants with any). */
  queueDepths(): Promise<Array<{ tenantId: TenantId; devices: number }>>;

  /** The newest change's sequence number (0 for none). */
  lastChange(): Promise<number>;
  /**
   * Changes after `seq`, oldest first, at most `limit`; then those of `missing` (sequence numbers
   * below `seq` the reader has not seen: on PostgreSQL a transaction commits its changes after a
   * later one may have) that exist now.
   */
  changesAfter(seq: number, limit: number, missing?: readonly number[]): Promise<StateChangeEntry[]>;
  /**
   * Drops all but the newest `keep` changes. The log is shared by every instance's watcher, so none
   * empties it on reading: it is pruned by size.
   */
  pruneChanges(keep: number): Promise<void>;

  /** Keeps a snapshot of the tenant's distribution at `ts` (replacing one of the same `ts`). */
  recordSnapshot(tenantId: TenantId, ts: number, distribution: Record<OtaPackageType, StateCounts>): Promise<void>;
  /** Drops the tenant's snapshots older than `before`. */
  pruneSnapshots(tenantId: TenantId, before: number): Promise<void>;
  /** The snapshots in `[startTs, endTs]`, the last one of each of at most `points` equal buckets, oldest first. */
  snapshotSeries(tenantId: TenantId, type: OtaPackageType, startTs: number, endTs: number, points: number): Promise<DistributionPoint[]>;
  /** The last snapshot before `ts`. */
  snapshotBefore(tenantId: TenantId, type: OtaPackageType, ts: number): Promise<DistributionPoint | null>;
}
