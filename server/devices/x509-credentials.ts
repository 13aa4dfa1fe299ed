import { X509Certificate } from 'node:crypto';
import { invalid } from '../errors';
import { sha3Hash, trimCertificate } from './credentials-hash';

/**
 * X509_CERTIFICATE credentials as `DeviceCredentialsServiceImpl.formatCertData` makes them: the
 * value is the certificate's base64 body on one line, the id its SHA3 hash. A device presenting
 * that certificate over MQTT TLS hashes to the same id (`SslUtil.getCertificateString`), see
 * `certificateCredentialsId`. ThingsBoard does not parse the value; we do, so a paste that is no
 * certificate is refused now rather than never matching.
 */
export function x509Credentials(credentialsValue: unknown): { credentialsId: string; credentialsValue: string } {
  if (typeof credentialsValue !== 'string' || credentialsValue.trim() === '') throw invalid('Device credentials value should be specified!');
  const body = trimCertificate(credentialsValue).replace(/\s+/g, '');
  try {
    new X509Certificate(Buffer.from(body, 'base64'));
  } catch {
    throw invalid('Invalid X509 certificate: credentialsValue should be a PEM certificate!');
  }
  return { credentialsId: sha3Hash(body), credentialsValue: body };
}

/** The credentials id of a certificate a client presented (DER bytes). */
export const certificateCredentialsId = (der: Buffer): string => sha3Hash(der.toString('base64'));
