import type { TenantId } from '../ids';
import { keyPrefix } from '../pipeline/ota-keys';
import type { DeviceFilter, DevicePageLink, DeviceListSort } from './fleet-read-model';
import type { DeviceQueryDialect, Statement } from './fleet-device-query';
import type { OtaPackageType } from './ota-packages';

/** Runs a statement (`?` placeholders) and answers its rows. */
export type RunStatement = <R extends Record<string, unknown>>(q: Statement) => Promise<R[]>;

/** A stretch of the sorted list: how many devices it holds, and its ids from `offset` on, `limit` of them, in order. */
interface Run {
  size: number;
  ids(offset: number, limit: number): Promise<string[]>;
}

/** The slot columns a sort reads, as the joined list query sorts them (fleet-device-query.ts). */
const SLOT_COLUMN: Partial<Record<DeviceListSort, { column: string; text: boolean }>> = {
  state: { column: 'state', text: true },
  stateTs: { column: 'state_ts', text: false },
  currentVersion: { column: 'current_version', text: true },
};

/**
 * The page of the unfiltered device list in a sort the database would otherwise answer by sorting
 * every device of the tenant (the sort key is in another table: a slot's state, its time, the
 * version the device runs or is moved to, the profile's name): 75-240 ms at 50,000 devices. Here
 * the sorted list is cut into runs that an index reads in order, or that are small, and only the
 * runs the page falls in are read, with LIMIT and OFFSET:
 *
 * - a slot column (`state`, `stateTs`, `currentVersion`): the devices without a value (no state row
 *   of that type, or a null in it) by id, then the state rows with a value in the column's order and
 *   by id; NULLs come first ascending and last descending, as the joined query has them;
 * - the target's version: devices without a target first, then per version (the tenant's packages
 *   of the type, few, sorted by the database) the devices moved to it, by id;
 * - the profile's name: per name (the tenant's profiles, sorted by the database) its devices by id.
 *
 * The order is the joined query's to the row (its ties broken by id the same way). Answers null for
 * the other sorts (an index of `devices` already reads them in order) and for filtered lists.
 */
export async function sortedPageIds(
  d: DeviceQueryDialect,
  run: RunStatement,
  tenantId: TenantId,
  filter: DeviceFilter,
  link: DevicePageLink,
): Promise<{ total: number; ids: string[] } | null> {
  if (filter.states?.length || filter.packageId || filter.deviceProfileId || filter.textSearch) return null;
  const sort = link.sortProperty ?? 'name';
  const dir = link.sortOrder === 'DESC' ? 'DESC' : 'ASC';
  const count = async (q: Statement): Promise<number> => Number((await run<{ n: number | string }>(q))[0]?.n ?? 0);
  const ids = async (q: Statement): Promise<string[]> => (await run<{ id: string }>(q)).map((r) => String(r.id));
  const column = SLOT_COLUMN[sort];
  if (!column && sort !== 'targetVersion' && sort !== 'deviceProfileName') return null;
  // The counts go at once, side by side (on PostgreSQL each is a scan of the tenant's rows, on its own connection).
  const counted = count({ sql: 'SELECT count(*) AS n FROM devices WHERE tenant_id = ?', params: [tenantId] });
  const [total, runs] = await Promise.all([
    counted,
    column
      ? slotColumnRuns(d, tenantId, filter.type, column.column, column.text, dir, counted, count, ids)
      : sort === 'targetVersion'
        ? targetVersionRuns(d, run, tenantId, filter.type, dir, counted, ids)
        : profileNameRuns(d, run, tenantId, dir, ids),
  ]);

  const start = link.page * link.pageSize;
  const end = start + link.pageSize;
  const out: string[] = [];
  let at = 0;
  for (const r of runs) {
    const from = Math.max(start, at);
    const to = Math.min(end, at + r.size);
    if (to > from) out.push(...(await r.ids(from - at, to - from)));
    at += r.size;
    if (at >= end) break;
  }
  return { total, ids: out };
}

/** The devices of the tenant with no state row of `type` for which `has` (a condition on `s`, with its parameters) holds, by id. */
function withoutRun(tenantId: TenantId, type: OtaPackageType, has: Statement, dir: 'ASC' | 'DESC', size: number, ids: (q: Statement) => Promise<string[]>): Run {
  return {
    size,
    ids: (offset, limit) =>
      ids({
        sql: `SELECT d.id FROM devices d WHERE d.tenant_id = ?
                AND NOT EXISTS (SELECT 1 FROM ota_states s WHERE s.device_id = d.id AND s.type = '${type}' AND ${has.sql})
              ORDER BY d.id ${dir} LIMIT ? OFFSET ?`,
        params: [tenantId, ...has.params, limit, offset],
      }),
  };
}

async function slotColumnRuns(
  d: DeviceQueryDialect,
  tenantId: TenantId,
  type: OtaPackageType,
  column: string,
  text: boolean,
  dir: 'ASC' | 'DESC',
  counted: Promise<number>,
  count: (q: Statement) => Promise<number>,
  ids: (q: Statement) => Promise<string[]>,
): Promise<Run[]> {
  const where = `tenant_id = ? AND type = '${type}' AND ${column} IS NOT NULL`;
  const [total, valued] = await Promise.all([counted, count({ sql: `SELECT count(*) AS n FROM ota_states WHERE ${where}`, params: [tenantId] })]);
  const withValue: Run = {
    size: valued,
    // No NULLs in this run: a plain ASC/DESC, which an index reads forwards or backwards.
    ids: (offset, limit) =>
      ids({
        sql: `SELECT device_id AS id FROM ota_states WHERE ${where} ORDER BY ${text ? d.bytewise(column) : column} ${dir}, device_id ${dir} LIMIT ? OFFSET ?`,
        params: [tenantId, limit, offset],
      }),
  };
  const without = withoutRun(tenantId, type, { sql: `s.${column} IS NOT NULL`, params: [] }, dir, total - valued, ids);
  return dir === 'ASC' ? [without, withValue] : [withValue, without];
}

/** Consecutive rows of equal `k` (already sorted by the database) as groups of ids. */
function groups(rows: Array<{ id: unknown; k: unknown }>, same: (a: string, b: string) => boolean): string[][] {
  const out: Array<{ k: string; ids: string[] }> = [];
  for (const r of rows) {
    const last = out[out.length - 1];
    const k = String(r.k);
    if (last && same(last.k, k)) last.ids.push(String(r.id));
    else out.push({ k, ids: [String(r.id)] });
  }
  return out.map((g) => g.ids);
}

const placeholders = (n: number): string => Array.from({ length: n }, () => '?').join(',');
/**
 * Of `n` package ids, those of the tenant (`?` first, then the ids): the state rows are found through
 * the target index (its entries hold the device id in order), scoped by the packages' tenant.
 */
const ofTenant = (n: number): string => `SELECT id FROM ota_packages WHERE tenant_id = ? AND id IN (${placeholders(n)})`;

async function targetVersionRuns(
  d: DeviceQueryDialect,
  run: RunStatement,
  tenantId: TenantId,
  type: OtaPackageType,
  dir: 'ASC' | 'DESC',
  counted: Promise<number>,
  ids: (q: Statement) => Promise<string[]>,
): Promise<Run[]> {
  const a = keyPrefix(type);
  const versions = groups(
    await run<{ id: string; k: string }>({
      sql: `SELECT id, version AS k FROM ota_packages WHERE tenant_id = ? AND type = '${type}' ORDER BY ${d.bytewise('version')} ${dir}, id`,
      params: [tenantId],
    }),
    (x, y) => x === y,
  );
  const sizes = new Map<string, number>();
  if (versions.length) {
    const all = versions.flat();
    for (const r of await run<{ k: string; n: number | string }>({
      sql: `SELECT target_package_id AS k, count(*) AS n FROM ota_states WHERE type = '${type}' AND target_package_id IN (${ofTenant(all.length)}) GROUP BY target_package_id`,
      params: [tenantId, ...all],
    }))
      sizes.set(String(r.k), Number(r.n));
  }
  const targeted: Run[] = versions.map((packageIds) => ({
    size: packageIds.reduce((n, id) => n + (sizes.get(id) ?? 0), 0),
    ids: (offset, limit) =>
      ids({
        // One package (the rule): an equality, which the index reads in device order; several share the version and are sorted.
        sql: `SELECT device_id AS id FROM ota_states WHERE type = '${type}' AND target_package_id ${packageIds.length === 1 ? '=' : 'IN'} (${ofTenant(packageIds.length)})
              ORDER BY device_id ${dir} LIMIT ? OFFSET ?`,
        params: [tenantId, ...packageIds, limit, offset],
      }),
  }));
  // No target, or one that is no package of the tenant's (deleted): the joined query's NULL version.
  const without = withoutRun(
    tenantId,
    type,
    { sql: `EXISTS (SELECT 1 FROM ota_packages ${a}p WHERE ${a}p.id = s.target_package_id AND ${a}p.tenant_id = ? AND ${a}p.type = '${type}')`, params: [tenantId] },
    dir,
    (await counted) - targeted.reduce((n, r) => n + r.size, 0),
    ids,
  );
  return dir === 'ASC' ? [without, ...targeted] : [...targeted, without];
}

async function profileNameRuns(d: DeviceQueryDialect, run: RunStatement, tenantId: TenantId, dir: 'ASC' | 'DESC', ids: (q: Statement) => Promise<string[]>): Promise<Run[]> {
  // Names equal but for (ASCII) case sort as one, as NOCASE and lower() compare them.
  const fold = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const [named, perProfile] = await Promise.all([
    run<{ id: string; k: string }>({
      sql: `SELECT id, ${d.nocase('name')} AS k FROM device_profiles WHERE tenant_id = ? ORDER BY ${d.nocase('name')} ${dir}, id`,
      params: [tenantId],
    }),
    run<{ k: string; n: number | string }>({ sql: 'SELECT device_profile_id AS k, count(*) AS n FROM devices WHERE tenant_id = ? GROUP BY device_profile_id', params: [tenantId] }),
  ]);
  const profiles = groups(named, (x, y) => fold(x) === fold(y));
  const sizes = new Map(perProfile.map((r) => [String(r.k), Number(r.n)]));
  return profiles.map((profileIds) => ({
    size: profileIds.reduce((n, id) => n + (sizes.get(id) ?? 0), 0),
    ids: (offset, limit) =>
      ids({
        sql: `SELECT id FROM devices WHERE tenant_id = ? AND device_profile_id IN (${placeholders(profileIds.length)}) ORDER BY id ${dir} LIMIT ? OFFSET ?`,
        params: [tenantId, ...profileIds, limit, offset],
      }),
  }));
}
