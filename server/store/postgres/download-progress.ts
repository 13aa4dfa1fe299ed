import { isUuid, type DeviceId, type OtaPackageId, type TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import { combine, covered, type DownloadProgressRepository, type ServedBytes, type ServedTotals } from '../download-progress';
import type { Sql } from './pool';

interface Row {
  tenant_id: TenantId;
  device_id: DeviceId;
  type: OtaPackageType;
  package_id: OtaPackageId;
  size: number;
  ranges: Array<[number, number]>;
  ts: number;
}

const toServed = (r: Row): ServedBytes => ({ tenantId: r.tenant_id, deviceId: r.device_id, type: r.type, packageId: r.package_id, size: r.size, ranges: r.ranges, ts: r.ts });
const COLUMNS = 'tenant_id, device_id, type, package_id, size, ranges, ts';

export class PgDownloadProgressRepository implements DownloadProgressRepository {
  constructor(private readonly sql: Sql) {}

  /**
   * Two instances may add to one device's row at once: each locks the rows it merges into
   * (FOR UPDATE, in key order so two batches never wait on each other crosswise) and merges what
   * the other committed. Rows not there yet are made first, empty, so there is a row to lock.
   */
  async add(batch: readonly ServedBytes[]): Promise<void> {
    const entries = [...batch].filter((e) => isUuid(e.deviceId)).sort((a, b) => (a.deviceId === b.deviceId ? a.type.localeCompare(b.type) : a.deviceId < b.deviceId ? -1 : 1));
    if (!entries.length) return;
    const ids = entries.map((e) => e.deviceId);
    const types = entries.map((e) => e.type);
    // A device deleted since its bytes were served is left out by the join.
    await this.sql.query(
      `INSERT INTO download_progress (device_id, type, tenant_id, package_id, size, served_bytes, ranges, ts)
       SELECT v.device_id, v.type, d.tenant_id, v.package_id, 0, 0, '[]'::jsonb, 0
       FROM unnest($1::uuid[], $2::text[], $3::uuid[]) WITH ORDINALITY AS v(device_id, type, package_id, n) JOIN devices d ON d.id = v.device_id
       ORDER BY v.n
       ON CONFLICT (device_id, type) DO NOTHING`,
      [ids, types, entries.map((e) => e.packageId)],
    );
    const { rows } = await this.sql.query<Row>(
      `SELECT ${COLUMNS} FROM download_progress p
       WHERE (device_id, type) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))
       ORDER BY device_id, type FOR UPDATE`,
      [ids, types],
    );
    const stored = new Map(rows.map((r) => [`${r.device_id}:${r.type}`, toServed(r)]));
    const merged = new Map<string, ServedBytes>();
    for (const e of entries) {
      const key = `${e.deviceId}:${e.type}`;
      if (!stored.has(key)) continue;
      const before = merged.get(key) ?? stored.get(key) ?? null;
      // A row made empty just now holds nothing yet: what is added starts it.
      merged.set(key, combine(before && before.size ? before : null, e));
    }
    const out = [...merged.values()];
    if (!out.length) return;
    await this.sql.query(
      `UPDATE download_progress p SET tenant_id = v.tenant_id, package_id = v.package_id, size = v.size, served_bytes = v.served_bytes, ranges = v.ranges, ts = v.ts
       FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::bigint[], $6::bigint[], $7::jsonb[], $8::bigint[])
         AS v(device_id, type, tenant_id, package_id, size, served_bytes, ranges, ts)
       WHERE p.device_id = v.device_id AND p.type = v.type`,
      [
        out.map((r) => r.deviceId),
        out.map((r) => r.type),
        out.map((r) => r.tenantId),
        out.map((r) => r.packageId),
        out.map((r) => r.size),
        out.map((r) => covered(r.ranges)),
        out.map((r) => JSON.stringify(r.ranges)),
        out.map((r) => r.ts),
      ],
    );
  }

  async get(tenantId: TenantId, deviceIds: readonly DeviceId[]): Promise<ServedBytes[]> {
    const ids = deviceIds.filter(isUuid);
    if (!ids.length || !isUuid(tenantId)) return [];
    const { rows } = await this.sql.query<Row>(`SELECT ${COLUMNS} FROM download_progress WHERE device_id = ANY($1::uuid[]) AND tenant_id = $2 AND size > 0`, [ids, tenantId]);
    return rows.map(toServed);
  }

  async totals(tenantId?: TenantId): Promise<ServedTotals> {
    if (tenantId !== undefined && !isUuid(tenantId)) return { devices: 0, servedBytes: 0, packageBytes: 0 };
    const r = await this.sql.query<ServedTotals>(
      `SELECT count(*)::int AS devices, coalesce(sum(served_bytes), 0)::bigint AS "servedBytes", coalesce(sum(size), 0)::bigint AS "packageBytes"
       FROM download_progress WHERE size > 0 ${tenantId === undefined ? '' : 'AND tenant_id = $1'}`,
      tenantId === undefined ? [] : [tenantId],
    );
    return r.rows[0] as ServedTotals;
  }
}
