import type { DeviceId } from '../../ids';
import { isHistoryKey, type DeviceTelemetry, type TelemetryEntry, type TelemetryPoint, type TelemetryRepository, type TelemetryValue } from '../telemetry';
import type { Sql } from './pool';

/** Time series in jsonb: the latest value of every key, and the history of the OTA keys. */
export class PgTelemetryRepository implements TelemetryRepository {
  constructor(private readonly sql: Sql) {}

  async save(deviceId: DeviceId, entries: readonly TelemetryEntry[]): Promise<void> {
    return this.saveAll([{ deviceId, entries }]);
  }

  /**
   * One statement (so one commit, one round trip) for the whole batch: the history rows in the
   * order reported, and per device and key the latest value, which only moves forward in time; among
   * reports of the same ts the last one wins, as when the SQLite side applies them one after the other.
   */
  async saveAll(batch: readonly DeviceTelemetry[]): Promise<void> {
    const latest = new Map<string, { deviceId: DeviceId; key: string; ts: number; json: string }>();
    const history: Array<{ deviceId: DeviceId; key: string; ts: number; json: string }> = [];
    for (const { deviceId, entries } of batch) {
      for (const e of entries) {
        for (const [key, value] of Object.entries(e.values)) {
          const json = JSON.stringify(value);
          const id = `${deviceId}/${key}`;
          const seen = latest.get(id);
          if (!seen || e.ts >= seen.ts) latest.set(id, { deviceId, key, ts: e.ts, json });
          if (isHistoryKey(key)) history.push({ deviceId, key, ts: e.ts, json });
        }
      }
    }
    if (latest.size === 0) return;
    // Each set as one JSON document: JSON.stringify is native, where pg escapes array elements one by one in JS.
    const doc = (rows: Iterable<{ deviceId: DeviceId; key: string; ts: number; json: string }>): string =>
      JSON.stringify(Array.from(rows, (r) => ({ d: r.deviceId, k: r.key, t: r.ts, v: r.json })));
    await this.sql.query(
      `WITH history AS (
         INSERT INTO telemetry_history (device_id, key, ts, value)
         SELECT d, k, t, v::jsonb FROM ROWS FROM (json_to_recordset($2::json) AS (d uuid, k text, t bigint, v text)) WITH ORDINALITY AS h(d, k, t, v, n) ORDER BY n
       )
       INSERT INTO telemetry_latest (device_id, key, ts, value)
       SELECT d, k, t, v::jsonb FROM json_to_recordset($1::json) AS l(d uuid, k text, t bigint, v text)
       ON CONFLICT (device_id, key) DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= telemetry_latest.ts`,
      [doc(latest.values()), doc(history)],
    );
  }

  async latest(deviceId: DeviceId, keys?: readonly string[]): Promise<Record<string, TelemetryPoint>> {
    if (keys !== undefined && keys.length === 0) return {};
    const rows = (
      keys === undefined
        ? await this.sql.query<{ key: string; ts: number; value: TelemetryValue }>('SELECT key, ts, value FROM telemetry_latest WHERE device_id = $1', [deviceId])
        : await this.sql.query<{ key: string; ts: number; value: TelemetryValue }>('SELECT key, ts, value FROM telemetry_latest WHERE device_id = $1 AND key = ANY($2::text[])', [
            deviceId,
            [...keys],
          ])
    ).rows;
    const out: Record<string, TelemetryPoint> = {};
    for (const r of rows) out[r.key] = { ts: r.ts, value: r.value };
    return out;
  }

  async history(
    deviceId: DeviceId,
    keys: readonly string[],
    range: { startTs: number; endTs: number; limit: number; order: 'ASC' | 'DESC' },
  ): Promise<Record<string, TelemetryPoint[]>> {
    const order = range.order === 'ASC' ? 'ASC' : 'DESC';
    const out: Record<string, TelemetryPoint[]> = {};
    for (const key of keys) {
      const rows = (
        await this.sql.query<{ ts: number; value: TelemetryValue }>(
          `SELECT ts, value FROM telemetry_history WHERE device_id = $1 AND key = $2 AND ts >= $3 AND ts <= $4
           ORDER BY ts ${order}, seq ${order} LIMIT $5`,
          [deviceId, key, range.startTs, range.endTs, range.limit],
        )
      ).rows;
      if (rows.length) out[key] = rows.map((r) => ({ ts: r.ts, value: r.value }));
    }
    return out;
  }
}
