import type { Db } from './sqlite/database';
import type { TenantId } from '../ids';
import type { SignatureAlgorithm } from './ota-packages';

/** A tenant's package signing key, both halves PEM; `privateKey` null for a key kept offline. */
export interface SigningKey {
  tenantId: TenantId;
  algorithm: SignatureAlgorithm;
  publicKey: string;
  privateKey: string | null;
  createdTime: number;
}

export interface SigningKeyRepository {
  find(tenantId: TenantId): Promise<SigningKey | null>;
  /** Stores `key` unless the tenant has one already; returns the tenant's key either way. */
  insertIfAbsent(key: SigningKey): Promise<SigningKey>;
  /** Stores `key`, replacing the tenant's key (an import). */
  replace(key: SigningKey): Promise<void>;
}

export interface SigningKeyRow extends Record<string, unknown> {
  tenant_id: string;
  algorithm: string;
  public_key: string;
  private_key: string | null;
  created_time: number;
}

export const toSigningKey = (r: SigningKeyRow): SigningKey => ({
  tenantId: r.tenant_id as TenantId,
  algorithm: r.algorithm as SignatureAlgorithm,
  publicKey: r.public_key,
  privateKey: r.private_key,
  createdTime: Number(r.created_time),
});

export class SqliteSigningKeyRepository implements SigningKeyRepository {
  constructor(private readonly db: Db) {}

  async find(tenantId: TenantId): Promise<SigningKey | null> {
    const r = this.db.prepare('SELECT * FROM signing_keys WHERE tenant_id = ?').get(tenantId) as SigningKeyRow | undefined;
    return r ? toSigningKey(r) : null;
  }

  async insertIfAbsent(k: SigningKey): Promise<SigningKey> {
    this.db
      .prepare('INSERT INTO signing_keys (tenant_id, algorithm, public_key, private_key, created_time) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING')
      .run(k.tenantId, k.algorithm, k.publicKey, k.privateKey, k.createdTime);
    return (await this.find(k.tenantId)) as SigningKey;
  }

  async replace(k: SigningKey): Promise<void> {
    this.db
      .prepare('INSERT OR REPLACE INTO signing_keys (tenant_id, algorithm, public_key, private_key, created_time) VALUES (?, ?, ?, ?, ?)')
      .run(k.tenantId, k.algorithm, k.publicKey, k.privateKey, k.createdTime);
  }
}
