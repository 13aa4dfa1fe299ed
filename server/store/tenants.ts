import type { Db } from './sqlite/database';
import { atomically } from './sqlite/atomically';
import { queryPage, type PageData, type PageLink } from './sqlite/database';
import { newId, NULL_UUID, type TenantId, type UserId } from '../ids';

/** ThingsBoard's authorities we have: the system administrator and a tenant's administrators. */
export type Authority = 'SYS_ADMIN' | 'TENANT_ADMIN';

/** ThingsBoard's `TenantId.SYS_TENANT_ID`: the tenant of the system administrator, never listed. */
export const SYSTEM_TENANT_ID = NULL_UUID as TenantId;

export interface Tenant {
  id: TenantId;
  title: string;
  createdTime: number;
  /** The tenant profile whose limits apply; null = the default profile. */
  tenantProfileId: string | null;
  /** ThingsBoard's contact fields (country, city, email, ...) and additionalInfo, kept as sent. */
  extra: Record<string, unknown>;
}

export interface User {
  id: UserId;
  tenantId: TenantId;
  email: string;
  /** Empty until a user created without a password activates. */
  passwordHash: string;
  authority: Authority;
  createdTime: number;
  /** Raised to revoke every token issued before: a token carries the generation it was issued under. */
  tokenGeneration: number;
  /** firstName, lastName, phone, additionalInfo, kept as sent. */
  extra: Record<string, unknown>;
  /** Set while the user has not activated (ThingsBoard's activate token); null once active. */
  activateToken: string | null;
  /** When the activate token stops working (ms, ThingsBoard's activateTokenExpTime); null with no token. */
  activateTokenExpTime: number | null;
  /** A password reset link's token while one is outstanding (ThingsBoard's resetToken), and its end (ms). */
  resetToken: string | null;
  resetTokenExpTime: number | null;
}

/** ThingsBoard's tenant profile: profileData kept as sent; its configuration holds the limits. */
export interface TenantProfile {
  id: string;
  name: string;
  description: string | null;
  isDefault: boolean;
  profileData: Record<string, unknown>;
  createdTime: number;
}

export type NewTenant = Pick<Tenant, 'title'> & Partial<Pick<Tenant, 'tenantProfileId' | 'extra'>>;
export type NewUser = Pick<User, 'tenantId' | 'email' | 'passwordHash' | 'authority'> & Partial<Pick<User, 'extra' | 'activateToken' | 'activateTokenExpTime'>>;

/** Tenants and their users. Async so a PostgreSQL implementation can stand in. */
export interface TenantRepository {
  /** A title alone, or the title with a profile and details. */
  createTenant(tenant: NewTenant | string): Promise<Tenant>;
  /** Saves title, profile and details. */
  updateTenant(tenant: Tenant): Promise<void>;
  findTenant(id: TenantId): Promise<Tenant | null>;
  /** Every tenant but the system one. */
  pageTenants(link: PageLink): Promise<PageData<Tenant>>;
  /**
   * Deletes the tenant and everything it owns (devices with their data, queue rows and states,
   * packages, profiles, users, keys, policies) in one transaction. Answers the SHA-256 of the
   * package bytes its packages held: the caller removes those no other package holds.
   */
  deleteTenant(id: TenantId): Promise<string[]>;
  createUser(user: NewUser): Promise<User>;
  /** Saves email and details. */
  updateUser(user: User): Promise<void>;
  findUserByEmail(email: string): Promise<User | null>;
  findUser(id: UserId): Promise<User | null>;
  findUserByActivateToken(token: string): Promise<User | null>;
  /** A tenant's users, by ThingsBoard's page link (text search on the email). */
  pageUsers(tenantId: TenantId, link: PageLink): Promise<PageData<User>>;
  countTenantAdmins(tenantId: TenantId): Promise<number>;
  deleteUser(id: UserId): Promise<void>;
  /** A new activate token for a user who has not activated (an expiring link is renewed). */
  setActivateToken(id: UserId, token: string, expTime: number): Promise<void>;
  /** A password reset token for the user, replacing any before. */
  setResetToken(id: UserId, token: string, expTime: number): Promise<void>;
  findUserByResetToken(token: string): Promise<User | null>;
  /** Sets the password, clears the activate and reset tokens and revokes the user's tokens. */
  setPassword(id: UserId, passwordHash: string): Promise<void>;
  /** Raises the token generation: every token issued so far is refused. */
  revokeTokens(id: UserId): Promise<void>;
  countUsers(): Promise<number>;
  findTenantProfile(id: string): Promise<TenantProfile | null>;
  findDefaultTenantProfile(): Promise<TenantProfile | null>;
  /** Inserts or updates; a profile saved as default takes the flag from the one before. */
  saveTenantProfile(profile: TenantProfile): Promise<void>;
  pageTenantProfiles(link: PageLink): Promise<PageData<TenantProfile>>;
}

export interface TenantProfileRow {
  id: string;
  name: string;
  description: string | null;
  is_default: number | boolean;
  profile_data: string | Record<string, unknown>;
  created_time: number;
}

export const toTenantProfile = (r: TenantProfileRow): TenantProfile => ({
  id: r.id,
  name: r.name,
  description: r.description,
  isDefault: Boolean(r.is_default),
  profileData: json(r.profile_data),
  createdTime: r.created_time,
});

export const TENANT_PROFILE_SORT_COLUMNS: Record<string, string> = { createdTime: 'created_time', name: 'name', description: 'description', isDefault: 'is_default' };

/** A tenants row as both databases return it (extra as text on SQLite, parsed jsonb on PostgreSQL). */
export interface TenantRow {
  id: string;
  title: string;
  created_time: number;
  tenant_profile_id: string | null;
  extra: string | Record<string, unknown>;
}

/** A users row as both databases return it. */
export interface UserRow {
  id: string;
  tenant_id: string;
  email: string;
  password_hash: string;
  authority: string;
  created_time: number;
  token_generation: number;
  extra: string | Record<string, unknown>;
  activate_token: string | null;
  activate_token_exp_time: number | string | null;
  reset_token: string | null;
  reset_token_exp_time: number | string | null;
}

const json = (v: string | Record<string, unknown>): Record<string, unknown> => (typeof v === 'string' ? (JSON.parse(v) as Record<string, unknown>) : v);

export const toTenant = (r: TenantRow): Tenant => ({
  id: r.id as TenantId,
  title: r.title,
  createdTime: r.created_time,
  tenantProfileId: r.tenant_profile_id,
  extra: json(r.extra),
});

export const toUser = (r: UserRow): User => ({
  id: r.id as UserId,
  tenantId: r.tenant_id as TenantId,
  email: r.email,
  passwordHash: r.password_hash,
  authority: r.authority as Authority,
  createdTime: r.created_time,
  tokenGeneration: r.token_generation,
  extra: json(r.extra),
  activateToken: r.activate_token,
  activateTokenExpTime: r.activate_token_exp_time === null ? null : Number(r.activate_token_exp_time),
  resetToken: r.reset_token,
  resetTokenExpTime: r.reset_token_exp_time === null ? null : Number(r.reset_token_exp_time),
});

export const TENANT_SORT_COLUMNS: Record<string, string> = { createdTime: 'created_time', title: 'title', name: 'title' };
export const USER_SORT_COLUMNS: Record<string, string> = { createdTime: 'created_time', email: 'email', authority: 'authority' };

export function newTenant(input: NewTenant | string): Tenant {
  const t = typeof input === 'string' ? { title: input } : input;
  return { id: newId<'TENANT'>(), title: t.title, createdTime: Date.now(), tenantProfileId: t.tenantProfileId ?? null, extra: t.extra ?? {} };
}
export const newUser = (u: NewUser): User => ({
  ...u,
  id: newId<'USER'>(),
  createdTime: Date.now(),
  tokenGeneration: 0,
  extra: u.extra ?? {},
  activateToken: u.activateToken ?? null,
  activateTokenExpTime: u.activateTokenExpTime ?? null,
  resetToken: null,
  resetTokenExpTime: null,
});

/** A new user's row in the column order of both backends' `INSERT INTO users`. */
export const userInsertValues = (u: User): unknown[] => [
  u.id,
  u.tenantId,
  u.email,
  u.passwordHash,
  u.authority,
  u.createdTime,
  JSON.stringify(u.extra),
  u.activateToken,
  u.activateTokenExpTime,
];

/**
 * What a tenant owns, deleted children first. Devices take their attributes, telemetry, targets and
 * queue rows with them (ON DELETE CASCADE) and their states (a trigger on SQLite, a cascade on
 * PostgreSQL); profiles lose their package references before packages and profiles go.
 */
export const TENANT_DELETES = [
  'DELETE FROM notify_queue WHERE tenant_id = $1',
  'DELETE FROM devices WHERE tenant_id = $1',
  'UPDATE device_profiles SET firmware_id = NULL, software_id = NULL WHERE tenant_id = $1',
  'DELETE FROM ota_packages WHERE tenant_id = $1',
  'DELETE FROM device_profiles WHERE tenant_id = $1',
  'DELETE FROM ota_state_snapshots WHERE tenant_id = $1',
  'DELETE FROM signing_keys WHERE tenant_id = $1',
  'DELETE FROM tenant_policies WHERE tenant_id = $1',
  'DELETE FROM users WHERE tenant_id = $1',
  'DELETE FROM tenants WHERE id = $1',
] as const;

export class SqliteTenantRepository implements TenantRepository {
  constructor(private readonly db: Db) {}

  async createTenant(t: NewTenant | string): Promise<Tenant> {
    const tenant = newTenant(t);
    this.db
      .prepare('INSERT INTO tenants (id, title, created_time, tenant_profile_id, extra) VALUES (?, ?, ?, ?, ?)')
      .run(tenant.id, tenant.title, tenant.createdTime, tenant.tenantProfileId, JSON.stringify(tenant.extra));
    return tenant;
  }

  async updateTenant(t: Tenant): Promise<void> {
    this.db.prepare('UPDATE tenants SET title = ?, tenant_profile_id = ?, extra = ? WHERE id = ?').run(t.title, t.tenantProfileId, JSON.stringify(t.extra), t.id);
  }

  async findTenant(id: TenantId): Promise<Tenant | null> {
    const r = this.db.prepare('SELECT * FROM tenants WHERE id = ?').get(id) as TenantRow | undefined;
    return r ? toTenant(r) : null;
  }

  async pageTenants(link: PageLink): Promise<PageData<Tenant>> {
    return queryPage<Tenant, TenantRow>(this.db, {
      from: 'FROM tenants WHERE id <> ?',
      params: [SYSTEM_TENANT_ID],
      searchColumn: 'title',
      sortColumns: TENANT_SORT_COLUMNS,
      link,
      map: toTenant,
    });
  }

  async deleteTenant(id: TenantId): Promise<string[]> {
    return atomically(this.db, () => {
      const blobs = this.db.prepare('SELECT DISTINCT blob_sha256 AS sha FROM ota_packages WHERE tenant_id = ? AND blob_sha256 IS NOT NULL').all(id) as Array<{ sha: string }>;
      for (const sql of TENANT_DELETES) this.db.prepare(sql.replace('$1', '?')).run(id);
      // Kept by triggers on SQLite only (migration 7): rows of a deleted tenant's counts.
      this.db.prepare('DELETE FROM ota_fleet_counts WHERE tenant_id = ?').run(id);
      return blobs.map((b) => b.sha);
    });
  }

  async createUser(u: NewUser): Promise<User> {
    const created = newUser(u);
    this.db
      .prepare(
        'INSERT INTO users (id, tenant_id, email, password_hash, authority, created_time, extra, activate_token, activate_token_exp_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(...userInsertValues(created));
    return created;
  }

  async updateUser(u: User): Promise<void> {
    this.db.prepare('UPDATE users SET email = ?, extra = ? WHERE id = ?').run(u.email, JSON.stringify(u.extra), u.id);
  }

  async findUserByEmail(email: string): Promise<User | null> {
    const r = this.db.prepare('SELECT * FROM users WHERE email = ?').get(email) as UserRow | undefined;
    return r ? toUser(r) : null;
  }

  async findUser(id: UserId): Promise<User | null> {
    const r = this.db.prepare('SELECT * FROM users WHERE id = ?').get(id) as UserRow | undefined;
    return r ? toUser(r) : null;
  }

  async findUserByActivateToken(token: string): Promise<User | null> {
    const r = this.db.prepare('SELECT * FROM users WHERE activate_token = ?').get(token) as UserRow | undefined;
    return r ? toUser(r) : null;
  }

  async pageUsers(tenantId: TenantId, link: PageLink): Promise<PageData<User>> {
    return queryPage<User, UserRow>(this.db, {
      from: 'FROM users WHERE tenant_id = ?',
      params: [tenantId],
      searchColumn: 'email',
      sortColumns: USER_SORT_COLUMNS,
      link,
      map: toUser,
    });
  }

  async countTenantAdmins(tenantId: TenantId): Promise<number> {
    return (this.db.prepare("SELECT count(*) AS n FROM users WHERE tenant_id = ? AND authority = 'TENANT_ADMIN'").get(tenantId) as { n: number }).n;
  }

  async deleteUser(id: UserId): Promise<void> {
    this.db.prepare('DELETE FROM users WHERE id = ?').run(id);
  }

  async setActivateToken(id: UserId, token: string, expTime: number): Promise<void> {
    this.db.prepare('UPDATE users SET activate_token = ?, activate_token_exp_time = ? WHERE id = ?').run(token, expTime, id);
  }

  async setResetToken(id: UserId, token: string, expTime: number): Promise<void> {
    this.db.prepare('UPDATE users SET reset_token = ?, reset_token_exp_time = ? WHERE id = ?').run(token, expTime, id);
  }

  async findUserByResetToken(token: string): Promise<User | null> {
    const r = this.db.prepare('SELECT * FROM users WHERE reset_token = ?').get(token) as UserRow | undefined;
    return r ? toUser(r) : null;
  }

  async setPassword(id: UserId, passwordHash: string): Promise<void> {
    this.db
      .prepare(
        'UPDATE users SET password_hash = ?, activate_token = NULL, activate_token_exp_time = NULL, reset_token = NULL, reset_token_exp_time = NULL, token_generation = token_generation + 1 WHERE id = ?',
      )
      .run(passwordHash, id);
  }

  async revokeTokens(id: UserId): Promise<void> {
    this.db.prepare('UPDATE users SET token_generation = token_generation + 1 WHERE id = ?').run(id);
  }

  async countUsers(): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n;
  }

  async findTenantProfile(id: string): Promise<TenantProfile | null> {
    const r = this.db.prepare('SELECT * FROM tenant_profiles WHERE id = ?').get(id) as TenantProfileRow | undefined;
    return r ? toTenantProfile(r) : null;
  }

  async findDefaultTenantProfile(): Promise<TenantProfile | null> {
    const r = this.db.prepare('SELECT * FROM tenant_profiles WHERE is_default = 1').get() as TenantProfileRow | undefined;
    return r ? toTenantProfile(r) : null;
  }

  async saveTenantProfile(p: TenantProfile): Promise<void> {
    atomically(this.db, () => {
      if (p.isDefault) this.db.prepare('UPDATE tenant_profiles SET is_default = 0 WHERE is_default = 1 AND id <> ?').run(p.id);
      this.db
        .prepare(
          `INSERT INTO tenant_profiles (id, name, description, is_default, profile_data, created_time) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, is_default = excluded.is_default, profile_data = excluded.profile_data`,
        )
        .run(p.id, p.name, p.description, p.isDefault ? 1 : 0, JSON.stringify(p.profileData), p.createdTime);
    });
  }

  async pageTenantProfiles(link: PageLink): Promise<PageData<TenantProfile>> {
    return queryPage<TenantProfile, TenantProfileRow>(this.db, {
      from: 'FROM tenant_profiles WHERE 1 = 1',
      params: [],
      searchColumn: 'name',
      sortColumns: TENANT_PROFILE_SORT_COLUMNS,
      link,
      map: toTenantProfile,
    });
  }
}
