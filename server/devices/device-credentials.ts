import { invalid } from '../errors';
import type { DeviceCredentialsType } from '../store/devices';
import { mqttBasicCredentials } from './mqtt-basic-credentials';
import { x509Credentials } from './x509-credentials';

/** Credentials as ThingsBoard's REST API takes them (`POST /api/device/credentials`, `{device, credentials}`). */
export interface CredentialsInput {
  credentialsType?: string | null;
  credentialsId?: string | null;
  credentialsValue?: unknown;
}

/** What a device is stored with: the credentials id (token or endpoint), its type and value. */
export interface DeviceCredentials {
  type: DeviceCredentialsType;
  id: string;
  value: string | null;
}

/**
 * Checks credentials as ThingsBoard does, in its words: ACCESS_TOKEN takes `credentialsId`;
 * LWM2M_CREDENTIALS takes its id from `credentialsValue.client.endpoint`; MQTT_BASIC and
 * X509_CERTIFICATE compute theirs from the value (SHA3 hashes, reference §3.1).
 */
export async function parseCredentials(input: CredentialsInput): Promise<DeviceCredentials> {
  const type = input.credentialsType;
  if (type === undefined || type === null) throw invalid('Device credentials type should be specified');
  const computed = (c: { credentialsId: string; credentialsValue: string }, t: DeviceCredentialsType): DeviceCredentials => ({
    type: t,
    id: c.credentialsId,
    value: c.credentialsValue,
  });
  if (type === 'LWM2M_CREDENTIALS') return computed(lwm2mCredentials(input.credentialsValue), type);
  if (type === 'MQTT_BASIC') return computed(await mqttBasicCredentials(input.credentialsValue), type);
  if (type === 'X509_CERTIFICATE') return computed(x509Credentials(input.credentialsValue), type);
  if (type !== 'ACCESS_TOKEN') throw invalid(`Device credentials type ${String(type)} is not supported: use ACCESS_TOKEN, MQTT_BASIC, X509_CERTIFICATE or LWM2M_CREDENTIALS`);
  const id = input.credentialsId;
  if (typeof id !== 'string' || id.trim() === '') throw invalid('Device credentials id should be specified!');
  return { type, id, value: null };
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);

const SECURITY_MODES = ['NO_SEC', 'PSK', 'RPK', 'X509'];

/**
 * `credentialsValue` of `LWM2M_CREDENTIALS`, checked as ThingsBoard's DeviceCredentialsServiceImpl
 * checks it (same messages, same order): `client` with `endpoint` and `securityConfigClientMode`,
 * `bootstrap` with `bootstrapServer` and `lwm2mServer`, each with a `securityMode`. The
 * credentials id becomes the endpoint name. Our LwM2M endpoint is NoSec only (issue 12), so the
 * other modes are refused with a message saying so rather than stored and never usable.
 */
export function lwm2mCredentials(credentialsValue: unknown): { credentialsId: string; credentialsValue: string } {
  let parsed: unknown;
  try {
    parsed = typeof credentialsValue === 'string' ? JSON.parse(credentialsValue) : credentialsValue;
  } catch {
    throw invalid('Invalid credentials body for LwM2M credentials!');
  }
  if (parsed === null || parsed === undefined) throw invalid('LwM2M credentials must be specified!');
  const body = obj(parsed);
  if (!body) throw invalid('Invalid credentials body for LwM2M credentials!');
  const client = obj(body.client);
  if (!client) throw invalid('LwM2M client credentials must be specified!');
  const mode = client.securityConfigClientMode;
  // Jackson cannot pick a client credential class without a known mode: ThingsBoard's "Invalid ... body".
  if (typeof mode !== 'string' || !SECURITY_MODES.includes(mode)) throw invalid('Invalid credentials body for LwM2M credentials!');
  const endpoint = client.endpoint;
  if (typeof endpoint !== 'string' || endpoint.trim() === '') throw invalid('LwM2M client endpoint must be specified!');
  const bootstrap = obj(body.bootstrap);
  if (!bootstrap) throw invalid('LwM2M bootstrap credentials must be specified!');
  for (const [key, what] of [
    ['bootstrapServer', 'bootstrap server'],
    ['lwm2mServer', 'lwm2m server'],
  ] as const) {
    const server = obj(bootstrap[key]);
    if (!server) throw invalid(`LwM2M ${what} credentials must be specified!`);
    if (typeof server.securityMode !== 'string' || !SECURITY_MODES.includes(server.securityMode)) throw invalid('Invalid credentials body for LwM2M credentials!');
  }
  if (mode !== 'NO_SEC') throw invalid(`LwM2M security mode ${mode} is not supported by this server: use NO_SEC`);
  if (endpoint.length > 255) throw invalid('LwM2M client endpoint must be at most 255 characters!');
  return { credentialsId: endpoint, credentialsValue: JSON.stringify(body) };
}
