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
  /** Devices of the profile that follow its package (no package of their own) and report a version, by name. */
  followingProfile(tenantId: TenantId, profileId: DeviceProfileId, type: OtaPackageType): Promise<ReportedVersion[]>;
  ofDevice(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<ReportedVersion | null>;
}

/** The device's own package column for `type`. */
export const ownPackageColumn = (type: OtaPackageType): string => (type === 'FIRMWARE' ? 'firmware_id' : 'software_id');
