import { invalid } from '../errors';
import type { DeviceId, DeviceProfileId, OtaPackageId, TenantId } from '../ids';
import type { OtaPackageRepository, OtaPackageType } from '../store/ota-packages';
import type { ReportedVersionRepository } from '../store/reported-versions';
import { isDowngrade } from './version-order';

/** Where a package is being assigned: a profile (its devices without a package of their own) or one device. */
export type AssignTarget = { profileId: DeviceProfileId } | { deviceId: DeviceId };

/**
 * Downgrade protection (issue 14): assigning a package whose version is lower (semantic versioning)
 * than the `current_fw_version` / `current_sw_version` a device reports is refused unless forced.
 * Versions that do not parse are compared as equal-or-not only, so they never count as lower.
 */
export class DowngradeGuard {
  constructor(
    private readonly packages: OtaPackageRepository,
    private readonly versions: ReportedVersionRepository,
  ) {}

  async check(tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId, target: AssignTarget, force: boolean): Promise<void> {
    if (force) return;
    const pkg = await this.packages.findById(tenantId, packageId);
    if (!pkg) return; // checkAssignable reports an unknown package
    const reported =
      'profileId' in target
        ? await this.versions.followingProfile(tenantId, target.profileId, type)
        : [await this.versions.ofDevice(tenantId, target.deviceId, type)].filter((r) => r !== null);
    const newer = reported.filter((r) => isDowngrade(pkg.version, r.version));
    const first = newer[0];
    if (!first) return;
    const word = type === 'FIRMWARE' ? 'firmware' : 'software';
    const who = newer.length === 1 ? `device '${first.name}' runs ${first.version}` : `${newer.length} devices run a newer version ('${first.name}' runs ${first.version})`;
    throw invalid(`Can't assign ${word} version ${pkg.version}: it is a downgrade, ${who}! Save with forceDowngrade=true to assign it anyway.`);
  }
}
