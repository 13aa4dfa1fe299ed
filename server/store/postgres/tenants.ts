import { newId, isUuid, type TenantId, type UserId } from '../../ids';
import { toUser, type Tenant, type TenantRepository, type User, type UserRow } from '../tenants';
import { writing } from './constraint-errors';
import type { Sql } from './pool';

export class PgTenantRepository implements TenantRepository {
  constructor(private readonly sql: Sql) {}

  async createTenant(title: string): Promise<Tenant> {
    const tenant: Tenant = { id: newId<'TENANT'>(), title, createdTime: Date.now() };
    await this.sql.query('INSERT INTO tenants (id, title, created_time) VALUES ($1, $2, $3)', [tenant.id, title, tenant.createdTime]);
    return tenant;
  }

  async findTenant(id: TenantId): Promise<Tenant | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<{ id: string; title: string; created_time: number }>('SELECT id, title, created_time FROM tenants WHERE id = $1', [id])).rows[0];
    return r ? { id: r.id as TenantId, title: r.title, createdTime: r.created_time } : null;
  }

  async createUser(user: Omit<User, 'id' | 'createdTime' | 'tokenGeneration'>): Promise<User> {
    const created: User = { ...user, id: newId<'USER'>(), createdTime: Date.now(), tokenGeneration: 0 };
    await writing(
      this.sql.query('INSERT INTO users (id, tenant_id, email, password_hash, authority, created_time) VALUES ($1, $2, $3, $4, $5, $6)', [
        created.id,
        created.tenantId,
        created.email,
        created.passwordHash,
        created.authority,
        created.createdTime,
      ]),
    );
    return created;
  }

  /** Case-insensitive, as SQLite's `COLLATE NOCASE` column. */
  async findUserByEmail(email: string): Promise<User | null> {
    const r = (await this.sql.query<UserRow>('SELECT * FROM users WHERE lower(email) = lower($1)', [email])).rows[0];
    return r ? toUser(r) : null;
  }

  async findUser(id: UserId): Promise<User | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<UserRow>('SELECT * FROM users WHERE id = $1', [id])).rows[0];
    return r ? toUser(r) : null;
  }

  async setPassword(id: UserId, passwordHash: string): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('UPDATE users SET password_hash = $1, token_generation = token_generation + 1 WHERE id = $2', [passwordHash, id]);
  }

  async revokeTokens(id: UserId): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('UPDATE users SET token_generation = token_generation + 1 WHERE id = $1', [id]);
  }

  async countUsers(): Promise<number> {
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM users')).rows[0].n;
  }
}
