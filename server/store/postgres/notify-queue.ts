import type { DeviceId, TenantId } from '../../ids';
import { PACE_SETTING, toClaimedEvent, type AssignmentEvent, type ClaimedEvent, type NotifyQueueRepository, type NotifyQueueRow } from '../notify-queue-repository';
import type { OtaPackageType } from '../ota-packages';
import type { Sql } from './pool';

/** The last event per device and type, in the order given: one statement cannot upsert a row twice. */
function lastPerDevice(events: readonly AssignmentEvent[]): AssignmentEvent[] {
  const last = new Map<string, AssignmentEvent>();
  for (const ev of events) {
    const key = `${ev.deviceId}/${ev.type}`;
    last.delete(key);
    last.set(key, ev);
  }
  return [...last.values()];
}

/**
 * The notify queue in PostgreSQL, shared by every instance on the database. `claimed_until` is the
 * lease (NULL = waiting); a claim takes its rows with `FOR UPDATE SKIP LOCKED`, so instances
 * claiming at the same moment get different rows instead of waiting for each other.
 */
export class PgNotifyQueueRepository implements NotifyQueueRepository {
  constructor(private readonly sql: Sql) {}

  /** One statement per batch. A replaced row takes a new seq (to the back) and loses its claim. */
  async put(events: readonly AssignmentEvent[]): Promise<void> {
    if (events.length === 0) return;
    const rows = lastPerDevice(events);
    await this.sql.query(
      `INSERT INTO notify_queue (tenant_id, device_id, type, package_id, ts)
       SELECT t, d, ty, p, ts FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bigint[]) WITH ORDINALITY AS e(t, d, ty, p, ts, n) ORDER BY n
       ON CONFLICT (device_id, type) DO UPDATE SET
         seq = nextval(pg_get_serial_sequence('notify_queue', 'seq')), tenant_id = excluded.tenant_id,
         package_id = excluded.package_id, ts = excluded.ts, attempt = 0, claimed_until = NULL`,
      [rows.map((e) => e.tenantId), rows.map((e) => e.deviceId), rows.map((e) => e.type), rows.map((e) => e.packageId), rows.map((e) => e.ts)],
    );
  }

  async remove(deviceId: DeviceId, type: OtaPackageType): Promise<void> {
    await this.sql.query('DELETE FROM notify_queue WHERE device_id = $1 AND type = $2', [deviceId, type]);
  }

  async claim(limit: number, now: number, leaseMs: number): Promise<ClaimedEvent[]> {
    const { rows } = await this.sql.query<NotifyQueueRow>(
      `UPDATE notify_queue q SET claimed_until = $3, attempt = q.attempt + 1
       FROM (SELECT seq FROM notify_queue WHERE claimed_until IS NULL OR claimed_until < $1 ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED) c
       WHERE q.seq = c.seq
       RETURNING q.seq, q.tenant_id, q.device_id, q.type, q.package_id, q.ts`,
      [now, limit, now + leaseMs],
    );
    // RETURNING keeps no order: release order is seq order.
    return rows.sort((a, b) => a.seq - b.seq).map(toClaimedEvent);
  }

  async ack(claims: readonly ClaimedEvent[]): Promise<void> {
    if (claims.length) await this.sql.query('DELETE FROM notify_queue WHERE seq = ANY($1::bigint[])', [claims.map((c) => c.seq)]);
  }

  /** The claim's hand-on undone: the row is as it was before it. */
  async release(claims: readonly ClaimedEvent[]): Promise<void> {
    if (claims.length) await this.sql.query('UPDATE notify_queue SET claimed_until = NULL, attempt = attempt - 1 WHERE seq = ANY($1::bigint[])', [claims.map((c) => c.seq)]);
  }

  /** A newer event replacing the row has another ts or package: it stays. */
  async ackEvents(events: readonly AssignmentEvent[]): Promise<void> {
    const acked = events.filter((ev) => ev.packageId !== null);
    if (acked.length === 0) return;
    await this.sql.query(
      `DELETE FROM notify_queue q USING unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[]) AS e(d, ty, ts, p)
       WHERE q.attempt > 0 AND q.device_id = e.d AND q.type = e.ty AND q.ts = e.ts AND q.package_id = e.p`,
      [acked.map((ev) => ev.deviceId), acked.map((ev) => ev.type), acked.map((ev) => ev.ts), acked.map((ev) => ev.packageId)],
    );
  }

  /** The settings row is locked (FOR UPDATE) until the transaction ends: instances take the pace in turn. */
  async paceWait(now: number): Promise<number> {
    await this.sql.query("INSERT INTO settings (key, value) VALUES ($1, '0') ON CONFLICT (key) DO NOTHING", [PACE_SETTING]);
    const { rows } = await this.sql.query<{ value: string }>('SELECT value FROM settings WHERE key = $1 FOR UPDATE', [PACE_SETTING]);
    return Math.max(0, Number(rows[0]?.value ?? 0) - now);
  }

  async paceNext(at: number): Promise<void> {
    await this.sql.query('UPDATE settings SET value = $2 WHERE key = $1', [PACE_SETTING, String(at)]);
  }

  async depth(tenantId?: TenantId): Promise<number> {
    const { rows } = tenantId
      ? await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM notify_queue WHERE tenant_id = $1 AND attempt = 0', [tenantId])
      : await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM notify_queue WHERE attempt = 0');
    return rows[0]?.n ?? 0;
  }

  async size(): Promise<number> {
    const { rows } = await this.sql.query<{ n: number }>('SELECT count(*) AS n FROM notify_queue');
    return rows[0]?.n ?? 0;
  }
}
