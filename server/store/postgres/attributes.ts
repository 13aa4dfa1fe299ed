import type { DeviceId } from '../../ids';
import type { AttributeDelete, AttributeMap, AttributeRepository, AttributeScope, AttributeValue, AttributeWrite } from '../attributes';
import { DistinctValues } from './distinct-values';
import type { Sql } from './pool';

/** Device attributes by scope, values kept as jsonb. Each call is one statement, so one round trip. */
export class PgAttributeRepository implements AttributeRepository {
  constructor(private readonly sql: Sql) {}

  async save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void> {
    return this.saveAll([{ deviceId, scope, values, ts }]);
  }

  /**
   * One statement for the batch; of two writes of one key, the later one is kept (as in order).
   * Each distinct (scope, key, value, ts) goes once and rows refer to it by number: a notified
   * batch's devices share their package's attributes (see DistinctValues).
   */
  async saveAll(batch: readonly AttributeWrite[]): Promise<void> {
    const values = new DistinctValues<{ s: AttributeScope; k: string; v: string; t: number }>();
    const rows = new Map<string, { deviceId: DeviceId; value: number }>();
    for (const { deviceId, scope, values: map, ts } of batch) {
      for (const [key, value] of Object.entries(map)) {
        const id = `${deviceId}/${scope}/${key}`;
        // Re-inserted so the map's order is the order of the last writes.
        rows.delete(id);
        rows.set(id, { deviceId, value: values.number({ s: scope, k: key, v: JSON.stringify(value), t: ts }) });
      }
    }
    if (rows.size === 0) return;
    await this.sql.query(
      `WITH v AS MATERIALIZED (
         SELECT n, s, k, v::jsonb AS v, t FROM ROWS FROM (json_to_recordset($1::json) AS (s text, k text, v text, t bigint)) WITH ORDINALITY AS v(s, k, v, t, n)
       )
       INSERT INTO attributes (device_id, scope, key, value, ts)
       SELECT r.d, v.s, v.k, v.v, v.t FROM unnest($2::uuid[], $3::int[]) AS r(d, i) JOIN v ON v.n = r.i
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
      [JSON.stringify(values.list), Array.from(rows.values(), (r) => r.deviceId), Array.from(rows.values(), (r) => r.value)],
    );
  }

  /** One statement: the row lock of the conflicting insert makes a racing second claim see the first's value. */
  async claim(deviceId: DeviceId, scope: AttributeScope, key: string, value: AttributeValue, ts: number): Promise<boolean> {
    const changed = await this.sql.query(
      `INSERT INTO attributes (device_id, scope, key, value, ts) VALUES ($1, $2, $3, $4::jsonb, $5)
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts WHERE attributes.value IS DISTINCT FROM excluded.value RETURNING 1`,
      [deviceId, scope, key, JSON.stringify(value), ts],
    );
    return changed.rowCount === 1;
  }

  async delete(deviceId: DeviceId, scope: AttributeScope, keys: readonly string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    const gone = new Set(
      (
        await this.sql.query<{ key: string }>('DELETE FROM attributes WHERE device_id = $1 AND scope = $2 AND key = ANY($3::text[]) RETURNING key', [deviceId, scope, [...keys]])
      ).rows.map((r) => r.key),
    );
    // In the order asked, each once: as the SQLite side answers.
    return keys.filter((k) => gone.delete(k));
  }

  /**
   * One statement per distinct (scope, keys) in the batch: a batch's devices mostly lose the same
   * keys (one package's absent ones), so usually one. `device_id = ANY AND key = ANY` is read
   * through the primary key or a scan of the table; joining an unnest of (device, scope, key)
   * triples instead built a hash of every attribute row in the table, 47 ms a batch at 10,000 devices.
   */
  async deleteAll(batch: readonly AttributeDelete[]): Promise<string[][]> {
    const groups = new Map<string, { scope: AttributeScope; keys: string[]; devices: Set<DeviceId> }>();
    for (const d of batch) {
      const keys = [...new Set(d.keys)].sort();
      if (keys.length === 0) continue;
      const id = JSON.stringify([d.scope, keys]);
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { scope: d.scope, keys, devices: new Set() }));
      g.devices.add(d.deviceId);
    }
    const gone = new Set<string>();
    for (const g of groups.values()) {
      const { rows } = await this.sql.query<{ device_id: string; key: string }>(
        'DELETE FROM attributes WHERE device_id = ANY($1::uuid[]) AND scope = $2 AND key = ANY($3::text[]) RETURNING device_id, key',
        [[...g.devices], g.scope, g.keys],
      );
      for (const r of rows) gone.add(`${r.device_id}/${g.scope}/${r.key}`);
    }
    // Each key to the first entry that asked for it, as `delete` one after the other would answer.
    return batch.map((d) => [...new Set(d.keys)].filter((k) => gone.delete(`${d.deviceId}/${d.scope}/${k}`)));
  }

  async get(deviceId: DeviceId, scope: AttributeScope, keys?: readonly string[]): Promise<AttributeMap> {
    if (keys !== undefined && keys.length === 0) return {};
    const rows = (
      keys === undefined
        ? await this.sql.query<{ key: string; value: AttributeValue }>('SELECT key, value FROM attributes WHERE device_id = $1 AND scope = $2 ORDER BY key', [deviceId, scope])
        : await this.sql.query<{ key: string; value: AttributeValue }>('SELECT key, value FROM attributes WHERE device_id = $1 AND scope = $2 AND key = ANY($3::text[])', [
            deviceId,
            scope,
            [...keys],
          ])
    ).rows;
    const out: AttributeMap = {};
    for (const r of rows) out[r.key] = r.value;
    return out;
  }
}
