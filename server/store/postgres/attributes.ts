import type { DeviceId } from '../../ids';
import type { AttributeDelete, AttributeMap, AttributeRepository, AttributeScope, AttributeValue, AttributeWrite } from '../attributes';
import type { Sql } from './pool';

/** Device attributes by scope, values kept as jsonb. Each call is one statement, so one round trip. */
export class PgAttributeRepository implements AttributeRepository {
  constructor(private readonly sql: Sql) {}

  async save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void> {
    return this.saveAll([{ deviceId, scope, values, ts }]);
  }

  /** One statement for the batch; of two writes of one key, the later one is kept (as in order). */
  async saveAll(batch: readonly AttributeWrite[]): Promise<void> {
    const rows = new Map<string, { deviceId: DeviceId; scope: AttributeScope; key: string; json: string; ts: number }>();
    for (const { deviceId, scope, values, ts } of batch) {
      for (const [key, value] of Object.entries(values)) {
        const id = `${deviceId}/${scope}/${key}`;
        // Re-inserted so the map's order is the order of the last writes.
        rows.delete(id);
        rows.set(id, { deviceId, scope, key, json: JSON.stringify(value), ts });
      }
    }
    if (rows.size === 0) return;
    const all = [...rows.values()];
    await this.sql.query(
      `INSERT INTO attributes (device_id, scope, key, value, ts)
       SELECT d, s, k, v::jsonb, t FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS r(d, s, k, v, t)
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
      [all.map((r) => r.deviceId), all.map((r) => r.scope), all.map((r) => r.key), all.map((r) => r.json), all.map((r) => r.ts)],
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

  async deleteAll(batch: readonly AttributeDelete[]): Promise<string[][]> {
    const devices: DeviceId[] = [];
    const scopes: AttributeScope[] = [];
    const keys: string[] = [];
    for (const d of batch) {
      for (const k of new Set(d.keys)) {
        devices.push(d.deviceId);
        scopes.push(d.scope);
        keys.push(k);
      }
    }
    if (keys.length === 0) return batch.map(() => []);
    const { rows } = await this.sql.query<{ device_id: string; scope: string; key: string }>(
      `DELETE FROM attributes a USING unnest($1::uuid[], $2::text[], $3::text[]) AS d(device_id, scope, key)
       WHERE a.device_id = d.device_id AND a.scope = d.scope AND a.key = d.key
       RETURNING a.device_id, a.scope, a.key`,
      [devices, scopes, keys],
    );
    const gone = new Set(rows.map((r) => `${r.device_id}/${r.scope}/${r.key}`));
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
