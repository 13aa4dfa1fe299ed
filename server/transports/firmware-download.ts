import type { DeviceProfileRepository } from '../store/device-profiles';
import type { Device } from '../store/devices';
import { effectivePackageId } from '../pipeline/notifier';
import type { OtaPackage, OtaPackageRepository, OtaPackageType } from '../store/ota-packages';

/**
 * What every transport does before sending package bytes: find the device's effective package and
 * cut the requested chunk, with ThingsBoard's rules (reference §3.4, §4, §5).
 */
export type DevicePackage = { pkg: OtaPackage & { blobSha256: string; dataSize: number } } | { error: 'NOT_FOUND' | 'FAILURE' };

export async function devicePackage(
  device: Device,
  type: OtaPackageType,
  deps: { profiles: Pick<DeviceProfileRepository, 'findById'>; packages: Pick<OtaPackageRepository, 'findById'> },
): Promise<DevicePackage> {
  const profile = await deps.profiles.findById(device.tenantId, device.deviceProfileId);
  const id = effectivePackageId(device, profile, type);
  const pkg = id ? await deps.packages.findById(device.tenantId, id) : null;
  if (!pkg) return { error: 'NOT_FOUND' };
  // A URL-only package has no bytes here: ThingsBoard answers FAILURE over MQTT, 404 over HTTP.
  if (pkg.url || pkg.blobSha256 === null || pkg.dataSize === null) return { error: 'FAILURE' };
  return { pkg: pkg as OtaPackage & { blobSha256: string; dataSize: number } };
}

/**
 * Bytes `[start, end)` of chunk `index` of `chunkSize` bytes. Size 0 is the whole file whatever the
 * index; an index past the end is an empty slice (the only end-of-file signal ThingsBoard gives).
 */
export function chunkRange(total: number, chunkSize: number, index: number): { start: number; end: number } {
  if (chunkSize <= 0) return { start: 0, end: total };
  const start = chunkSize * index;
  if (start >= total) return { start: total, end: total };
  return { start, end: Math.min(start + chunkSize, total) };
}
