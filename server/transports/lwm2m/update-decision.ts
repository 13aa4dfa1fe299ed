/** The package a device should run, as the OTA logic sees it. */
export interface OtaTarget {
  packageId: string;
  title: string;
  version: string;
  tag: string | null;
  /** A URL-only package: the device fetches it from here (fw_url / sw_url). */
  url: string | null;
}

/** What the device says it runs: PkgName/PkgVersion (/5/0/6-7, /9/0/0-1) and, for firmware, /3/0/3. */
export interface CurrentPackage {
  name: string | null;
  version: string | null;
  firmwareVersion?: string | null;
}

/**
 * ThingsBoard's "update required?" for LwM2M (reference §6, the one transport where it checks):
 * not when the target previously failed, nor when title+version (or the tag) equals the device's
 * PkgName+PkgVersion, nor when /3/0/3 contains the tag, the tag contains /3/0/3, or /3/0/3
 * contains title+version. We add one rule: a package this device already reported UPDATED is not
 * sent again (a device without PkgName/PkgVersion would otherwise loop).
 */
export function isUpdateRequired(target: OtaTarget, current: CurrentPackage, history: { failedPackageId: string | null; updatedPackageId: string | null }): boolean {
  if (history.failedPackageId === target.packageId || history.updatedPackageId === target.packageId) return false;
  const targetNameVersion = target.title + target.version;
  const currentNameVersion = (current.name ?? '') + (current.version ?? '');
  if (currentNameVersion !== '') {
    if (currentNameVersion === targetNameVersion) return false;
    if (target.tag && target.tag === currentNameVersion) return false;
  }
  const fw = current.firmwareVersion;
  if (fw) {
    if (target.tag && (fw.includes(target.tag) || target.tag.includes(fw))) return false;
    if (fw.includes(targetNameVersion)) return false;
  }
  return true;
}
