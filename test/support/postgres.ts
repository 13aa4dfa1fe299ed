/**
 * A fresh PostgreSQL database per test suite, on the server `OTA_TEST_DATABASE_URL` names (default:
 * the local Debian cluster, role `ota_test` with CREATEDB that `.ci/run` creates). Each suite gets a
 * uniquely named database and drops it afterwards.
 *
 * No server reachable: with `CI=true` the suite FAILS, saying so; otherwise its tests are reported
 * as pending, with the reason printed once.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { redactedUrl } from '../../server/store/redacted-url';

export const TEST_SERVER_URL = process.env.OTA_TEST_DATABASE_URL ?? 'postgres://ota_test:ota_test@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly name: string;
  /** The URL of the new database, for `openPool`. */
  readonly url: string;
  drop(): Promise<void>;
}

/** Creates an empty, uniquely named database on the test server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `ota_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await onServer((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(TEST_SERVER_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    // FORCE: a pool a failed test left open must not keep the database alive.
    drop: () => dropDatabase(name),
  };
}

/**
 * Ending an autovacuum worker still in the database needs pg_signal_backend (.ci/run grants it);
 * without it, DROP ... WITH (FORCE) fails (42501) until the worker is done: tried again a few times.
 */
async function dropDatabase(name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await onServer((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '42501' || attempt === 10) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function onServer<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_SERVER_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Deletes every row of every table (the schema stays): the next test starts from an empty database
 * without the cost of a new one. Does nothing on a database not migrated yet.
 */
export async function emptyTestDatabase(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const tables = (
      await client.query<{ name: string }>("SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
    ).rows.map((r) => r.name);
    if (tables.length) await client.query(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY CASCADE`);
  } finally {
    await client.end();
  }
}

let warned = false;

/**
 * Registers before/after hooks on the current suite: a fresh database before its tests, dropped
 * after them. Returns a getter for it (valid inside tests and later hooks).
 */
export function withTestDatabase(): () => TestDatabase {
  let db: TestDatabase | undefined;
  before(async function () {
    try {
      db = await createTestDatabase();
    } catch (err) {
      const reason = `PostgreSQL is not reachable at ${redactedUrl(TEST_SERVER_URL)} (${(err as Error).message}); set OTA_TEST_DATABASE_URL or start the cluster (pg_ctlcluster 15 main start, see .ci/run)`;
      if (process.env.CI === 'true') throw new Error(`${reason}. CI=true: the PostgreSQL suites must run.`, { cause: err });
      if (!warned) console.warn(`  PostgreSQL suites pending: ${reason}`);
      warned = true;
      this.skip();
    }
  });
  after(async () => {
    await db?.drop();
  });
  return () => {
    if (!db) throw new Error('no test database: use it inside tests or hooks after withTestDatabase()');
    return db;
  };
}
