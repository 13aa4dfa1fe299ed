import { toPage, type PageData } from '../sqlite/database';
import type { DeviceId, TenantId } from '../../ids';
import { IN_PROGRESS_STATES, PENDING_STATES } from '../../pipeline/ota-keys';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../ota-packages';
import type { FleetCounts, FleetGroupCounts } from '../ota-states';
import type { DeviceFilter, DevicePageLink, DeviceRow, DistributionPoint, FleetReadModel, StateChangeEntry, StateCounts, StateTotal } from '../fleet-read-model';
import { devicePageStatements, deviceRowsStatement, toDeviceRow, type DeviceQueryDialect, type DeviceRowColumns, type Statement } from '../fleet-device-query';
import { distributionOf, groupCounts } from '../fleet-counts';
import { SNAPSHOT_COLUMNS, snapshotPoint, type SnapshotRow } from '../snapshot-columns';
import { inTransaction, type Sql } from './pool';
import { sortedPageIds } from '../fleet-sorted-page';

/** The SQLite results, in PostgreSQL: "C"-collated text sorts bytewise, NULLs first ascending. */
const POSTGRES: DeviceQueryDialect = {
  // lower() of "C"-collated text folds ASCII only, as SQLite's NOCASE does.
  nocase: (expr) => `lower(${expr})`,
  like: (expr) => `${expr} ILIKE ?`,
  bytewise: (expr) => `${expr} COLLATE "C"`,
  order: (dir) => (dir === 'DESC' ? 'DESC NULLS LAST' : 'ASC NULLS FIRST'),
  tenantOfLookedUp: 'd.tenant_id',
};

/** `?` placeholders numbered as PostgreSQL wants them (the statements hold no other `?`). */
const numbered = (sql: string): string => {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
};

const list = (states: readonly string[]): string => states.map((s) => `'${s}'`).join(',');

/** Any number, the same on every instance: one instance folds the count deltas at a time. */
const FOLD_LOCK = 0x07a_0003;

/** The kept counts and the deltas not folded yet, of one tenant (`$n`) or every tenant (null). */
const countsOf = (tenant: string | null): string => {
  const where = tenant ? `WHERE tenant_id = ${tenant}` : '';
  const columns = 'tenant_id, type, package_id, profile_id, state, devices, on_target';
  return `SELECT ${columns} FROM ota_fleet_counts ${where} UNION ALL SELECT ${columns} FROM ota_fleet_count_deltas ${where}`;
};

/** The dashboard's and /metrics' read models on PostgreSQL; answers as the SQLite ones do. */
export class PgFleetReadModel implements FleetReadModel {
  constructor(private readonly sql: Sql) {}

  private async all<R extends Record<string, unknown>>(q: Statement): Promise<R[]> {
    return (await this.sql.query<R>(numbered(q.sql), q.params)).rows;
  }

  async devicePage(tenantId: TenantId, filter: DeviceFilter, link: DevicePageLink): Promise<PageData<DeviceRow>> {
    let packageType: OtaPackageType | null = null;
    if (filter.packageId) {
      const pkg = await this.sql.query<{ type: OtaPackageType }>('SELECT type FROM ota_packages WHERE id = $1 AND tenant_id = $2', [filter.packageId, tenantId]);
      if (!pkg.rows[0]) return toPage([], 0, link);
      packageType = pkg.rows[0].type;
    }
    const sorted = await sortedPageIds(POSTGRES, (q) => this.all(q), tenantId, filter, link);
    if (sorted) return this.pageOf(tenantId, sorted.ids, sorted.total, link);
    const q = devicePageStatements(POSTGRES, tenantId, filter, packageType, link);
    const [count, idRows] = await Promise.all([this.all<{ n: number }>(q.count), this.all<{ id: string }>(q.ids)]);
    return this.pageOf(
      tenantId,
      idRows.map((r) => r.id),
      Number(count[0]?.n ?? 0),
      link,
    );
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
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.all<DeviceRowColumns>(deviceRowsStatement(POSTGRES, tenantId, ids.slice(i, i + 500)));
      out.push(...rows.map(toDeviceRow));
    }
    return out;
  }

  // The counts below read ota_fleet_counts plus the deltas not folded into it yet (migration 10):
  // a few rows per package and profile and the last moments' changes, whatever the size of the fleet.

  /**
   * Folds the deltas the triggers appended into the counts, in one statement. One instance folds at
   * a time (the others skip it: their read adds the deltas still there); deltas of transactions
   * not committed yet are not visible, so they stay for the next fold.
   */
  private async fold(): Promise<void> {
    await this.sql.query(
      `WITH go AS (SELECT pg_try_advisory_xact_lock(${FOLD_LOCK}) AS got),
       moved AS (DELETE FROM ota_fleet_count_deltas WHERE (SELECT got FROM go) RETURNING *)
       INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
         SELECT tenant_id, type, package_id, profile_id, state, sum(devices), sum(on_target) FROM moved
         GROUP BY tenant_id, type, package_id, profile_id, state
       ON CONFLICT (tenant_id, package_id, profile_id, type, state)
         DO UPDATE SET devices = ota_fleet_counts.devices + excluded.devices, on_target = ota_fleet_counts.on_target + excluded.on_target`,
    );
  }

  async distribution(tenantId: TenantId): Promise<Record<OtaPackageType, StateCounts>> {
    await this.fold();
    const r = await this.sql.query<{ type: OtaPackageType; state: string | null; n: number }>(
      `SELECT type, nullif(state, '') AS state, sum(devices) AS n FROM (${countsOf('$1')}) c GROUP BY type, state`,
      [tenantId],
    );
    return distributionOf(r.rows);
  }

  async counts(tenantId: TenantId, groupBy: 'package' | 'profile'): Promise<FleetGroupCounts[]> {
    await this.fold();
    const key = groupBy === 'package' ? 'c.package_id' : 'c.profile_id';
    // As a join of every targeted device would: a package deleted meanwhile counts no more.
    const label = groupBy === 'package' ? 'min(p.title) AS title, min(p.version) AS version' : "min(dp.name) AS title, '' AS version";
    const join = groupBy === 'package' ? '' : 'JOIN device_profiles dp ON dp.id = c.profile_id';
    const r = await this.sql.query<{ key: string; type: OtaPackageType; title: string; version: string } & Record<keyof FleetCounts, number | null>>(
      `SELECT ${key} AS key, c.type AS type, ${label},
         sum(c.devices) AS targeted,
         coalesce(sum(c.devices) FILTER (WHERE c.state IN (${list(PENDING_STATES)})), 0) AS pending,
         coalesce(sum(c.devices) FILTER (WHERE c.state IN (${list(IN_PROGRESS_STATES)})), 0) AS "inProgress",
         coalesce(sum(c.devices) FILTER (WHERE c.state = 'UPDATED'), 0) AS updated,
         coalesce(sum(c.devices) FILTER (WHERE c.state = 'FAILED'), 0) AS failed,
         sum(c.on_target) AS "onTarget"
       FROM (${countsOf('$1')}) c JOIN ota_packages p ON p.id = c.package_id ${join}
       GROUP BY ${key}, c.type HAVING sum(c.devices) > 0 ORDER BY ${key}, c.type`,
      [tenantId],
    );
    return r.rows.map(groupCounts);
  }

  async tenantIds(): Promise<TenantId[]> {
    // Not the system tenant: it owns no fleet.
    return (await this.sql.query<{ id: TenantId }>("SELECT id FROM tenants WHERE id <> '13814000-1dd2-11b2-8080-808080808080' ORDER BY id")).rows.map((r) => r.id);
  }

  async stateTotals(): Promise<StateTotal[]> {
    await this.fold();
    const r = await this.sql.query<StateTotal>(
      `SELECT tenant_id AS "tenantId", type, CASE state WHEN '' THEN 'NONE' ELSE state END AS state, sum(devices) AS devices FROM (${countsOf(null)}) c
       GROUP BY tenant_id, type, state HAVING sum(devices) > 0`,
    );
    return r.rows;
  }

  async queueDepths(): Promise<Array<{ tenantId: TenantId; devices: number }>> {
    return (
      await this.sql.query<{ tenantId: TenantId; devices: number }>('SELECT tenant_id AS "tenantId", count(*) AS devices FROM notify_queue WHERE attempt = 0 GROUP BY tenant_id')
    ).rows;
  }

  async lastChange(): Promise<number> {
    return (await this.sql.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM ota_state_changes')).rows[0]?.seq ?? 0;
  }

  async changesAfter(seq: number, limit: number, missing: readonly number[] = []): Promise<StateChangeEntry[]> {
    const r = await this.sql.query<{ seq: string; tenant_id: TenantId; device_id: DeviceId }>(
      `(SELECT seq, tenant_id, device_id FROM ota_state_changes WHERE seq > $1 ORDER BY seq LIMIT $2)
       UNION ALL (SELECT seq, tenant_id, device_id FROM ota_state_changes WHERE seq = ANY($3::bigint[]) ORDER BY seq)`,
      [seq, limit, missing],
    );
    return r.rows.map((c) => ({ seq: Number(c.seq), tenantId: c.tenant_id, deviceId: c.device_id }));
  }

  async pruneChanges(keep: number): Promise<void> {
    await this.sql.query('DELETE FROM ota_state_changes WHERE seq <= (SELECT max(seq) FROM ota_state_changes) - $1', [keep]);
  }

  async recordSnapshot(tenantId: TenantId, ts: number, distribution: Record<OtaPackageType, StateCounts>): Promise<void> {
    const columns = SNAPSHOT_COLUMNS.map((c) => c.column);
    const width = 3 + columns.length;
    const values = OTA_PACKAGE_TYPES.map((_, row) => `(${Array.from({ length: width }, (_v, i) => `$${row * width + i + 1}`).join(', ')})`);
    const params = OTA_PACKAGE_TYPES.flatMap((type) => [tenantId, type, ts, ...SNAPSHOT_COLUMNS.map((c) => distribution[type][c.key])]);
    // Only for a tenant that still exists, its row held against a deletion under way (deleteTenant
    // locks it first): the distribution was read before this write. Both types' rows in one statement.
    await inTransaction(this.sql, async (client) => {
      if (!(await client.query('SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE', [tenantId])).rowCount) return;
      await client.query(
        `INSERT INTO ota_state_snapshots (tenant_id, type, ts, ${columns.join(', ')}) VALUES ${values.join(', ')}
         ON CONFLICT (tenant_id, type, ts) DO UPDATE SET ${columns.map((c) => `${c} = excluded.${c}`).join(', ')}`,
        params,
      );
    });
  }

  async pruneSnapshots(tenantId: TenantId, before: number): Promise<void> {
    await this.sql.query('DELETE FROM ota_state_snapshots WHERE tenant_id = $1 AND ts < $2', [tenantId, before]);
  }

  async snapshotSeries(tenantId: TenantId, type: OtaPackageType, startTs: number, endTs: number, points: number): Promise<DistributionPoint[]> {
    const bucket = Math.max(1, Math.ceil((endTs - startTs + 1) / Math.max(1, points)));
    const columns = SNAPSHOT_COLUMNS.map((c) => c.column).join(', ');
    // The last snapshot of each bucket (SQLite's max() with bare columns).
    const r = await this.sql.query<SnapshotRow>(
      `SELECT ts, ${columns} FROM (
         SELECT DISTINCT ON ((ts - $3) / $5) ts, ${columns} FROM ota_state_snapshots
         WHERE tenant_id = $1 AND type = $2 AND ts >= $3 AND ts <= $4
         ORDER BY (ts - $3) / $5, ts DESC
       ) last ORDER BY ts`,
      [tenantId, type, startTs, endTs, bucket],
    );
    return r.rows.map(snapshotPoint);
  }

  async snapshotBefore(tenantId: TenantId, type: OtaPackageType, ts: number): Promise<DistributionPoint | null> {
    const r = await this.sql.query<SnapshotRow>(
      `SELECT ts, ${SNAPSHOT_COLUMNS.map((c) => c.column).join(', ')} FROM ota_state_snapshots WHERE tenant_id = $1 AND type = $2 AND ts < $3 ORDER BY ts DESC LIMIT 1`,
      [tenantId, type, ts],
    );
    return r.rows[0] ? snapshotPoint(r.rows[0]) : null;
  }
}
