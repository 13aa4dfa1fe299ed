import path from 'node:path';
import type { Logger } from '../logger';
import type { Store } from './store';
import { PgStore } from './postgres/pg-store';
import { SqliteStore } from './sqlite/sqlite-store';
import { redactedUrl } from './redacted-url';

export interface StoreLocation {
  /** The data directory: holds `ota.sqlite` and `blobs/` for the embedded store, the blob cache for PostgreSQL. */
  dataDir: string;
  /** `OTA_DATABASE_URL`: unset or empty = SQLite in `dataDir`. */
  databaseUrl?: string | undefined;
  logger?: Pick<Logger, 'warn'>;
}

/** The one place that decides which database the engine talks to. */
export async function openStore(where: StoreLocation): Promise<Store> {
  const url = where.databaseUrl?.trim();
  if (!url) return SqliteStore.open(path.join(where.dataDir, 'ota.sqlite'));
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new Error(`OTA_DATABASE_URL must be a postgres:// URL (or unset for SQLite); got '${redactedUrl(url)}'`);
  }
  try {
    return await PgStore.open({ connectionString: url, dataDir: where.dataDir, ...(where.logger ? { logger: where.logger } : {}) });
  } catch (err) {
    // pg's messages never carry the password; the URL we add to say where is redacted too.
    throw new Error(`cannot open the PostgreSQL database at ${redactedUrl(url)} (OTA_DATABASE_URL): ${(err as Error).message}`, { cause: err });
  }
}

/** The URL without its password. */
