import type { BlobStore } from '../store/blob-store';
import type { DeviceRepository } from '../store/devices';
import type { OtaPackageRepository } from '../store/ota-packages';
import type { PageData, PageLink } from '../store/sqlite/database';
import { SYSTEM_TENANT_ID, type Tenant, type TenantProfile, type TenantRepository } from '../store/tenants';
import type { EngineEvents } from '../events';
import { entityNotFound, invalid } from '../errors';
import { isUuid, newId, type TenantId } from '../ids';
import { UNLIMITED, type TenantLimits } from '../tenant-limits';

/** ThingsBoard's Tenant fields we keep as sent (contact details and additionalInfo). */
const TENANT_DETAILS = ['region', 'country', 'state', 'city', 'address', 'address2', 'zip', 'phone', 'email', 'additionalInfo'] as const;

type Ref = { id?: string } | null | undefined;

/** Devices of a deleted tenant deleted (and their sessions ended) per transaction. */
const DELETE_PAGE_SIZE = 1000;

/**
 * ThingsBoard's tenants and tenant profiles as its system administrator manages them
 * (TenantController, TenantProfileController): create, read, list, delete with everything the tenant
 * owns; the profile's limits apply to the tenant's devices and packages (tenant-limits.ts).
 */
export class TenantService {
  constructor(
    private readonly tenants: TenantRepository,
    private readonly devices: DeviceRepository,
    private readonly packages: OtaPackageRepository,
    private readonly blobs: BlobStore,
    private readonly events: EngineEvents,
    /** A new tenant gets its default device profile, as in ThingsBoard. */
    private readonly onTenantCreated: (tenantId: TenantId) => Promise<void>,
  ) {}

  /** `POST /api/tenant`: creates (no id) or updates a tenant. */
  async save(body: Record<string, unknown>): Promise<Tenant> {
    const title = typeof body.title === 'string' ? body.title.trim() : '';
    if (!title) throw invalid('Tenant title should be specified!');
    const profileId = (body.tenantProfileId as Ref)?.id ?? null;
    if (profileId !== null && !(await this.tenants.findTenantProfile(profileId))) throw invalid('Tenant is referencing to non-existent tenant profile!');
    const extra: Record<string, unknown> = {};
    for (const key of TENANT_DETAILS) if (body[key] !== undefined) extra[key] = body[key];
    const id = (body.id as Ref)?.id;
    if (id) {
      const before = await this.tenants.findTenant(id as TenantId);
      if (!before || before.id === SYSTEM_TENANT_ID) throw invalid("Can't update non existing tenant!");
      const tenant: Tenant = { ...before, title, tenantProfileId: profileId ?? before.tenantProfileId, extra };
      await this.tenants.updateTenant(tenant);
      return tenant;
    }
    const tenant = await this.tenants.createTenant({ title, tenantProfileId: profileId ?? (await this.defaultProfile()).id, extra });
    await this.onTenantCreated(tenant.id);
    return tenant;
  }

  /** A tenant; ThingsBoard's 404 when unknown (the system tenant is not one). */
  async get(id: string): Promise<Tenant> {
    const tenant = isUuid(id) && id !== SYSTEM_TENANT_ID ? await this.tenants.findTenant(id as TenantId) : null;
    if (!tenant) throw entityNotFound('Tenant', id);
    return tenant;
  }

  page(link: PageLink): Promise<PageData<Tenant>> {
    return this.tenants.pageTenants(link);
  }

  /**
   * `DELETE /api/tenant/{id}`: the tenant and everything it owns; then the bytes no other tenant's
   * package holds. Its devices go first, a page at a time (a 100,000-device tenant is never held in
   * memory), each page in one transaction followed by `deviceDeleted` for its devices, which ends
   * their live sessions (MQTT, CoAP, LwM2M, HTTP long polls) as for a single device. The rest
   * (packages, profiles, users, ...) goes in one transaction at the end. A failure part-way leaves
   * the tenant with fewer devices; deleting it again finishes the job.
   */
  async delete(id: string): Promise<void> {
    const tenant = await this.get(id);
    for (;;) {
      const page = await this.devices.page(tenant.id, { pageSize: DELETE_PAGE_SIZE, page: 0 });
      if (page.data.length === 0) break;
      await this.devices.deleteMany(
        tenant.id,
        page.data.map((d) => d.id),
      );
      for (const device of page.data) this.events.emit('deviceDeleted', { device });
    }
    const shas = await this.tenants.deleteTenant(tenant.id);
    for (const sha of shas)
      await this.blobs.release(
        sha,
        async () => undefined,
        async () => (await this.packages.countUsingBlob(sha)) > 0,
      );
  }

  // ---- tenant profiles -------------------------------------------------------------------------

  /** The limits of a tenant's profile (the default profile when it names none). */
  async limitsOf(tenantId: TenantId): Promise<TenantLimits> {
    const tenant = await this.tenants.findTenant(tenantId);
    const profile = (tenant?.tenantProfileId ? await this.tenants.findTenantProfile(tenant.tenantProfileId) : null) ?? (await this.tenants.findDefaultTenantProfile());
    return profile ? limitsIn(profile) : UNLIMITED;
  }

  /** The default tenant profile, made on first start with `limits` (from the environment). */
  async ensureDefaultProfile(limits: TenantLimits): Promise<TenantProfile> {
    const existing = await this.tenants.findDefaultTenantProfile();
    if (existing) return existing;
    const profile: TenantProfile = {
      id: newId<'TENANT'>(),
      name: 'Default',
      description: 'Default tenant profile',
      isDefault: true,
      profileData: { configuration: { type: 'DEFAULT', maxDevices: limits.maxDevices, maxOtaPackagesInBytes: limits.maxOtaPackagesInBytes } },
      createdTime: Date.now(),
    };
    await this.tenants.saveTenantProfile(profile);
    return profile;
  }

  async defaultProfile(): Promise<TenantProfile> {
    return (await this.tenants.findDefaultTenantProfile()) ?? this.ensureDefaultProfile(UNLIMITED);
  }

  async getProfile(id: string): Promise<TenantProfile> {
    const profile = isUuid(id) ? await this.tenants.findTenantProfile(id) : null;
    if (!profile) throw entityNotFound('Tenant profile', id);
    return profile;
  }

  pageProfiles(link: PageLink): Promise<PageData<TenantProfile>> {
    return this.tenants.pageTenantProfiles(link);
  }

  /** `POST /api/tenantProfile`: creates or updates; the limits must be whole numbers >= 0. */
  async saveProfile(body: Record<string, unknown>): Promise<TenantProfile> {
    const name = typeof body.name === 'string' ? body.name.trim() : '';
    if (!name) throw invalid('Tenant profile name should be specified!');
    const profileData = (body.profileData ?? { configuration: { type: 'DEFAULT' } }) as Record<string, unknown>;
    const configuration = profileData.configuration as Record<string, unknown> | undefined;
    if (typeof configuration !== 'object' || configuration === null) throw invalid('Tenant profile data configuration should be specified!');
    for (const key of ['maxDevices', 'maxOtaPackagesInBytes']) {
      const v = configuration[key];
      if (v !== undefined && v !== null && !(Number.isSafeInteger(v) && (v as number) >= 0)) throw invalid(`Invalid value of ${key}: ${JSON.stringify(v)}`);
    }
    const id = (body.id as Ref)?.id;
    const before = id ? await this.tenants.findTenantProfile(id) : null;
    if (id && !before) throw invalid("Can't update non existing tenant profile!");
    const profile: TenantProfile = {
      id: before?.id ?? newId<'TENANT'>(),
      name,
      description: typeof body.description === 'string' ? body.description : null,
      isDefault: before?.isDefault ?? body.default === true,
      profileData,
      createdTime: before?.createdTime ?? Date.now(),
    };
    const same = (await this.tenants.pageTenantProfiles({ pageSize: 1000, page: 0, textSearch: name })).data.find((p) => p.name === name);
    if (same && same.id !== profile.id) throw invalid('Tenant profile with such name already exists!');
    await this.tenants.saveTenantProfile(profile);
    return profile;
  }
}

/** The limits in a profile's configuration; absent or 0 = unlimited. */
export function limitsIn(profile: TenantProfile): TenantLimits {
  const c = (profile.profileData.configuration ?? {}) as Record<string, unknown>;
  const n = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0);
  return { maxDevices: n(c.maxDevices), maxOtaPackagesInBytes: n(c.maxOtaPackagesInBytes) };
}
