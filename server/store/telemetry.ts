import { atomically } from './sqlite/atomically';
import type { Db } from './sqlite/database';
import { mapAsJson, SharedMapGroups } from './sqlite/multi-row';
import type { DeviceId } from '../ids';

export type TelemetryValue = string | number | boolean | Record<string, unknown> | unknown[] | null;
export interface TelemetryEntry {
  ts: number;
  values: Record<string, TelemetryValue>;
}
export interface TelemetryPoint {
  ts: number;
  value: TelemetryValue;
}

/** One device's entries, for `saveAll`. */
export interface DeviceTelemetry {
  deviceId: DeviceId;
  entries: readonly TelemetryEntry[];
}

/** Keys whose history is kept: the OTA states, targets, current versions and errors. */
export const isHistoryKey = (key: string): boolean => /^(fw|sw)_(state|error)$|^(target|current)_(fw|sw)_/.test(key);

/**
 * Time series: the latest value of every key, and the history of the OTA keys (what the dashboard
 * timeline and ThingsBoard's telemetry API read).
 */
export interface TelemetryRepository {
  /** Saves entries; the latest value only moves forward in time (a late report never overwrites a newer one). */
  save(deviceId: DeviceId, entries: readonly TelemetryEntry[]): Promise<void>;
  /** `save` for several devices in one statement per table, in order (a batch of queued or notified devices). */
  saveAll(batch: readonly DeviceTelemetry[]): Promise<void>;
  latest(deviceId: DeviceId, keys?: readonly string[]): Promise<Record<string, TelemetryPoint>>;
  history(deviceId: DeviceId, keys: readonly string[], range: { startTs: number; endTs: number; limit: number; order: 'ASC' | 'DESC' }): Promise<Record<string, TelemetryPoint[]>>;
}

/**
 * Parses what ThingsBoard devices send as telemetry: a flat object, `{ts, values}`, or an array of
 * either (reference §3.2). Undefined when the shape is none of those.
 */
export function parseTelemetry(body: unknown, now: number): TelemetryEntry[] | undefined {
  const items = Array.isArray(body) ? body : [body];
  const out: TelemetryEntry[] = [];
  for (const item of items) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return undefined;
    const rec = item as Record<string, unknown>;
    if ('ts' in rec && 'values' in rec) {
      if (typeof rec.ts !== 'number' || !Number.isFinite(rec.ts) || typeof rec.values !== 'object' || rec.values === null || Array.isArray(rec.values)) return undefined;
      out.push({ ts: rec.ts, values: rec.values as Record<string, TelemetryValue> });
    } else {
      out.push({ ts: now, values: rec as Record<string, TelemetryValue> });
    }
  }
  return out;
}

export class SqliteTelemetryRepository implements TelemetryRepository {
  private readonly upsertLatest;
  private readonly insertHistory;

  constructor(private readonly db: Db) {
    // A group of devices (JSON array) times a map (JSON object of key to value text), in device order.
    this.upsertLatest = db.prepare(
      `INSERT INTO telemetry_latest (device_id, key, ts, value)
       SELECT d.value, kv.key, ?, kv.value FROM json_each(?) d CROSS JOIN json_each(?) kv WHERE true
       ON CONFLICT (device_id, key) DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= telemetry_latest.ts`,
    );
    this.insertHistory = db.prepare('INSERT INTO telemetry_history (device_id, key, ts, value) SELECT d.value, kv.key, ?, kv.value FROM json_each(?) d CROSS JOIN json_each(?) kv');
  }

  async save(deviceId: DeviceId, entries: readonly TelemetryEntry[]): Promise<void> {
    return this.saveAll([{ deviceId, entries }]);
  }

  async saveAll(batch: readonly DeviceTelemetry[]): Promise<void> {
    // A queued or notified batch shares its entries' values (one object per package and time): one statement per group.
    const groups = new SharedMapGroups<TelemetryEntry>();
    for (const { deviceId, entries } of batch) for (const e of entries) groups.add(deviceId, e.values, e.ts, e);
    atomically(this.db, () => {
      for (const { write, devices } of groups.groups()) {
        this.upsertLatest.run(write.ts, devices, mapAsJson(write.values));
        const history = mapAsJson(write.values, isHistoryKey);
        if (history !== '{}') this.insertHistory.run(write.ts, devices, history);
      }
    });
  }

  async latest(deviceId: DeviceId, keys?: readonly string[]): Promise<Record<string, TelemetryPoint>> {
    const rows = (
      keys === undefined
        ? this.db.prepare('SELECT key, ts, value FROM telemetry_latest WHERE device_id = ?').all(deviceId)
        : keys.length === 0
          ? []
          : this.db.prepare(`SELECT key, ts, value FROM telemetry_latest WHERE device_id = ? AND key IN (${keys.map(() => '?').join(',')})`).all(deviceId, ...keys)
    ) as Array<{ key: string; ts: number; value: string }>;
    const out: Record<string, TelemetryPoint> = {};
    for (const r of rows) out[r.key] = { ts: r.ts, value: JSON.parse(r.value) as TelemetryValue };
    return out;
  }

  async history(
    deviceId: DeviceId,
    keys: readonly string[],
    range: { startTs: number; endTs: number; limit: number; order: 'ASC' | 'DESC' },
  ): Promise<Record<string, TelemetryPoint[]>> {
    const stmt = this.db.prepare(
      `SELECT ts, value FROM telemetry_history WHERE device_id = ? AND key = ? AND ts >= ? AND ts <= ?
       ORDER BY ts ${range.order === 'ASC' ? 'ASC' : 'DESC'}, rowid ${range.order === 'ASC' ? 'ASC' : 'DESC'} LIMIT ?`,
    );
    const out: Record<string, TelemetryPoint[]> = {};
    for (const key of keys) {
      const rows = stmt.all(deviceId, key, range.startTs, range.endTs, range.limit) as Array<{ ts: number; value: string }>;
      if (rows.length) out[key] = rows.map((r) => ({ ts: r.ts, value: JSON.parse(r.value) as TelemetryValue }));
    }
    return out;
  }
}
