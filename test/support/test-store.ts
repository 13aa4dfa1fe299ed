/**
 * Which database the engine tests run on. `npm test` runs everything on SQLite, then the REST API
 * and pipeline end-to-end suites a second time on PostgreSQL (`.mocharc.postgres.json`, which sets
 * `OTA_TEST_STORE=postgres` through postgres-run.ts). A harness asks `databaseUrlFor(dataDir)`: on
 * SQLite it answers nothing; on PostgreSQL it answers the database of that data directory, made on
 * first use, so a restart on the same directory finds the same data. The run drops them all at its end.
 */
import { createTestDatabase, type TestDatabase } from './postgres';

export const onPostgres = (): boolean => process.env.OTA_TEST_STORE === 'postgres';

const databases = new Map<string, Promise<TestDatabase>>();

/** The `OTA_DATABASE_URL` an engine on `dataDir` uses in this run (undefined: SQLite in the directory). */
export async function databaseUrlFor(dataDir: string): Promise<string | undefined> {
  if (!onPostgres()) return undefined;
  let db = databases.get(dataDir);
  if (!db) databases.set(dataDir, (db = createTestDatabase()));
  return (await db).url;
}

/** Drops the database of `dataDir`, if this run made one (its harness is done with the directory). */
export async function dropDatabaseFor(dataDir: string): Promise<void> {
  const db = databases.get(dataDir);
  databases.delete(dataDir);
  if (db) await (await db).drop();
}

/** Drops every database this run made (postgres-run.ts calls it once all suites are done). */
export async function dropTestDatabases(): Promise<void> {
  const all = [...databases.values()];
  databases.clear();
  for (const db of all) await (await db).drop();
}
