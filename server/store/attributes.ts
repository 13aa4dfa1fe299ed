import { atomically } from './sqlite/atomically';
import type { Db } from './sqlite/database';
import { InsertRows, InValues } from './sqlite/multi-row';
import type { DeviceId } from '../ids';

export type AttributeScope = 'CLIENT' | 'SHARED' | 'SERVER';
export type AttributeValue = string | number | boolean | Record<string, unknown> | unknown[] | null;
export type AttributeMap = Record<string, AttributeValue>;

/** Device attributes by scope: client attributes the device reports, shared ones the server pushes. */
export interface AttributeRepository {
  save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void>;
  /** Deletes the keys; answers the ones that existed. */
  delete(deviceId: DeviceId, scope: AttributeScope, keys: readonly string[]): Promise<string[]>;
  /**
   * Sets one key to `value` unless it holds that value already, in one statement; answers whether
   * it changed. Of callers racing to set the same value exactly one sees true: a claim (the
   * pre-provisioned device handed out once).
   */
  claim(deviceId: DeviceId, scope: AttributeScope, key: string, value: AttributeValue, ts: number): Promise<boolean>;
  /** All keys of the scope when `keys` is undefined; only those present otherwise. */
  get(deviceId: DeviceId, scope: AttributeScope, keys?: readonly string[]): Promise<AttributeMap>;
}

export class SqliteAttributeRepository implements AttributeRepository {
  private readonly upsert;
  private readonly deleteKeys;

  constructor(private readonly db: Db) {
    this.upsert = new InsertRows(
      db,
      'INSERT INTO attributes (device_id, scope, key, value, ts)',
      'ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts',
      5,
    );
    this.deleteKeys = new InValues(db, 'DELETE FROM attributes WHERE device_id = ? AND scope = ? AND key IN (', ') RETURNING key');
  }

  async save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void> {
    const rows = Object.entries(values).map(([key, value]) => [deviceId, scope, key, JSON.stringify(value), ts]);
    atomically(this.db, () => this.upsert.run(rows));
  }

  async claim(deviceId: DeviceId, scope: AttributeScope, key: string, value: AttributeValue, ts: number): Promise<boolean> {
    const changed = this.db
      .prepare(
        `INSERT INTO attributes (device_id, scope, key, value, ts) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts WHERE attributes.value IS NOT excluded.value RETURNING 1`,
      )
      .all(deviceId, scope, key, JSON.stringify(value), ts);
    return changed.length === 1;
  }

  async delete(deviceId: DeviceId, scope: AttributeScope, keys: readonly string[]): Promise<string[]> {
    const unique = [...new Set(keys)];
    const gone = new Set(atomically(this.db, () => this.deleteKeys.run<{ key: string }>([deviceId, scope], unique)).map((r) => r.key));
    return unique.filter((k) => gone.has(k));
  }

  async get(deviceId: DeviceId, scope: AttributeScope, keys?: readonly string[]): Promise<AttributeMap> {
    const rows = (
      keys === undefined
        ? this.db.prepare('SELECT key, value FROM attributes WHERE device_id = ? AND scope = ? ORDER BY key').all(deviceId, scope)
        : keys.length === 0
          ? []
          : this.db.prepare(`SELECT key, value FROM attributes WHERE device_id = ? AND scope = ? AND key IN (${keys.map(() => '?').join(',')})`).all(deviceId, scope, ...keys)
    ) as Array<{ key: string; value: string }>;
    const out: AttributeMap = {};
    for (const r of rows) out[r.key] = JSON.parse(r.value) as AttributeValue;
    return out;
  }
}
