import { isUuid, type DeviceProfileId, type OtaPackageId, type TenantId } from '../../ids';
import { packageFromRow, type OtaPackage, type OtaPackageRepository, type OtaPackageRow, type OtaPackageType } from '../ota-packages';
import type { PageData, PageLink } from '../sqlite/database';
import { writing } from './constraint-errors';
import { queryPage } from './page';
import type { Sql } from './pool';

interface Row extends OtaPackageRow<Record<string, unknown>>, Record<string, unknown> {}

// PostgreSQL returns the jsonb `additional_info` already parsed.
const toPackage = (r: Row): OtaPackage => packageFromRow(r, r.additional_info);

/** The sort properties ThingsBoard accepts for packages (reference §7.2), as the SQLite side sorts them. */
const SORT_COLUMNS: Record<string, string> = {
  createdTime: 'created_time',
  type: 'type',
  title: 'lower(title)',
  version: 'version',
  tag: 'tag',
  url: 'url',
  fileName: 'file_name',
  dataSize: 'data_size',
  checksum: 'checksum',
};

/** The columns in insert order, and the values of a package in that order. */
const COLUMNS = `id, tenant_id, device_profile_id, type, title, version, tag, url, file_name, content_type,
  checksum_algorithm, checksum, data_size, blob_sha256, additional_info, external_id, created_time, signature, signature_algorithm`;
const values = (p: OtaPackage): unknown[] => [
  p.id,
  p.tenantId,
  p.deviceProfileId,
  p.type,
  p.title,
  p.version,
  p.tag,
  p.url,
  p.fileName,
  p.contentType,
  p.checksumAlgorithm,
  p.checksum,
  p.dataSize,
  p.blobSha256,
  p.additionalInfo === null ? null : JSON.stringify(p.additionalInfo),
  p.externalId,
  p.createdTime,
  p.signature,
  p.signatureAlgorithm,
];

export class PgOtaPackageRepository implements OtaPackageRepository {
  constructor(private readonly sql: Sql) {}

  async insert(p: OtaPackage): Promise<void> {
    await writing(
      this.sql.query(`INSERT INTO ota_packages (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb, $16, $17, $18, $19)`, values(p)),
    );
  }

  async update(p: OtaPackage): Promise<void> {
    await writing(
      this.sql.query(
        `UPDATE ota_packages SET device_profile_id = $3, type = $4, title = $5, version = $6, tag = $7, url = $8, file_name = $9,
           content_type = $10, checksum_algorithm = $11, checksum = $12, data_size = $13, blob_sha256 = $14,
           additional_info = $15::jsonb, external_id = $16, signature = $17, signature_algorithm = $18
         WHERE id = $1 AND tenant_id = $2`,
        [...values(p).slice(0, 16), p.signature, p.signatureAlgorithm],
      ),
    );
  }

  async attachData(p: OtaPackage): Promise<boolean> {
    const { rowCount } = await writing(
      this.sql.query(
        `UPDATE ota_packages SET device_profile_id = $3, type = $4, title = $5, version = $6, tag = $7, url = $8, file_name = $9,
           content_type = $10, checksum_algorithm = $11, checksum = $12, data_size = $13, blob_sha256 = $14,
           additional_info = $15::jsonb, external_id = $16, signature = $17, signature_algorithm = $18
         WHERE id = $1 AND tenant_id = $2 AND (blob_sha256 IS NULL OR blob_sha256 = $14)`,
        [...values(p).slice(0, 16), p.signature, p.signatureAlgorithm],
      ),
    );
    return (rowCount ?? 0) > 0;
  }

  async findById(tenantId: TenantId, id: OtaPackageId): Promise<OtaPackage | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<Row>('SELECT * FROM ota_packages WHERE id = $1 AND tenant_id = $2', [id, tenantId])).rows[0];
    return r ? toPackage(r) : null;
  }

  async ownerOf(id: string): Promise<TenantId | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<{ tenant_id: string }>('SELECT tenant_id FROM ota_packages WHERE id = $1', [id])).rows[0];
    return r ? (r.tenant_id as TenantId) : null;
  }

  async findByTitleVersion(tenantId: TenantId, title: string, version: string): Promise<OtaPackage | null> {
    const r = (await this.sql.query<Row>('SELECT * FROM ota_packages WHERE tenant_id = $1 AND title = $2 AND version = $3', [tenantId, title, version])).rows[0];
    return r ? toPackage(r) : null;
  }

  async page(tenantId: TenantId, link: PageLink, filter?: { deviceProfileId: DeviceProfileId; type: OtaPackageType; withData: true }): Promise<PageData<OtaPackage>> {
    if (filter && !isUuid(filter.deviceProfileId)) return { data: [], totalPages: 0, totalElements: 0, hasNext: false };
    const from = filter
      ? "FROM ota_packages WHERE tenant_id = $1 AND device_profile_id = $2 AND type = $3 AND (blob_sha256 IS NOT NULL OR coalesce(url, '') <> '')"
      : 'FROM ota_packages WHERE tenant_id = $1';
    return queryPage<OtaPackage, Row>(this.sql, {
      from,
      params: filter ? [tenantId, filter.deviceProfileId, filter.type] : [tenantId],
      searchColumn: 'title',
      sortColumns: SORT_COLUMNS,
      link,
      map: toPackage,
    });
  }

  async count(tenantId: TenantId): Promise<number> {
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM ota_packages WHERE tenant_id = $1', [tenantId])).rows[0].n;
  }

  async delete(tenantId: TenantId, id: OtaPackageId): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('DELETE FROM ota_packages WHERE id = $1 AND tenant_id = $2', [id, tenantId]);
  }

  async countByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<number> {
    if (!isUuid(profileId)) return 0;
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM ota_packages WHERE tenant_id = $1 AND device_profile_id = $2', [tenantId, profileId])).rows[0].n;
  }

  async listByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<OtaPackage[]> {
    if (!isUuid(profileId)) return [];
    return (await this.sql.query<Row>('SELECT * FROM ota_packages WHERE tenant_id = $1 AND device_profile_id = $2', [tenantId, profileId])).rows.map(toPackage);
  }

  async countUsingBlob(sha256: string): Promise<number> {
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM ota_packages WHERE blob_sha256 = $1', [sha256])).rows[0].n;
  }

  async totalDataSize(tenantId: TenantId): Promise<number> {
    return (await this.sql.query<{ n: number }>('SELECT coalesce(sum(data_size), 0)::bigint AS n FROM ota_packages WHERE tenant_id = $1 AND blob_sha256 IS NOT NULL', [tenantId]))
      .rows[0].n;
  }
}
