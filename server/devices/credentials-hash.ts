import { createHash } from 'node:crypto';

/**
 * ThingsBoard's `EncryptionUtil.getSha3Hash`: SHA3-256, lower-case hex, of the text with PEM
 * armour lines and line breaks removed (`certTrimNewLines`). MQTT basic and X.509 credentials ids
 * are such hashes, so a device registered in ThingsBoard keeps the same id here.
 */
export function sha3Hash(text: string): string {
  return createHash('sha3-256').update(trimCertificate(text), 'utf8').digest('hex');
}

/** `getSha3Hash(delim, tokens...)`: the non-empty tokens joined with `delim`, hashed. */
export function sha3HashOf(delimiter: string, ...tokens: Array<string | undefined>): string {
  return sha3Hash(tokens.filter((t): t is string => t !== undefined && t !== '').join(delimiter));
}

/** `EncryptionUtil.certTrimNewLines`: the base64 body of a PEM certificate, on one line. */
export function trimCertificate(text: string): string {
  return text.replaceAll('-----BEGIN CERTIFICATE-----', '').replaceAll('-----END CERTIFICATE-----', '').replaceAll('\n', '').replaceAll('\r', '');
}
