import { atomically } from './sqlite/atomically';
import type { Db } from './sqlite/database';
import { InValues, mapAsJson, SharedMapGroups } from './sqlite/multi-row';
import type { DeviceId } from '../ids';

export type AttributeScope = 'CLIENT' | 'SHARED' | 'SERVER';
export type AttributeValue = string | number | boolean | Record<string, unknown> | unknown[] | null;
export type AttributeMap = Record<string, AttributeValue>;

export interface AttributeWrite {
  deviceId: DeviceId;
  scope: AttributeScope;
  values: AttributeMap;
  ts: number;
}
export interface AttributeDelete {
  deviceId: DeviceId;
  scope: AttributeScope;
  keys: readonly string[];
}

/** Device attributes by scope: client attributes the device reports, shared ones the server pushes. */
export interface AttributeRepository {
  save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void>;
  /** `save` for several devices at once, in order (a batch of notifications). */
  saveAll(batch: readonly AttributeWrite[]): Promise<void>;
  /** Deletes the keys; answers the ones that existed. */
  delete(deviceId: DeviceId, scope: AttributeScope, keys: readonly string[]): Promise<string[]>;
  /**
   * Sets one key to `value` unless it holds that value already, in one statement; answers whether
   * it changed. Of callers racing to set the same value exactly one sees true: a claim (the
   * pre-provisioned device handed out once).
   */
  claim(deviceId: DeviceId, scope: AttributeScope, key: string, value: AttributeValue, ts: number): Promise<boolean>;
  /** `delete` for several devices at once; answers, per entry of `batch`, the keys that existed. */
  deleteAll(batch: readonly AttributeDelete[]): Promise<string[][]>;
  /** All keys of the scope when `keys` is undefined; only those present otherwise. */
  get(deviceId: DeviceId, scope: AttributeScope, keys?: readonly string[]): Promise<AttributeMap>;
}

export class SqliteAttributeRepository implements AttributeRepository {
  private readonly upsert;
  private readonly deleteKeys;
  private readonly deleteKeysOfDevices = new Map<number, InValues>();

  constructor(private readonly db: Db) {
    // A group of devices (JSON array) times a map (JSON object of key to value text), in device order.
    this.upsert = db.prepare(
      `INSERT INTO attributes (device_id, scope, key, value, ts)
       SELECT d.value, ?, kv.key, kv.value, ? FROM json_each(?) d CROSS JOIN json_each(?) kv WHERE true
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
    );
    this.deleteKeys = new InValues(db, 'DELETE FROM attributes WHERE device_id = ? AND scope = ? AND key IN (', ') RETURNING key');
  }

  async save(deviceId: DeviceId, scope: AttributeScope, values: AttributeMap, ts: number): Promise<void> {
    return this.saveAll([{ deviceId, scope, values, ts }]);
  }

  async saveAll(batch: readonly AttributeWrite[]): Promise<void> {
    // A notified batch shares one attribute map per package: one statement per map, scope and time.
    const groups = new SharedMapGroups<AttributeWrite>();
    for (const w of batch) groups.add(w.deviceId, w.values, `${w.scope}\n${w.ts}`, w);
    atomically(this.db, () => {
      for (const { write, devices } of groups.groups()) this.upsert.run(write.scope, write.ts, devices, mapAsJson(write.values));
    });
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

  async deleteAll(batch: readonly AttributeDelete[]): Promise<string[][]> {
    // A batch's devices mostly share their keys (a notification's stale fw_* keys): one statement
    // per chunk of devices with the same scope and keys, not one per device.
    const groups = new Map<string, { scope: AttributeScope; keys: string[]; devices: DeviceId[] }>();
    for (const { deviceId, scope, keys } of batch) {
      const unique = [...new Set(keys)];
      if (unique.length === 0) continue;
      const id = `${scope}\n${unique.join('\n')}`;
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { scope, keys: unique, devices: [] }));
      g.devices.push(deviceId);
    }
    const gone = new Set<string>();
    atomically(this.db, () => {
      for (const { scope, keys, devices } of groups.values()) {
        for (const r of this.deleteForDevices(keys.length).run<{ device_id: string; key: string }>([scope, ...keys], [...new Set(devices)]))
          gone.add(`${r.device_id}/${scope}/${r.key}`);
      }
    });
    // Each key to the first entry that asked for it, as `delete` one after the other would answer.
    return batch.map(({ deviceId, scope, keys }) => [...new Set(keys)].filter((k) => gone.delete(`${deviceId}/${scope}/${k}`)));
  }

  /** `DELETE ... RETURNING` of `keyCount` keys over a list of devices, kept per key count. */
  private deleteForDevices(keyCount: number): InValues {
    let stmt = this.deleteKeysOfDevices.get(keyCount);
    if (!stmt) {
      const keys = Array.from({ length: keyCount }, () => '?').join(', ');
      this.deleteKeysOfDevices.set(
        keyCount,
        (stmt = new InValues(this.db, `DELETE FROM attributes WHERE scope = ? AND key IN (${keys}) AND device_id IN (`, ') RETURNING device_id, key')),
      );
    }
    return stmt;
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
