import type { Logger } from '../logger';
import type { EngineEventMap, EngineEvents } from '../events';
import type { DeviceRow, FleetReadModel, StateChangeEntry, StateCounts } from '../store/fleet-read-model';
import type { FleetView } from './fleet-view';
import type { TenantId } from '../ids';
import type { NotifyQueue } from '../pipeline/notify-queue';
import type { Timers } from '../timers';
import type { OtaPackageType } from '../store/ota-packages';
import type { FleetMetrics } from '../pipeline/state-tracker';
import type { UplinkEvent } from '../pipeline/uplink';
import type { LiveProgress, ProgressEvent } from './live-progress';

/** What the dashboard's metric cards and chart show, as pushed live and answered on request. */
export interface LiveMetrics extends FleetMetrics {
  queue: { depth: number; paused: boolean };
  notifications: { sent: number; dropped: number };
  distribution: Record<OtaPackageType, StateCounts>;
}

export type LiveEvent = { event: 'devices'; data: { rows: DeviceRow[]; removed: string[]; more: boolean } } | { event: 'metrics'; data: LiveMetrics } | ProgressEvent;
/** Answers false when it could not take a progress event now (see ProgressSink); other events are always taken. */
export type LiveListener = (ev: LiveEvent) => boolean | void;

/** A listener's subscription: `stream` names it to `follow` (null without download progress). */
export interface LiveSubscription {
  stream: string | null;
  close(): void;
}

export interface WatchSettings {
  /** How often the change log is read while someone watches (ms). */
  pollMs: number;
  /** A snapshot of the state distribution at most this often, and only while something changed (ms). */
  snapshotMs: number;
  /** Snapshots older than this are dropped (ms). */
  retentionMs: number;
  /** After a device reports, how soon watchers hear of it (ms). */
  nudgeMs: number;
  /** Metrics are recomputed at most this often per tenant (ms): they count the whole fleet. */
  metricsMinMs: number;
  /** Device rows pushed at once; beyond that the page is told to reload instead. */
  maxRows: number;
  /** Changes the shared change log keeps (`OTA_FLEET_CHANGE_LOG_MAX`): a watcher further behind reloads its pages. */
  changeLogMax: number;
}

export const DEFAULT_CHANGE_LOG_MAX = 100_000;
export const WATCH_DEFAULTS: WatchSettings = {
  pollMs: 500,
  snapshotMs: 5000,
  retentionMs: 48 * 3600_000,
  nudgeMs: 100,
  metricsMinMs: 1000,
  maxRows: 200,
  changeLogMax: DEFAULT_CHANGE_LOG_MAX,
};

/**
 * A sequence number below the newest one read but not read yet: on PostgreSQL numbers are taken at
 * insert and become visible at commit, so a transaction may show its changes after a later one has.
 * Looked for again until this old (ms); a rolled-back transaction leaves numbers that never come.
 */
const MISSING_MS = 10_000;
/** Missing numbers looked for at most; a larger jump means changes were pruned before this watcher read them. */
const MAX_MISSING = 1000;

/** The change log is read in batches of this many rows. */
const BATCH = 10_000;

/** Real timers that never keep the process alive: the watcher lives as long as its database. */
export const backgroundTimers: Pick<Timers, 'setTimeout' | 'clearTimeout'> = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Follows the fleet for the dashboard. Every write to a device's update state lands in the change
 * log (`ota_state_changes`, filled by triggers), whoever made it and on whichever instance: the
 * tracker behind any flow, the queue, the notifier, a timeout. The watcher of each instance reads
 * that log (pruned by size, never emptied by a reader), pushes the changed device rows and
 * fresh metrics to each tenant's watchers, and records snapshots of the state distribution while
 * anything changes. Engine events only make it look sooner.
 */
export class FleetWatcher {
  private readonly subscribers = new Map<TenantId, Set<LiveListener>>();
  /** What each subscriber does when the watcher closes (its stream ends). */
  private readonly enders = new Map<LiveListener, () => void>();
  private lastSeq = 0;
  /** Sequence numbers below `lastSeq` not read yet, with when they were first missed. */
  private readonly missing = new Map<number, number>();
  /** Where the change log was when the watcher started: every round waits for it. */
  private started: Promise<void> = Promise.resolve();
  private timer: unknown = null;
  private dueAt = Infinity;
  private closed = false;
  /** Tenants changed since their last snapshot. */
  private readonly dirty = new Set<TenantId>();
  private lastSnapshotAt = 0;
  private lastPruneAt = 0;
  /** Per watched tenant: devices to push, whether metrics are due, when they were last pushed and what they depended on. */
  private readonly pending = new Map<TenantId, { devices: Set<string>; lost: boolean; metrics: boolean; lastMetricsAt: number; metricsCost: number; signature: string }>();
  private readonly unhook: Array<() => void> = [];

  constructor(
    private readonly deps: {
      /** The change log and the snapshots. */
      fleet: FleetReadModel;
      view: FleetView;
      metrics: (tenantId: TenantId) => Promise<LiveMetrics>;
      events: EngineEvents;
      queue: NotifyQueue;
      notifierStats: (tenantId: TenantId) => { notified: number; dropped: number };
      /** Timestamps of snapshots (the engine's clock). */
      clock: Pick<Timers, 'now'>;
      logger: Logger;
      /** Download progress of the devices each stream follows; stopped with the watcher. */
      progress?: LiveProgress;
    },
    private readonly settings: WatchSettings = WATCH_DEFAULTS,
    private readonly timers: Pick<Timers, 'setTimeout' | 'clearTimeout'> = backgroundTimers,
  ) {}

  /** Starts following the change log; changes from before are history (the chart's next snapshot covers them). */
  start(): void {
    this.started = (async () => {
      this.lastSeq = await this.deps.fleet.lastChange();
    })();
    // Observed, not listened to: see EngineEvents.observe. The queue's own `depth` events are left to
    // its node; what the queue does shows in the change log and the metrics' signature.
    this.unhook.push(
      this.deps.events.observe((name, ...args) => {
        if (name === 'deviceDeleted') {
          // A deleted device's state rows go with it (no trigger fires): tell its watchers it is gone.
          const { device } = args[0] as EngineEventMap['deviceDeleted'][0];
          this.pending.get(device.tenantId)?.devices.add(device.id);
        }
        if (name === 'deviceRevoked') {
          // Deleted through another instance: heard on the cluster bus.
          const { tenantId, deviceId, reason } = args[0] as EngineEventMap['deviceRevoked'][0];
          if (reason === 'device-deleted') this.pending.get(tenantId)?.devices.add(deviceId);
        }
        // Downloads are left out: a chunked download reports every chunk and changes no state.
        if (name === 'uplink' && (args[0] as UplinkEvent).kind === 'download') return;
        if (name !== 'packageSaved' && name !== 'packageDeleted') this.nudge();
      }),
    );
    this.schedule(this.settings.snapshotMs);
  }

  /** Live events for one tenant until the subscription is closed; `onClose` when the watcher closes first. */
  subscribe(tenantId: TenantId, listener: LiveListener, onClose?: () => void): LiveSubscription {
    if (this.closed) {
      onClose?.();
      return { stream: null, close: () => undefined };
    }
    if (onClose) this.enders.set(listener, onClose);
    let set = this.subscribers.get(tenantId);
    if (!set) {
      this.subscribers.set(tenantId, (set = new Set()));
      this.pending.set(tenantId, { devices: new Set(), lost: false, metrics: false, lastMetricsAt: 0, metricsCost: 0, signature: '' });
    }
    set.add(listener);
    const stream = this.deps.progress?.open(tenantId, listener) ?? null;
    this.schedule(this.settings.pollMs);
    return {
      stream,
      close: () => {
        if (stream) this.deps.progress?.close(stream);
        this.enders.delete(listener);
        set.delete(listener);
        if (set.size === 0 && this.subscribers.get(tenantId) === set) {
          this.subscribers.delete(tenantId);
          this.pending.delete(tenantId);
        }
      },
    };
  }

  /** The devices whose download progress a stream of the tenant hears from now on; false when it has no such stream. */
  follow(tenantId: TenantId, stream: string, deviceIds: readonly string[]): boolean {
    return this.deps.progress?.follow(tenantId, stream, deviceIds) ?? false;
  }

  get watching(): number {
    let n = 0;
    for (const s of this.subscribers.values()) n += s.size;
    return n;
  }

  close(): void {
    this.closed = true;
    for (const off of this.unhook.splice(0)) off();
    this.deps.progress?.stop();
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    const enders = [...this.enders.values()];
    this.enders.clear();
    this.subscribers.clear();
    this.pending.clear();
    for (const end of enders) end();
  }

  /** Something happened: look at the change log soon if anyone watches. */
  private nudge(): void {
    if (this.subscribers.size) this.schedule(this.settings.nudgeMs);
  }

  /** Runs the next tick within `ms` (an earlier one stays). */
  private schedule(ms: number): void {
    if (this.closed) return;
    const at = Date.now() + ms;
    if (this.timer !== null && this.dueAt <= at) return;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.dueAt = at;
    this.timer = this.timers.setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    this.timer = null;
    this.dueAt = Infinity;
    if (this.closed) return;
    let again = false;
    try {
      again = await this.work();
    } catch (err) {
      this.deps.logger.warn(`dashboard: ${(err as Error).message}`);
    }
    const { pollMs, snapshotMs } = this.settings;
    const snapshotIn = this.dirty.size ? Math.max(0, this.lastSnapshotAt + snapshotMs - Date.now()) : snapshotMs;
    this.schedule(again ? 0 : Math.min(this.subscribers.size ? pollMs : snapshotMs, snapshotIn));
  }

  /** One round; answers whether there is more to do at once. */
  private async work(): Promise<boolean> {
    await this.started;
    const { changes, more, lost } = await this.readChanges();
    if (lost) for (const p of this.pending.values()) p.lost = true;
    for (const c of changes) {
      this.dirty.add(c.tenantId);
      const p = this.pending.get(c.tenantId);
      if (p) {
        p.devices.add(c.deviceId);
        p.metrics = true;
      }
    }
    const again = more;
    const now = Date.now();
    for (const [tenantId, p] of this.pending) {
      if (p.devices.size) {
        const ids = [...p.devices];
        const shown = ids.slice(0, this.settings.maxRows);
        const rows = await this.deps.view.rows(tenantId, shown);
        const found = new Set(rows.map((r) => r.id as string));
        this.publish(tenantId, { event: 'devices', data: { rows, removed: shown.filter((id) => !found.has(id)), more: p.lost || ids.length > shown.length } });
        p.devices.clear();
        p.lost = false;
        p.metrics = true;
      } else if (p.lost) {
        // Changes were pruned before they were read: the page reloads instead.
        this.publish(tenantId, { event: 'devices', data: { rows: [], removed: [], more: true } });
        p.lost = false;
        p.metrics = true;
      }
      // The queue and the notifier move without touching a device's state (releases, stale drops).
      const stats = this.deps.notifierStats(tenantId);
      const signature = `${await this.deps.queue.depth(tenantId)}/${this.deps.queue.paused}/${stats.notified}/${stats.dropped}`;
      if (signature !== p.signature) p.metrics = true;
      // Held back metrics go out on a later round (watched tenants are polled every pollMs).
      // Counting a large fleet takes a while: never spend more than a tenth of the time on it.
      if (p.metrics && now - p.lastMetricsAt >= Math.max(this.settings.metricsMinMs, 10 * p.metricsCost)) {
        p.metrics = false;
        p.signature = signature;
        const started = Date.now();
        const data = await this.deps.metrics(tenantId);
        p.lastMetricsAt = Date.now();
        p.metricsCost = p.lastMetricsAt - started;
        this.publish(tenantId, { event: 'metrics', data });
      }
    }
    if (this.dirty.size && now - this.lastSnapshotAt >= this.settings.snapshotMs) await this.snapshot();
    if (now - this.lastPruneAt >= this.settings.snapshotMs) {
      this.lastPruneAt = now;
      await this.deps.fleet.pruneChanges(this.settings.changeLogMax);
    }
    return again;
  }

  /**
   * The changes not read yet: after the newest one read, and the missing ones below it that have
   * committed since. Every instance's watcher reads the same log, so nothing is deleted on reading.
   */
  private async readChanges(): Promise<{ changes: StateChangeEntry[]; more: boolean; lost: boolean }> {
    const now = Date.now();
    for (const [seq, since] of this.missing) if (now - since > MISSING_MS) this.missing.delete(seq);
    const read = await this.deps.fleet.changesAfter(this.lastSeq, BATCH, [...this.missing.keys()]);
    const changes: StateChangeEntry[] = [];
    let lost = false;
    let newer = 0;
    for (const c of read.sort((x, y) => x.seq - y.seq)) {
      if (c.seq <= this.lastSeq) {
        if (this.missing.delete(c.seq)) changes.push(c);
        continue;
      }
      newer += 1;
      if (c.seq - this.lastSeq - 1 > MAX_MISSING) lost = true;
      else for (let gap = this.lastSeq + 1; gap < c.seq; gap++) this.missing.set(gap, now);
      this.lastSeq = c.seq;
      changes.push(c);
    }
    while (this.missing.size > MAX_MISSING) this.missing.delete(this.missing.keys().next().value as number);
    return { changes, more: newer === BATCH, lost };
  }

  /** Metrics for a new watcher at once, without waiting for the next change. */
  current(tenantId: TenantId): Promise<LiveMetrics> {
    return this.deps.metrics(tenantId);
  }

  private async snapshot(): Promise<void> {
    const ts = this.deps.clock.now();
    const tenants = [...this.dirty];
    this.dirty.clear();
    for (const tenantId of tenants) {
      await this.deps.fleet.recordSnapshot(tenantId, ts, await this.deps.fleet.distribution(tenantId));
      await this.deps.fleet.pruneSnapshots(tenantId, ts - this.settings.retentionMs);
    }
    this.lastSnapshotAt = Date.now();
  }

  private publish(tenantId: TenantId, ev: LiveEvent): void {
    for (const listener of [...(this.subscribers.get(tenantId) ?? [])]) {
      try {
        listener(ev);
      } catch (err) {
        this.deps.logger.warn(`dashboard: a live listener failed: ${(err as Error).message}`);
      }
    }
  }
}
