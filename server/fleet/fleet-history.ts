import type { Db } from '../store/sqlite/database';
import { emptyCounts, type StateCounts } from './fleet-view';
import type { TenantId } from '../ids';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../store/ota-packages';

export interface DistributionPoint {
  ts: number;
  counts: StateCounts;
}

const COLUMNS = ['queued', 'initiated', 'downloading', 'downloaded', 'verified', 'updating', 'updated', 'failed', 'other'] as const;
type Column = (typeof COLUMNS)[number];
const KEY: Record<Column, keyof StateCounts> = {
  queued: 'QUEUED',
  initiated: 'INITIATED',
  downloading: 'DOWNLOADING',
  downloaded: 'DOWNLOADED',
  verified: 'VERIFIED',
  updating: 'UPDATING',
  updated: 'UPDATED',
  failed: 'FAILED',
  other: 'OTHER',
};

/**
 * Snapshots of the state distribution per tenant and type, taken while the fleet changes: the
 * dashboard's chart. Bounded by age; a range is read back in at most `points` buckets.
 */
export class FleetHistory {
  constructor(private readonly db: Db) {}

  record(tenantId: TenantId, ts: number, distribution: Record<OtaPackageType, StateCounts>): void {
    const insert = this.db.prepare(
      `INSERT OR REPLACE INTO ota_state_snapshots (tenant_id, type, ts, ${COLUMNS.join(', ')}) VALUES (?, ?, ?, ${COLUMNS.map(() => '?').join(', ')})`,
    );
    this.db.transaction(() => {
      for (const type of OTA_PACKAGE_TYPES) insert.run(tenantId, type, ts, ...COLUMNS.map((c) => distribution[type][KEY[c]]));
    })();
  }

  /** Drops snapshots older than `before`. */
  prune(tenantId: TenantId, before: number): void {
    this.db.prepare('DELETE FROM ota_state_snapshots WHERE tenant_id = ? AND ts < ?').run(tenantId, before);
  }

  /** The snapshots in `[startTs, endTs]`, the last one of each of at most `points` equal buckets. */
  series(tenantId: TenantId, type: OtaPackageType, startTs: number, endTs: number, points: number): DistributionPoint[] {
    const bucket = Math.max(1, Math.ceil((endTs - startTs + 1) / Math.max(1, points)));
    // SQLite: with max(), the bare columns come from the row holding the maximum.
    const rows = this.db
      .prepare(
        `SELECT max(ts) AS ts, ${COLUMNS.join(', ')} FROM ota_state_snapshots
         WHERE tenant_id = ? AND type = ? AND ts >= ? AND ts <= ?
         GROUP BY (ts - ?) / ? ORDER BY ts`,
      )
      .all(tenantId, type, startTs, endTs, startTs, bucket) as Array<{ ts: number } & Record<Column, number>>;
    return rows.map((r) => {
      const counts = emptyCounts();
      for (const c of COLUMNS) counts[KEY[c]] = r[c];
      return { ts: r.ts, counts };
    });
  }

  /** The last snapshot before `ts`: where a chart that starts at `ts` begins. */
  before(tenantId: TenantId, type: OtaPackageType, ts: number): DistributionPoint | null {
    const r = this.db
      .prepare(`SELECT ts, ${COLUMNS.join(', ')} FROM ota_state_snapshots WHERE tenant_id = ? AND type = ? AND ts < ? ORDER BY ts DESC LIMIT 1`)
      .get(tenantId, type, ts) as ({ ts: number } & Record<Column, number>) | undefined;
    if (!r) return null;
    const counts = emptyCounts();
    for (const c of COLUMNS) counts[KEY[c]] = r[c];
    return { ts: r.ts, counts };
  }
}
