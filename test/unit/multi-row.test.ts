import { expect } from 'chai';
import Database from 'better-sqlite3';
import { InsertRows, InValues } from '../../server/store/sqlite/multi-row';

describe('multi-row SQLite statements (server/store/sqlite/multi-row.ts)', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
    db.exec('CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 1)');
  });
  afterEach(() => db.close());

  const rows = (): Array<{ k: string; v: number; n: number }> => db.prepare('SELECT k, v, n FROM kv ORDER BY k').all() as Array<{ k: string; v: number; n: number }>;

  it('inserts more rows than one statement holds, every one of them', () => {
    const insert = new InsertRows(db, 'INSERT INTO kv (k, v)', '', 2);
    const values = Array.from({ length: 75 }, (_, i) => [`k${String(i).padStart(3, '0')}`, i]);
    expect(insert.run(values)).to.equal(75);
    expect(rows().map((r) => [r.k, r.v])).to.deep.equal(values);
  });

  it('applies an upsert of the same key twice in order, as two single upserts would', () => {
    const upsert = new InsertRows(db, 'INSERT INTO kv (k, v)', 'ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = n + 1 WHERE excluded.v >= kv.v', 2);
    // 40 rows: the duplicates of `a` fall in two different chunks; the older value 1 must not win.
    const values: unknown[][] = [['a', 5], ...Array.from({ length: 36 }, (_, i) => [`b${i}`, i]), ['a', 7], ['a', 1], ['c', 0]];
    upsert.run(values);
    expect(rows().find((r) => r.k === 'a')).to.deep.equal({ k: 'a', v: 7, n: 2 });
    expect(rows()).to.have.length(38);
  });

  it('does nothing for no rows', () => {
    expect(new InsertRows(db, 'INSERT INTO kv (k, v)', '', 2).run([])).to.equal(0);
    expect(rows()).to.deep.equal([]);
  });

  it('deletes a list of values across chunks and answers what RETURNING gave', () => {
    new InsertRows(db, 'INSERT INTO kv (k, v)', '', 2).run(Array.from({ length: 50 }, (_, i) => [`k${i}`, i % 2]));
    const del = new InValues(db, 'DELETE FROM kv WHERE v = ? AND k IN (', ') RETURNING k');
    const asked = Array.from({ length: 50 }, (_, i) => `k${i}`).concat(['missing']);
    const gone = del.run<{ k: string }>([1], asked).map((r) => r.k);
    expect(gone.sort()).to.deep.equal(Array.from({ length: 25 }, (_, i) => `k${2 * i + 1}`).sort());
    expect(rows().every((r) => r.v === 0)).to.equal(true);
    expect(rows()).to.have.length(25);
  });

  it('runs a statement without RETURNING and answers no rows', () => {
    new InsertRows(db, 'INSERT INTO kv (k, v)', '', 2).run([
      ['x', 1],
      ['y', 2],
    ]);
    expect(new InValues(db, 'DELETE FROM kv WHERE k IN (', ')').run([], ['x'])).to.deep.equal([]);
    expect(rows().map((r) => r.k)).to.deep.equal(['y']);
  });
});
