import type Database from 'better-sqlite3';
import type { Db } from './database';

/**
 * Rows per statement. better-sqlite3 costs about twice as much per row when each row is its own
 * `run` (bind, step, reset from JavaScript) as when a few rows share one statement; beyond a few
 * dozen rows there is nothing more to gain.
 */
const ROWS_PER_STATEMENT = 32;

/**
 * A statement over a list of rows or values, `head (...), (...) tail`, run a chunk at a time: one
 * statement per chunk instead of one per row. Its compiled statements are kept per chunk size, so a
 * hot path neither builds nor looks up SQL text per call.
 */
abstract class Chunked {
  private readonly statements: Array<Database.Statement | undefined> = [];

  constructor(
    private readonly db: Db,
    private readonly head: string,
    private readonly tail: string,
  ) {}

  protected statement(n: number, group: string): Database.Statement {
    let stmt = this.statements[n];
    if (!stmt) this.statements[n] = stmt = this.db.prepare(`${this.head} ${Array.from({ length: n }, () => group).join(', ')} ${this.tail}`);
    return stmt;
  }
}

/** One `(?, ...)` group of `columns` parameters per row: an insert's VALUES list or a tuple IN list. */
abstract class ChunkedRows extends Chunked {
  private readonly tuple: string;

  constructor(db: Db, head: string, tail: string, columns: number) {
    super(db, head, tail);
    this.tuple = `(${Array.from({ length: columns }, () => '?').join(', ')})`;
  }

  /**
   * Answers the rows changed. A chunk's values go in as separate arguments: binding from one array
   * argument (`chunk.flat()`) cost better-sqlite3 an API lookup per value and the slice and flat
   * copies, 2.5x the JavaScript time of a 64,000-row insert.
   */
  run(rows: readonly (readonly unknown[])[]): number {
    let changes = 0;
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      const end = Math.min(rows.length, i + ROWS_PER_STATEMENT);
      const values: unknown[] = [];
      for (let r = i; r < end; r++) for (const v of rows[r] as readonly unknown[]) values.push(v);
      changes += this.statement(end - i, this.tuple).run(...values).changes;
    }
    return changes;
  }
}

/**
 * `INSERT ... VALUES (?, ...), (?, ...) [ON CONFLICT ...]` for any number of rows, in order, so a
 * later row sees the earlier ones (an upsert of one key twice ends as two single upserts would).
 * Callers wrap `run` in a transaction when it must be whole.
 */
export class InsertRows extends ChunkedRows {
  /** `head` up to VALUES (`INSERT INTO t (a, b)`), `tail` after the rows (an ON CONFLICT clause, or ''). */
  constructor(db: Db, head: string, tail: string, columns: number) {
    super(db, `${head} VALUES`, tail, columns);
  }
}

/**
 * `... IN (?, ?, ...) ...` over a list of values: `head` ends with `IN (`, `tail` starts with `)`
 * (`DELETE FROM t WHERE seq IN (`, `)`). The same leading parameters go with every chunk. Answers
 * the rows returned (by a RETURNING clause), else none.
 */
export class InValues extends Chunked {
  run<Row>(params: readonly unknown[], values: readonly unknown[]): Row[] {
    const out: Row[] = [];
    for (let i = 0; i < values.length; i += ROWS_PER_STATEMENT) {
      const chunk = values.slice(i, i + ROWS_PER_STATEMENT);
      const stmt = this.statement(chunk.length, '?');
      if (stmt.reader) out.push(...(stmt.all(...params, ...chunk) as Row[]));
      else stmt.run(...params, ...chunk);
    }
    return out;
  }
}

/**
 * `... (a, b) IN (VALUES (?, ?), (?, ?)) ...` over a list of tuples: `head` ends with
 * `IN (VALUES`, `tail` starts with `)`. For statements that match rows by several columns.
 */
export class InTuples extends ChunkedRows {}

/**
 * A batch's writes of one key/value map (the same object, shared by the caller) to many devices,
 * gathered into groups: a group is written by one statement over the cross product of its devices
 * and the map's keys (`json_each` of each, see `mapAsJson`), instead of a row of bound parameters
 * per device and key (binding them cost better-sqlite3 more than the writes). A device added twice
 * starts a new run of groups, so its later write still lands after its earlier one.
 */
export class SharedMapGroups<Write> {
  private readonly done: Array<{ write: Write; devices: string[] }> = [];
  private open = new Map<object, Map<string | number, { write: Write; devices: string[] }>>();
  private seen = new Set<string>();

  /** `tag`: what else the devices of a group must share (the scope, the timestamp). */
  add(deviceId: string, map: object, tag: string | number, write: Write): void {
    if (this.seen.has(deviceId)) this.close();
    this.seen.add(deviceId);
    let byTag = this.open.get(map);
    if (!byTag) this.open.set(map, (byTag = new Map()));
    let group = byTag.get(tag);
    if (!group) byTag.set(tag, (group = { write, devices: [] }));
    group.devices.push(deviceId);
  }

  /** The groups in order: a group's first write, and its devices as a JSON array for `json_each`. */
  *groups(): Generator<{ write: Write; devices: string }> {
    this.close();
    for (const { write, devices } of this.done) yield { write, devices: JSON.stringify(devices) };
  }

  private close(): void {
    for (const byTag of this.open.values()) this.done.push(...byTag.values());
    this.open = new Map();
    this.seen = new Set();
  }
}

/** A map as JSON for `json_each`: each key to its value's JSON text, which is what the tables keep. */
export function mapAsJson(map: Readonly<Record<string, unknown>>, keep: (key: string) => boolean = () => true): string {
  const texts: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) if (keep(key)) texts[key] = JSON.stringify(value);
  return JSON.stringify(texts);
}
