import { queryPage, type Db, type PageData, type PageLink } from './sqlite/database';
import { atomically } from './sqlite/atomically';
import { InValues } from './sqlite/multi-row';
import type { DeviceId, DeviceProfileId, OtaPackageId, TenantId } from '../ids';

/**
 * ThingsBoard's device credentials types we take: access tokens, LwM2M endpoints (NoSec), MQTT
 * basic credentials (client id, user name, password) and X.509 client certificates.
 */
export type DeviceCredentialsType = 'ACCESS_TOKEN' | 'LWM2M_CREDENTIALS' | 'MQTT_BASIC' | 'X509_CERTIFICATE';

export interface Device {
  id: DeviceId;
  tenantId: TenantId;
  name: string;
  label: string | null;
  deviceProfileId: DeviceProfileId;
  firmwareId: OtaPackageId | null;
  softwareId: OtaPackageId | null;
  /** ThingsBoard's credentialsId: the access token, the LwM2M endpoint name, or a SHA3 hash (MQTT basic, X.509). */
  accessToken: string;
  /** Absent: ACCESS_TOKEN. */
  credentialsType?: DeviceCredentialsType;
  /** The LwM2M or MQTT basic credentials JSON (password hashed), or the certificate; null for access tokens. */
  credentialsValue?: string | null;
  /** Id of the device's credentials record (ThingsBoard keeps credentials as their own entity). */
  credentialsId: string;
  createdTime: number;
  version: number;
  /** ThingsBoard fields we keep but do not use (deviceData, additionalInfo, customerId, ...). */
  extra: Record<string, unknown>;
}

export type PackageSlot = 'firmware_id' | 'software_id';

/** What deciding a device's notification reads of it: whose it is, its profile and its own package slots. */
export type DeviceSlots = Pick<Device, 'id' | 'tenantId' | 'deviceProfileId' | 'firmwareId' | 'softwareId'>;

export interface DeviceRepository {
  insert(device: Device): Promise<void>;
  update(device: Device): Promise<void>;
  findById(tenantId: TenantId, id: DeviceId): Promise<Device | null>;
  /**
   * The package slots of the tenant's devices among `ids` (a batch of notifications reads them at
   * once); unknown ids are left out.
   */
  findByIds(tenantId: TenantId, ids: readonly DeviceId[]): Promise<DeviceSlots[]>;
  ownerOf(id: string): Promise<TenantId | null>;
  findByName(tenantId: TenantId, name: string): Promise<Device | null>;
  /** Device authentication: the token is the credential, so this lookup is not tenant-scoped. */
  findByAccessToken(token: string): Promise<Device | null>;
  /** LwM2M registration: the endpoint name is the credential (NoSec), not tenant-scoped either. */
  findByLwm2mEndpoint(endpoint: string): Promise<Device | null>;
  /** Whoever holds a credentials id, of any type (they are unique across types). */
  findByCredentialsId(credentialsId: string): Promise<Device | null>;
  page(tenantId: TenantId, link: PageLink, filter?: { deviceProfileId?: DeviceProfileId }): Promise<PageData<Device>>;
  /**
   * Devices of a profile whose own slot is empty, in id order after `afterId`: a profile's change
   * reaches them in pages (keyset paging stays fast for 50,000 devices).
   */
  listInheriting(tenantId: TenantId, profileId: DeviceProfileId, slot: PackageSlot, afterId: string, limit: number): Promise<Array<Pick<Device, 'id'>>>;
  delete(tenantId: TenantId, id: DeviceId): Promise<void>;
  /** Deletes these devices of the tenant in one transaction (a deleted tenant's, page by page). */
  deleteMany(tenantId: TenantId, ids: readonly DeviceId[]): Promise<void>;
  countByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<number>;
  countUsingPackage(tenantId: TenantId, packageId: OtaPackageId): Promise<number>;
}

/** A devices row; `extra` is JSON text in SQLite and parsed jsonb in PostgreSQL. */
export interface DeviceRow<Extra> {
  id: string;
  tenant_id: string;
  name: string;
  label: string | null;
  device_profile_id: string;
  firmware_id: string | null;
  software_id: string | null;
  access_token: string;
  credentials_type: string;
  credentials_value: string | null;
  credentials_id: string;
  created_time: number;
  version: number;
  extra: Extra;
}

/** The one row -> Device mapping; each database hands over `extra` already parsed. */
export const deviceFromRow = (r: DeviceRow<unknown>, extra: Record<string, unknown>): Device => ({
  id: r.id as DeviceId,
  tenantId: r.tenant_id as TenantId,
  name: r.name,
  label: r.label,
  deviceProfileId: r.device_profile_id as DeviceProfileId,
  firmwareId: r.firmware_id as OtaPackageId | null,
  softwareId: r.software_id as OtaPackageId | null,
  accessToken: r.access_token,
  credentialsType: r.credentials_type as DeviceCredentialsType,
  credentialsValue: r.credentials_value,
  credentialsId: r.credentials_id,
  createdTime: r.created_time,
  version: r.version,
  extra,
});

type Row = DeviceRow<string>;
type SlotsRow = Pick<Row, 'id' | 'tenant_id' | 'device_profile_id' | 'firmware_id' | 'software_id'>;

// SQLite keeps `extra` as JSON text.
const toDevice = (r: Row): Device => deviceFromRow(r, JSON.parse(r.extra) as Record<string, unknown>);

/** A device's `type` on the wire is its profile's name. */
const PROFILE_NAME = '(SELECT p.name FROM device_profiles p WHERE p.id = devices.device_profile_id) COLLATE NOCASE';

const SORT_COLUMNS: Record<string, string> = {
  createdTime: 'created_time',
  name: 'name COLLATE NOCASE',
  label: 'label',
  deviceProfileName: PROFILE_NAME,
  type: PROFILE_NAME,
};

export class SqliteDeviceRepository implements DeviceRepository {
  private readonly byIds;
  private readonly deleteByIds;

  constructor(private readonly db: Db) {
    // `+tenant_id`: compared, not indexed; through the tenant index SQLite would scan every device of the tenant per chunk.
    // Five columns, not `SELECT *`: fourteen columns per row and the parse of `extra` cost more than the lookup itself.
    this.byIds = new InValues(db, 'SELECT id, tenant_id, device_profile_id, firmware_id, software_id FROM devices WHERE +tenant_id = ? AND id IN (', ')');
    this.deleteByIds = new InValues(db, 'DELETE FROM devices WHERE +tenant_id = ? AND id IN (', ')');
  }

  async insert(d: Device): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO devices (id, tenant_id, name, label, device_profile_id, firmware_id, software_id, access_token, credentials_type, credentials_value, credentials_id, created_time, version, extra)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        d.id,
        d.tenantId,
        d.name,
        d.label,
        d.deviceProfileId,
        d.firmwareId,
        d.softwareId,
        d.accessToken,
        d.credentialsType ?? 'ACCESS_TOKEN',
        d.credentialsValue ?? null,
        d.credentialsId,
        d.createdTime,
        d.version,
        JSON.stringify(d.extra),
      );
  }

  async update(d: Device): Promise<void> {
    this.db
      .prepare(
        `UPDATE devices SET name = ?, label = ?, device_profile_id = ?, firmware_id = ?, software_id = ?, access_token = ?, credentials_type = ?, credentials_value = ?, version = ?, extra = ?
         WHERE id = ? AND tenant_id = ?`,
      )
      .run(
        d.name,
        d.label,
        d.deviceProfileId,
        d.firmwareId,
        d.softwareId,
        d.accessToken,
        d.credentialsType ?? 'ACCESS_TOKEN',
        d.credentialsValue ?? null,
        d.version,
        JSON.stringify(d.extra),
        d.id,
        d.tenantId,
      );
  }

  async findById(tenantId: TenantId, id: DeviceId): Promise<Device | null> {
    const r = this.db.prepare('SELECT * FROM devices WHERE id = ? AND tenant_id = ?').get(id, tenantId) as Row | undefined;
    return r ? toDevice(r) : null;
  }

  async findByIds(tenantId: TenantId, ids: readonly DeviceId[]): Promise<DeviceSlots[]> {
    return this.byIds.run<SlotsRow>([tenantId], [...new Set(ids)]).map((r) => ({
      id: r.id as DeviceId,
      tenantId: r.tenant_id as TenantId,
      deviceProfileId: r.device_profile_id as DeviceProfileId,
      firmwareId: r.firmware_id as OtaPackageId | null,
      softwareId: r.software_id as OtaPackageId | null,
    }));
  }

  async ownerOf(id: string): Promise<TenantId | null> {
    const r = this.db.prepare('SELECT tenant_id FROM devices WHERE id = ?').get(id) as { tenant_id: string } | undefined;
    return r ? (r.tenant_id as TenantId) : null;
  }

  async findByName(tenantId: TenantId, name: string): Promise<Device | null> {
    const r = this.db.prepare('SELECT * FROM devices WHERE tenant_id = ? AND name = ?').get(tenantId, name) as Row | undefined;
    return r ? toDevice(r) : null;
  }

  async findByAccessToken(token: string): Promise<Device | null> {
    const r = this.db.prepare("SELECT * FROM devices WHERE access_token = ? AND credentials_type = 'ACCESS_TOKEN'").get(token) as Row | undefined;
    return r ? toDevice(r) : null;
  }

  async findByLwm2mEndpoint(endpoint: string): Promise<Device | null> {
    const r = this.db.prepare("SELECT * FROM devices WHERE access_token = ? AND credentials_type = 'LWM2M_CREDENTIALS'").get(endpoint) as Row | undefined;
    return r ? toDevice(r) : null;
  }

  async findByCredentialsId(credentialsId: string): Promise<Device | null> {
    const r = this.db.prepare('SELECT * FROM devices WHERE access_token = ?').get(credentialsId) as Row | undefined;
    return r ? toDevice(r) : null;
  }

  async page(tenantId: TenantId, link: PageLink, filter: { deviceProfileId?: DeviceProfileId } = {}): Promise<PageData<Device>> {
    const byProfile = filter.deviceProfileId !== undefined;
    return queryPage<Device, Row>(this.db, {
      from: `FROM devices WHERE tenant_id = ?${byProfile ? ' AND device_profile_id = ?' : ''}`,
      params: byProfile ? [tenantId, filter.deviceProfileId] : [tenantId],
      searchColumn: 'name',
      sortColumns: SORT_COLUMNS,
      link,
      map: toDevice,
    });
  }

  async listInheriting(tenantId: TenantId, profileId: DeviceProfileId, slot: PackageSlot, afterId: string, limit: number): Promise<Array<Pick<Device, 'id'>>> {
    // The ids alone: a profile's fan-out reads every device of it.
    return this.db
      .prepare(
        `SELECT id FROM devices WHERE tenant_id = ? AND device_profile_id = ? AND ${slot} IS NULL AND id > ?
         ORDER BY id LIMIT ?`,
      )
      .all(tenantId, profileId, afterId, limit) as Array<{ id: DeviceId }>;
  }

  async delete(tenantId: TenantId, id: DeviceId): Promise<void> {
    this.db.prepare('DELETE FROM devices WHERE id = ? AND tenant_id = ?').run(id, tenantId);
  }

  async deleteMany(tenantId: TenantId, ids: readonly DeviceId[]): Promise<void> {
    atomically(this.db, () => this.deleteByIds.run([tenantId], ids));
  }

  async countByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM devices WHERE tenant_id = ? AND device_profile_id = ?').get(tenantId, profileId) as { n: number }).n;
  }

  async countUsingPackage(tenantId: TenantId, packageId: OtaPackageId): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM devices WHERE tenant_id = ? AND (firmware_id = ? OR software_id = ?)').get(tenantId, packageId, packageId) as { n: number })
      .n;
  }
}
