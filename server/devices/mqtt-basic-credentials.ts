import { invalid } from '../errors';
import { sha3HashOf } from './credentials-hash';
import { hashPassword, isPasswordHash } from './password-hash';

/** ThingsBoard's `BasicMqttCredentials`, the JSON value of MQTT_BASIC credentials. */
export interface MqttBasicValue {
  clientId?: string | null;
  userName?: string | null;
  password?: string | null;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * MQTT_BASIC credentials checked as `DeviceCredentialsServiceImpl.formatSimpleMqttCredentials`
 * does (same messages, same order), with the credentials id it computes: the user name alone when
 * there is no client id, else SHA3 of the client id, or of `clientId|userName` (reference §3.1).
 *
 * Unlike ThingsBoard, the password is stored as a scrypt hash. The REST API returns the stored
 * value, hash included, so a client that reads the credentials and posts them back unchanged (as
 * ThingsBoard's UI does) keeps the password: a value that already is one of our hashes is kept,
 * anything else is hashed as a new password.
 */
export async function mqttBasicCredentials(credentialsValue: unknown): Promise<{ credentialsId: string; credentialsValue: string }> {
  let parsed: unknown;
  try {
    parsed = typeof credentialsValue === 'string' ? JSON.parse(credentialsValue) : credentialsValue;
  } catch {
    throw invalid('Invalid credentials body for simple mqtt credentials!');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('Invalid credentials body for simple mqtt credentials!');
  const body = parsed as Record<string, unknown>;
  for (const k of ['clientId', 'userName', 'password']) {
    if (body[k] !== undefined && body[k] !== null && typeof body[k] !== 'string') throw invalid('Invalid credentials body for simple mqtt credentials!');
  }
  const clientId = text(body.clientId);
  const userName = text(body.userName);
  const password = text(body.password);
  if (!clientId && !userName) throw invalid('Both mqtt client id and user name are empty!');
  if (clientId && password && !userName) throw invalid('Password cannot be specified along with client id');
  const credentialsId = !clientId ? (userName as string) : sha3HashOf('|', clientId, userName);
  const stored: MqttBasicValue = {
    clientId: clientId ?? null,
    userName: userName ?? null,
    password: password === undefined ? null : isPasswordHash(password) ? password : await hashPassword(password),
  };
  return { credentialsId, credentialsValue: JSON.stringify(stored) };
}

/** The stored value of a device's MQTT_BASIC credentials; null when it is not readable. */
export function readMqttBasic(value: string | null | undefined): MqttBasicValue | null {
  if (!value) return null;
  try {
    const v = JSON.parse(value) as unknown;
    return typeof v === 'object' && v !== null ? (v as MqttBasicValue) : null;
  } catch {
    return null;
  }
}
