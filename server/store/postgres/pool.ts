import pg from 'pg';
import { PG_MIGRATIONS, type PgMigration } from './migrations';

/** What a repository runs its statements on: the pool, or a client inside a transaction. */
export interface Sql {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** Connections one instance opens at most, unless `OTA_DATABASE_POOL_SIZE` says otherwise. */
export const DEFAULT_POOL_SIZE = 10;
/** A package upload holds a lock connection beside its write and its record: fewer could wait forever. */
export const MIN_POOL_SIZE = 3;

/** The pool size from `OTA_DATABASE_POOL_SIZE`, DEFAULT_POOL_SIZE when unset or empty. */
export function poolSizeFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.OTA_DATABASE_POOL_SIZE;
  const n = raw === undefined || raw === '' ? DEFAULT_POOL_SIZE : Number(raw);
  if (!Number.isInteger(n) || n < MIN_POOL_SIZE) throw new Error(`OTA_DATABASE_POOL_SIZE must be a whole number of at least ${MIN_POOL_SIZE}, not ${raw}`);
  return n;
}

/**
 * bigint (int8) arrives as a string by default, since it can exceed 2^53. Our int8 columns hold
 * millisecond timestamps, byte sizes and counts, all far below that: read them as numbers. Set on
 * our pools only, never on pg's global parsers, so other users of `pg` in the process are unaffected.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

export interface PoolOptions {
  /** `postgres://user:password@host:port/database` */
  connectionString: string;
  /** Default: `poolSizeFromEnv()`. */
  max?: number;
  migrations?: readonly PgMigration[];
}

/** Opens a pool on the database and brings its schema up to date. */
export async function openPool(opts: PoolOptions): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.max ?? poolSizeFromEnv(), types });
  // An idle client's connection dropping (a server restart) must not crash the process: the pool
  // discards that client and the next query opens a new one.
  pool.on('error', () => undefined);
  try {
    await migrate(pool, opts.migrations ?? PG_MIGRATIONS);
  } catch (err) {
    await pool.end();
    throw err;
  }
  return pool;
}

/** Any number, the same on every instance: serialises migrations of instances starting together. */
const MIGRATION_LOCK = 0x07a_0001;

export async function migrate(pool: pg.Pool, migrations: readonly PgMigration[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_time bigint NOT NULL)');
    const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, description, applied_time) VALUES ($1, $2, $3)', [m.version, m.description, Date.now()]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`PostgreSQL migration ${m.version} (${m.description}) failed: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
}

/** Runs `fn` in one transaction on one client of the pool; rolls back when it throws. */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** On the pool: a transaction of its own; on a client: part of the store transaction already open. */
export function inTransaction<T>(sql: Sql, fn: (client: Sql) => Promise<T>): Promise<T> {
  return sql instanceof pg.Pool ? transaction(sql, fn) : fn(sql);
}
