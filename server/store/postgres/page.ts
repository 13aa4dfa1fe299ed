import { likePattern, toPage, type PageData, type PageLink } from '../sqlite/database';
import type { Sql } from './pool';

export interface PgPageQuery<T, Row> {
  /** `FROM ... WHERE ...` without the search condition, placeholders from $1; must scope by tenant. */
  from: string;
  params: unknown[];
  /** Column matched case-insensitively as a substring by `textSearch`. */
  searchColumn: string;
  /** API sort property -> expression; unknown properties fall back to `created_time`. */
  sortColumns: Record<string, string>;
  link: PageLink;
  map: (row: Row) => T;
}

/**
 * One page of rows plus the total, with the rules of the SQLite side (`queryPage`): substring
 * search, sort by a known property then id, and NULLs first in ascending order as SQLite puts them.
 */
export async function queryPage<T, Row extends Record<string, unknown>>(sql: Sql, q: PgPageQuery<T, Row>): Promise<PageData<T>> {
  let where = '';
  const params = [...q.params];
  if (q.link.textSearch) {
    params.push(likePattern(q.link.textSearch));
    where = ` AND ${q.searchColumn} ILIKE $${params.length}`;
  }
  const column = q.sortColumns[q.link.sortProperty ?? ''] ?? 'created_time';
  const order = q.link.sortOrder === 'DESC' ? 'DESC NULLS LAST' : 'ASC NULLS FIRST';
  const [total, rows] = await Promise.all([
    sql.query<{ n: number }>(`SELECT count(*) AS n ${q.from}${where}`, params),
    sql.query<Row>(`SELECT * ${q.from}${where} ORDER BY ${column} ${order}, id ${order} LIMIT $${params.length + 1} OFFSET $${params.length + 2}`, [
      ...params,
      q.link.pageSize,
      q.link.page * q.link.pageSize,
    ]),
  ]);
  return toPage(rows.rows.map(q.map), total.rows[0].n, q.link);
}
