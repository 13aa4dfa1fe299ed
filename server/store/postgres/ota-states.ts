import { isUuid, type DeviceId, type OtaPackageId, type TenantId } from '../../ids';
import { ACTIVE_STATES } from '../../pipeline/ota-keys';
import type { OtaPackageType } from '../ota-packages';
import { inRounds } from '../rounds';
import { toOtaState, type OtaStateRepository, type OtaStateRow, type OtaStateDbRow, type QueuedWrite, type StateWrite } from '../ota-states';
import type { Sql } from './pool';

const list = (states: readonly string[]): string => states.map((s) => `'${s}'`).join(',');

/**
 * The update states in PostgreSQL (one row per device and type). Each write is one upsert, so two
 * instances writing the same device's row never lose one another's columns.
 */
export class PgOtaStateRepository implements OtaStateRepository {
  constructor(private readonly sql: Sql) {}

  async get(deviceId: DeviceId, type: OtaPackageType): Promise<OtaStateRow | null> {
    if (!isUuid(deviceId)) return null;
    const { rows } = await this.sql.query<OtaStateDbRow>('SELECT * FROM ota_states WHERE device_id = $1 AND type = $2', [deviceId, type]);
    return rows[0] ? toOtaState(rows[0]) : null;
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
    const { rowCount } = await this.sql.query(
      `INSERT INTO ota_states AS s (device_id, tenant_id, type, state, state_ts, error, current_title, current_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (device_id, type) DO UPDATE SET state = excluded.state, state_ts = excluded.state_ts, error = excluded.error,
         current_title = coalesce(excluded.current_title, s.current_title), current_version = coalesce(excluded.current_version, s.current_version)
       WHERE s.state_ts <= excluded.state_ts`,
      [deviceId, tenantId, type, state, ts, error, current?.title ?? null, current?.version ?? null],
    );
    return (rowCount ?? 0) > 0;
  }

  /** One statement per round (a device and type at most once in each), in order. */
  async setStates(batch: readonly StateWrite[]): Promise<void> {
    for (const round of inRounds(batch, (w) => `${w.deviceId}/${w.type}`)) {
      await this.sql.query(
        `INSERT INTO ota_states AS s (device_id, tenant_id, type, state, state_ts, error)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[])
         ON CONFLICT (device_id, type) DO UPDATE SET state = excluded.state, state_ts = excluded.state_ts, error = excluded.error
         WHERE s.state_ts <= excluded.state_ts`,
        [round.map((w) => w.deviceId), round.map((w) => w.tenantId), round.map((w) => w.type), round.map((w) => w.state), round.map((w) => w.ts), round.map((w) => w.error)],
      );
    }
  }

  /** A null title or version leaves the recorded one. */
  async setCurrent(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, title: string | null, version: string | null): Promise<void> {
    await this.sql.query(
      `INSERT INTO ota_states AS s (device_id, tenant_id, type, current_title, current_version) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (device_id, type) DO UPDATE SET
         current_title = coalesce(excluded.current_title, s.current_title), current_version = coalesce(excluded.current_version, s.current_version)`,
      [deviceId, tenantId, type, title, version],
    );
  }

  async setError(deviceId: DeviceId, type: OtaPackageType, error: string | null): Promise<void> {
    await this.sql.query('UPDATE ota_states SET error = $1 WHERE device_id = $2 AND type = $3', [error, deviceId, type]);
  }

  async setTarget(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId | null): Promise<void> {
    await this.sql.query(
      `INSERT INTO ota_states AS s (device_id, tenant_id, type, target_package_id) VALUES ($1, $2, $3, $4)
       ON CONFLICT (device_id, type) DO UPDATE SET
         retries = CASE WHEN s.target_package_id IS NOT DISTINCT FROM excluded.target_package_id THEN s.retries ELSE 0 END,
         target_package_id = excluded.target_package_id`,
      [deviceId, tenantId, type, packageId],
    );
  }

  async setQueued(deviceId: DeviceId, tenantId: TenantId, type: OtaPackageType, packageId: OtaPackageId, ts: number): Promise<void> {
    return this.setQueuedAll([{ deviceId, tenantId, type, packageId, ts }]);
  }

  /** One statement per round (a device and type at most once in each), in order. */
  async setQueuedAll(batch: readonly QueuedWrite[]): Promise<void> {
    for (const round of inRounds(batch, (q) => `${q.deviceId}/${q.type}`)) {
      // Every right-hand side reads the row as it was (s), as setTarget and setState would in turn.
      await this.sql.query(
        `INSERT INTO ota_states AS s (device_id, tenant_id, type, state, state_ts, error, target_package_id, retries)
         SELECT d, t, ty, 'QUEUED', ts, NULL, p, 0 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::uuid[]) AS q(d, t, ty, ts, p)
         ON CONFLICT (device_id, type) DO UPDATE SET
           retries = CASE WHEN s.target_package_id IS NOT DISTINCT FROM excluded.target_package_id THEN s.retries ELSE 0 END,
           target_package_id = excluded.target_package_id,
           state = CASE WHEN s.state_ts <= excluded.state_ts THEN 'QUEUED' ELSE s.state END,
           error = CASE WHEN s.state_ts <= excluded.state_ts THEN NULL ELSE s.error END,
           state_ts = greatest(s.state_ts, excluded.state_ts)`,
        [round.map((q) => q.deviceId), round.map((q) => q.tenantId), round.map((q) => q.type), round.map((q) => q.ts), round.map((q) => q.packageId)],
      );
    }
  }

  async clearTarget(deviceId: DeviceId, type: OtaPackageType): Promise<void> {
    await this.sql.query('UPDATE ota_states SET target_package_id = NULL, retries = 0 WHERE device_id = $1 AND type = $2', [deviceId, type]);
  }

  async incrementRetries(deviceId: DeviceId, type: OtaPackageType): Promise<number> {
    const { rows } = await this.sql.query<{ retries: number }>('UPDATE ota_states SET retries = retries + 1 WHERE device_id = $1 AND type = $2 RETURNING retries', [
      deviceId,
      type,
    ]);
    return rows[0]?.retries ?? 0;
  }

  async stuck(before: number, limit: number): Promise<OtaStateRow[]> {
    const { rows } = await this.sql.query<OtaStateDbRow>(
      `SELECT * FROM ota_states WHERE state IN (${list(ACTIVE_STATES)}) AND state_ts < $1 AND target_package_id IS NOT NULL ORDER BY state_ts, device_id LIMIT $2`,
      [before, limit],
    );
    return rows.map(toOtaState);
  }
}
