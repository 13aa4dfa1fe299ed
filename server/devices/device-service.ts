import { randomInt } from 'node:crypto';
import type { PageData, PageLink } from '../store/sqlite/database';
import type { DeviceProfile } from '../store/device-profiles';
import type { DeviceProfileService } from './device-profile-service';
import type { Device, DeviceRepository } from '../store/devices';
import { EntitiesLimitExceeded, entityNotFound, forbidden, invalid } from '../errors';
import { UNLIMITED, type TenantLimitsOf } from '../tenant-limits';
import type { EngineEvents } from '../events';
import { isUuid, newId, type DeviceId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../ids';
import type { OtaPackageService } from '../packages/ota-package-service';
import { parseCredentials, type CredentialsInput, type DeviceCredentials } from './device-credentials';

export type DeviceInput = Record<string, unknown> & {
  id?: { id?: string } | null;
  name?: string;
  label?: string | null;
  type?: string | null;
  deviceProfileId?: { id?: string } | null;
  firmwareId?: { id?: string } | null;
  softwareId?: { id?: string } | null;
};

const OWN_FIELDS = new Set(['id', 'createdTime', 'tenantId', 'name', 'label', 'type', 'deviceProfileId', 'firmwareId', 'softwareId', 'version']);

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** ThingsBoard's generated access token: 20 random alphanumerics. */
export const generateAccessToken = (): string => Array.from({ length: 20 }, () => ALPHANUMERIC[randomInt(ALPHANUMERIC.length)]).join('');

export class DeviceService {
  constructor(
    private readonly devices: DeviceRepository,
    private readonly profiles: DeviceProfileService,
    private readonly packages: OtaPackageService,
    private readonly events: EngineEvents,
    /** The tenant profile's limits (tenant-limits.ts); maxDevices is checked when a device is created. */
    private readonly limitsOf: TenantLimitsOf = async () => UNLIMITED,
  ) {}

  async get(tenantId: TenantId, id: string): Promise<Device> {
    const found = isUuid(id) ? await this.devices.findById(tenantId, id as DeviceId) : null;
    if (found) return found;
    if (isUuid(id) && (await this.devices.ownerOf(id))) throw forbidden();
    throw entityNotFound('Device', id);
  }

  page(tenantId: TenantId, link: PageLink, filter?: { deviceProfileId?: DeviceProfileId }): Promise<PageData<Device>> {
    return this.devices.page(tenantId, link, filter);
  }

  findByName(tenantId: TenantId, name: string): Promise<Device | null> {
    return this.devices.findByName(tenantId, name);
  }

  findByAccessToken(token: string): Promise<Device | null> {
    return this.devices.findByAccessToken(token);
  }

  /** The device an LwM2M client is, by the endpoint name of its LWM2M_CREDENTIALS (NoSec). */
  findByLwm2mEndpoint(endpoint: string): Promise<Device | null> {
    return this.devices.findByLwm2mEndpoint(endpoint);
  }

  /** The profile a device belongs to (its `type` on the wire is the profile's name). */
  profileOf(device: Device): Promise<DeviceProfile> {
    return this.profiles.get(device.tenantId, device.deviceProfileId);
  }

  /**
   * `POST /api/device[?accessToken=]`: create or replace; with `mergeInto`, the shorthand
   * `POST /api/device/{id}` that changes only the fields present.
   */
  async save(
    tenantId: TenantId,
    body: DeviceInput,
    opts: { accessToken?: string; mergeInto?: string; credentials?: DeviceCredentials; forceDowngrade?: boolean } = {},
  ): Promise<Device> {
    const existingId = opts.mergeInto ?? body.id?.id;
    const before = existingId ? await this.get(tenantId, existingId) : null;
    const source: DeviceInput = opts.mergeInto && before ? { ...this.toInput(before), ...body } : body;

    const name = typeof source.name === 'string' ? source.name : '';
    if (!name.trim()) throw invalid('Device name should be specified!');
    const long = (['name', 'label', 'type'] as const).filter((k) => typeof source[k] === 'string' && (source[k] as string).length > 255);
    if (long.length) throw invalid(`Validation error: ${long.map((k) => `${k} length must be equal or less than 255`).join(', ')}`);

    // A profile named after `type` is created only once everything else has passed, so a refused
    // device leaves no profile behind.
    const resolved = await this.resolveProfile(tenantId, source);
    const profileId: DeviceProfileId | null = 'create' in resolved ? null : resolved.profile.id;
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(source)) if (!OWN_FIELDS.has(k)) extra[k] = v;

    let accessToken = before?.accessToken ?? opts.credentials?.id ?? opts.accessToken ?? generateAccessToken();
    if (!before && opts.accessToken !== undefined) {
      if (!opts.accessToken.trim()) throw invalid('Device credentials id should be specified!');
      accessToken = opts.accessToken;
    }
    const id = before?.id ?? newId<'DEVICE'>();
    const firmwareId = (source.firmwareId?.id ?? null) as OtaPackageId | null;
    const softwareId = (source.softwareId?.id ?? null) as OtaPackageId | null;
    const same = await this.devices.findByName(tenantId, name);
    if (same && same.id !== id) throw invalid('Device with such name already exists!');
    // A profile still to be created has no id yet, so no package can match it (as in ThingsBoard,
    // where a device saved with only `type` is validated with a null deviceProfileId).
    if (firmwareId) await this.packages.checkAssignable(tenantId, 'FIRMWARE', firmwareId, profileId, { newlyAssigned: firmwareId !== before?.firmwareId });
    if (softwareId) await this.packages.checkAssignable(tenantId, 'SOFTWARE', softwareId, profileId, { newlyAssigned: softwareId !== before?.softwareId });
    if (before && firmwareId && firmwareId !== before.firmwareId) await this.packages.downgrades.check(tenantId, 'FIRMWARE', firmwareId, { deviceId: id }, !!opts.forceDowngrade);
    if (before && softwareId && softwareId !== before.softwareId) await this.packages.downgrades.check(tenantId, 'SOFTWARE', softwareId, { deviceId: id }, !!opts.forceDowngrade);
    if (!before) await this.checkTokenFree(accessToken, null);

    const deviceProfileId = 'create' in resolved ? (await this.profiles.findOrCreate(tenantId, resolved.create)).id : resolved.profile.id;
    const device: Device = {
      id,
      tenantId,
      name,
      label: (source.label as string | null | undefined) ?? null,
      deviceProfileId,
      firmwareId,
      softwareId,
      accessToken,
      credentialsType: before ? before.credentialsType : opts.credentials?.type,
      credentialsValue: before ? before.credentialsValue : opts.credentials?.value,
      credentialsId: before?.credentialsId ?? newId<'DEVICE_CREDENTIALS'>(),
      createdTime: before?.createdTime ?? Date.now(),
      version: (before?.version ?? 0) + 1,
      extra,
    };
    if (before) await this.devices.update(device);
    else {
      await this.checkDeviceLimit(tenantId);
      await this.devices.insert(device);
    }
    this.events.emit('deviceSaved', { before, after: device });
    return device;
  }

  /** `POST /api/device-with-credentials` (`{device, credentials}`): a new device with its credentials. */
  async saveWithCredentials(tenantId: TenantId, body: DeviceInput, input: CredentialsInput): Promise<Device> {
    const credentials = await parseCredentials(input);
    const existingId = body.id?.id;
    if (existingId) {
      // ThingsBoard updates both when the device exists already.
      await this.checkTokenFree(credentials.id, (await this.get(tenantId, existingId)).id);
      const saved = await this.save(tenantId, body);
      return this.updateCredentials(tenantId, saved.id, input);
    }
    await this.checkTokenFree(credentials.id, null);
    return this.save(tenantId, body, { credentials });
  }

  /** `POST /api/device/credentials`: new credentials (access token, MQTT basic, X.509 or LwM2M endpoint) for a device. */
  async updateCredentials(tenantId: TenantId, deviceId: string, input: CredentialsInput): Promise<Device> {
    const device = await this.get(tenantId, deviceId);
    const credentials = await parseCredentials(input);
    await this.checkTokenFree(credentials.id, device.id);
    const updated: Device = { ...device, accessToken: credentials.id, credentialsType: credentials.type, credentialsValue: credentials.value, version: device.version + 1 };
    await this.devices.update(updated);
    // Transports close sessions opened with the old token, as ThingsBoard does.
    this.events.emit('deviceSaved', { before: device, after: updated });
    return updated;
  }

  async delete(tenantId: TenantId, id: string): Promise<void> {
    const device = await this.get(tenantId, id);
    await this.devices.delete(tenantId, device.id);
    this.events.emit('deviceDeleted', { device });
  }

  /** ThingsBoard's `validateNumberOfEntitiesPerTenant(DEVICE)`: 403 "Devices limit reached" at the profile's maxDevices. */
  private async checkDeviceLimit(tenantId: TenantId): Promise<void> {
    const { maxDevices } = await this.limitsOf(tenantId);
    if (maxDevices <= 0) return;
    // The total of a one-row page: the tenant's device count, without a repository method of its own.
    const { totalElements } = await this.devices.page(tenantId, { pageSize: 1, page: 0 });
    if (totalElements >= maxDevices) throw new EntitiesLimitExceeded('DEVICE', maxDevices, 'Device');
  }

  private async checkTokenFree(token: string, ownId: DeviceId | null): Promise<void> {
    const holder = await this.devices.findByCredentialsId(token);
    if (holder && holder.id !== ownId) throw invalid('Device credentials are already assigned to another device!');
  }

  /**
   * ThingsBoard: the given profile, else a profile named after `type` (to be created when there is
   * none yet), else the default.
   */
  private async resolveProfile(tenantId: TenantId, source: DeviceInput): Promise<{ profile: DeviceProfile } | { create: string }> {
    const id = source.deviceProfileId?.id;
    if (id) {
      try {
        return { profile: await this.profiles.get(tenantId, id) };
      } catch (err) {
        if ((err as { status?: number }).status === 403) throw invalid('Device can`t be referencing to device profile from different tenant!');
        throw invalid('Device is referencing non existing device profile!');
      }
    }
    if (typeof source.type === 'string' && source.type.trim()) {
      const named = await this.profiles.findByName(tenantId, source.type);
      return named ? { profile: named } : { create: source.type };
    }
    return { profile: await this.profiles.ensureDefault(tenantId) };
  }

  private toInput(d: Device): DeviceInput {
    return {
      ...d.extra,
      id: { id: d.id },
      name: d.name,
      label: d.label,
      deviceProfileId: { id: d.deviceProfileId },
      firmwareId: d.firmwareId ? { id: d.firmwareId } : null,
      softwareId: d.softwareId ? { id: d.softwareId } : null,
    };
  }
}
