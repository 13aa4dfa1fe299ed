import { atomically } from './atomically';
import type { Db } from './database';
import { InsertRows, InTuples, InValues } from './multi-row';
import type { DeviceId, TenantId } from '../../ids';
import type { OtaPackageType } from '../ota-packages';
import { PACE_SETTING, toClaimedEvent, type AssignmentEvent, type ClaimedEvent, type NotifyQueueRepository, type NotifyQueueRow } from '../notify-queue-repository';

/** The notify queue in SQLite: `claimed_until` is the lease (NULL = waiting). */
export class SqliteNotifyQueueRepository implements NotifyQueueRepository {
  private readonly insert;
  private readonly deleteSeqs;
  private readonly deleteEvents;

  constructor(private readonly db: Db) {
    this.insert = new InsertRows(db, 'INSERT OR REPLACE INTO notify_queue (tenant_id, device_id, type, package_id, ts)', '', 5);
    this.deleteSeqs = new InValues(db, 'DELETE FROM notify_queue WHERE seq IN (', ')');
    // A newer event replacing the row has another ts or package: it stays.
    this.deleteEvents = new InTuples(db, 'DELETE FROM notify_queue WHERE attempt > 0 AND (device_id, type, ts, package_id) IN (VALUES', ')', 4);
  }

  async put(events: readonly AssignmentEvent[]): Promise<void> {
    const rows = events.map((ev) => [ev.tenantId, ev.deviceId, ev.type, ev.packageId, ev.ts]);
    atomically(this.db, () => this.insert.run(rows));
  }

  async remove(deviceId: DeviceId, type: OtaPackageType): Promise<void> {
    this.db.prepare('DELETE FROM notify_queue WHERE device_id = ? AND type = ?').run(deviceId, type);
  }

  async claim(limit: number, now: number, leaseMs: number): Promise<ClaimedEvent[]> {
    return atomically(this.db, () => {
      const rows = this.db
        .prepare('SELECT seq, tenant_id, device_id, type, package_id, ts FROM notify_queue WHERE claimed_until IS NULL OR claimed_until < ? ORDER BY seq LIMIT ?')
        .all(now, limit) as NotifyQueueRow[];
      if (rows.length) {
        // One statement for the whole batch: rows are in seq order, so a range plus the same filter marks exactly them.
        this.db
          .prepare('UPDATE notify_queue SET claimed_until = ?, attempt = attempt + 1 WHERE seq BETWEEN ? AND ? AND (claimed_until IS NULL OR claimed_until < ?)')
          .run(now + leaseMs, (rows[0] as NotifyQueueRow).seq, (rows[rows.length - 1] as NotifyQueueRow).seq, now);
      }
      return rows.map(toClaimedEvent);
    });
  }

  async ack(claims: readonly ClaimedEvent[]): Promise<void> {
    atomically(this.db, () =>
      this.deleteSeqs.run(
        [],
        claims.map((c) => c.seq),
      ),
    );
  }

  async release(claims: readonly ClaimedEvent[]): Promise<void> {
    // The claim's hand-on undone: the row is as it was before it.
    const free = this.db.prepare('UPDATE notify_queue SET claimed_until = NULL, attempt = attempt - 1 WHERE seq = ?');
    atomically(this.db, () => {
      for (const c of claims) free.run(c.seq);
    });
  }

  async ackEvents(events: readonly AssignmentEvent[]): Promise<void> {
    const rows = events.filter((ev) => ev.packageId !== null).map((ev) => [ev.deviceId, ev.type, ev.ts, ev.packageId]);
    atomically(this.db, () => this.deleteEvents.run(rows));
  }

  async paceWait(now: number): Promise<number> {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(PACE_SETTING) as { value: string } | undefined;
    return row ? Math.max(0, Number(row.value) - now) : 0;
  }

  async paceNext(at: number): Promise<void> {
    this.db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(PACE_SETTING, String(at));
  }

  async depth(tenantId?: TenantId): Promise<number> {
    const row = tenantId
      ? this.db.prepare('SELECT count(*) AS n FROM notify_queue WHERE tenant_id = ? AND attempt = 0').get(tenantId)
      : this.db.prepare('SELECT count(*) AS n FROM notify_queue WHERE attempt = 0').get();
    return (row as { n: number }).n;
  }

  async size(): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM notify_queue').get() as { n: number }).n;
  }
}
