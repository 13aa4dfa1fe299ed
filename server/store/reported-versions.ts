import type { Db } from './sqlite/database';
import type { DeviceId, DeviceProfileId, TenantId } from '../ids';
import type { OtaPackageType } from './ota-packages';

/** A device and the `current_fw_version` / `current_sw_version` it last reported. */
export interface ReportedVersion {
  deviceId: DeviceId;
  name: string;
  version: string;
}

/** The versions devices report, for downgrade protection (issue 14). */
export interface ReportedVersionRepository {
  /** Devices of the profile that follow its package (no package of their own) and report a version. */
  followingProfile(tenantId: TenantId, profileId: DeviceProfileId, type: OtaPackageType): Promise<ReportedVersion[]>;
  ofDevice(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<ReportedVersion | null>;
}

export class SqliteReportedVersionRepository implements ReportedVersionRepository {
  constructor(private readonly db: Db) {}

  async followingProfile(tenantId: TenantId, profileId: DeviceProfileId, type: OtaPackageType): Promise<ReportedVersion[]> {
    const own = type === 'FIRMWARE' ? 'd.firmware_id' : 'd.software_id';
    return this.db
      .prepare(
        `SELECT d.id AS deviceId, d.name AS name, s.current_version AS version
         FROM devices d JOIN ota_states s ON s.device_id = d.id AND s.type = ?
         WHERE d.tenant_id = ? AND d.device_profile_id = ? AND ${own} IS NULL AND s.current_version IS NOT NULL
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
