import type { DeviceId } from '../../ids';
import { isHistoryKey, type DeviceTelemetry, type TelemetryEntry, type TelemetryPoint, type TelemetryRepository, type TelemetryValue } from '../telemetry';
import type { Sql } from './pool';
import { DistinctValues, type Rows } from './distinct-values';

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
   *
   * Each distinct (key, ts, value) goes once, rows refer to it by number: a fan-out's devices share
   * their five target_* values, and parsing a JSON document of every row (and each value into jsonb)
   * was two thirds of the statement's time (1,000 devices: 136 ms, of which 53 ms writing history).
   */
  async saveAll(batch: readonly DeviceTelemetry[]): Promise<void> {
    const values = new DistinctValues<{ k: string; t: number; v: string }>();
    const latest = new Map<string, { deviceId: DeviceId; ts: number; value: number }>();
    const history: Rows = { devices: [], values: [] };
    for (const { deviceId, entries } of batch) {
      for (const e of entries) {
        for (const [key, v] of Object.entries(e.values)) {
          const value = values.number({ k: key, t: e.ts, v: JSON.stringify(v) });
          const id = `${deviceId}/${key}`;
          const seen = latest.get(id);
          if (!seen || e.ts >= seen.ts) latest.set(id, { deviceId, ts: e.ts, value });
          if (isHistoryKey(key)) {
            history.devices.push(deviceId);
            history.values.push(value);
          }
        }
      }
    }
    if (latest.size === 0) return;
    await this.sql.query(
      `WITH v AS MATERIALIZED (
         SELECT n, k, t, v::jsonb AS v FROM ROWS FROM (json_to_recordset($1::json) AS (k text, t bigint, v text)) WITH ORDINALITY AS v(k, t, v, n)
       ), history AS (
         INSERT INTO telemetry_history (device_id, key, ts, value)
         SELECT h.d, v.k, v.t, v.v FROM unnest($4::uuid[], $5::int[]) WITH ORDINALITY AS h(d, i, n) JOIN v ON v.n = h.i ORDER BY h.n
       )
       INSERT INTO telemetry_latest (device_id, key, ts, value)
       SELECT l.d, v.k, v.t, v.v FROM unnest($2::uuid[], $3::int[]) AS l(d, i) JOIN v ON v.n = l.i
       ON CONFLICT (device_id, key) DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= telemetry_latest.ts`,
      [JSON.stringify(values.list), Array.from(latest.values(), (r) => r.deviceId), Array.from(latest.values(), (r) => r.value), history.devices, history.values],
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
