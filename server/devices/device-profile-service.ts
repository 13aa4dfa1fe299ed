import type { PageData, PageLink } from '../store/sqlite/database';
import type { DeviceProfile, DeviceProfileRepository } from '../store/device-profiles';
import type { DeviceRepository } from '../store/devices';
import { entityNotFound, forbidden, invalid } from '../errors';
import type { EngineEvents } from '../events';
import { isUuid, newId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../ids';
import type { OtaPackageRepository } from '../store/ota-packages';
import { ProtoPayloads, protoPayloadSettings, ProtoSchemaError } from '../transports/proto-payloads';
import type { OtaPackageService } from '../packages/ota-package-service';

/** A device profile body as ThingsBoard clients send it: our fields plus any others, which we keep. */
export type DeviceProfileInput = Record<string, unknown> & {
  id?: { id?: string } | null;
  name?: string;
  description?: string | null;
  default?: boolean;
  firmwareId?: { id?: string } | null;
  softwareId?: { id?: string } | null;
};

/** Fields we model ourselves; everything else in a body is kept verbatim in `extra`. */
const OWN_FIELDS = new Set(['id', 'createdTime', 'tenantId', 'name', 'description', 'default', 'firmwareId', 'softwareId', 'version']);

/** What ThingsBoard fills in for a profile created without them (its `createDefaultDeviceProfile`). */
export const PROFILE_DEFAULTS: Readonly<Record<string, unknown>> = {
  type: 'DEFAULT',
  transportType: 'DEFAULT',
  provisionType: 'DISABLED',
  image: null,
  defaultRuleChainId: null,
  defaultDashboardId: null,
  defaultQueueName: null,
  provisionDeviceKey: null,
  defaultEdgeRuleChainId: null,
  externalId: null,
  profileData: {
    configuration: { type: 'DEFAULT' },
    transportConfiguration: { type: 'DEFAULT' },
    provisionConfiguration: { type: 'DISABLED', provisionDeviceSecret: null },
    alarms: null,
  },
};

export class DeviceProfileService {
  constructor(
    private readonly profiles: DeviceProfileRepository,
    private readonly devices: DeviceRepository,
    private readonly packages: OtaPackageRepository,
    private readonly packageService: OtaPackageService,
    private readonly events: EngineEvents,
  ) {}

  async get(tenantId: TenantId, id: string): Promise<DeviceProfile> {
    const found = isUuid(id) ? await this.profiles.findById(tenantId, id as DeviceProfileId) : null;
    if (found) return found;
    if (isUuid(id) && (await this.profiles.ownerOf(id))) throw forbidden();
    throw entityNotFound('Device profile', id);
  }

  page(tenantId: TenantId, link: PageLink): Promise<PageData<DeviceProfile>> {
    return this.profiles.page(tenantId, link);
  }

  findByName(tenantId: TenantId, name: string): Promise<DeviceProfile | null> {
    return this.profiles.findByName(tenantId, name);
  }

  /** The tenant's default profile, created as ThingsBoard creates it when missing. */
  async ensureDefault(tenantId: TenantId): Promise<DeviceProfile> {
    return (await this.profiles.findDefault(tenantId)) ?? this.create(tenantId, 'default', true, 'Default device profile');
  }

  /** ThingsBoard's findOrCreateDeviceProfile: a device saved with only `type` gets a profile of that name. */
  async findOrCreate(tenantId: TenantId, name: string): Promise<DeviceProfile> {
    return (await this.profiles.findByName(tenantId, name)) ?? this.create(tenantId, name, false, null);
  }

  /**
   * `POST /api/deviceProfile`: the body replaces the stored profile (a missing `firmwareId`
   * unassigns). With `merge`, as the shorthand `POST /api/deviceProfile/{id}`, only the fields
   * present change.
   */
  async save(tenantId: TenantId, body: DeviceProfileInput, opts: { mergeInto?: string; forceDowngrade?: boolean } = {}): Promise<DeviceProfile> {
    const existingId = opts.mergeInto ?? body.id?.id;
    const before = existingId ? await this.get(tenantId, existingId) : null;
    const source: DeviceProfileInput = opts.mergeInto && before ? { ...this.toInput(before), ...body } : body;

    const name = typeof source.name === 'string' ? source.name : '';
    if (!name.trim()) throw invalid('Device profile name should be specified!');
    if (name.length > 255) throw invalid('Validation error: name length must be equal or less than 255');
    const extra: Record<string, unknown> = { ...PROFILE_DEFAULTS };
    for (const [k, v] of Object.entries(source)) if (!OWN_FIELDS.has(k)) extra[k] = v;
    if (extra.provisionType === null) extra.provisionType = 'DISABLED';
    checkProtoSchemas(extra);

    const isDefault = source.default ?? before?.isDefault ?? false;
    const profile: DeviceProfile = {
      id: before?.id ?? newId<'DEVICE_PROFILE'>(),
      tenantId,
      name,
      description: (source.description as string | null | undefined) ?? null,
      isDefault: before?.isDefault ?? false,
      firmwareId: (source.firmwareId?.id ?? null) as OtaPackageId | null,
      softwareId: (source.softwareId?.id ?? null) as OtaPackageId | null,
      createdTime: before?.createdTime ?? Date.now(),
      version: (before?.version ?? 0) + 1,
      extra,
    };
    const same = await this.profiles.findByName(tenantId, name);
    if (same && same.id !== profile.id) throw invalid('Device profile with such name already exists!');
    if (isDefault && !profile.isDefault) {
      const current = await this.profiles.findDefault(tenantId);
      if (current && current.id !== profile.id) throw invalid('Another default device profile is present in scope of current tenant!');
    }
    // On create the profile has no id yet in ThingsBoard, so nothing can be assigned (it compares profile ids).
    const ownId = before ? profile.id : null;
    if (profile.firmwareId)
      await this.packageService.checkAssignable(tenantId, 'FIRMWARE', profile.firmwareId, ownId, { newlyAssigned: profile.firmwareId !== before?.firmwareId });
    if (profile.softwareId)
      await this.packageService.checkAssignable(tenantId, 'SOFTWARE', profile.softwareId, ownId, { newlyAssigned: profile.softwareId !== before?.softwareId });
    if (before && profile.firmwareId && profile.firmwareId !== before.firmwareId) {
      await this.packageService.downgrades.check(tenantId, 'FIRMWARE', profile.firmwareId, { profileId: profile.id }, !!opts.forceDowngrade);
    }
    if (before && profile.softwareId && profile.softwareId !== before.softwareId) {
      await this.packageService.downgrades.check(tenantId, 'SOFTWARE', profile.softwareId, { profileId: profile.id }, !!opts.forceDowngrade);
    }

    if (before) await this.profiles.update(profile);
    else await this.profiles.insert(profile);
    if (isDefault && !profile.isDefault) {
      await this.profiles.setDefault(tenantId, profile.id);
      profile.isDefault = true;
    }
    this.events.emit('deviceProfileSaved', { before, after: profile });
    return profile;
  }

  /** `POST /api/deviceProfile/{id}/default`. */
  async setDefault(tenantId: TenantId, id: string): Promise<DeviceProfile> {
    const profile = await this.get(tenantId, id);
    await this.profiles.setDefault(tenantId, profile.id);
    return { ...profile, isDefault: true };
  }

  /**
   * Refused for the default profile and for a profile that devices use; its packages are deleted
   * with it, as ThingsBoard's `ON DELETE CASCADE` does.
   */
  async delete(tenantId: TenantId, id: string): Promise<void> {
    const profile = await this.get(tenantId, id);
    if (profile.isDefault) throw invalid('Deletion of Default Device Profile is prohibited!');
    if ((await this.devices.countByProfile(tenantId, profile.id)) > 0) throw invalid('The device profile referenced by the devices cannot be deleted!');
    if (profile.firmwareId || profile.softwareId) await this.profiles.update({ ...profile, firmwareId: null, softwareId: null });
    for (const pkg of await this.packages.listByProfile(tenantId, profile.id)) await this.packageService.forget(pkg);
    await this.profiles.delete(tenantId, profile.id);
    this.events.emit('deviceProfileDeleted', { profile });
  }

  private async create(tenantId: TenantId, name: string, isDefault: boolean, description: string | null): Promise<DeviceProfile> {
    const profile: DeviceProfile = {
      id: newId<'DEVICE_PROFILE'>(),
      tenantId,
      name,
      description,
      isDefault,
      firmwareId: null,
      softwareId: null,
      createdTime: Date.now(),
      version: 1,
      extra: { ...PROFILE_DEFAULTS },
    };
    await this.profiles.insert(profile);
    this.events.emit('deviceProfileSaved', { before: null, after: profile });
    return profile;
  }

  private toInput(p: DeviceProfile): DeviceProfileInput {
    return {
      ...p.extra,
      id: { id: p.id },
      name: p.name,
      description: p.description,
      default: p.isDefault,
      firmwareId: p.firmwareId ? { id: p.firmwareId } : null,
      softwareId: p.softwareId ? { id: p.softwareId } : null,
    };
  }
}

/** A protobuf profile's schemas must compile, as ThingsBoard's `validateProtoSchema` insists on save. */
function checkProtoSchemas(extra: Record<string, unknown>): void {
  const settings = protoPayloadSettings(extra);
  if (!settings) return;
  try {
    new ProtoPayloads(settings);
  } catch (err) {
    if (err instanceof ProtoSchemaError) throw invalid(err.message);
    throw err;
  }
}
