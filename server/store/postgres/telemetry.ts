import type { DeviceId } from '../../ids';
import { isHistoryKey, type TelemetryEntry, type TelemetryPoint, type TelemetryRepository, type TelemetryValue } from '../telemetry';
import type { Sql } from './pool';

/** Time series in jsonb: the latest value of every key, and the history of the OTA keys. */
export class PgTelemetryRepository implements TelemetryRepository {
  constructor(private readonly sql: Sql) {}

  /**
   * One statement (so one commit): the history rows in the order reported, and per key the latest
   * value, which only moves forward in time; among reports of the same ts the last one wins, as
   * when the SQLite side applies them one after the other.
   */
  async save(deviceId: DeviceId, entries: readonly TelemetryEntry[]): Promise<void> {
    const latest = new Map<string, { ts: number; json: string }>();
    const history: Array<{ key: string; ts: number; json: string }> = [];
    for (const e of entries) {
      for (const [key, value] of Object.entries(e.values)) {
        const json = JSON.stringify(value);
        const seen = latest.get(key);
        if (!seen || e.ts >= seen.ts) latest.set(key, { ts: e.ts, json });
        if (isHistoryKey(key)) history.push({ key, ts: e.ts, json });
      }
    }
    if (latest.size === 0) return;
    await this.sql.query(
      `WITH history AS (
         INSERT INTO telemetry_history (device_id, key, ts, value)
         SELECT $1, k, t, v::jsonb FROM unnest($5::text[], $6::bigint[], $7::text[]) WITH ORDINALITY AS h(k, t, v, n) ORDER BY n
       )
       INSERT INTO telemetry_latest (device_id, key, ts, value)
       SELECT $1, k, t, v::jsonb FROM unnest($2::text[], $3::bigint[], $4::text[]) AS l(k, t, v)
       ON CONFLICT (device_id, key) DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= telemetry_latest.ts`,
      [
        deviceId,
        [...latest.keys()],
        [...latest.values()].map((l) => l.ts),
        [...latest.values()].map((l) => l.json),
        history.map((h) => h.key),
        history.map((h) => h.ts),
        history.map((h) => h.json),
      ],
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
