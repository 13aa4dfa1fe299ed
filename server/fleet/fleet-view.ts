import { likePattern, toPage, type Db, type PageData, type PageLink } from '../store/sqlite/database';
import type { DeviceId, TenantId } from '../ids';
import { keyPrefix, UPDATE_STATES, type UpdateState } from '../pipeline/ota-keys';
import type { OtaPackageType } from '../store/ota-packages';
import type { TelemetryRepository, TelemetryValue } from '../store/telemetry';

/** One slot (firmware or software) of a device as the dashboard shows it. */
export interface SlotInfo {
  state: UpdateState | 'IDLE' | null;
  /** When the state was last set (ms); null for a device that never had one. */
  stateTs: number | null;
  error: string | null;
  /** What the device reports it runs (`current_fw_title`, `current_fw_version`). */
  current: { title: string | null; version: string | null } | null;
  /** The package the pipeline is moving the device to (null once unassigned). */
  target: { packageId: string; title: string; version: string } | null;
  retries: number;
}

export interface DeviceRow {
  id: DeviceId;
  name: string;
  label: string | null;
  createdTime: number;
  deviceProfileId: string;
  deviceProfileName: string;
  /** How the device authenticates (ACCESS_TOKEN, MQTT_BASIC, X509_CERTIFICATE, LWM2M_CREDENTIALS): the type only, never the secret. */
  credentialsType: string;
  firmware: SlotInfo;
  software: SlotInfo;
}

/** `NONE`: devices with no update state of that type. */
export type StateFilter = UpdateState | 'IDLE' | 'NONE';
export const STATE_FILTERS: readonly StateFilter[] = [...UPDATE_STATES, 'NONE'];

export interface DeviceFilter {
  /** The slot that `states` and the state sorts look at. */
  type: OtaPackageType;
  states?: readonly StateFilter[];
  deviceProfileId?: string;
  /** Devices whose target (of the package's own type) is this package. */
  packageId?: string;
  /** Case-insensitive substring of the device name. */
  textSearch?: string;
}

/** Sort properties of the device list; the state ones read the slot of `filter.type`. */
export const DEVICE_LIST_SORT = ['name', 'createdTime', 'deviceProfileName', 'state', 'stateTs', 'currentVersion', 'targetVersion'] as const;
export type DeviceListSort = (typeof DEVICE_LIST_SORT)[number];

/** One point of a device's timeline: what changed at `ts` for one type. */
export interface TimelineEvent {
  ts: number;
  type: OtaPackageType;
  state?: string;
  error?: string;
  current?: { title?: string; version?: string };
  target?: { title?: string; version?: string };
}

export type StateCounts = Record<UpdateState | 'OTHER', number>;
const COUNTED: readonly UpdateState[] = ['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED', 'FAILED'];
export const emptyCounts = (): StateCounts => ({ QUEUED: 0, INITIATED: 0, DOWNLOADING: 0, DOWNLOADED: 0, VERIFIED: 0, UPDATING: 0, UPDATED: 0, FAILED: 0, OTHER: 0 });

interface Row {
  id: string;
  name: string;
  label: string | null;
  created_time: number;
  device_profile_id: string;
  profile_name: string;
  credentials_type: string;
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

const SELECT = `SELECT d.id, d.name, d.label, d.created_time, d.device_profile_id, p.name AS profile_name, d.credentials_type, ${slotColumns('fw')}, ${slotColumns('sw')}`;
const slotJoins = (p: 'fw' | 'sw', type: OtaPackageType): string =>
  `LEFT JOIN ota_states ${p} ON ${p}.device_id = d.id AND ${p}.type = '${type}' LEFT JOIN ota_packages ${p}p ON ${p}p.id = ${p}.target_package_id`;
const FROM = `FROM devices d JOIN device_profiles p ON p.id = d.device_profile_id ${slotJoins('fw', 'FIRMWARE')} ${slotJoins('sw', 'SOFTWARE')}`;

function slot(r: Row, p: 'fw' | 'sw'): SlotInfo {
  const c = Object.fromEntries(Object.entries(r).filter(([k]) => k.startsWith(`${p}_`)).map(([k, v]) => [k.slice(3), v])) as unknown as SlotColumns;
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

const toRow = (r: Row): DeviceRow => ({
  id: r.id as DeviceId,
  name: r.name,
  label: r.label,
  createdTime: r.created_time,
  deviceProfileId: r.device_profile_id,
  deviceProfileName: r.profile_name,
  credentialsType: r.credentials_type,
  firmware: slot(r, 'fw'),
  software: slot(r, 'sw'),
});

interface Condition {
  sql: string;
  params: unknown[];
}

const str = (v: TelemetryValue | undefined): string | undefined => (v === undefined || v === null ? undefined : typeof v === 'string' ? v : JSON.stringify(v));

/**
 * The dashboard's read model: devices with both update slots, filtered, sorted and paged in SQL
 * (never the fleet in memory), a device's timeline from the telemetry history, and the state
 * distribution of the targeted devices. Every query is scoped by tenant.
 */
export class FleetView {
  constructor(
    private readonly db: Db,
    private readonly telemetry: TelemetryRepository,
  ) {}

  /**
   * One page of the device list. The count and the page's ids are found with only the joins the
   * filter and the sort need (driving from the state index when filtering by state or package);
   * the page's rows are then read by id.
   */
  page(tenantId: TenantId, filter: DeviceFilter, link: PageLink & { sortProperty?: DeviceListSort }): PageData<DeviceRow> {
    const device: Condition[] = [];
    const slots: Record<'fw' | 'sw', { conditions: Condition[]; inner: boolean; used: boolean; pkg: boolean }> = {
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
    if (filter.packageId) {
      const pkg = this.db.prepare('SELECT type FROM ota_packages WHERE id = ? AND tenant_id = ?').get(filter.packageId, tenantId) as { type: OtaPackageType } | undefined;
      if (!pkg) return toPage([], 0, link);
      const t = slots[keyPrefix(pkg.type)];
      t.conditions.push({ sql: '{s}.target_package_id = ?', params: [filter.packageId] });
      t.used = true;
      t.inner = true;
    }
    if (filter.deviceProfileId) device.push({ sql: 'd.device_profile_id = ?', params: [filter.deviceProfileId] });
    if (filter.textSearch) device.push({ sql: `d.name LIKE ? ESCAPE '\\'`, params: [likePattern(filter.textSearch)] });

    const sort = link.sortProperty ?? 'name';
    if (sort === 'state' || sort === 'stateTs' || sort === 'currentVersion') s.used = true;
    if (sort === 'targetVersion') s.used = s.pkg = true;
    const profileJoin = sort === 'deviceProfileName' ? 'JOIN device_profiles p ON p.id = d.device_profile_id' : '';

    const joins: string[] = [];
    const where: Condition[] = [{ sql: 'd.tenant_id = ?', params: [tenantId] }, ...device];
    for (const [alias, slot] of Object.entries(slots) as Array<['fw' | 'sw', (typeof slots)['fw']]>) {
      if (!slot.used) continue;
      const type = alias === 'fw' ? 'FIRMWARE' : 'SOFTWARE';
      joins.push(`${slot.inner ? 'JOIN' : 'LEFT JOIN'} ota_states ${alias} ON ${alias}.device_id = d.id AND ${alias}.type = '${type}'`);
      if (slot.pkg) joins.push(`LEFT JOIN ota_packages ${alias}p ON ${alias}p.id = ${alias}.target_package_id`);
      // The state's own tenant column lets SQLite drive from the state index.
      if (slot.inner) where.push({ sql: `${alias}.tenant_id = ?`, params: [tenantId] });
      for (const c of slot.conditions) where.push({ sql: c.sql.replace(/\{s\}/g, alias), params: c.params });
    }
    const whereSql = `WHERE ${where.map((c) => c.sql).join(' AND ')}`;
    const params = where.flatMap((c) => c.params);
    const from = `FROM devices d ${profileJoin} ${joins.join(' ')}`;

    const total = this.count(tenantId, device, slots);
    const order = link.sortOrder === 'DESC' ? 'DESC' : 'ASC';
    const a = keyPrefix(filter.type);
    const column: Record<DeviceListSort, string> = {
      name: 'd.name COLLATE NOCASE',
      createdTime: 'd.created_time',
      deviceProfileName: 'p.name COLLATE NOCASE',
      state: `${a}.state`,
      stateTs: `${a}.state_ts`,
      currentVersion: `${a}.current_version`,
      targetVersion: `${a}p.version`,
    };
    const ids = (
      this.db.prepare(`SELECT d.id ${from} ${whereSql} ORDER BY ${column[sort]} ${order}, d.id ${order} LIMIT ? OFFSET ?`).all(...params, link.pageSize, link.page * link.pageSize) as Array<{
        id: string;
      }>
    ).map((r) => r.id);
    const byId = new Map(this.rows(tenantId, ids).map((r) => [r.id as string, r]));
    return toPage(ids.flatMap((id) => byId.get(id) ?? []), total, link);
  }

  /**
   * How many devices pass the filter, joining only the slots it filters on; a filter on one slot
   * alone is counted from the state index without touching the devices.
   */
  private count(tenantId: TenantId, device: Condition[], slots: Record<'fw' | 'sw', { conditions: Condition[]; inner: boolean }>): number {
    const filtered = (Object.entries(slots) as Array<['fw' | 'sw', { conditions: Condition[]; inner: boolean }]>).filter(([, slot]) => slot.conditions.length);
    const typeOf = (alias: 'fw' | 'sw'): OtaPackageType => (alias === 'fw' ? 'FIRMWARE' : 'SOFTWARE');
    const conditions = (alias: 'fw' | 'sw', slot: { conditions: Condition[] }): Condition[] => slot.conditions.map((c) => ({ sql: c.sql.replace(/\{s\}/g, alias), params: c.params }));
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
    const row = this.db.prepare(`${sql} WHERE ${where.map((c) => c.sql).join(' AND ')}`).get(...where.flatMap((c) => c.params)) as { n: number };
    return row.n;
  }

  /** The rows of these devices that belong to the tenant (deleted or foreign ones are left out). */
  rows(tenantId: TenantId, ids: readonly string[]): DeviceRow[] {
    const out: DeviceRow[] = [];
    // SQLite's default limit on bound parameters is far above this, but keep statements small.
    for (let i = 0; i < ids.length; i += 500) {
      const part = ids.slice(i, i + 500);
      const rows = this.db.prepare(`${SELECT} ${FROM} WHERE d.tenant_id = ? AND d.id IN (${part.map(() => '?').join(',')})`).all(tenantId, ...part) as Row[];
      out.push(...rows.map(toRow));
    }
    return out;
  }

  row(tenantId: TenantId, id: string): DeviceRow | null {
    return this.rows(tenantId, [id])[0] ?? null;
  }

  /**
   * A device's update story from the telemetry history: states, errors, what it ran and what it
   * was sent, oldest first; the newest `limit` points per key.
   */
  async timeline(deviceId: DeviceId, types: readonly OtaPackageType[], limit: number, endTs: number): Promise<TimelineEvent[]> {
    const events: TimelineEvent[] = [];
    for (const type of types) {
      const p = keyPrefix(type);
      const keys = [`${p}_state`, `${p}_error`, `current_${p}_title`, `current_${p}_version`, `target_${p}_title`, `target_${p}_version`];
      const history = await this.telemetry.history(deviceId, keys, { startTs: 0, endTs, limit, order: 'DESC' });
      // Each state is an event of its own, even two in one millisecond (QUEUED and INITIATED can be).
      // The other keys join a state of their timestamp: a target the QUEUED it was written with, an
      // error the FAILED, versions the last state reported.
      const own: TimelineEvent[] = [];
      const at = new Map<number, TimelineEvent[]>();
      for (const point of [...(history[`${p}_state`] ?? [])].reverse()) {
        const state = str(point.value);
        if (!state) continue;
        const ev: TimelineEvent = { ts: point.ts, type, state };
        own.push(ev);
        at.set(point.ts, [...(at.get(point.ts) ?? []), ev]);
      }
      const joinFor = (ts: number, prefer: string | null): TimelineEvent => {
        const same = at.get(ts);
        if (!same) {
          const ev: TimelineEvent = { ts, type };
          own.push(ev);
          at.set(ts, [ev]);
          return ev;
        }
        return same.find((e) => e.state === prefer) ?? (same[same.length - 1] as TimelineEvent);
      };
      for (const key of keys.slice(1)) {
        for (const point of [...(history[key] ?? [])].reverse()) {
          const value = str(point.value);
          if (value === undefined || value === '') continue; // ThingsBoard's SDK sends `fw_error: ""` with every state
          const field = key.endsWith('_title') ? 'title' : 'version';
          if (key === `${p}_error`) joinFor(point.ts, 'FAILED').error = value;
          else if (key.startsWith('current_')) {
            const ev = joinFor(point.ts, null);
            ev.current = { ...ev.current, [field]: value };
          } else {
            const ev = joinFor(point.ts, 'QUEUED');
            ev.target = { ...ev.target, [field]: value };
          }
        }
      }
      events.push(...own);
    }
    // A stable sort: states of one millisecond keep the order they were written in.
    return events.sort((a, b) => a.ts - b.ts);
  }

  /** How many targeted devices are in each state, per type. */
  distribution(tenantId: TenantId): Record<OtaPackageType, StateCounts> {
    const out: Record<OtaPackageType, StateCounts> = { FIRMWARE: emptyCounts(), SOFTWARE: emptyCounts() };
    const rows = this.db
      .prepare('SELECT type, state, count(*) AS n FROM ota_states WHERE tenant_id = ? AND target_package_id IS NOT NULL GROUP BY type, state')
      .all(tenantId) as Array<{ type: OtaPackageType; state: string | null; n: number }>;
    for (const r of rows) {
      const counts = out[r.type];
      if (!counts) continue;
      const key = (COUNTED as readonly string[]).includes(r.state ?? '') ? (r.state as UpdateState) : 'OTHER';
      counts[key] += r.n;
    }
    return out;
  }
}
