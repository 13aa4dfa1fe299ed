import type { Db } from './database';

/**
 * Runs `work` as one transaction, or as part of the one already open (a unit of work): nesting
 * better-sqlite3 transactions would add a SAVEPOINT and a RELEASE to every repository call of a
 * batch, a third of its statements, for an atomicity the outer transaction already gives.
 */
export function atomically<T>(db: Db, work: () => T): T {
  return db.inTransaction ? work() : db.transaction(work)();
}
