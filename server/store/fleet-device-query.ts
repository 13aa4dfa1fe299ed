import { likePattern } from './sqlite/database';
import type { DeviceId, TenantId } from '../ids';
import { keyPrefix } from '../pipeline/ota-keys';
import type { OtaPackageType } from './ota-packages';
import type { DeviceFilter, DeviceListSort, DevicePageLink, DeviceRow, SlotInfo } from './fleet-read-model';

/**
 * Where the two databases' SQL differs for the device list. Statements use `?` placeholders;
 * PostgreSQL numbers them.
 */
export interface DeviceQueryDialect {
  /** A case-insensitive (ASCII) sort key of a text column. */
  nocase(expr: string): string;
  /** A case-insensitive substring match of `?` (a `likePattern`). */
  like(expr: string): string;
  /** A text sort key compared bytewise. */
  bytewise(expr: string): string;
  /** `ASC`/`DESC` with NULLs first in ascending order, as SQLite has them. */
  order(dir: 'ASC' | 'DESC'): string;
  /** The device's tenant in the id lookup, written so the id index drives it. */
  tenantOfLookedUp: string;
}

export interface DeviceRowColumns {
  id: string;
  name: string;
  label: string | null;
  created_time: number;
  device_profile_id: string;
  profile_name: string;
  credentials_type: string;
  /** 1/true when the device provisioned itself (ThingsBoard's server attribute `provisionState`). */
  provisioned: number | boolean;
  /** The slot columns, prefixed `fw_` and `sw_` (see `slotColumns`). */
  [slotColumn: string]: unknown;
}

/** One slot's columns without their prefix. */
interface SlotColumns {
  exists: number;
  state: string | null;
  state_ts: number;
  error: string | null;
  cur_title: string | null;
  cur_version: string | null;
  target: string | null;
  target_title: string | null;
  target_version: string | null;
  retries: number | null;
}

const slotColumns = (p: 'fw' | 'sw'): string =>
  `${p}.state AS ${p}_state, ${p}.state_ts AS ${p}_state_ts, ${p}.error AS ${p}_error, ${p}.current_title AS ${p}_cur_title,
   ${p}.current_version AS ${p}_cur_version, ${p}.target_package_id AS ${p}_target, ${p}p.title AS ${p}_target_title,
   ${p}p.version AS ${p}_target_version, ${p}.retries AS ${p}_retries, ${p}.device_id IS NOT NULL AS ${p}_exists`;

// A self-provisioned device carries ThingsBoard's server attribute provisionState (device-provisioning.ts).
const PROVISIONED = `EXISTS (SELECT 1 FROM attributes a WHERE a.device_id = d.id AND a.scope = 'SERVER' AND a.key = 'provisionState') AS provisioned`;
const SELECT = `SELECT d.id, d.name, d.label, d.created_time, d.device_profile_id, p.name AS profile_name, d.credentials_type, ${PROVISIONED}, ${slotColumns('fw')}, ${slotColumns('sw')}`;
const slotJoins = (p: 'fw' | 'sw', type: OtaPackageType): string =>
  `LEFT JOIN ota_states ${p} ON ${p}.device_id = d.id AND ${p}.type = '${type}' LEFT JOIN ota_packages ${p}p ON ${p}p.id = ${p}.target_package_id`;
const FROM = `FROM devices d JOIN device_profiles p ON p.id = d.device_profile_id ${slotJoins('fw', 'FIRMWARE')} ${slotJoins('sw', 'SOFTWARE')}`;

function slot(r: DeviceRowColumns, p: 'fw' | 'sw'): SlotInfo {
  const c = Object.fromEntries(
    Object.entries(r)
      .filter(([k]) => k.startsWith(`${p}_`))
      .map(([k, v]) => [k.slice(3), v]),
  ) as unknown as SlotColumns;
  if (!c.exists) return { state: null, stateTs: null, error: null, current: null, target: null, retries: 0 };
  return {
    state: c.state as SlotInfo['state'],
    stateTs: c.state === null ? null : c.state_ts,
    error: c.error || null,
    current: c.cur_title === null && c.cur_version === null ? null : { title: c.cur_title, version: c.cur_version },
    target: c.target ? { packageId: c.target, title: c.target_title ?? '', version: c.target_version ?? '' } : null,
    retries: c.retries ?? 0,
  };
}

export const toDeviceRow = (r: DeviceRowColumns): DeviceRow => ({
  id: r.id as DeviceId,
  name: r.name,
  label: r.label,
  createdTime: r.created_time,
  deviceProfileId: r.device_profile_id,
  deviceProfileName: r.profile_name,
  credentialsType: r.credentials_type,
  provisioned: Boolean(r.provisioned),
  firmware: slot(r, 'fw'),
  software: slot(r, 'sw'),
});

interface Condition {
  sql: string;
  params: unknown[];
}

interface Slot {
  conditions: Condition[];
  inner: boolean;
  used: boolean;
  pkg: boolean;
}

const typeOf = (alias: 'fw' | 'sw'): OtaPackageType => (alias === 'fw' ? 'FIRMWARE' : 'SOFTWARE');

export interface Statement {
  sql: string;
  params: unknown[];
}

/** The statements behind one page of the device list: the total and the page's ids, in order. */
export interface DevicePageStatements {
  count: Statement;
  ids: Statement;
}

/**
 * The dashboard's device list as two statements: the count and the page's ids, each with only the
 * joins the filter and the sort need (driving from the state index when filtering by state or
 * package); the rows are then read by id (`deviceRowsStatement`). `packageType` is the type of
 * `filter.packageId`, looked up in the tenant's packages first.
 */
export function devicePageStatements(
  d: DeviceQueryDialect,
  tenantId: TenantId,
  filter: DeviceFilter,
  packageType: OtaPackageType | null,
  link: DevicePageLink,
): DevicePageStatements {
  const device: Condition[] = [];
  const slots: Record<'fw' | 'sw', Slot> = {
    fw: { conditions: [], inner: false, used: false, pkg: false },
    sw: { conditions: [], inner: false, used: false, pkg: false },
  };
  const s = slots[keyPrefix(filter.type)];
  if (filter.states?.length) {
    const named = filter.states.filter((x) => x !== 'NONE');
    const none = filter.states.includes('NONE');
    const parts = [...(named.length ? [`{s}.state IN (${named.map(() => '?').join(',')})`] : []), ...(none ? ['{s}.state IS NULL'] : [])];
    s.conditions.push({ sql: `(${parts.join(' OR ')})`, params: named });
    s.used = true;
    s.inner ||= !none;
  }
  if (filter.packageId && packageType) {
    const t = slots[keyPrefix(packageType)];
    t.conditions.push({ sql: '{s}.target_package_id = ?', params: [filter.packageId] });
    t.used = true;
    t.inner = true;
  }
  if (filter.deviceProfileId) device.push({ sql: 'd.device_profile_id = ?', params: [filter.deviceProfileId] });
  if (filter.textSearch) device.push({ sql: d.like('d.name'), params: [likePattern(filter.textSearch)] });

  const sort = link.sortProperty ?? 'name';
  if (sort === 'state' || sort === 'stateTs' || sort === 'currentVersion') s.used = true;
  if (sort === 'targetVersion') s.used = s.pkg = true;
  const profileJoin = sort === 'deviceProfileName' ? 'JOIN device_profiles p ON p.id = d.device_profile_id' : '';

  const joins: string[] = [];
  const where: Condition[] = [{ sql: 'd.tenant_id = ?', params: [tenantId] }, ...device];
  for (const [alias, slot] of Object.entries(slots) as Array<['fw' | 'sw', Slot]>) {
    if (!slot.used) continue;
    joins.push(`${slot.inner ? 'JOIN' : 'LEFT JOIN'} ota_states ${alias} ON ${alias}.device_id = d.id AND ${alias}.type = '${typeOf(alias)}'`);
    if (slot.pkg) joins.push(`LEFT JOIN ota_packages ${alias}p ON ${alias}p.id = ${alias}.target_package_id`);
    // The state's own tenant column lets the database drive from the state index.
    if (slot.inner) where.push({ sql: `${alias}.tenant_id = ?`, params: [tenantId] });
    for (const c of slot.conditions) where.push({ sql: c.sql.replace(/\{s\}/g, alias), params: c.params });
  }
  const whereSql = `WHERE ${where.map((c) => c.sql).join(' AND ')}`;
  const params = where.flatMap((c) => c.params);
  const from = `FROM devices d ${profileJoin} ${joins.join(' ')}`;

  const order = d.order(link.sortOrder === 'DESC' ? 'DESC' : 'ASC');
  const a = keyPrefix(filter.type);
  const column: Record<DeviceListSort, string> = {
    name: d.nocase('d.name'),
    createdTime: 'd.created_time',
    deviceProfileName: d.nocase('p.name'),
    state: d.bytewise(`${a}.state`),
    stateTs: `${a}.state_ts`,
    currentVersion: d.bytewise(`${a}.current_version`),
    targetVersion: d.bytewise(`${a}p.version`),
  };
  return {
    count: countStatement(tenantId, device, slots),
    ids: {
      sql: `SELECT d.id ${from} ${whereSql} ORDER BY ${column[sort]} ${order}, d.id ${order} LIMIT ? OFFSET ?`,
      params: [...params, link.pageSize, link.page * link.pageSize],
    },
  };
}

/**
 * How many devices pass the filter, joining only the slots it filters on; a filter on one slot
 * alone is counted from the state index without touching the devices.
 */
function countStatement(tenantId: TenantId, device: Condition[], slots: Record<'fw' | 'sw', Slot>): Statement {
  const filtered = (Object.entries(slots) as Array<['fw' | 'sw', Slot]>).filter(([, slot]) => slot.conditions.length);
  const conditions = (alias: 'fw' | 'sw', slot: Slot): Condition[] => slot.conditions.map((c) => ({ sql: c.sql.replace(/\{s\}/g, alias), params: c.params }));
  let sql: string;
  let where: Condition[];
  const only = filtered[0];
  if (device.length === 0 && filtered.length === 1 && only && only[1].inner) {
    const [alias, slot] = only;
    sql = `SELECT count(*) AS n FROM ota_states ${alias}`;
    where = [{ sql: `${alias}.tenant_id = ? AND ${alias}.type = '${typeOf(alias)}'`, params: [tenantId] }, ...conditions(alias, slot)];
  } else {
    const joins = filtered.map(([alias, slot]) => `${slot.inner ? 'JOIN' : 'LEFT JOIN'} ota_states ${alias} ON ${alias}.device_id = d.id AND ${alias}.type = '${typeOf(alias)}'`);
    sql = `SELECT count(*) AS n FROM devices d ${joins.join(' ')}`;
    where = [{ sql: 'd.tenant_id = ?', params: [tenantId] }, ...device];
    for (const [alias, slot] of filtered) {
      if (slot.inner) where.push({ sql: `${alias}.tenant_id = ?`, params: [tenantId] });
      where.push(...conditions(alias, slot));
    }
  }
  return { sql: `${sql} WHERE ${where.map((c) => c.sql).join(' AND ')}`, params: where.flatMap((c) => c.params) };
}

/** The full rows (both slots, their targets, the profile's name) of these devices of the tenant. */
export function deviceRowsStatement(d: DeviceQueryDialect, tenantId: TenantId, ids: readonly string[]): Statement {
  return { sql: `${SELECT} ${FROM} WHERE d.id IN (${ids.map(() => '?').join(',')}) AND ${d.tenantOfLookedUp} = ?`, params: [...ids, tenantId] };
}
