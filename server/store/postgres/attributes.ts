import type { DeviceId } from '../../ids';
import type { AttributeMap, AttributeRepository, AttributeScope, AttributeValue } from '../attributes';
import type { Sql } from './pool';

/** Device attributes by scope, values kept as jsonb. Each call is one statement, so one round trip. */
export class PgAttributeRepository implements AttributeRepository {
  constructor(private readonly sql: Sql) {}

  async save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void> {
    const entries = Object.entries(values);
    if (entries.length === 0) return;
    await this.sql.query(
      `INSERT INTO attributes (device_id, scope, key, value, ts)
       SELECT $1, $2, k, v::jsonb, $5 FROM unnest($3::text[], $4::text[]) AS t(k, v)
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
      [deviceId, scope, entries.map(([k]) => k), entries.map(([, v]) => JSON.stringify(v)), ts],
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
