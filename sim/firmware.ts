import { createHash, verify as verifySignature, type KeyObject } from 'node:crypto';
import { checksumOf, parseChecksumAlgorithm } from '../server/packages/checksum';

/**
 * The shared attributes a device asks for, as ThingsBoard's Python SDK does (reference §9), and our
 * signature keys (issue 14), which a ThingsBoard server simply leaves out of its answer.
 */
export const FW_KEYS = ['fw_checksum', 'fw_checksum_algorithm', 'fw_size', 'fw_title', 'fw_version', 'fw_signature', 'fw_signature_algorithm'] as const;
export const FW_KEYS_PARAM = FW_KEYS.join(',');

/** What a device is told about its firmware. */
export interface FirmwareInfo {
  title: string;
  version: string;
  size: number;
  checksum: string;
  checksumAlgorithm: string;
  /** Base64 Ed25519 signature of the SHA-256 digest of the bytes, when the package is signed. */
  signature?: string | null;
  signatureAlgorithm?: string | null;
}

/** The firmware named by shared attributes, when they name one completely. */
export function firmwareOf(shared: Record<string, unknown> | undefined): FirmwareInfo | null {
  if (!shared || typeof shared.fw_title !== 'string' || typeof shared.fw_version !== 'string') return null;
  const size = Number(shared.fw_size);
  if (!Number.isInteger(size) || size < 0 || typeof shared.fw_checksum !== 'string' || typeof shared.fw_checksum_algorithm !== 'string') return null;
  const signature = typeof shared.fw_signature === 'string' ? shared.fw_signature : null;
  const signatureAlgorithm = typeof shared.fw_signature_algorithm === 'string' ? shared.fw_signature_algorithm : null;
  const fw: FirmwareInfo = { title: shared.fw_title, version: shared.fw_version, size, checksum: shared.fw_checksum, checksumAlgorithm: shared.fw_checksum_algorithm };
  return signature ? { ...fw, signature, signatureAlgorithm } : fw;
}

/**
 * Whether the package's signature verifies with the tenant's public key. The server signs the
 * 32-byte SHA-256 digest of the bytes, not the bytes (see server/packages/package-signing.ts), so
 * the message given to Ed25519 is that digest.
 */
export function verifyPackageSignature(fw: FirmwareInfo, data: Buffer, publicKey: KeyObject): boolean {
  if (!fw.signature || fw.signatureAlgorithm !== 'ED25519') return false;
  const digest = createHash('sha256').update(data).digest();
  return verifySignature(null, digest, publicKey, Buffer.from(fw.signature, 'base64'));
}

/**
 * Whether `data` is the firmware: its size, and its checksum with the algorithm named (any case,
 * as the SDK compares it), in ThingsBoard's encoding (reference §8).
 */
export function verify(fw: FirmwareInfo, data: Buffer): boolean {
  const algorithm = parseChecksumAlgorithm(fw.checksumAlgorithm);
  return !!algorithm && data.length === fw.size && checksumOf(algorithm, data) === fw.checksum.toLowerCase();
}
