import { isUuid, type DeviceProfileId, type OtaPackageId, type TenantId } from '../../ids';
import type { DeviceProfile, DeviceProfileRepository } from '../device-profiles';
import type { PageData, PageLink } from '../sqlite/database';
import { writing } from './constraint-errors';
import { queryPage } from './page';
import { transaction, type Sql } from './pool';
import pg from 'pg';

interface Row extends Record<string, unknown> {
  id: string;
  tenant_id: string;
  name: string;
  description: string | null;
  is_default: boolean;
  firmware_id: string | null;
  software_id: string | null;
  created_time: number;
  version: number;
  extra: Record<string, unknown>;
}

const toProfile = (r: Row): DeviceProfile => ({
  id: r.id as DeviceProfileId,
  tenantId: r.tenant_id as TenantId,
  name: r.name,
  description: r.description,
  isDefault: r.is_default,
  firmwareId: r.firmware_id as OtaPackageId | null,
  softwareId: r.software_id as OtaPackageId | null,
  createdTime: r.created_time,
  version: r.version,
  extra: r.extra,
});

/** As the SQLite side sorts (case-insensitive names; `type`/`transportType` kept in `extra`). */
const SORT_COLUMNS: Record<string, string> = {
  createdTime: 'created_time',
  name: 'lower(name)',
  type: 'extra->>\'type\' COLLATE "C"',
  transportType: 'extra->>\'transportType\' COLLATE "C"',
  description: 'description',
  isDefault: 'is_default',
  default: 'is_default',
};

export class PgDeviceProfileRepository implements DeviceProfileRepository {
  /** On the pool, or on a client inside a store transaction. */
  constructor(private readonly pool: Sql) {}

  async insert(p: DeviceProfile): Promise<void> {
    await writing(
      this.pool.query(
        `INSERT INTO device_profiles (id, tenant_id, name, description, is_default, firmware_id, software_id, created_time, version, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)`,
        [p.id, p.tenantId, p.name, p.description, p.isDefault, p.firmwareId, p.softwareId, p.createdTime, p.version, JSON.stringify(p.extra)],
      ),
    );
  }

  async update(p: DeviceProfile): Promise<void> {
    await writing(
      this.pool.query(
        `UPDATE device_profiles SET name = $1, description = $2, firmware_id = $3, software_id = $4, version = $5, extra = $6::jsonb
         WHERE id = $7 AND tenant_id = $8`,
        [p.name, p.description, p.firmwareId, p.softwareId, p.version, JSON.stringify(p.extra), p.id, p.tenantId],
      ),
    );
  }

  async findById(tenantId: TenantId, id: DeviceProfileId): Promise<DeviceProfile | null> {
    if (!isUuid(id)) return null;
    const r = (await this.pool.query<Row>('SELECT * FROM device_profiles WHERE id = $1 AND tenant_id = $2', [id, tenantId])).rows[0];
    return r ? toProfile(r) : null;
  }

  async ownerOf(id: string): Promise<TenantId | null> {
    if (!isUuid(id)) return null;
    const r = (await this.pool.query<{ tenant_id: string }>('SELECT tenant_id FROM device_profiles WHERE id = $1', [id])).rows[0];
    return r ? (r.tenant_id as TenantId) : null;
  }

  async findByName(tenantId: TenantId, name: string): Promise<DeviceProfile | null> {
    const r = (await this.pool.query<Row>('SELECT * FROM device_profiles WHERE tenant_id = $1 AND name = $2', [tenantId, name])).rows[0];
    return r ? toProfile(r) : null;
  }

  async findByProvisionDeviceKey(key: string): Promise<DeviceProfile | null> {
    const r = (await this.pool.query<Row>("SELECT * FROM device_profiles WHERE extra->>'provisionDeviceKey' = $1 LIMIT 1", [key])).rows[0];
    return r ? toProfile(r) : null;
  }

  async findDefault(tenantId: TenantId): Promise<DeviceProfile | null> {
    const r = (await this.pool.query<Row>('SELECT * FROM device_profiles WHERE tenant_id = $1 AND is_default', [tenantId])).rows[0];
    return r ? toProfile(r) : null;
  }

  async setDefault(tenantId: TenantId, id: DeviceProfileId): Promise<void> {
    await writing(
      // Two statements (a unique index is checked row by row within one): one transaction of their
      // own on the pool, or part of the store transaction already open on a client.
      inTransaction(this.pool, async (client) => {
        await client.query('UPDATE device_profiles SET is_default = false WHERE tenant_id = $1 AND is_default', [tenantId]);
        await client.query('UPDATE device_profiles SET is_default = true WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
      }),
    );
  }

  async page(tenantId: TenantId, link: PageLink): Promise<PageData<DeviceProfile>> {
    return queryPage<DeviceProfile, Row>(this.pool, {
      from: 'FROM device_profiles WHERE tenant_id = $1',
      params: [tenantId],
      searchColumn: 'name',
      sortColumns: SORT_COLUMNS,
      link,
      map: toProfile,
    });
  }

  async delete(tenantId: TenantId, id: DeviceProfileId): Promise<void> {
    if (!isUuid(id)) return;
    await this.pool.query('DELETE FROM device_profiles WHERE id = $1 AND tenant_id = $2', [id, tenantId]);
  }

  async countUsingPackage(tenantId: TenantId, packageId: OtaPackageId): Promise<number> {
    if (!isUuid(packageId)) return 0;
    return (
      await this.pool.query<{ n: number }>('SELECT count(*) AS n FROM device_profiles WHERE tenant_id = $1 AND (firmware_id = $2 OR software_id = $2)', [tenantId, packageId])
    ).rows[0].n;
  }

  async listAssigned(tenantId: TenantId): Promise<DeviceProfile[]> {
    const rows = await this.pool.query<Row>('SELECT * FROM device_profiles WHERE tenant_id = $1 AND (firmware_id IS NOT NULL OR software_id IS NOT NULL) ORDER BY name', [
      tenantId,
    ]);
    return rows.rows.map(toProfile);
  }
}

function inTransaction<T>(sql: Sql, fn: (client: Sql) => Promise<T>): Promise<T> {
  return sql instanceof pg.Pool ? transaction(sql, fn) : fn(sql);
}
