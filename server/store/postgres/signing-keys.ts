import { isUuid, type TenantId } from '../../ids';
import { toSigningKey, type SigningKey, type SigningKeyRepository, type SigningKeyRow } from '../signing-keys';
import type { Sql } from './pool';

const COLUMNS = 'tenant_id, algorithm, public_key, private_key, created_time';
const values = (k: SigningKey): unknown[] => [k.tenantId, k.algorithm, k.publicKey, k.privateKey, k.createdTime];

export class PgSigningKeyRepository implements SigningKeyRepository {
  constructor(private readonly sql: Sql) {}

  async find(tenantId: TenantId): Promise<SigningKey | null> {
    if (!isUuid(tenantId)) return null;
    const r = (await this.sql.query<SigningKeyRow>(`SELECT ${COLUMNS} FROM signing_keys WHERE tenant_id = $1`, [tenantId])).rows[0];
    return r ? toSigningKey(r) : null;
  }

  async insertIfAbsent(k: SigningKey): Promise<SigningKey> {
    await this.sql.query(`INSERT INTO signing_keys (${COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO NOTHING`, values(k));
    return (await this.find(k.tenantId)) as SigningKey;
  }

  async replace(k: SigningKey): Promise<void> {
    await this.sql.query(
      `INSERT INTO signing_keys (${COLUMNS}) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id) DO UPDATE SET algorithm = $2, public_key = $3, private_key = $4, created_time = $5`,
      values(k),
    );
  }
}
