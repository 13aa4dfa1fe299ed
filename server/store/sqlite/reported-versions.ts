import type { Db } from './database';
import type { DeviceId, DeviceProfileId, TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import { ownPackageColumn, type ReportedVersion, type ReportedVersionRepository } from '../reported-versions';

export class SqliteReportedVersionRepository implements ReportedVersionRepository {
  constructor(private readonly db: Db) {}

  async followingProfile(tenantId: TenantId, profileId: DeviceProfileId, type: OtaPackageType): Promise<ReportedVersion[]> {
    return this.db
      .prepare(
        `SELECT d.id AS deviceId, d.name AS name, s.current_version AS version
         FROM devices d JOIN ota_states s ON s.device_id = d.id AND s.type = ?
         WHERE d.tenant_id = ? AND d.device_profile_id = ? AND d.${ownPackageColumn(type)} IS NULL AND s.current_version IS NOT NULL
         ORDER BY d.name`,
      )
      .all(type, tenantId, profileId) as ReportedVersion[];
  }

  async ofDevice(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<ReportedVersion | null> {
    const r = this.db
      .prepare(
        `SELECT d.id AS deviceId, d.name AS name, s.current_version AS version
         FROM devices d JOIN ota_states s ON s.device_id = d.id AND s.type = ?
         WHERE d.tenant_id = ? AND d.id = ? AND s.current_version IS NOT NULL`,
      )
      .get(type, tenantId, deviceId) as ReportedVersion | undefined;
    return r ?? null;
  }
}
