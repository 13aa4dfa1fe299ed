import { isUuid, type DeviceId, type DeviceProfileId, type TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import { ownPackageColumn, type ReportedVersion, type ReportedVersionRepository } from '../reported-versions';
import type { Sql } from './pool';

/** The SQLite twin's columns, quoted so PostgreSQL keeps their case. */
const COLUMNS = 'd.id AS "deviceId", d.name AS name, s.current_version AS version';

export class PgReportedVersionRepository implements ReportedVersionRepository {
  constructor(private readonly sql: Sql) {}

  async followingProfile(tenantId: TenantId, profileId: DeviceProfileId, type: OtaPackageType): Promise<ReportedVersion[]> {
    if (!isUuid(profileId)) return [];
    const { rows } = await this.sql.query<ReportedVersion>(
      `SELECT ${COLUMNS}
       FROM devices d JOIN ota_states s ON s.device_id = d.id AND s.type = $1
       WHERE d.tenant_id = $2 AND d.device_profile_id = $3 AND d.${ownPackageColumn(type)} IS NULL AND s.current_version IS NOT NULL
       ORDER BY d.name`,
      [type, tenantId, profileId],
    );
    return rows;
  }

  async ofDevice(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<ReportedVersion | null> {
    if (!isUuid(deviceId)) return null;
    const { rows } = await this.sql.query<ReportedVersion>(
      `SELECT ${COLUMNS}
       FROM devices d JOIN ota_states s ON s.device_id = d.id AND s.type = $1
       WHERE d.tenant_id = $2 AND d.id = $3 AND s.current_version IS NOT NULL`,
      [type, tenantId, deviceId],
    );
    return rows[0] ?? null;
  }
}
