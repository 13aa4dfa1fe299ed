import { newId, type DeviceProfileId, type TenantId } from '../../server/ids';
import type { OtaPackage } from '../../server/store/ota-packages';

/**
 * A package row for tests that write the store directly: firmware `fw` 1.0 at a URL (no bytes, no
 * checksum, unsigned), unless `over` says otherwise.
 */
export function packageRow(tenantId: TenantId, deviceProfileId: DeviceProfileId, over: Partial<OtaPackage> = {}): OtaPackage {
  return {
    id: newId<'OTA_PACKAGE'>(),
    tenantId,
    deviceProfileId,
    type: 'FIRMWARE',
    title: 'fw',
    version: '1.0',
    tag: null,
    url: 'https://example.invalid/fw.bin',
    fileName: null,
    contentType: null,
    checksumAlgorithm: null,
    checksum: null,
    dataSize: null,
    blobSha256: null,
    additionalInfo: null,
    externalId: null,
    createdTime: 1,
    signature: null,
    signatureAlgorithm: null,
    ...over,
  };
}
