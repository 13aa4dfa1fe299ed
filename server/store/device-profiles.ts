import { atomically } from './sqlite/atomically';
import { queryPage, type Db, type PageData, type PageLink } from './sqlite/database';
import type { DeviceProfileId, OtaPackageId, TenantId } from '../ids';

export interface DeviceProfile {
  id: DeviceProfileId;
  tenantId: TenantId;
  name: string;
  description: string | null;
  isDefault: boolean;
  firmwareId: OtaPackageId | null;
  softwareId: OtaPackageId | null;
  createdTime: number;
  /** Bumped on every save, as ThingsBoard's optimistic-locking `version`. */
  version: number;
  /** ThingsBoard fields we keep but do not use (profileData, provisionType, transportType, ...). */
  extra: Record<string, unknown>;
}

export interface DeviceProfileRepository {
  insert(profile: DeviceProfile): Promise<void>;
  update(profile: DeviceProfile): Promise<void>;
  findById(tenantId: TenantId, id: DeviceProfileId): Promise<DeviceProfile | null>;
  /** The tenant a profile belongs to, whoever asks: tells "forbidden" from "not found". */
  ownerOf(id: string): Promise<TenantId | null>;
  findByName(tenantId: TenantId, name: string): Promise<DeviceProfile | null>;
  findDefault(tenantId: TenantId): Promise<DeviceProfile | null>;
  /**
   * Device self-provisioning: the profile whose `provisionDeviceKey` this is. Not tenant-scoped,
   * as in ThingsBoard: the key (with its secret) is the credential. Profiles are few, so this
   * scans them rather than keeping an index (and a migration) for a rare request.
   */
  findByProvisionDeviceKey(key: string): Promise<DeviceProfile | null>;
  /** Makes `id` the tenant's only default profile. */
  setDefault(tenantId: TenantId, id: DeviceProfileId): Promise<void>;
  page(tenantId: TenantId, link: PageLink): Promise<PageData<DeviceProfile>>;
  delete(tenantId: TenantId, id: DeviceProfileId): Promise<void>;
  countUsingPackage(tenantId: TenantId, packageId: OtaPackageId): Promise<number>;
  /** The tenant's profiles with a firmware or software package assigned, by name: the metrics list them before they have devices. */
  listAssigned(tenantId: TenantId): Promise<DeviceProfile[]>;
}

interface Row {
  id: string;
  tenant_id: string;
  name: string;
  description: string | null;
  is_default: number;
  firmware_id: string | null;
  software_id: string | null;
  created_time: number;
  version: number;
  extra: string;
}

const toProfile = (r: Row): DeviceProfile => ({
  id: r.id as DeviceProfileId,
  tenantId: r.tenant_id as TenantId,
  name: r.name,
  description: r.description,
  isDefault: r.is_default === 1,
  firmwareId: r.firmware_id as OtaPackageId | null,
  softwareId: r.software_id as OtaPackageId | null,
  createdTime: r.created_time,
  version: r.version,
  extra: JSON.parse(r.extra) as Record<string, unknown>,
});

const SORT_COLUMNS: Record<string, string> = {
  createdTime: 'created_time',
  name: 'name COLLATE NOCASE',
  // kept verbatim in `extra`, as ThingsBoard clients sent them
  type: "json_extract(extra, '$.type')",
  transportType: "json_extract(extra, '$.transportType')",
  description: 'description',
  isDefault: 'is_default',
  default: 'is_default',
};

export class SqliteDeviceProfileRepository implements DeviceProfileRepository {
  constructor(private readonly db: Db) {}

  async insert(p: DeviceProfile): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO device_profiles (id, tenant_id, name, description, is_default, firmware_id, software_id, created_time, version, extra)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(p.id, p.tenantId, p.name, p.description, p.isDefault ? 1 : 0, p.firmwareId, p.softwareId, p.createdTime, p.version, JSON.stringify(p.extra));
  }

  async update(p: DeviceProfile): Promise<void> {
    this.db
      .prepare(
        `UPDATE device_profiles SET name = ?, description = ?, firmware_id = ?, software_id = ?, version = ?, extra = ?
         WHERE id = ? AND tenant_id = ?`,
      )
      .run(p.name, p.description, p.firmwareId, p.softwareId, p.version, JSON.stringify(p.extra), p.id, p.tenantId);
  }

  async findById(tenantId: TenantId, id: DeviceProfileId): Promise<DeviceProfile | null> {
    const r = this.db.prepare('SELECT * FROM device_profiles WHERE id = ? AND tenant_id = ?').get(id, tenantId) as Row | undefined;
    return r ? toProfile(r) : null;
  }

  async ownerOf(id: string): Promise<TenantId | null> {
    const r = this.db.prepare('SELECT tenant_id FROM device_profiles WHERE id = ?').get(id) as { tenant_id: string } | undefined;
    return r ? (r.tenant_id as TenantId) : null;
  }

  async findByName(tenantId: TenantId, name: string): Promise<DeviceProfile | null> {
    const r = this.db.prepare('SELECT * FROM device_profiles WHERE tenant_id = ? AND name = ?').get(tenantId, name) as Row | undefined;
    return r ? toProfile(r) : null;
  }

  async findByProvisionDeviceKey(key: string): Promise<DeviceProfile | null> {
    const r = this.db.prepare("SELECT * FROM device_profiles WHERE json_extract(extra, '$.provisionDeviceKey') = ? LIMIT 1").get(key) as Row | undefined;
    return r ? toProfile(r) : null;
  }

  async findDefault(tenantId: TenantId): Promise<DeviceProfile | null> {
    const r = this.db.prepare('SELECT * FROM device_profiles WHERE tenant_id = ? AND is_default = 1').get(tenantId) as Row | undefined;
    return r ? toProfile(r) : null;
  }

  async setDefault(tenantId: TenantId, id: DeviceProfileId): Promise<void> {
    atomically(this.db, () => {
      this.db.prepare('UPDATE device_profiles SET is_default = 0 WHERE tenant_id = ? AND is_default = 1').run(tenantId);
      this.db.prepare('UPDATE device_profiles SET is_default = 1 WHERE tenant_id = ? AND id = ?').run(tenantId, id);
    });
  }

  async page(tenantId: TenantId, link: PageLink): Promise<PageData<DeviceProfile>> {
    return queryPage<DeviceProfile, Row>(this.db, {
      from: 'FROM device_profiles WHERE tenant_id = ?',
      params: [tenantId],
      searchColumn: 'name',
      sortColumns: SORT_COLUMNS,
      link,
      map: toProfile,
    });
  }

  async delete(tenantId: TenantId, id: DeviceProfileId): Promise<void> {
    this.db.prepare('DELETE FROM device_profiles WHERE id = ? AND tenant_id = ?').run(id, tenantId);
  }

  async countUsingPackage(tenantId: TenantId, packageId: OtaPackageId): Promise<number> {
    return (
      this.db.prepare('SELECT count(*) AS n FROM device_profiles WHERE tenant_id = ? AND (firmware_id = ? OR software_id = ?)').get(tenantId, packageId, packageId) as { n: number }
    ).n;
  }

  async listAssigned(tenantId: TenantId): Promise<DeviceProfile[]> {
    const rows = this.db.prepare('SELECT * FROM device_profiles WHERE tenant_id = ? AND (firmware_id IS NOT NULL OR software_id IS NOT NULL) ORDER BY name').all(tenantId) as Row[];
    return rows.map(toProfile);
  }
}
