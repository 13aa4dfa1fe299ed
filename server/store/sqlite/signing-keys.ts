import type { Db } from './database';
import type { TenantId } from '../../ids';
import { toSigningKey, type SigningKey, type SigningKeyRepository, type SigningKeyRow } from '../signing-keys';

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
