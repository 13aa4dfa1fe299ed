import { EventEmitter } from 'node:events';
import type { Db } from '../store/sqlite/database';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import { realTimers, type Timers } from '../timers';
import { targetTelemetry } from './ota-keys';
import type { OtaPackageRepository, OtaPackageType } from '../store/ota-packages';
import type { OtaStateRepository } from '../store/ota-states';
import type { TelemetryRepository } from '../store/telemetry';

/** One device's change of target package; `packageId: null` is an unassignment. */
export interface AssignmentEvent {
  tenantId: TenantId;
  deviceId: DeviceId;
  type: OtaPackageType;
  packageId: OtaPackageId | null;
  ts: number;
}

/**
 * `spaced`: one release every interval/packSize ms, as ThingsBoard's consumer does (reference §2);
 * `burst`: packSize releases at once every interval.
 */
export type PacingMode = 'spaced' | 'burst';
export interface Pacing {
  packSize: number;
  intervalMs: number;
  mode: PacingMode;
}

/** ThingsBoard's defaults, and the variable names it reads (plus the ones its docs print). */
export function pacingFromEnv(env: NodeJS.ProcessEnv): Pacing {
  const num = (names: string[], fallback: number): number => {
    for (const n of names) {
      const v = Number(env[n]);
      if (env[n] !== undefined && env[n] !== '' && Number.isFinite(v) && v >= 0) return v;
    }
    return fallback;
  };
  return {
    packSize: Math.max(1, num(['TB_QUEUE_CORE_OTA_PACK_SIZE', 'TB_QUEUE_CORE_FW_PACK_SIZE'], 100)),
    intervalMs: num(['TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS', 'TB_QUEUE_CORE_FW_PACK_INTERVAL_MS'], 60000),
    mode: 'spaced',
  };
}

interface Row {
  seq: number;
  tenant_id: string;
  device_id: string;
  type: string;
  package_id: string | null;
  ts: number;
}

/** With pacing off, how many rows one tick releases before yielding to the event loop. */
const UNPACED_BATCH = 500;

/**
 * The durable, paced queue between assignment and notification. A row per device and type lives in
 * SQLite until it is released, so a restart or a crash loses nothing; a newer assignment replaces
 * the queued one.
 */
export class NotifyQueue extends EventEmitter<{ depth: [number] }> {
  private pacing: Pacing | null = null;
  private onRelease: ((events: AssignmentEvent[]) => void) | null = null;
  private timer: unknown = null;
  private isPaused = false;
  private consumer: symbol | null = null;
  private lastRelease = -Infinity;

  constructor(
    private readonly db: Db,
    private readonly deps: { packages: OtaPackageRepository; telemetry: TelemetryRepository; states: OtaStateRepository },
    private readonly timers: Timers = realTimers,
  ) {
    super();
  }

  /**
   * Queues a device for its new package, writing the `target_*` telemetry and `QUEUED`. Answers
   * false when the package no longer exists (ThingsBoard skips those silently).
   */
  async enqueue(ev: AssignmentEvent): Promise<boolean> {
    if (ev.packageId === null) {
      this.cancel(ev.deviceId, ev.type);
      return false;
    }
    const pkg = await this.deps.packages.findById(ev.tenantId, ev.packageId);
    if (!pkg) return false;
    await this.deps.telemetry.save(ev.deviceId, [{ ts: ev.ts, values: targetTelemetry(pkg, ev.ts) }]);
    this.db.transaction(() => {
      this.deps.states.setTarget(ev.deviceId, ev.tenantId, ev.type, ev.packageId);
      this.deps.states.setState(ev.deviceId, ev.tenantId, ev.type, 'QUEUED', ev.ts, null);
      this.db
        .prepare('INSERT OR REPLACE INTO notify_queue (tenant_id, device_id, type, package_id, ts) VALUES (?, ?, ?, ?, ?)')
        .run(ev.tenantId, ev.deviceId, ev.type, ev.packageId, ev.ts);
      this.db
        .prepare('INSERT OR REPLACE INTO ota_targets (device_id, type, package_id, ts, notified) VALUES (?, ?, ?, ?, 0)')
        .run(ev.deviceId, ev.type, ev.packageId, ev.ts);
    })();
    this.announceDepth();
    this.schedule();
    return true;
  }

  /**
   * Drops a queued row (an unassignment, a deleted device) and the target with it, so the tracker
   * neither counts, times out nor retries a package the device no longer has.
   */
  cancel(deviceId: DeviceId, type: OtaPackageType): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM notify_queue WHERE device_id = ? AND type = ?').run(deviceId, type);
      this.deps.states.clearTarget(deviceId, type);
      this.db.prepare('INSERT OR REPLACE INTO ota_targets (device_id, type, package_id, ts, notified) VALUES (?, ?, NULL, ?, 1)').run(deviceId, type, this.timers.now());
    })();
    this.announceDepth();
  }

  /** The depth to whoever listens: counting the rows costs a table scan, so only then. */
  private announceDepth(): void {
    if (this.listenerCount('depth') > 0) this.emit('depth', this.depth());
  }

  /** Rows waiting, in all or for one tenant. */
  depth(tenantId?: TenantId): number {
    const row = tenantId
      ? this.db.prepare('SELECT count(*) AS n FROM notify_queue WHERE tenant_id = ?').get(tenantId)
      : this.db.prepare('SELECT count(*) AS n FROM notify_queue').get();
    return (row as { n: number }).n;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /**
   * Starts releasing at `pacing`; each release goes to `onRelease`. Replaces an earlier consumer.
   * Answers a handle for `stop`, so a consumer that was replaced cannot stop its successor.
   */
  start(pacing: Pacing, onRelease: (events: AssignmentEvent[]) => void): symbol {
    this.stop();
    const handle = Symbol('consumer');
    this.consumer = handle;
    this.pacing = { ...pacing, packSize: Math.max(1, Math.floor(pacing.packSize)), intervalMs: Math.max(0, pacing.intervalMs) };
    this.onRelease = onRelease;
    this.schedule();
    return handle;
  }

  /** Stops releasing (only if `handle` is still the consumer, when given); queued rows stay in the database. */
  stop(handle?: symbol): void {
    if (handle !== undefined && handle !== this.consumer) return;
    this.consumer = null;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.onRelease = null;
  }

  pause(): void {
    this.isPaused = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  resume(): void {
    this.isPaused = false;
    this.schedule();
  }

  /**
   * Releases everything queued now, ignoring the pace (as the delay node's `flush`). Without a
   * consumer there is nobody to release to, so the rows stay queued rather than vanish.
   */
  flush(): number {
    if (!this.onRelease) return 0;
    let n = 0;
    for (;;) {
      const batch = this.take(UNPACED_BATCH);
      if (batch.length === 0) break;
      n += batch.length;
      this.onRelease?.(batch);
    }
    this.emit('depth', 0);
    return n;
  }

  /** Rows in release order, removed from the queue in the same transaction. */
  private take(n: number): AssignmentEvent[] {
    return this.db.transaction(() => {
      const rows = this.db.prepare('SELECT * FROM notify_queue ORDER BY seq LIMIT ?').all(n) as Row[];
      const del = this.db.prepare('DELETE FROM notify_queue WHERE seq = ?');
      for (const r of rows) del.run(r.seq);
      return rows.map((r) => ({
        tenantId: r.tenant_id as TenantId,
        deviceId: r.device_id as DeviceId,
        type: r.type as OtaPackageType,
        packageId: r.package_id as OtaPackageId | null,
        ts: r.ts,
      }));
    })();
  }

  private schedule(): void {
    if (this.timer !== null || this.isPaused || !this.pacing || !this.onRelease) return;
    if (!this.db.prepare('SELECT 1 FROM notify_queue LIMIT 1').get()) return;
    const { packSize, intervalMs, mode } = this.pacing;
    const gap = intervalMs === 0 ? 0 : mode === 'spaced' ? intervalMs / packSize : intervalMs;
    const wait = Math.max(0, this.lastRelease + gap - this.timers.now());
    this.timer = this.timers.setTimeout(() => this.tick(), wait);
  }

  private tick(): void {
    this.timer = null;
    if (this.isPaused || !this.pacing || !this.onRelease) return;
    const { packSize, intervalMs, mode } = this.pacing;
    const n = intervalMs === 0 ? UNPACED_BATCH : mode === 'spaced' ? 1 : packSize;
    const batch = this.take(n);
    this.lastRelease = this.timers.now();
    if (batch.length) {
      this.onRelease(batch);
      this.announceDepth();
    }
    this.schedule();
  }
}

