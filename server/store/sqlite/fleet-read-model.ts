import { toPage, type Db, type PageData } from './database';
import type { DeviceId, TenantId } from '../../ids';
import { IN_PROGRESS_STATES, PENDING_STATES } from '../../pipeline/ota-keys';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../ota-packages';
import type { FleetCounts, FleetGroupCounts } from '../ota-states';
import {
  type DeviceFilter,
  type DevicePageLink,
  type DeviceRow,
  type DistributionPoint,
  type FleetReadModel,
  type StateChangeEntry,
  type StateCounts,
  type StateTotal,
} from '../fleet-read-model';
import { devicePageStatements, deviceRowsStatement, toDeviceRow, type DeviceQueryDialect, type DeviceRowColumns } from '../fleet-device-query';
import { distributionOf, groupCounts } from '../fleet-counts';
import { SNAPSHOT_COLUMNS, snapshotPoint, type SnapshotRow } from '../snapshot-columns';
import { sortedPageIds } from '../fleet-sorted-page';

const SQLITE: DeviceQueryDialect = {
  nocase: (expr) => `${expr} COLLATE NOCASE`,
  like: (expr) => `${expr} LIKE ? ESCAPE '\\'`,
  bytewise: (expr) => expr,
  order: (dir) => dir,
  // The unary plus keeps SQLite from driving from the tenant index (every device of the tenant, 9 ms
  // at 50,000) instead of looking each id up (0.1 ms); the tenant is still checked on every row.
  tenantOfLookedUp: '+d.tenant_id',
};

const list = (states: readonly string[]): string => states.map((s) => `'${s}'`).join(',');

/** The dashboard's and /metrics' read models on SQLite. */
export class SqliteFleetReadModel implements FleetReadModel {
  constructor(private readonly db: Db) {}

  async devicePage(tenantId: TenantId, filter: DeviceFilter, link: DevicePageLink): Promise<PageData<DeviceRow>> {
    let packageType: OtaPackageType | null = null;
    if (filter.packageId) {
      const pkg = this.db.prepare('SELECT type FROM ota_packages WHERE id = ? AND tenant_id = ?').get(filter.packageId, tenantId) as { type: OtaPackageType } | undefined;
      if (!pkg) return toPage([], 0, link);
      packageType = pkg.type;
    }
    const sorted = await sortedPageIds(SQLITE, async (q) => this.db.prepare(q.sql).all(...q.params) as never[], tenantId, filter, link);
    if (sorted) return this.pageOf(tenantId, sorted.ids, sorted.total, link);
    const q = devicePageStatements(SQLITE, tenantId, filter, packageType, link);
    const total = (this.db.prepare(q.count.sql).get(...q.count.params) as { n: number }).n;
    const ids = (this.db.prepare(q.ids.sql).all(...q.ids.params) as Array<{ id: string }>).map((r) => r.id);
    return this.pageOf(tenantId, ids, total, link);
  }

  /** The rows of `ids`, in that order, as one page of `total`. */
  private async pageOf(tenantId: TenantId, ids: string[], total: number, link: DevicePageLink): Promise<PageData<DeviceRow>> {
    const byId = new Map((await this.deviceRows(tenantId, ids)).map((r) => [r.id as string, r]));
    return toPage(
      ids.flatMap((id) => byId.get(id) ?? []),
      total,
      link,
    );
  }

  async deviceRows(tenantId: TenantId, ids: readonly string[]): Promise<DeviceRow[]> {
    const out: DeviceRow[] = [];
    // SQLite's default limit on bound parameters is far above this, but keep statements small.
    for (let i = 0; i < ids.length; i += 500) {
      const q = deviceRowsStatement(SQLITE, tenantId, ids.slice(i, i + 500));
      out.push(...(this.db.prepare(q.sql).all(...q.params) as DeviceRowColumns[]).map(toDeviceRow));
    }
    return out;
  }

  // The counts below read ota_fleet_counts, which triggers keep (migration 6): a few rows per
  // package and profile, whatever the size of the fleet.

  async distribution(tenantId: TenantId): Promise<Record<OtaPackageType, StateCounts>> {
    const rows = this.db
      .prepare("SELECT type, nullif(state, '') AS state, sum(devices) AS n FROM ota_fleet_counts WHERE tenant_id = ? GROUP BY type, state")
      .all(tenantId) as Array<{ type: OtaPackageType; state: string | null; n: number }>;
    return distributionOf(rows);
  }

  async counts(tenantId: TenantId, groupBy: 'package' | 'profile'): Promise<FleetGroupCounts[]> {
    const key = groupBy === 'package' ? 'c.package_id' : 'c.profile_id';
    // As a join of every targeted device would: a package deleted meanwhile counts no more.
    const label = groupBy === 'package' ? 'p.title AS title, p.version AS version' : "dp.name AS title, '' AS version";
    const join = groupBy === 'package' ? '' : 'JOIN device_profiles dp ON dp.id = c.profile_id';
    const rows = this.db
      .prepare(
        `SELECT ${key} AS key, c.type AS type, ${label},
           sum(c.devices) AS targeted,
           sum(CASE WHEN c.state IN (${list(PENDING_STATES)}) THEN c.devices ELSE 0 END) AS pending,
           sum(CASE WHEN c.state IN (${list(IN_PROGRESS_STATES)}) THEN c.devices ELSE 0 END) AS inProgress,
           sum(CASE WHEN c.state = 'UPDATED' THEN c.devices ELSE 0 END) AS updated,
           sum(CASE WHEN c.state = 'FAILED' THEN c.devices ELSE 0 END) AS failed,
           sum(c.on_target) AS onTarget
         FROM ota_fleet_counts c JOIN ota_packages p ON p.id = c.package_id ${join}
         WHERE c.tenant_id = ?
         GROUP BY ${key}, c.type HAVING sum(c.devices) > 0 ORDER BY ${key}, c.type`,
      )
      .all(tenantId) as Array<{ key: string; type: OtaPackageType; title: string; version: string } & Record<keyof FleetCounts, number | null>>;
    return rows.map(groupCounts);
  }

  async tenantIds(): Promise<TenantId[]> {
    // Not the system tenant: it owns no fleet.
    return (this.db.prepare("SELECT id FROM tenants WHERE id <> '13814000-1dd2-11b2-8080-808080808080' ORDER BY id").all() as Array<{ id: TenantId }>).map((r) => r.id);
  }

  async stateTotals(): Promise<StateTotal[]> {
    const rows = this.db
      .prepare(
        `SELECT tenant_id AS tenantId, type, CASE state WHEN '' THEN 'NONE' ELSE state END AS state, sum(devices) AS devices FROM ota_fleet_counts
         GROUP BY tenant_id, type, state HAVING sum(devices) > 0`,
      )
      .all() as StateTotal[];
    return rows;
  }

  async queueDepths(): Promise<Array<{ tenantId: TenantId; devices: number }>> {
    return this.db.prepare('SELECT tenant_id AS tenantId, count(*) AS devices FROM notify_queue WHERE attempt = 0 GROUP BY tenant_id').all() as Array<{
      tenantId: TenantId;
      devices: number;
    }>;
  }

  async lastChange(): Promise<number> {
    return (this.db.prepare('SELECT max(seq) AS seq FROM ota_state_changes').get() as { seq: number | null }).seq ?? 0;
  }

  async changesAfter(seq: number, limit: number, missing: readonly number[] = []): Promise<StateChangeEntry[]> {
    type Row = { seq: number; tenant_id: TenantId; device_id: DeviceId };
    const rows = this.db.prepare('SELECT seq, tenant_id, device_id FROM ota_state_changes WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as Row[];
    if (missing.length) {
      const found = this.db
        .prepare('SELECT seq, tenant_id, device_id FROM ota_state_changes WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq')
        .all(JSON.stringify(missing)) as Row[];
      rows.push(...found);
    }
    return rows.map((r) => ({ seq: r.seq, tenantId: r.tenant_id, deviceId: r.device_id }));
  }

  async pruneChanges(keep: number): Promise<void> {
    this.db.prepare('DELETE FROM ota_state_changes WHERE seq <= (SELECT max(seq) FROM ota_state_changes) - ?').run(keep);
  }

  async recordSnapshot(tenantId: TenantId, ts: number, distribution: Record<OtaPackageType, StateCounts>): Promise<void> {
    // Only for a tenant that still exists: the distribution was read before this write, and a tenant
    // deleted in between would keep the rows (SQLite writes one transaction at a time, so the check holds).
    const insert = this.db.prepare(
      `INSERT OR REPLACE INTO ota_state_snapshots (tenant_id, type, ts, ${SNAPSHOT_COLUMNS.map((c) => c.column).join(', ')})
       SELECT ?, ?, ?, ${SNAPSHOT_COLUMNS.map(() => '?').join(', ')} WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?)`,
    );
    this.db.transaction(() => {
      for (const type of OTA_PACKAGE_TYPES) insert.run(tenantId, type, ts, ...SNAPSHOT_COLUMNS.map((c) => distribution[type][c.key]), tenantId);
    })();
  }

  async pruneSnapshots(tenantId: TenantId, before: number): Promise<void> {
    this.db.prepare('DELETE FROM ota_state_snapshots WHERE tenant_id = ? AND ts < ?').run(tenantId, before);
  }

  async snapshotSeries(tenantId: TenantId, type: OtaPackageType, startTs: number, endTs: number, points: number): Promise<DistributionPoint[]> {
    const bucket = Math.max(1, Math.ceil((endTs - startTs + 1) / Math.max(1, points)));
    // SQLite: with max(), the bare columns come from the row holding the maximum. The casts keep the
    // division whole: better-sqlite3 may bind a number as a REAL, and every snapshot became a bucket.
    const rows = this.db
      .prepare(
        `SELECT max(ts) AS ts, ${SNAPSHOT_COLUMNS.map((c) => c.column).join(', ')} FROM ota_state_snapshots
         WHERE tenant_id = ? AND type = ? AND ts >= ? AND ts <= ?
         GROUP BY CAST(ts - ? AS INTEGER) / CAST(? AS INTEGER) ORDER BY ts`,
      )
      .all(tenantId, type, startTs, endTs, startTs, bucket) as SnapshotRow[];
    return rows.map(snapshotPoint);
  }

  async snapshotBefore(tenantId: TenantId, type: OtaPackageType, ts: number): Promise<DistributionPoint | null> {
    const r = this.db
      .prepare(`SELECT ts, ${SNAPSHOT_COLUMNS.map((c) => c.column).join(', ')} FROM ota_state_snapshots WHERE tenant_id = ? AND type = ? AND ts < ? ORDER BY ts DESC LIMIT 1`)
      .get(tenantId, type, ts) as SnapshotRow | undefined;
    return r ? snapshotPoint(r) : null;
  }
}
