import type { ChecksumAlgorithm } from '../packages/checksum';
import { queryPage, type Db, type PageData, type PageLink } from './sqlite/database';
import type { DeviceProfileId, OtaPackageId, TenantId } from '../ids';

export type OtaPackageType = 'FIRMWARE' | 'SOFTWARE';
export const OTA_PACKAGE_TYPES: readonly OtaPackageType[] = ['FIRMWARE', 'SOFTWARE'];

export interface OtaPackage {
  id: OtaPackageId;
  tenantId: TenantId;
  deviceProfileId: DeviceProfileId;
  type: OtaPackageType;
  title: string;
  version: string;
  tag: string | null;
  /** Set for URL-only packages: devices fetch the bytes themselves. */
  url: string | null;
  fileName: string | null;
  contentType: string | null;
  checksumAlgorithm: ChecksumAlgorithm | null;
  checksum: string | null;
  dataSize: number | null;
  /** Name of the stored bytes in the blob store; null until data is uploaded. */
  blobSha256: string | null;
  additionalInfo: Record<string, unknown> | null;
  externalId: string | null;
  createdTime: number;
  /** Base64 Ed25519 signature of the SHA-256 digest of the bytes; null for an unsigned package. */
  signature: string | null;
  signatureAlgorithm: SignatureAlgorithm | null;
}

/** The one algorithm packages are signed with (issue 14, "Signed packages"). */
export type SignatureAlgorithm = 'ED25519';

/** ThingsBoard's `hasData`: bytes uploaded, or a URL to fetch them from. */
export const hasData = (p: OtaPackage): boolean => p.blobSha256 !== null || !!p.url;

export interface OtaPackageRepository {
  insert(p: OtaPackage): Promise<void>;
  update(p: OtaPackage): Promise<void>;
  /**
   * Saves `p`, its bytes attached, unless the package meanwhile got other bytes (a concurrent
   * upload, possibly on another instance) or is gone: one conditional write, answering whether it saved.
   */
  attachData(p: OtaPackage): Promise<boolean>;
  findById(tenantId: TenantId, id: OtaPackageId): Promise<OtaPackage | null>;
  ownerOf(id: string): Promise<TenantId | null>;
  findByTitleVersion(tenantId: TenantId, title: string, version: string): Promise<OtaPackage | null>;
  page(tenantId: TenantId, link: PageLink, filter?: { deviceProfileId: DeviceProfileId; type: OtaPackageType; withData: true }): Promise<PageData<OtaPackage>>;
  count(tenantId: TenantId): Promise<number>;
  delete(tenantId: TenantId, id: OtaPackageId): Promise<void>;
  countByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<number>;
  listByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<OtaPackage[]>;
  /** Across every tenant: a blob is shared by identical bytes, wherever they were uploaded. */
  countUsingBlob(sha256: string): Promise<number>;
  totalDataSize(tenantId: TenantId): Promise<number>;
}

/** An ota_packages row; `additional_info` is JSON text in SQLite and parsed jsonb in PostgreSQL. */
export interface OtaPackageRow<Info> {
  id: string;
  tenant_id: string;
  device_profile_id: string;
  type: string;
  title: string;
  version: string;
  tag: string | null;
  url: string | null;
  file_name: string | null;
  content_type: string | null;
  checksum_algorithm: string | null;
  checksum: string | null;
  data_size: number | null;
  blob_sha256: string | null;
  additional_info: Info | null;
  external_id: string | null;
  created_time: number;
  signature: string | null;
  signature_algorithm: string | null;
}

/** The one row -> OtaPackage mapping; each database hands over `additionalInfo` already parsed. */
export const packageFromRow = (r: OtaPackageRow<unknown>, additionalInfo: Record<string, unknown> | null): OtaPackage => ({
  id: r.id as OtaPackageId,
  tenantId: r.tenant_id as TenantId,
  deviceProfileId: r.device_profile_id as DeviceProfileId,
  type: r.type as OtaPackageType,
  title: r.title,
  version: r.version,
  tag: r.tag,
  url: r.url,
  fileName: r.file_name,
  contentType: r.content_type,
  checksumAlgorithm: r.checksum_algorithm as ChecksumAlgorithm | null,
  checksum: r.checksum,
  dataSize: r.data_size,
  blobSha256: r.blob_sha256,
  additionalInfo,
  externalId: r.external_id,
  createdTime: r.created_time,
  signature: r.signature,
  signatureAlgorithm: r.signature_algorithm as SignatureAlgorithm | null,
});

type Row = OtaPackageRow<string>;

// SQLite keeps `additional_info` as JSON text.
const toPackage = (r: Row): OtaPackage => packageFromRow(r, r.additional_info === null ? null : (JSON.parse(r.additional_info) as Record<string, unknown>));

/** The sort properties ThingsBoard accepts for packages (reference §7.2). */
const SORT_COLUMNS: Record<string, string> = {
  createdTime: 'created_time',
  type: 'type',
  title: 'title COLLATE NOCASE',
  version: 'version',
  tag: 'tag',
  url: 'url',
  fileName: 'file_name',
  dataSize: 'data_size',
  checksum: 'checksum',
};

export class SqliteOtaPackageRepository implements OtaPackageRepository {
  constructor(private readonly db: Db) {}

  async insert(p: OtaPackage): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO ota_packages (id, tenant_id, device_profile_id, type, title, version, tag, url, file_name, content_type,
           checksum_algorithm, checksum, data_size, blob_sha256, additional_info, external_id, created_time, signature, signature_algorithm)
         VALUES (@id, @tenantId, @deviceProfileId, @type, @title, @version, @tag, @url, @fileName, @contentType,
           @checksumAlgorithm, @checksum, @dataSize, @blobSha256, @additionalInfo, @externalId, @createdTime, @signature, @signatureAlgorithm)`,
      )
      .run(bind(p));
  }

  async update(p: OtaPackage): Promise<void> {
    this.db
      .prepare(
        `UPDATE ota_packages SET device_profile_id = @deviceProfileId, type = @type, title = @title, version = @version,
           tag = @tag, url = @url, file_name = @fileName, content_type = @contentType, checksum_algorithm = @checksumAlgorithm,
           checksum = @checksum, data_size = @dataSize, blob_sha256 = @blobSha256, additional_info = @additionalInfo,
           external_id = @externalId, signature = @signature, signature_algorithm = @signatureAlgorithm
         WHERE id = @id AND tenant_id = @tenantId`,
      )
      .run(bind(p));
  }

  async attachData(p: OtaPackage): Promise<boolean> {
    const info = this.db
      .prepare(
        `UPDATE ota_packages SET device_profile_id = @deviceProfileId, type = @type, title = @title, version = @version,
           tag = @tag, url = @url, file_name = @fileName, content_type = @contentType, checksum_algorithm = @checksumAlgorithm,
           checksum = @checksum, data_size = @dataSize, blob_sha256 = @blobSha256, additional_info = @additionalInfo,
           external_id = @externalId, signature = @signature, signature_algorithm = @signatureAlgorithm
         WHERE id = @id AND tenant_id = @tenantId AND (blob_sha256 IS NULL OR blob_sha256 = @blobSha256)`,
      )
      .run(bind(p));
    return info.changes > 0;
  }

  async findById(tenantId: TenantId, id: OtaPackageId): Promise<OtaPackage | null> {
    const r = this.db.prepare('SELECT * FROM ota_packages WHERE id = ? AND tenant_id = ?').get(id, tenantId) as Row | undefined;
    return r ? toPackage(r) : null;
  }

  async ownerOf(id: string): Promise<TenantId | null> {
    const r = this.db.prepare('SELECT tenant_id FROM ota_packages WHERE id = ?').get(id) as { tenant_id: string } | undefined;
    return r ? (r.tenant_id as TenantId) : null;
  }

  async findByTitleVersion(tenantId: TenantId, title: string, version: string): Promise<OtaPackage | null> {
    const r = this.db.prepare('SELECT * FROM ota_packages WHERE tenant_id = ? AND title = ? AND version = ?').get(tenantId, title, version) as Row | undefined;
    return r ? toPackage(r) : null;
  }

  async page(tenantId: TenantId, link: PageLink, filter?: { deviceProfileId: DeviceProfileId; type: OtaPackageType; withData: true }): Promise<PageData<OtaPackage>> {
    const from = filter
      ? "FROM ota_packages WHERE tenant_id = ? AND device_profile_id = ? AND type = ? AND (blob_sha256 IS NOT NULL OR coalesce(url, '') <> '')"
      : 'FROM ota_packages WHERE tenant_id = ?';
    return queryPage<OtaPackage, Row>(this.db, {
      from,
      params: filter ? [tenantId, filter.deviceProfileId, filter.type] : [tenantId],
      searchColumn: 'title',
      sortColumns: SORT_COLUMNS,
      link,
      map: toPackage,
    });
  }

  async count(tenantId: TenantId): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM ota_packages WHERE tenant_id = ?').get(tenantId) as { n: number }).n;
  }

  async delete(tenantId: TenantId, id: OtaPackageId): Promise<void> {
    this.db.prepare('DELETE FROM ota_packages WHERE id = ? AND tenant_id = ?').run(id, tenantId);
  }

  async countByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM ota_packages WHERE tenant_id = ? AND device_profile_id = ?').get(tenantId, profileId) as { n: number }).n;
  }

  async listByProfile(tenantId: TenantId, profileId: DeviceProfileId): Promise<OtaPackage[]> {
    const rows = this.db.prepare('SELECT * FROM ota_packages WHERE tenant_id = ? AND device_profile_id = ?').all(tenantId, profileId) as Row[];
    return rows.map(toPackage);
  }

  async countUsingBlob(sha256: string): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM ota_packages WHERE blob_sha256 = ?').get(sha256) as { n: number }).n;
  }

  async totalDataSize(tenantId: TenantId): Promise<number> {
    return (this.db.prepare('SELECT coalesce(sum(data_size), 0) AS n FROM ota_packages WHERE tenant_id = ? AND blob_sha256 IS NOT NULL').get(tenantId) as { n: number }).n;
  }
}

function bind(p: OtaPackage): Record<string, unknown> {
  return { ...p, additionalInfo: p.additionalInfo === null ? null : JSON.stringify(p.additionalInfo) };
}
