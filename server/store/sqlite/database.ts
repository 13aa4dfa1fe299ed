import Database from 'better-sqlite3';
import { MIGRATIONS, type Migration } from './migrations';

export type Db = Database.Database;

/**
 * Opens (creating if needed) the SQLite database in WAL mode and brings its schema up to date.
 * WAL lets readers (downloads, listings) go on while one writer commits.
 */
export function openDatabase(file: string, migrations: readonly Migration[] = MIGRATIONS): Db {
  const db = cachePreparedStatements(new Database(file));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db, migrations);
  return db;
}

/**
 * WAL pages a commit may leave before it checkpoints them itself (SQLite's default is 1,000). A
 * checkpoint copies the pages into the database and waits for two fsyncs: at 1,000 pages a
 * 10,000-device fan-out (~7,300 pages) ran about seven of them inside its commits. The store
 * checkpoints once it is idle instead (SqliteStore); this bound keeps the WAL within ~40 MB meanwhile.
 */
const WAL_AUTOCHECKPOINT_PAGES = 10_000;

/** How many distinct SQL texts keep their compiled statement (dynamic `IN (?, ?)` lists make more). */
const STATEMENT_CACHE_SIZE = 500;

/**
 * better-sqlite3 compiles a statement on every `prepare`; repositories prepare per call for
 * readability, which cost ~12-15 % of CPU on hot paths (bench/). Caching by SQL text keeps the
 * readable code and compiles each statement once. Safe because no caller keeps a statement busy
 * (`iterate`) or changes its mode (`pluck`, `raw`, `expand`).
 */
function cachePreparedStatements(db: Db): Db {
  const cache = new Map<string, Database.Statement>();
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = prepare(sql);
      if (cache.size < STATEMENT_CACHE_SIZE) cache.set(sql, stmt);
    }
    return stmt;
  }) as Db['prepare'];
  return db;
}

export function migrate(db: Db, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}

/** ThingsBoard pages: `{data, totalPages, totalElements, hasNext}`. */
export interface PageData<T> {
  data: T[];
  totalPages: number;
  totalElements: number;
  hasNext: boolean;
}

export interface PageLink {
  pageSize: number;
  page: number;
  textSearch?: string;
  sortProperty?: string;
  sortOrder?: 'ASC' | 'DESC';
}

export function toPage<T>(data: T[], total: number, link: PageLink): PageData<T> {
  const totalPages = link.pageSize > 0 ? Math.ceil(total / link.pageSize) : 0;
  return { data, totalPages, totalElements: total, hasNext: (link.page + 1) * link.pageSize < total };
}

/** Escapes a user's text for a `LIKE ? ESCAPE '\'` substring match. */
export const likePattern = (text: string): string => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export interface PageQuery<Row> {
  /** `FROM ... WHERE ...` without the search condition; must already scope by tenant. */
  from: string;
  params: unknown[];
  /** Column matched case-insensitively as a substring by `textSearch`. */
  searchColumn: string;
  /** API sort property -> column; unknown properties fall back to `created_time`. */
  sortColumns: Record<string, string>;
  link: PageLink;
  map: (row: Row) => unknown;
}

/** One page of rows plus the total, with ThingsBoard's text search, sort and paging rules. */
export function queryPage<T, Row = Record<string, unknown>>(db: Db, q: Omit<PageQuery<Row>, 'map'> & { map: (row: Row) => T }): PageData<T> {
  let where = '';
  const params = [...q.params];
  if (q.link.textSearch) {
    where = ` AND ${q.searchColumn} LIKE ? ESCAPE '\\'`;
    params.push(likePattern(q.link.textSearch));
  }
  const total = (db.prepare(`SELECT count(*) AS n ${q.from}${where}`).get(...params) as { n: number }).n;
  const column = q.sortColumns[q.link.sortProperty ?? ''] ?? 'created_time';
  const order = q.link.sortOrder === 'DESC' ? 'DESC' : 'ASC';
  const rows = db
    .prepare(`SELECT * ${q.from}${where} ORDER BY ${column} ${order}, id ${order} LIMIT ? OFFSET ?`)
    .all(...params, q.link.pageSize, q.link.page * q.link.pageSize) as Row[];
  return toPage(rows.map(q.map), total, q.link);
}
