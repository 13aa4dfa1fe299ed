import type { DeviceId, OtaPackageId, TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import type { DriftedTarget, OtaTarget, OtaTargetRepository } from '../ota-targets';
import type { Sql } from './pool';

const slotOf = (type: OtaPackageType): string => (type === 'FIRMWARE' ? 'firmware_id' : 'software_id');

export class PgOtaTargetRepository implements OtaTargetRepository {
  constructor(private readonly sql: Sql) {}

  async get(deviceId: DeviceId, type: OtaPackageType): Promise<OtaTarget | null> {
    const { rows } = await this.sql.query<{ package_id: string | null; ts: number; notified: boolean }>(
      'SELECT package_id, ts, notified FROM ota_targets WHERE device_id = $1 AND type = $2',
      [deviceId, type],
    );
    const r = rows[0];
    return r ? { deviceId, type, packageId: r.package_id as OtaPackageId | null, ts: r.ts, notified: r.notified } : null;
  }

  async getAll(deviceIds: readonly DeviceId[]): Promise<OtaTarget[]> {
    if (deviceIds.length === 0) return [];
    const { rows } = await this.sql.query<{ device_id: string; type: string; package_id: string | null; ts: number; notified: boolean }>(
      'SELECT device_id, type, package_id, ts, notified FROM ota_targets WHERE device_id = ANY($1::uuid[])',
      [[...new Set(deviceIds)]],
    );
    return rows.map((r) => ({ deviceId: r.device_id as DeviceId, type: r.type as OtaPackageType, packageId: r.package_id as OtaPackageId | null, ts: r.ts, notified: r.notified }));
  }

  /** One statement per batch; of two targets for one device and type, the later one is kept. */
  async put(targets: readonly OtaTarget[]): Promise<void> {
    if (targets.length === 0) return;
    const last = [...new Map(targets.map((t) => [`${t.deviceId}/${t.type}`, t])).values()];
    await this.sql.query(
      `INSERT INTO ota_targets (device_id, type, package_id, ts, notified)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::boolean[])
       ON CONFLICT (device_id, type) DO UPDATE SET package_id = excluded.package_id, ts = excluded.ts, notified = excluded.notified`,
      [last.map((t) => t.deviceId), last.map((t) => t.type), last.map((t) => t.packageId), last.map((t) => t.ts), last.map((t) => t.notified)],
    );
  }

  async drifted(type: OtaPackageType): Promise<DriftedTarget[]> {
    const slot = slotOf(type);
    const { rows } = await this.sql.query<{ device_id: string; tenant_id: string; effective: string | null; target: string | null; ts: number | null }>(
      `SELECT d.id AS device_id, d.tenant_id, coalesce(d.${slot}, p.${slot}) AS effective, t.package_id AS target, t.ts
       FROM devices d JOIN device_profiles p ON p.id = d.device_profile_id
       LEFT JOIN ota_targets t ON t.device_id = d.id AND t.type = $1
       LEFT JOIN notify_queue q ON q.device_id = d.id AND q.type = $1
       WHERE coalesce(d.${slot}, p.${slot}) IS DISTINCT FROM t.package_id
          OR (NOT t.notified AND q.seq IS NULL AND coalesce(d.${slot}, p.${slot}) IS NOT NULL)
       ORDER BY d.id`,
      [type],
    );
    return rows.map((r) => ({
      deviceId: r.device_id as DeviceId,
      tenantId: r.tenant_id as TenantId,
      effective: r.effective as OtaPackageId | null,
      target: r.target as OtaPackageId | null,
      ts: r.ts,
    }));
  }
}
