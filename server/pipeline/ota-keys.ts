import type { AttributeMap } from '../store/attributes';
import type { OtaPackage, OtaPackageType } from '../store/ota-packages';

/** `fw` or `sw`: the prefix of every OTA key of a type (reference §1.1). */
export const keyPrefix = (type: OtaPackageType): 'fw' | 'sw' => (type === 'FIRMWARE' ? 'fw' : 'sw');

/** ThingsBoard's OtaPackageKey values, in its order. */
export const OTA_KEYS = ['title', 'version', 'ts', 'state', 'size', 'checksum', 'checksum_algorithm', 'url', 'tag'] as const;

/** Ours, next to ThingsBoard's (issue 14): `fw_signature` (base64) and `fw_signature_algorithm`. */
export const SIGNATURE_KEYS = ['signature', 'signature_algorithm'] as const;

/** The shared attribute keys an unassignment deletes: ThingsBoard's nine (`fw_title` ... `fw_tag`) and ours. */
export const allAttributeKeys = (type: OtaPackageType): string[] => [...OTA_KEYS, ...SIGNATURE_KEYS].map((k) => `${keyPrefix(type)}_${k}`);

export type UpdateState = 'QUEUED' | 'INITIATED' | 'DOWNLOADING' | 'DOWNLOADED' | 'VERIFIED' | 'UPDATING' | 'UPDATED' | 'FAILED';
/** The eight ThingsBoard states plus IDLE, which ThingsBoard's Python SDK reports. */
export const UPDATE_STATES: readonly (UpdateState | 'IDLE')[] = ['IDLE', 'QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED', 'FAILED'];
export const PENDING_STATES: readonly UpdateState[] = ['QUEUED', 'INITIATED'];
export const IN_PROGRESS_STATES: readonly UpdateState[] = ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING'];
/** States a timeout applies to: the device was told, and has not finished. */
export const ACTIVE_STATES: readonly UpdateState[] = ['INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING'];

/**
 * The shared attributes an assignment writes, and the keys it deletes first, exactly as
 * ThingsBoard's DefaultOtaPackageStateService.updateAttributes (reference §1.2).
 */
export function packageAttributes(pkg: OtaPackage): { set: AttributeMap; remove: string[] } {
  const p = keyPrefix(pkg.type);
  const set: AttributeMap = { [`${p}_title`]: pkg.title, [`${p}_version`]: pkg.version };
  const remove: string[] = [];
  const put = (key: string, value: string | number | null | undefined): void => {
    if (value === null || value === undefined || value === '') remove.push(`${p}_${key}`);
    else set[`${p}_${key}`] = value;
  };
  put('tag', pkg.tag);
  if (pkg.url) {
    put('size', pkg.dataSize);
    put('checksum_algorithm', pkg.checksumAlgorithm);
    put('checksum', pkg.checksum);
    set[`${p}_url`] = pkg.url;
  } else {
    set[`${p}_size`] = pkg.dataSize ?? 0;
    set[`${p}_checksum_algorithm`] = pkg.checksumAlgorithm ?? 'SHA256';
    set[`${p}_checksum`] = pkg.checksum ?? '';
    remove.push(`${p}_url`);
  }
  put('signature', pkg.signature);
  put('signature_algorithm', pkg.signatureAlgorithm);
  return { set, remove };
}

/** Telemetry written when a device is queued for a package (reference §1.3). */
export function targetTelemetry(pkg: OtaPackage, ts: number): Record<string, string | number> {
  const p = keyPrefix(pkg.type);
  const out: Record<string, string | number> = { [`target_${p}_title`]: pkg.title, [`target_${p}_version`]: pkg.version };
  if (pkg.tag) out[`target_${p}_tag`] = pkg.tag;
  out[`target_${p}_ts`] = ts;
  out[`${p}_state`] = 'QUEUED';
  return out;
}
