import type { Db } from './sqlite/database';
import { newId, type TenantId, type UserId } from '../ids';

export type Authority = 'TENANT_ADMIN';

export interface Tenant {
  id: TenantId;
  title: string;
  createdTime: number;
}

export interface User {
  id: UserId;
  tenantId: TenantId;
  email: string;
  passwordHash: string;
  authority: Authority;
  createdTime: number;
  /** Raised to revoke every token issued before: a token carries the generation it was issued under. */
  tokenGeneration: number;
}

/** Tenants and their users. Async so a PostgreSQL implementation can stand in. */
export interface TenantRepository {
  createTenant(title: string): Promise<Tenant>;
  findTenant(id: TenantId): Promise<Tenant | null>;
  createUser(user: Omit<User, 'id' | 'createdTime' | 'tokenGeneration'>): Promise<User>;
  findUserByEmail(email: string): Promise<User | null>;
  findUser(id: UserId): Promise<User | null>;
  /** Sets the password and revokes the user's tokens. */
  setPassword(id: UserId, passwordHash: string): Promise<void>;
  /** Raises the token generation: every token issued so far is refused. */
  revokeTokens(id: UserId): Promise<void>;
  countUsers(): Promise<number>;
}

/** A users row as both databases return it (numbers, no JSON columns). */
export interface UserRow {
  id: string;
  tenant_id: string;
  email: string;
  password_hash: string;
  authority: string;
  created_time: number;
  token_generation: number;
}

export const toUser = (r: UserRow): User => ({
  id: r.id as UserId,
  tenantId: r.tenant_id as TenantId,
  email: r.email,
  passwordHash: r.password_hash,
  authority: r.authority as Authority,
  createdTime: r.created_time,
  tokenGeneration: r.token_generation,
});

export class SqliteTenantRepository implements TenantRepository {
  constructor(private readonly db: Db) {}

  async createTenant(title: string): Promise<Tenant> {
    const tenant: Tenant = { id: newId<'TENANT'>(), title, createdTime: Date.now() };
    this.db.prepare('INSERT INTO tenants (id, title, created_time) VALUES (?, ?, ?)').run(tenant.id, title, tenant.createdTime);
    return tenant;
  }

  async findTenant(id: TenantId): Promise<Tenant | null> {
    const r = this.db.prepare('SELECT id, title, created_time FROM tenants WHERE id = ?').get(id) as { id: string; title: string; created_time: number } | undefined;
    return r ? { id: r.id as TenantId, title: r.title, createdTime: r.created_time } : null;
  }

  async createUser(user: Omit<User, 'id' | 'createdTime' | 'tokenGeneration'>): Promise<User> {
    const created: User = { ...user, id: newId<'USER'>(), createdTime: Date.now(), tokenGeneration: 0 };
    this.db
      .prepare('INSERT INTO users (id, tenant_id, email, password_hash, authority, created_time) VALUES (?, ?, ?, ?, ?, ?)')
      .run(created.id, created.tenantId, created.email, created.passwordHash, created.authority, created.createdTime);
    return created;
  }

  async findUserByEmail(email: string): Promise<User | null> {
    const r = this.db.prepare('SELECT * FROM users WHERE email = ?').get(email) as UserRow | undefined;
    return r ? toUser(r) : null;
  }

  async findUser(id: UserId): Promise<User | null> {
    const r = this.db.prepare('SELECT * FROM users WHERE id = ?').get(id) as UserRow | undefined;
    return r ? toUser(r) : null;
  }

  async setPassword(id: UserId, passwordHash: string): Promise<void> {
    this.db.prepare('UPDATE users SET password_hash = ?, token_generation = token_generation + 1 WHERE id = ?').run(passwordHash, id);
  }

  async revokeTokens(id: UserId): Promise<void> {
    this.db.prepare('UPDATE users SET token_generation = token_generation + 1 WHERE id = ?').run(id);
  }

  async countUsers(): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n;
  }
}
