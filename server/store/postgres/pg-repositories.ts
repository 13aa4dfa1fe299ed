import type pg from 'pg';
import { PgAttributeRepository } from './attributes';
import { PgDeviceProfileRepository } from './device-profiles';
import { PgDeviceRepository } from './devices';
import { PgOtaPackageRepository } from './ota-packages';
import { DEFAULT_CHUNK_SIZE, PgPackageBytes } from './package-bytes';
import { PgBlobStore } from './pg-blob-store';
import { openPool } from './pool';
import { PgTelemetryRepository } from './telemetry';
import { PgTenantRepository } from './tenants';
import { PgSigningKeyRepository } from './signing-keys';
import { PgTenantPolicyRepository } from './tenant-policies';

/** Every PostgreSQL repository on one pool, and the blob store of this instance. */
export interface PgRepositories {
  readonly pool: pg.Pool;
  readonly tenants: PgTenantRepository;
  readonly profiles: PgDeviceProfileRepository;
  readonly devices: PgDeviceRepository;
  readonly packages: PgOtaPackageRepository;
  readonly attributes: PgAttributeRepository;
  readonly telemetry: PgTelemetryRepository;
  readonly signingKeys: PgSigningKeyRepository;
  readonly policies: PgTenantPolicyRepository;
  /** Package bytes in PostgreSQL, cached in `blobCacheDir`. */
  readonly blobs: PgBlobStore;
  close(): Promise<void>;
}

/**
 * Opens a pool on `connectionString` (migrating the schema) and the repositories on it; package
 * bytes are cached under `blobCacheDir`, a folder of this instance's own data directory.
 */
export async function openPgRepositories(opts: { connectionString: string; blobCacheDir: string; poolSize?: number; chunkSize?: number }): Promise<PgRepositories> {
  const pool = await openPool({ connectionString: opts.connectionString, max: opts.poolSize });
  const blobs = new PgBlobStore(opts.blobCacheDir, new PgPackageBytes(pool, opts.chunkSize ?? DEFAULT_CHUNK_SIZE), pool);
  try {
    await blobs.init();
  } catch (err) {
    await pool.end();
    throw err;
  }
  return {
    pool,
    tenants: new PgTenantRepository(pool),
    profiles: new PgDeviceProfileRepository(pool),
    devices: new PgDeviceRepository(pool),
    packages: new PgOtaPackageRepository(pool),
    attributes: new PgAttributeRepository(pool),
    telemetry: new PgTelemetryRepository(pool),
    signingKeys: new PgSigningKeyRepository(pool),
    policies: new PgTenantPolicyRepository(pool),
    blobs,
    close: () => pool.end(),
  };
}
