import { createHash, timingSafeEqual } from 'node:crypto';
import type { AttributeRepository } from '../store/attributes';
import type { DeviceProfileRepository } from '../store/device-profiles';
import type { Device } from '../store/devices';
import type { DeviceService } from './device-service';
import type { CredentialsInput } from './device-credentials';

/**
 * ThingsBoard's device provisioning request (`POST /api/v1/provision`, MQTT `/provision/request`):
 * the profile's key and secret, the device's name, and optionally the credentials it wants.
 */
export interface ProvisionRequest {
  deviceName?: unknown;
  provisionDeviceKey?: unknown;
  provisionDeviceSecret?: unknown;
  credentialsType?: unknown;
  token?: unknown;
  clientId?: unknown;
  username?: unknown;
  password?: unknown;
  hash?: unknown;
}

/** The answer, as `JsonConverter.toJsonObject(ProvisionDeviceResponseMsg)` writes it. */
export type ProvisionResponse =
  | { status: 'SUCCESS'; credentialsType: string; credentialsValue?: unknown }
  | { status: 'NOT_FOUND'; errorMsg: 'Provision data was not found!' }
  | { status: 'FAILURE'; errorMsg: 'Failed to provision device!' };

const NOT_FOUND: ProvisionResponse = { status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' };
const FAILURE: ProvisionResponse = { status: 'FAILURE', errorMsg: 'Failed to provision device!' };

/** ThingsBoard marks a provisioned device with this server attribute, so it is provisioned once. */
const PROVISION_STATE = 'provisionState';

const text = (v: unknown): string => (typeof v === 'string' ? v.trim() : '');

/** Compares secrets in constant time (of their SHA-256), so timing does not tell how much matched. */
const sameSecret = (a: string, b: string): boolean => timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());

/**
 * `DeviceProvisionServiceImpl.provisionDevice`: the profile is found by its provision key and the
 * secret must match (else NOT_FOUND, nothing said about which). ALLOW_CREATE_NEW_DEVICES creates
 * the named device (FAILURE if it exists) with the credentials asked for, or a generated token;
 * CHECK_PRE_PROVISIONED_DEVICES hands out the credentials of an existing device of that profile,
 * once. Every refusal leaves the store as it was.
 */
export class DeviceProvisioning {
  constructor(
    private readonly profiles: Pick<DeviceProfileRepository, 'findByProvisionDeviceKey'>,
    private readonly devices: DeviceService,
    private readonly attributes: AttributeRepository,
  ) {}

  async provision(request: ProvisionRequest): Promise<ProvisionResponse> {
    // Key and secret are compared as sent; only the device name is trimmed (as ThingsBoard does).
    const key = typeof request.provisionDeviceKey === 'string' ? request.provisionDeviceKey : '';
    const secret = typeof request.provisionDeviceSecret === 'string' ? request.provisionDeviceSecret : '';
    const deviceName = text(request.deviceName);
    if (!key || !secret) return NOT_FOUND;
    const profile = await this.profiles.findByProvisionDeviceKey(key);
    const profileData = profile?.extra.profileData as { provisionConfiguration?: { provisionDeviceSecret?: unknown } } | undefined;
    const expected = profileData?.provisionConfiguration?.provisionDeviceSecret;
    if (!profile || typeof expected !== 'string' || !sameSecret(expected, secret)) return NOT_FOUND;
    const existing = deviceName ? await this.devices.findByName(profile.tenantId, deviceName) : null;
    switch (profile.extra.provisionType) {
      case 'ALLOW_CREATE_NEW_DEVICES': {
        if (existing || !deviceName) return FAILURE;
        const credentials = requestedCredentials(request);
        let device: Device;
        try {
          device = credentials
            ? await this.devices.saveWithCredentials(profile.tenantId, { name: deviceName, deviceProfileId: { id: profile.id } }, credentials)
            : await this.devices.save(profile.tenantId, { name: deviceName, deviceProfileId: { id: profile.id } });
        } catch {
          // Credentials taken or malformed: ThingsBoard's FAILURE, and nothing was created.
          return FAILURE;
        }
        await this.markProvisioned(device);
        return success(device, request);
      }
      case 'CHECK_PRE_PROVISIONED_DEVICES': {
        if (!existing || existing.deviceProfileId !== profile.id) return FAILURE;
        // Checked and marked in one statement: two devices racing for one record, one wins.
        if (!(await this.attributes.claim(existing.id, 'SERVER', PROVISION_STATE, 'provisioned', Date.now()))) return FAILURE;
        return success(existing, request);
      }
      default:
        return NOT_FOUND;
    }
  }

  private markProvisioned(device: Device): Promise<void> {
    return this.attributes.save(device.id, 'SERVER', { [PROVISION_STATE]: 'provisioned' }, Date.now());
  }
}

/** The credentials a device asked for (`credentialsType` with `token`, `clientId`/`username`/`password`, or `hash`). */
function requestedCredentials(r: ProvisionRequest): CredentialsInput | null {
  switch (r.credentialsType) {
    case 'ACCESS_TOKEN':
      return { credentialsType: 'ACCESS_TOKEN', credentialsId: text(r.token) };
    case 'MQTT_BASIC':
      return { credentialsType: 'MQTT_BASIC', credentialsValue: { clientId: r.clientId ?? null, userName: r.username ?? null, password: r.password ?? null } };
    case 'X509_CERTIFICATE':
      return { credentialsType: 'X509_CERTIFICATE', credentialsValue: r.hash };
    default:
      return null;
  }
}

/**
 * SUCCESS: an access token or certificate as a string; MQTT basic credentials as an object. We
 * store no plain password, so the basic credentials answered are the ones the device sent.
 */
function success(device: Device, request: ProvisionRequest): ProvisionResponse {
  const type = device.credentialsType ?? 'ACCESS_TOKEN';
  if (type === 'MQTT_BASIC') {
    const stored = JSON.parse(device.credentialsValue ?? '{}') as Record<string, unknown>;
    const password = request.credentialsType === 'MQTT_BASIC' && typeof request.password === 'string' ? request.password : null;
    return { status: 'SUCCESS', credentialsType: type, credentialsValue: { clientId: stored.clientId ?? null, userName: stored.userName ?? null, password } };
  }
  if (type === 'X509_CERTIFICATE') return { status: 'SUCCESS', credentialsType: type, credentialsValue: device.credentialsValue };
  if (type === 'LWM2M_CREDENTIALS') return { status: 'SUCCESS', credentialsType: type };
  return { status: 'SUCCESS', credentialsType: type, credentialsValue: device.accessToken };
}
