import { atomically } from './atomically';
import type { Db } from './database';
import { InsertRows } from './multi-row';
import type { DeviceId, OtaPackageId, TenantId } from '../../ids';
import { ACTIVE_STATES } from '../../pipeline/ota-keys';
import type { OtaPackageType } from '../ota-packages';
import { toOtaState, type OtaStateRepository, type OtaStateRow, type OtaStateDbRow, type QueuedWrite, type StateWrite } from '../ota-states';

const list = (states: readonly string[]): string => states.map((s) => `'${s}'`).join(',');

/** The update states in SQLite (one row per device and type). */
export class SqliteOtaStateRepository implements OtaStateRepository {
  private readonly upsertState;
  private readonly upsertStates;
  private readonly upsertQueued;

  constructor(private readonly db: Db) {
    this.upsertState = db.prepare(
      `INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, error, current_title, current_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (device_id, type) DO UPDATE SET state = excluded.state, state_ts = excluded.state_ts, error = excluded.error,
         current_title = coalesce(excluded.current_title, current_title), current_version = coalesce(excluded.current_version, current_version)
       WHERE state_ts <= excluded.state_ts`,
    );
    // One upsert rather than an insert-if-missing and an update: half the statements on the notify path.
    this.upsertStates = new InsertRows(
      db,
      'INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, error)',
      'ON CONFLICT (device_id, type) DO UPDATE SET state = excluded.state, state_ts = excluded.state_ts, error = excluded.error WHERE state_ts <= excluded.state_ts',
      6,
    );
    // Every right-hand side reads the row as it was, as setTarget and setState would in turn.
    this.upsertQueued = new InsertRows(
      db,
      'INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, error, target_package_id, retries)',
      `ON CONFLICT (device_id, type) DO UPDATE SET
         retries = CASE WHEN target_package_id IS excluded.target_package_id THEN retries ELSE 0 END,
         target_package_id = excluded.target_package_id,
         state = CASE WHEN state_ts <= excluded.state_ts THEN excluded.state ELSE state END,
         error = CASE WHEN state_ts <= excluded.state_ts THEN NULL ELSE error END,
         state_ts = max(state_ts, excluded.state_ts)`,
      8,
    );
  }

  async get(deviceId: DeviceId, type: OtaPackageType): Promise<OtaStateRow | null> {
    const r = this.db.prepare('SELECT * FROM ota_states WHERE device_id = ? AND type = ?').get(deviceId, type) as OtaStateDbRow | undefined;
    return r ? toOtaState(r) : null;
  }

  private ensure(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType): void {
    this.db.prepare('INSERT OR IGNORE INTO ota_states (device_id, tenant_id, type) VALUES (?, ?, ?)').run(deviceId, tenantId, type);
  }

  async setState(
    deviceId: DeviceId,
    tenantId: TenantId,
    type: OtaPackageType,
    state: OtaStateRow['state'],
    ts: number,
    error: string | null,
    current?: { title: string | null; version: string | null },
  ): Promise<boolean> {
    return this.upsertState.run(deviceId, tenantId, type, state, ts, error, current?.title ?? null, current?.version ?? null).changes > 0;
  }

  async setStates(batch: readonly StateWrite[]): Promise<void> {
    const rows = batch.map((w) => [w.deviceId, w.tenantId, w.type, w.state, w.ts, w.error]);
    atomically(this.db, () => this.upsertStates.run(rows));
  }

  async setCurrent(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, title: string | null, version: string | null): Promise<void> {
    this.ensure(deviceId, tenantId, type);
    const sets: string[] = [];
    const args: unknown[] = [];
    if (title !== null) {
      sets.push('current_title = ?');
      args.push(title);
    }
    if (version !== null) {
      sets.push('current_version = ?');
      args.push(version);
    }
    if (sets.length) this.db.prepare(`UPDATE ota_states SET ${sets.join(', ')} WHERE device_id = ? AND type = ?`).run(...args, deviceId, type);
  }

  async setError(deviceId: DeviceId, type: OtaPackageType, error: string | null): Promise<void> {
    this.db.prepare('UPDATE ota_states SET error = ? WHERE device_id = ? AND type = ?').run(error, deviceId, type);
  }

  /** A new target resets the retry count; the same target keeps it. */
  async setTarget(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId | null): Promise<void> {
    this.ensure(deviceId, tenantId, type);
    this.db
      .prepare(
        `UPDATE ota_states SET retries = CASE WHEN target_package_id IS ? THEN retries ELSE 0 END, target_package_id = ?
         WHERE device_id = ? AND type = ?`,
      )
      .run(packageId, packageId, deviceId, type);
  }

  async setQueued(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId, ts: number): Promise<void> {
    return this.setQueuedAll([{ deviceId, tenantId, type, packageId, ts }]);
  }

  async setQueuedAll(batch: readonly QueuedWrite[]): Promise<void> {
    const rows = batch.map((q) => [q.deviceId, q.tenantId, q.type, 'QUEUED', q.ts, null, q.packageId, 0]);
    atomically(this.db, () => this.upsertQueued.run(rows));
  }

  /** An unassignment: the device is no longer targeted, so it leaves the metrics, timeouts and retries. */
  async clearTarget(deviceId: DeviceId, type: OtaPackageType): Promise<void> {
    this.db.prepare('UPDATE ota_states SET target_package_id = NULL, retries = 0 WHERE device_id = ? AND type = ?').run(deviceId, type);
  }

  async incrementRetries(deviceId: DeviceId, type: OtaPackageType): Promise<number> {
    this.db.prepare('UPDATE ota_states SET retries = retries + 1 WHERE device_id = ? AND type = ?').run(deviceId, type);
    return (await this.get(deviceId, type))?.retries ?? 0;
  }

  /** Devices told about an update (INITIATED..UPDATING) whose state has not moved since `before`. */
  async stuck(before: number, limit: number): Promise<OtaStateRow[]> {
    const rows = this.db
      .prepare(`SELECT * FROM ota_states WHERE state IN (${list(ACTIVE_STATES)}) AND state_ts < ? AND target_package_id IS NOT NULL ORDER BY state_ts LIMIT ?`)
      .all(before, limit) as OtaStateDbRow[];
    return rows.map(toOtaState);
  }
}
