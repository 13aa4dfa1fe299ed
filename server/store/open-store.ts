import path from 'node:path';
import type { Store } from './store';
import { SqliteStore } from './sqlite/sqlite-store';

export interface StoreLocation {
  /** The data directory: holds `ota.sqlite` for the embedded store. */
  dataDir: string;
  /** `OTA_DATABASE_URL`: unset or empty = SQLite in `dataDir`. */
  databaseUrl?: string | undefined;
}

/** The one place that decides which database the engine talks to. */
export function openStore(where: StoreLocation): Store {
  const url = where.databaseUrl?.trim();
  if (!url) return SqliteStore.open(path.join(where.dataDir, 'ota.sqlite'));
  if (/^postgres(ql)?:\/\//i.test(url)) {
    throw new Error('OTA_DATABASE_URL names a PostgreSQL database, which this build cannot use yet: unset it to keep the data in SQLite under OTA_DATA_DIR');
  }
  throw new Error(`OTA_DATABASE_URL must be a postgres:// URL (or unset for SQLite); got '${url.replace(/\/\/[^@/]*@/, '//***@')}'`);
}
