import { isUuid, type DeviceId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../../ids';
import { deviceFromRow, type Device, type DeviceRepository, type DeviceRow, type PackageSlot } from '../devices';
import type { PageData, PageLink } from '../sqlite/database';
import { writing } from './constraint-errors';
import { queryPage } from './page';
import type { Sql } from './pool';

interface Row extends DeviceRow<Record<string, unknown>>, Record<string, unknown> {}

// PostgreSQL returns the jsonb `extra` already parsed.
const toDevice = (r: Row): Device => deviceFromRow(r, r.extra);

/** A device's `type` on the wire is its profile's name. */
const PROFILE_NAME = '(SELECT lower(p.name) FROM device_profiles p WHERE p.id = devices.device_profile_id)';

const SORT_COLUMNS: Record<string, string> = {
  createdTime: 'created_time',
  name: 'lower(name)',
  label: 'label',
  deviceProfileName: PROFILE_NAME,
  type: PROFILE_NAME,
};

export class PgDeviceRepository implements DeviceRepository {
  constructor(private readonly sql: Sql) {}

  async insert(d: Device): Promise<void> {
    await writing(
      this.sql.query(
        `INSERT INTO devices (id, tenant_id, name, label, device_profile_id, firmware_id, software_id, access_token, credentials_type, credentials_value, credentials_id, created_time, version, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)`,
        [
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
        ],
      ),
    );
  }

  async update(d: Device): Promise<void> {
    await writing(
      this.sql.query(
        `UPDATE devices SET name = $1, label = $2, device_profile_id = $3, firmware_id = $4, software_id = $5, access_token = $6, credentials_type = $7, credentials_value = $8, version = $9, extra = $10::jsonb
         WHERE id = $11 AND tenant_id = $12`,
        [
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
        ],
      ),
    );
  }

  async findById(tenantId: TenantId, id: DeviceId): Promise<Device | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<Row>('SELECT * FROM devices WHERE id = $1 AND tenant_id = $2', [id, tenantId])).rows[0];
    return r ? toDevice(r) : null;
  }

  async findByIds(tenantId: TenantId, ids: readonly DeviceId[]): Promise<Device[]> {
    const valid = [...new Set(ids)].filter(isUuid);
    if (valid.length === 0) return [];
    return (await this.sql.query<Row>('SELECT * FROM devices WHERE tenant_id = $1 AND id = ANY($2::uuid[])', [tenantId, valid])).rows.map(toDevice);
  }

  async ownerOf(id: string): Promise<TenantId | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<{ tenant_id: string }>('SELECT tenant_id FROM devices WHERE id = $1', [id])).rows[0];
    return r ? (r.tenant_id as TenantId) : null;
  }

  async findByName(tenantId: TenantId, name: string): Promise<Device | null> {
    const r = (await this.sql.query<Row>('SELECT * FROM devices WHERE tenant_id = $1 AND name = $2', [tenantId, name])).rows[0];
    return r ? toDevice(r) : null;
  }

  async findByAccessToken(token: string): Promise<Device | null> {
    const r = (await this.sql.query<Row>("SELECT * FROM devices WHERE access_token = $1 AND credentials_type = 'ACCESS_TOKEN'", [token])).rows[0];
    return r ? toDevice(r) : null;
  }

  async findByLwm2mEndpoint(endpoint: string): Promise<Device | null> {
    const r = (await this.sql.query<Row>("SELECT * FROM devices WHERE access_token = $1 AND credentials_type = 'LWM2M_CREDENTIALS'", [endpoint])).rows[0];
    return r ? toDevice(r) : null;
  }

  async findByCredentialsId(credentialsId: string): Promise<Device | null> {
    const r = (await this.sql.query<Row>('SELECT * FROM devices WHERE access_token = $1', [credentialsId])).rows[0];
    return r ? toDevice(r) : null;
  }

  async page(tenantId: TenantId, link: PageLink, filter: { deviceProfileId?: DeviceProfileId } = {}): Promise<PageData<Device>> {
    const byProfile = filter.deviceProfileId !== undefined;
    if (byProfile && !isUuid(filter.deviceProfileId)) return { data: [], totalPages: 0, totalElements: 0, hasNext: false };
    return queryPage<Device, Row>(this.sql, {
      from: `FROM devices WHERE tenant_id = $1${byProfile ? ' AND device_profile_id = $2' : ''}`,
      params: byProfile ? [tenantId, filter.deviceProfileId] : [tenantId],
      searchColumn: 'name',
      sortColumns: SORT_COLUMNS,
      link,
      map: toDevice,
    });
  }

  async listInheriting(tenantId: TenantId, profileId: DeviceProfileId, slot: PackageSlot, afterId: string, limit: number): Promise<Device[]> {
    const column = slot === 'firmware_id' ? 'firmware_id' : 'software_id';
    // uuid order is the order of the lowercase text ids SQLite compares; '' comes before every id.
    const after = afterId === '' ? '00000000-0000-0000-0000-000000000000' : afterId;
    const rows = await this.sql.query<Row>(
      `SELECT * FROM devices WHERE tenant_id = $1 AND device_profile_id = $2 AND ${column} IS NULL AND id > $3::uuid
       ORDER BY id LIMIT $4`,
      [tenantId, profileId, after, limit],
    );
    return rows.rows.map(toDevice);
  }

  async delete(tenantId: TenantId, id: DeviceId): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('DELETE FROM devices WHERE id = $1 AND tenant_id = $2', [id, tenantId]);
  }

  async countByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<number> {
    if (!isUuid(profileId)) return 0;
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM devices WHERE tenant_id = $1 AND device_profile_id = $2', [tenantId, profileId])).rows[0].n;
  }

  async countUsingPackage(tenantId: TenantId, packageId: OtaPackageId): Promise<number> {
    if (!isUuid(packageId)) return 0;
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM devices WHERE tenant_id = $1 AND (firmware_id = $2 OR software_id = $2)', [tenantId, packageId])).rows[0]
      .n;
  }
}
