import type { Db } from './database';
import type { DeviceId, OtaPackageId, TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import { combine, covered, parseRanges, type DownloadProgressRepository, type ServedBytes, type ServedTotals } from '../download-progress';

interface Row {
  tenant_id: TenantId;
  device_id: DeviceId;
  type: OtaPackageType;
  package_id: OtaPackageId;
  size: number;
  ranges: string;
  ts: number;
}

const toServed = (r: Row): ServedBytes => ({
  tenantId: r.tenant_id,
  deviceId: r.device_id,
  type: r.type,
  packageId: r.package_id,
  size: r.size,
  ranges: parseRanges(r.ranges),
  ts: r.ts,
});

export class SqliteDownloadProgressRepository implements DownloadProgressRepository {
  constructor(private readonly db: Db) {}

  async add(batch: readonly ServedBytes[]): Promise<void> {
    const read = this.db.prepare('SELECT * FROM download_progress WHERE device_id = ? AND type = ?');
    // A device deleted since its bytes were served is left out (no row to hang them on).
    const write = this.db.prepare(
      `INSERT OR REPLACE INTO download_progress (device_id, type, tenant_id, package_id, size, served_bytes, ranges, ts)
       SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?)`,
    );
    this.db.transaction(() => {
      for (const next of batch) {
        const stored = read.get(next.deviceId, next.type) as Row | undefined;
        const r = combine(stored ? toServed(stored) : null, next);
        write.run(r.deviceId, r.type, r.tenantId, r.packageId, r.size, covered(r.ranges), JSON.stringify(r.ranges), r.ts, r.deviceId);
      }
    })();
  }

  async get(tenantId: TenantId, deviceIds: readonly DeviceId[]): Promise<ServedBytes[]> {
    if (!deviceIds.length) return [];
    const rows = this.db
      .prepare('SELECT * FROM download_progress WHERE device_id IN (SELECT value FROM json_each(?)) AND tenant_id = ?')
      .all(JSON.stringify(deviceIds), tenantId) as Row[];
    return rows.map(toServed);
  }

  async totals(tenantId?: TenantId): Promise<ServedTotals> {
    const where = tenantId === undefined ? '' : 'WHERE tenant_id = ?';
    const r = this.db
      .prepare(`SELECT count(*) AS devices, coalesce(sum(served_bytes), 0) AS servedBytes, coalesce(sum(size), 0) AS packageBytes FROM download_progress ${where}`)
      .get(...(tenantId === undefined ? [] : [tenantId])) as ServedTotals;
    return r;
  }
}
