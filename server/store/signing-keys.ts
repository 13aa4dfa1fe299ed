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

/** A `signing_keys` row, the same on SQLite and PostgreSQL. */
export interface SigningKeyRow extends Record<string, unknown> {
  tenant_id: string;
  algorithm: string;
  public_key: string;
  private_key: string | null;
  created_time: number | string;
}

export const toSigningKey = (r: SigningKeyRow): SigningKey => ({
  tenantId: r.tenant_id as TenantId,
  algorithm: r.algorithm as SignatureAlgorithm,
  publicKey: r.public_key,
  privateKey: r.private_key,
  createdTime: Number(r.created_time),
});
