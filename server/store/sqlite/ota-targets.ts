import { atomically } from './atomically';
import type { Db } from './database';
import { InsertRows, InValues } from './multi-row';
import type { DeviceId, OtaPackageId, TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import type { DriftedTarget, OtaTarget, OtaTargetRepository } from '../ota-targets';

const slotOf = (type: OtaPackageType): string => (type === 'FIRMWARE' ? 'firmware_id' : 'software_id');

export class SqliteOtaTargetRepository implements OtaTargetRepository {
  private readonly upsert;
  private readonly ofDevices;

  constructor(private readonly db: Db) {
    this.upsert = new InsertRows(db, 'INSERT OR REPLACE INTO ota_targets (device_id, type, package_id, ts, notified)', '', 5);
    this.ofDevices = new InValues(db, 'SELECT device_id, type, package_id, ts, notified FROM ota_targets WHERE device_id IN (', ')');
  }

  async get(deviceId: DeviceId, type: OtaPackageType): Promise<OtaTarget | null> {
    const r = this.db.prepare('SELECT package_id, ts, notified FROM ota_targets WHERE device_id = ? AND type = ?').get(deviceId, type) as
      { package_id: string | null; ts: number; notified: number } | undefined;
    return r ? { deviceId, type, packageId: r.package_id as OtaPackageId | null, ts: r.ts, notified: r.notified === 1 } : null;
  }

  async getAll(deviceIds: readonly DeviceId[]): Promise<OtaTarget[]> {
    const rows = this.ofDevices.run<{ device_id: string; type: string; package_id: string | null; ts: number; notified: number }>([], [...new Set(deviceIds)]);
    return rows.map((r) => ({
      deviceId: r.device_id as DeviceId,
      type: r.type as OtaPackageType,
      packageId: r.package_id as OtaPackageId | null,
      ts: r.ts,
      notified: r.notified === 1,
    }));
  }

  async put(targets: readonly OtaTarget[]): Promise<void> {
    const rows = targets.map((t) => [t.deviceId, t.type, t.packageId, t.ts, t.notified ? 1 : 0]);
    atomically(this.db, () => this.upsert.run(rows));
  }

  async drifted(type: OtaPackageType): Promise<DriftedTarget[]> {
    const slot = slotOf(type);
    const rows = this.db
      .prepare(
        `SELECT d.id AS deviceId, d.tenant_id AS tenantId, coalesce(d.${slot}, p.${slot}) AS effective, t.package_id AS target, t.ts AS ts
         FROM devices d JOIN device_profiles p ON p.id = d.device_profile_id
         LEFT JOIN ota_targets t ON t.device_id = d.id AND t.type = ?
         LEFT JOIN notify_queue q ON q.device_id = d.id AND q.type = ?
         WHERE coalesce(d.${slot}, p.${slot}) IS NOT t.package_id
            OR (t.notified = 0 AND q.seq IS NULL AND coalesce(d.${slot}, p.${slot}) IS NOT NULL)`,
      )
      .all(type, type) as Array<{ deviceId: string; tenantId: string; effective: string | null; target: string | null; ts: number | null }>;
    return rows.map((r) => ({
      deviceId: r.deviceId as DeviceId,
      tenantId: r.tenantId as TenantId,
      effective: r.effective as OtaPackageId | null,
      target: r.target as OtaPackageId | null,
      ts: r.ts,
    }));
  }
}
