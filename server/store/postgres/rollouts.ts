import { isUuid, type TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import {
  ACTIVE_DEVICE_COUNTS_SELECT,
  activeDeviceCountFromRow,
  type ActiveDeviceCountRow,
  type RolloutDeviceCount,
  ROLLOUT_DEVICES_SELECT,
  rolloutDeviceFromRow,
  rolloutFromRow,
  type Rollout,
  type RolloutCount,
  type RolloutDevice,
  type RolloutDeviceRow,
  type RolloutDeviceView,
  type RolloutId,
  type RolloutRepository,
  type RolloutRow,
  type RolloutSpec,
  type WaveProgress,
  rolloutInsertValues,
} from '../rollouts';
import type { PageData, PageLink } from '../sqlite/database';
import { queryPage } from './page';
import type { Sql } from './pool';

type Row = RolloutRow<unknown> & Record<string, unknown>;
// jsonb arrives parsed.
const toRollout = (r: Row): Rollout => rolloutFromRow(r, r.spec as RolloutSpec, r.waves as WaveProgress[]);
const DEVICES_SELECT = ROLLOUT_DEVICES_SELECT.replaceAll('$rollout', '$1').replaceAll('$type', '$2');

export class PgRolloutRepository implements RolloutRepository {
  constructor(private readonly sql: Sql) {}

  async insert(r: Rollout): Promise<void> {
    await this.sql.query(
      `INSERT INTO rollouts (id, tenant_id, name, package_id, type, spec, state, reason, current_wave, waves, created_time, started_time, finished_time, version)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      rolloutInsertValues(r),
    );
  }

  async update(r: Rollout): Promise<boolean> {
    const { rowCount } = await this.sql.query(
      `UPDATE rollouts SET name = $1, state = $2, reason = $3, current_wave = $4, waves = $5, started_time = $6, finished_time = $7, version = $8,
         lease_owner = CASE WHEN $2 = 'RUNNING' THEN lease_owner END, lease_until = CASE WHEN $2 = 'RUNNING' THEN lease_until END
       WHERE id = $9 AND tenant_id = $10 AND version = $11`,
      [r.name, r.state, r.reason, r.currentWave, JSON.stringify(r.waves), r.startedTime, r.finishedTime, r.version, r.id, r.tenantId, r.version - 1],
    );
    return rowCount === 1;
  }

  async findById(tenantId: TenantId, id: RolloutId): Promise<Rollout | null> {
    if (!isUuid(id)) return null;
    const r = (await this.sql.query<Row>('SELECT * FROM rollouts WHERE id = $1 AND tenant_id = $2', [id, tenantId])).rows[0];
    return r ? toRollout(r) : null;
  }

  async page(tenantId: TenantId, link: PageLink): Promise<PageData<Rollout>> {
    return queryPage<Rollout, Row>(this.sql, {
      from: 'FROM rollouts WHERE tenant_id = $1',
      params: [tenantId],
      searchColumn: 'name',
      sortColumns: { createdTime: 'created_time', name: 'lower(name)', state: 'state' },
      link,
      map: toRollout,
    });
  }

  /** As the notify queue's claim: rows another instance is claiming right now are skipped, not waited for. */
  async claim(owner: string, now: number, leaseMs: number, limit: number): Promise<Rollout[]> {
    const { rows } = await this.sql.query<Row>(
      `UPDATE rollouts r SET lease_owner = $1, lease_until = $2
       FROM (SELECT id FROM rollouts WHERE state = 'RUNNING' AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $3)
             ORDER BY created_time LIMIT $4 FOR UPDATE SKIP LOCKED) c
       WHERE r.id = c.id
       RETURNING r.*`,
      [owner, now + leaseMs, now, limit],
    );
    return rows.map(toRollout);
  }

  async release(owner: string): Promise<void> {
    await this.sql.query('UPDATE rollouts SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1', [owner]);
  }

  async putDevices(devices: readonly RolloutDevice[]): Promise<void> {
    if (devices.length === 0) return;
    // A device twice in the batch ends as one row after the other would leave it (SQLite's
    // multi-row upsert does so), where ON CONFLICT DO UPDATE refuses to touch a row twice: its last
    // row's wave, status and previous package, at its first row's position (an update keeps it).
    await this.sql.query(
      `INSERT INTO rollout_devices (rollout_id, device_id, wave, position, status, previous_package_id)
       SELECT DISTINCT ON (r, d) r, d, w, first_value(p) OVER (PARTITION BY r, d ORDER BY n), s, pp
       FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int[], $5::text[], $6::uuid[]) WITH ORDINALITY AS u(r, d, w, p, s, pp, n)
       ORDER BY r, d, n DESC
       ON CONFLICT (rollout_id, device_id) DO UPDATE SET wave = excluded.wave, status = excluded.status, previous_package_id = excluded.previous_package_id`,
      [
        devices.map((d) => d.rolloutId),
        devices.map((d) => d.deviceId),
        devices.map((d) => d.wave),
        devices.map((d) => d.position),
        devices.map((d) => d.status),
        devices.map((d) => d.previousPackageId),
      ],
    );
  }

  async devices(rolloutId: RolloutId, type: OtaPackageType): Promise<RolloutDeviceView[]> {
    return (await this.sql.query<RolloutDeviceRow & Record<string, unknown>>(DEVICES_SELECT, [rolloutId, type])).rows.map(rolloutDeviceFromRow);
  }

  async counts(): Promise<RolloutCount[]> {
    const { rows } = await this.sql.query<{ tenant_id: string; state: string; n: number }>('SELECT tenant_id, state, count(*)::int AS n FROM rollouts GROUP BY tenant_id, state');
    return rows.map((r) => ({ tenantId: r.tenant_id as TenantId, state: r.state as RolloutCount['state'], rollouts: r.n }));
  }

  async activeDeviceCounts(): Promise<RolloutDeviceCount[]> {
    return (await this.sql.query<ActiveDeviceCountRow & Record<string, unknown>>(ACTIVE_DEVICE_COUNTS_SELECT)).rows.map(activeDeviceCountFromRow);
  }
}
