import { checksumOf, parseChecksumAlgorithm } from '../server/packages/checksum';

/** The shared attributes a device asks for, as ThingsBoard's Python SDK does (reference §9). */
export const FW_KEYS = ['fw_checksum', 'fw_checksum_algorithm', 'fw_size', 'fw_title', 'fw_version'] as const;
export const FW_KEYS_PARAM = FW_KEYS.join(',');

/** What a device is told about its firmware. */
export interface FirmwareInfo {
  title: string;
  version: string;
  size: number;
  checksum: string;
  checksumAlgorithm: string;
}

/** The firmware named by shared attributes, when they name one completely. */
export function firmwareOf(shared: Record<string, unknown> | undefined): FirmwareInfo | null {
  if (!shared || typeof shared.fw_title !== 'string' || typeof shared.fw_version !== 'string') return null;
  const size = Number(shared.fw_size);
  if (!Number.isInteger(size) || size < 0 || typeof shared.fw_checksum !== 'string' || typeof shared.fw_checksum_algorithm !== 'string') return null;
  return { title: shared.fw_title, version: shared.fw_version, size, checksum: shared.fw_checksum, checksumAlgorithm: shared.fw_checksum_algorithm };
}

/**
 * Whether `data` is the firmware: its size, and its checksum with the algorithm named (any case,
 * as the SDK compares it), in ThingsBoard's encoding (reference §8).
 */
export function verify(fw: FirmwareInfo, data: Buffer): boolean {
  const algorithm = parseChecksumAlgorithm(fw.checksumAlgorithm);
  return !!algorithm && data.length === fw.size && checksumOf(algorithm, data) === fw.checksum.toLowerCase();
}
