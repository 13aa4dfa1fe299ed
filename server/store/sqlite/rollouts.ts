import type { TenantId } from '../../ids';
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
import { atomically } from './atomically';
import { queryPage, type Db, type PageData, type PageLink } from './database';
import { InsertRows } from './multi-row';

type Row = RolloutRow<string>;
const toRollout = (r: Row): Rollout => rolloutFromRow(r, JSON.parse(r.spec) as RolloutSpec, JSON.parse(r.waves) as WaveProgress[]);

export class SqliteRolloutRepository implements RolloutRepository {
  private readonly putDeviceRows;

  constructor(private readonly db: Db) {
    this.putDeviceRows = new InsertRows(
      db,
      'INSERT INTO rollout_devices (rollout_id, device_id, wave, position, status, previous_package_id)',
      'ON CONFLICT (rollout_id, device_id) DO UPDATE SET wave = excluded.wave, status = excluded.status, previous_package_id = excluded.previous_package_id',
      6,
    );
  }

  async insert(r: Rollout): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO rollouts (id, tenant_id, name, package_id, type, spec, state, reason, current_wave, waves, created_time, started_time, finished_time, version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(...rolloutInsertValues(r));
  }

  async update(r: Rollout): Promise<boolean> {
    const { changes } = this.db
      .prepare(
        `UPDATE rollouts SET name = ?, state = ?, reason = ?, current_wave = ?, waves = ?, started_time = ?, finished_time = ?, version = ?,
           lease_owner = CASE WHEN ? = 'RUNNING' THEN lease_owner END, lease_until = CASE WHEN ? = 'RUNNING' THEN lease_until END
         WHERE id = ? AND tenant_id = ? AND version = ?`,
      )
      .run(r.name, r.state, r.reason, r.currentWave, JSON.stringify(r.waves), r.startedTime, r.finishedTime, r.version, r.state, r.state, r.id, r.tenantId, r.version - 1);
    return changes === 1;
  }

  async findById(tenantId: TenantId, id: RolloutId): Promise<Rollout | null> {
    const r = this.db.prepare('SELECT * FROM rollouts WHERE id = ? AND tenant_id = ?').get(id, tenantId) as Row | undefined;
    return r ? toRollout(r) : null;
  }

  async page(tenantId: TenantId, link: PageLink): Promise<PageData<Rollout>> {
    return queryPage<Rollout, Row>(this.db, {
      from: 'FROM rollouts WHERE tenant_id = ?',
      params: [tenantId],
      searchColumn: 'name',
      sortColumns: { createdTime: 'created_time', name: 'name COLLATE NOCASE', state: 'state' },
      link,
      map: toRollout,
    });
  }

  async claim(owner: string, now: number, leaseMs: number, limit: number): Promise<Rollout[]> {
    // One connection per process, one process per file: the UPDATE is the whole claim.
    const rows = this.db
      .prepare(
        `UPDATE rollouts SET lease_owner = ?, lease_until = ?
         WHERE id IN (SELECT id FROM rollouts WHERE state = 'RUNNING' AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?) ORDER BY created_time LIMIT ?)
         RETURNING *`,
      )
      .all(owner, now + leaseMs, owner, now, limit) as Row[];
    return rows.map(toRollout);
  }

  async release(owner: string): Promise<void> {
    this.db.prepare('UPDATE rollouts SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?').run(owner);
  }

  async putDevices(devices: readonly RolloutDevice[]): Promise<void> {
    const rows = devices.map((d) => [d.rolloutId, d.deviceId, d.wave, d.position, d.status, d.previousPackageId]);
    atomically(this.db, () => this.putDeviceRows.run(rows));
  }

  async devices(rolloutId: RolloutId, type: OtaPackageType): Promise<RolloutDeviceView[]> {
    return (this.db.prepare(ROLLOUT_DEVICES_SELECT).all({ rollout: rolloutId, type }) as RolloutDeviceRow[]).map(rolloutDeviceFromRow);
  }

  async counts(): Promise<RolloutCount[]> {
    const rows = this.db.prepare('SELECT tenant_id, state, count(*) AS n FROM rollouts GROUP BY tenant_id, state').all() as Array<{ tenant_id: string; state: string; n: number }>;
    return rows.map((r) => ({ tenantId: r.tenant_id as TenantId, state: r.state as RolloutCount['state'], rollouts: r.n }));
  }

  async activeDeviceCounts(): Promise<RolloutDeviceCount[]> {
    return (this.db.prepare(ACTIVE_DEVICE_COUNTS_SELECT).all() as ActiveDeviceCountRow[]).map(activeDeviceCountFromRow);
  }
}
