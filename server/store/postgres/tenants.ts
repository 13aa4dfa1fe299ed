import { isUuid, type TenantId, type UserId } from '../../ids';
import type { PageData, PageLink } from '../sqlite/database';
import {
  newTenant,
  newUser,
  SYSTEM_TENANT_ID,
  TENANT_DELETES,
  TENANT_SORT_COLUMNS,
  toTenant,
  toUser,
  USER_SORT_COLUMNS,
  userInsertValues,
  type NewTenant,
  type NewUser,
  toTenantProfile,
  TENANT_PROFILE_SORT_COLUMNS,
  type Tenant,
  type TenantProfile,
  type TenantProfileRow,
  type TenantRepository,
  type TenantRow,
  type User,
  type UserRow,
} from '../tenants';
import { writing } from './constraint-errors';
import { queryPage } from './page';
import { inTransaction, type Sql } from './pool';
import pg from 'pg';

export class PgTenantRepository implements TenantRepository {
  constructor(private readonly sql: Sql) {}

  async createTenant(t: NewTenant | string): Promise<Tenant> {
    const tenant = newTenant(t);
    await this.sql.query('INSERT INTO tenants (id, title, created_time, tenant_profile_id, extra) VALUES ($1, $2, $3, $4, $5::jsonb)', [
      tenant.id,
      tenant.title,
      tenant.createdTime,
      tenant.tenantProfileId,
      JSON.stringify(tenant.extra),
    ]);
    return tenant;
  }

  async updateTenant(t: Tenant): Promise<void> {
    await this.sql.query('UPDATE tenants SET title = $1, tenant_profile_id = $2, extra = $3::jsonb WHERE id = $4', [t.title, t.tenantProfileId, JSON.stringify(t.extra), t.id]);
  }

  async findTenant(id: TenantId): Promise<Tenant | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<TenantRow & pg.QueryResultRow>('SELECT * FROM tenants WHERE id = $1', [id])).rows[0];
    return r ? toTenant(r) : null;
  }

  async pageTenants(link: PageLink): Promise<PageData<Tenant>> {
    return queryPage<Tenant, TenantRow & Record<string, unknown>>(this.sql, {
      from: 'FROM tenants WHERE id <> $1',
      params: [SYSTEM_TENANT_ID],
      searchColumn: 'title',
      sortColumns: TENANT_SORT_COLUMNS,
      link,
      map: toTenant,
    });
  }

  async deleteTenant(id: TenantId): Promise<string[]> {
    if (!isUuid(id)) return [];
    return inTransaction(this.sql, async (client) => {
      // First: a snapshot being written for this tenant (recordSnapshot holds the row FOR KEY SHARE) commits before the deletes, or writes nothing after them.
      await client.query('SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE', [id]);
      const blobs = await client.query<{ sha: string }>('SELECT DISTINCT blob_sha256 AS sha FROM ota_packages WHERE tenant_id = $1 AND blob_sha256 IS NOT NULL', [id]);
      for (const sql of TENANT_DELETES) await client.query(sql, [id]);
      return blobs.rows.map((b) => b.sha);
    });
  }

  async createUser(u: NewUser): Promise<User> {
    const created = newUser(u);
    await writing(
      this.sql.query(
        'INSERT INTO users (id, tenant_id, email, password_hash, authority, created_time, extra, activate_token, activate_token_exp_time) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)',
        userInsertValues(created),
      ),
    );
    return created;
  }

  async updateUser(u: User): Promise<void> {
    await writing(this.sql.query('UPDATE users SET email = $1, extra = $2::jsonb WHERE id = $3', [u.email, JSON.stringify(u.extra), u.id]));
  }

  /** Case-insensitive, as SQLite's `COLLATE NOCASE` column. */
  async findUserByEmail(email: string): Promise<User | null> {
    const r = (await this.sql.query<UserRow & pg.QueryResultRow>('SELECT * FROM users WHERE lower(email) = lower($1)', [email])).rows[0];
    return r ? toUser(r) : null;
  }

  async findUser(id: UserId): Promise<User | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<UserRow & pg.QueryResultRow>('SELECT * FROM users WHERE id = $1', [id])).rows[0];
    return r ? toUser(r) : null;
  }

  async findUserByActivateToken(token: string): Promise<User | null> {
    const r = (await this.sql.query<UserRow & pg.QueryResultRow>('SELECT * FROM users WHERE activate_token = $1', [token])).rows[0];
    return r ? toUser(r) : null;
  }

  async pageUsers(tenantId: TenantId, link: PageLink): Promise<PageData<User>> {
    if (!isUuid(tenantId)) return { data: [], totalPages: 0, totalElements: 0, hasNext: false };
    return queryPage<User, UserRow & Record<string, unknown>>(this.sql, {
      from: 'FROM users WHERE tenant_id = $1',
      params: [tenantId],
      searchColumn: 'email',
      sortColumns: USER_SORT_COLUMNS,
      link,
      map: toUser,
    });
  }

  async countTenantAdmins(tenantId: TenantId): Promise<number> {
    if (!isUuid(tenantId)) return 0;
    return (await this.sql.query<{ n: number }>("SELECT count(*)::int AS n FROM users WHERE tenant_id = $1 AND authority = 'TENANT_ADMIN'", [tenantId])).rows[0].n;
  }

  async deleteUser(id: UserId): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('DELETE FROM users WHERE id = $1', [id]);
  }

  async setActivateToken(id: UserId, token: string, expTime: number): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('UPDATE users SET activate_token = $1, activate_token_exp_time = $2 WHERE id = $3', [token, expTime, id]);
  }

  async setResetToken(id: UserId, token: string, expTime: number): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('UPDATE users SET reset_token = $1, reset_token_exp_time = $2 WHERE id = $3', [token, expTime, id]);
  }

  async findUserByResetToken(token: string): Promise<User | null> {
    const r = (await this.sql.query<UserRow & pg.QueryResultRow>('SELECT * FROM users WHERE reset_token = $1', [token])).rows[0];
    return r ? toUser(r) : null;
  }

  async setPassword(id: UserId, passwordHash: string): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query(
      'UPDATE users SET password_hash = $1, activate_token = NULL, activate_token_exp_time = NULL, reset_token = NULL, reset_token_exp_time = NULL, token_generation = token_generation + 1 WHERE id = $2',
      [passwordHash, id],
    );
  }

  async revokeTokens(id: UserId): Promise<void> {
    if (!isUuid(id)) return;
    await this.sql.query('UPDATE users SET token_generation = token_generation + 1 WHERE id = $1', [id]);
  }

  async countUsers(): Promise<number> {
    return (await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM users')).rows[0].n;
  }

  async findTenantProfile(id: string): Promise<TenantProfile | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<TenantProfileRow & pg.QueryResultRow>('SELECT * FROM tenant_profiles WHERE id = $1', [id])).rows[0];
    return r ? toTenantProfile(r) : null;
  }

  async findDefaultTenantProfile(): Promise<TenantProfile | null> {
    const r = (await this.sql.query<TenantProfileRow & pg.QueryResultRow>('SELECT * FROM tenant_profiles WHERE is_default')).rows[0];
    return r ? toTenantProfile(r) : null;
  }

  async saveTenantProfile(p: TenantProfile): Promise<void> {
    await inTransaction(this.sql, async (client) => {
      if (p.isDefault) await client.query('UPDATE tenant_profiles SET is_default = false WHERE is_default AND id <> $1', [p.id]);
      await client.query(
        `INSERT INTO tenant_profiles (id, name, description, is_default, profile_data, created_time) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, is_default = excluded.is_default, profile_data = excluded.profile_data`,
        [p.id, p.name, p.description, p.isDefault, JSON.stringify(p.profileData), p.createdTime],
      );
    });
  }

  async pageTenantProfiles(link: PageLink): Promise<PageData<TenantProfile>> {
    return queryPage<TenantProfile, TenantProfileRow & Record<string, unknown>>(this.sql, {
      from: 'FROM tenant_profiles WHERE true',
      params: [],
      searchColumn: 'name',
      sortColumns: TENANT_PROFILE_SORT_COLUMNS,
      link,
      map: toTenantProfile,
    });
  }
}
