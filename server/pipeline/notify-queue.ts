import { EventEmitter } from 'node:events';
import { setImmediate as onNextTurn } from 'node:timers';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import { realTimers, type Timers } from '../timers';
import { targetTelemetry } from './ota-keys';
import type { OtaPackage, OtaPackageType } from '../store/ota-packages';
import type { AssignmentEvent, ClaimedEvent } from '../store/notify-queue-repository';
import type { Store } from '../store/store';

export type { AssignmentEvent } from '../store/notify-queue-repository';

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

/**
 * Takes a released batch. Answers `'notifier acks'` when the batch goes straight to the notifier,
 * which then removes the rows in its own commit; anything else and the queue removes them at once.
 */
export type OnRelease = (events: AssignmentEvent[]) => unknown;

/**
 * The cluster bus topic on which an instance that queued rows wakes the other instances' consumers:
 * each claims its share of a large queue, not only the instance that took the assignment.
 */
const QUEUED_TOPIC = 'queue-filled';

/** With pacing off, how many rows one tick releases before yielding to the event loop. */
const UNPACED_BATCH = 500;
/** How often a consumer looks again at rows held by another instance (their lease may run out). */
const HELD_ROWS_POLL_MS = 1000;
/** How long a claimed batch stays with its instance before another may take it, unless `OTA_QUEUE_LEASE_MS` says otherwise. */
export const DEFAULT_QUEUE_LEASE_MS = 30_000;

/**
 * `OTA_QUEUE_LEASE_MS`: with several instances on one database, rows an instance claimed and never
 * acked (it was killed mid-drain) go to the others after this long. Longer than a batch takes.
 */
export function queueLeaseFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_QUEUE_LEASE_MS;
  if (raw === undefined || raw === '') return DEFAULT_QUEUE_LEASE_MS;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 1000) throw new Error(`OTA_QUEUE_LEASE_MS must be a whole number of milliseconds, at least 1000, not '${raw}'`);
  return ms;
}

/**
 * The durable, paced queue between assignment and notification. A row per device and type lives in
 * the store until it is released, so a restart or a crash loses nothing; a newer assignment replaces
 * the queued one.
 */
export class NotifyQueue extends EventEmitter<{ depth: [number]; free: [] }> {
  private pacing: Pacing | null = null;
  private onRelease: OnRelease | null = null;
  private timer: unknown = null;
  /** The timer is a look at rows held elsewhere or not acked yet, not a paced release. */
  private polling = false;
  private ticking = false;
  /** Something was queued while a tick ran: look again when it ends. */
  private more = false;
  private isPaused = false;
  private consumer: symbol | null = null;
  private consumerOwner: string | null = null;
  private unhearQueued: (() => void) | null = null;
  private lastRelease = -Infinity;
  /** How long the last paced release had to wait for the database's pace (another instance released). */
  private paceWaitMs = 0;
  private arriving: Array<{ ev: AssignmentEvent; resolve: (queued: boolean) => void; reject: (err: Error) => void }> = [];

  constructor(
    private readonly store: Store,
    private readonly timers: Timers = realTimers,
    private readonly leaseMs: number = DEFAULT_QUEUE_LEASE_MS,
  ) {
    super();
  }

  /**
   * Queues a device for its new package, writing the `target_*` telemetry and `QUEUED`. Answers
   * false when the package no longer exists (ThingsBoard skips those silently).
   */
  enqueue(ev: AssignmentEvent): Promise<boolean> {
    // Events arriving in the same turn (one flow message each) share one transaction.
    return new Promise((resolve, reject) => {
      if (this.arriving.length === 0) onNextTurn(() => void this.enqueueArrived());
      this.arriving.push({ ev, resolve, reject });
    });
  }

  private async enqueueArrived(): Promise<void> {
    const batch = this.arriving;
    this.arriving = [];
    try {
      const queued = await this.enqueueAll(batch.map((a) => a.ev));
      batch.forEach((a, i) => a.resolve(queued[i] === true));
    } catch (err) {
      for (const a of batch) a.reject(err as Error);
    }
  }

  /**
   * `enqueue` for a batch of devices in one transaction (a profile's page of devices): one commit,
   * not several per device. Answers, per event, whether it was queued.
   */
  async enqueueAll(events: readonly AssignmentEvent[]): Promise<boolean[]> {
    for (const ev of events) if (ev.packageId === null) await this.cancel(ev.deviceId, ev.type);
    if (!events.some((ev) => ev.packageId !== null)) return events.map(() => false);
    const results = await this.store.transaction(async (tx) => {
      const packages = new Map<string, OtaPackage | null>();
      const queued: Array<AssignmentEvent & { packageId: OtaPackageId; pkg: OtaPackage }> = [];
      const answers: boolean[] = [];
      for (const ev of events) {
        if (ev.packageId === null) {
          answers.push(false);
          continue;
        }
        const key = `${ev.tenantId}/${ev.packageId}`;
        let pkg = packages.get(key);
        if (pkg === undefined) packages.set(key, (pkg = await tx.packages.findById(ev.tenantId, ev.packageId)));
        answers.push(pkg !== null);
        if (pkg) queued.push({ ...ev, packageId: ev.packageId, pkg });
      }
      // Each table written once for the batch (multi-row statements), not once per device; devices
      // queued for one package at one time share their target telemetry, which the store writes as one group.
      const targets = new Map<string, ReturnType<typeof targetTelemetry>>();
      const targetOf = (pkg: OtaPackage, ts: number): ReturnType<typeof targetTelemetry> => {
        const key = `${pkg.tenantId}/${pkg.id}/${ts}`;
        let values = targets.get(key);
        if (!values) targets.set(key, (values = targetTelemetry(pkg, ts)));
        return values;
      };
      await tx.telemetry.saveAll(queued.map((q) => ({ deviceId: q.deviceId, entries: [{ ts: q.ts, values: targetOf(q.pkg, q.ts) }] })));
      await tx.states.setQueuedAll(queued.map((q) => ({ deviceId: q.deviceId, tenantId: q.tenantId, type: q.type, packageId: q.packageId, ts: q.ts })));
      const rows = queued.map((q) => ({ tenantId: q.tenantId, deviceId: q.deviceId, type: q.type, packageId: q.packageId, ts: q.ts }));
      await tx.queue.put(rows);
      await tx.targets.put(rows.map((ev) => ({ deviceId: ev.deviceId, type: ev.type, packageId: ev.packageId, ts: ev.ts, notified: false })));
      return answers;
    }, 'enqueue');
    if (results.some(Boolean)) {
      // Not heard (the bus is down): this instance releases them alone, as it would anyway.
      void this.store.cluster.publish(QUEUED_TOPIC, [null]).catch(() => undefined);
      await this.announceDepth();
      this.schedule();
    }
    return results;
  }

  /**
   * Drops a queued row (an unassignment, a deleted device) and the target with it, so the tracker
   * neither counts, times out nor retries a package the device no longer has.
   */
  async cancel(deviceId: DeviceId, type: OtaPackageType): Promise<void> {
    const now = this.timers.now();
    await this.store.transaction(async (tx) => {
      await tx.queue.remove(deviceId, type);
      await tx.states.clearTarget(deviceId, type);
      await tx.targets.put([{ deviceId, type, packageId: null, ts: now, notified: true }]);
    }, 'enqueue');
    await this.announceDepth();
  }

  /** The depth to whoever listens: counting the rows costs a table scan, so only then. */
  private async announceDepth(): Promise<void> {
    if (this.listenerCount('depth') > 0) this.emit('depth', await this.depth());
  }

  /** Rows waiting (not handed on to the notifier yet), in all or for one tenant. */
  depth(tenantId?: TenantId): Promise<number> {
    return this.store.queue.depth(tenantId);
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /**
   * Starts releasing at `pacing`; each release goes to `onRelease`. Replaces an earlier consumer:
   * callers that must not (an ota-rate-queue node) check `owner` first.
   * Answers a handle for `stop`, so a consumer that was replaced cannot stop its successor.
   */
  start(pacing: Pacing, onRelease: OnRelease, owner: string | null = null): symbol {
    this.detach();
    const handle = Symbol('consumer');
    this.consumer = handle;
    this.consumerOwner = owner;
    this.pacing = { ...pacing, packSize: Math.max(1, Math.floor(pacing.packSize)), intervalMs: Math.max(0, pacing.intervalMs) };
    this.onRelease = onRelease;
    this.unhearQueued = this.store.cluster.subscribe(QUEUED_TOPIC, () => this.schedule());
    this.schedule();
    return handle;
  }

  /** Stops releasing (only if `handle` is still the consumer, when given); queued rows stay in the store. */
  stop(handle?: symbol): void {
    if (handle !== undefined && handle !== this.consumer) return;
    const had = this.consumer !== null;
    this.detach();
    // Whoever waits to release (a second ota-rate-queue node) may take over now.
    if (had) this.emit('free');
  }

  private detach(): void {
    this.consumer = null;
    this.consumerOwner = null;
    this.unhearQueued?.();
    this.unhearQueued = null;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.onRelease = null;
  }

  /** Who releases the queue now (the id given to `start`), if anyone. */
  get owner(): string | null {
    return this.consumer ? this.consumerOwner : null;
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
  async flush(): Promise<number> {
    if (!this.onRelease) return 0;
    let n = 0;
    for (;;) {
      const batch = await this.release(UNPACED_BATCH);
      if (batch === null || batch.length === 0) break;
      n += batch.length;
    }
    this.emit('depth', await this.depth());
    return n;
  }

  /**
   * Claims up to `n` rows in release order and hands them to the consumer, in one transaction.
   * When the consumer says the notifier takes the batch (`'notifier acks'`), the rows are handed on,
   * not removed: the notifier removes them in the transaction that writes their INITIATED
   * (`Notifier.processAll`), so an instance killed between the two loses nothing; a row not acked
   * is released again once its lease (`OTA_QUEUE_LEASE_MS`) has run out, by whichever instance
   * claims it then. Otherwise (other nodes between the queue and the notifier) the rows are acked
   * in this transaction, and a crash before the notifier's commit is what reconciliation on start
   * repairs (the targets are not yet notified). The consumer takes the batch synchronously (it only
   * sends messages on). With no consumer left (stopped meanwhile) the rows stay queued. Null
   * without a consumer.
   */
  private async release(n: number, gapMs = 0): Promise<AssignmentEvent[] | null> {
    if (!this.onRelease) return null;
    const now = this.timers.now();
    this.paceWaitMs = 0;
    return this.store.transaction(async (tx) => {
      // Paced: the pace is the database's, so instances sharing it release at the configured rate together.
      if (gapMs > 0 && (this.paceWaitMs = await tx.queue.paceWait(now)) > 0) return [];
      const claims = await tx.queue.claim(n, now, this.leaseMs);
      const onRelease = this.onRelease;
      if (!onRelease) {
        await tx.queue.release(claims);
        return null;
      }
      const batch = claims.map(toEvent);
      // Claimed is handed on: left to the notifier, or acked here.
      if (batch.length && onRelease(batch) !== 'notifier acks') await tx.queue.ack(claims);
      if (gapMs > 0 && batch.length) await tx.queue.paceNext(now + gapMs);
      return batch;
    });
  }

  private schedule(): void {
    if (this.ticking) {
      this.more = true;
      return;
    }
    // A look at held rows (lookAgainLater) does not delay rows queued meanwhile.
    if (this.timer !== null && this.polling) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
    this.polling = false;
    if (this.timer !== null || this.isPaused || !this.pacing || !this.onRelease) return;
    const wait = Math.max(0, this.lastRelease + gapOf(this.pacing) - this.timers.now());
    this.timer = this.timers.setTimeout(() => void this.tick(), wait);
  }

  private async tick(): Promise<void> {
    this.timer = null;
    this.polling = false;
    if (this.isPaused || !this.pacing || !this.onRelease) return;
    const { packSize, intervalMs, mode } = this.pacing;
    const n = intervalMs === 0 ? UNPACED_BATCH : mode === 'spaced' ? 1 : packSize;
    this.ticking = true;
    this.more = false;
    let released: number;
    try {
      const batch = await this.release(n, gapOf(this.pacing));
      released = batch?.length ?? 0;
      if (released) {
        // Paced from the last release that released something: an empty look is not a release.
        this.lastRelease = this.timers.now();
        await this.announceDepth();
      }
    } finally {
      this.ticking = false;
    }
    if (!released && this.paceWaitMs > 0) this.waitForPace(this.paceWaitMs);
    else if (released || this.more) this.schedule();
    // Rows handed on and not acked count too: their lease may run out (the instance holding them died).
    else if (this.timer === null && (await this.store.queue.size()) > 0) this.lookAgainLater();
  }

  /** Another instance on the database released last: the next paced release is `ms` away. */
  private waitForPace(ms: number): void {
    if (this.timer !== null || this.isPaused || !this.onRelease) return;
    this.timer = this.timers.setTimeout(() => void this.tick(), ms);
  }

  /**
   * Nothing was free to claim, yet rows are queued: another instance on the database holds them, or
   * they were handed on and not acked yet. Look again when a lease could have run out (that
   * instance died mid-drain), or sooner.
   */
  private lookAgainLater(): void {
    if (this.timer !== null || this.isPaused || !this.onRelease) return;
    this.timer = this.timers.setTimeout(() => void this.tick(), Math.min(this.leaseMs, HELD_ROWS_POLL_MS));
    this.polling = true;
  }
}

const toEvent = ({ seq: _seq, ...ev }: ClaimedEvent): AssignmentEvent => ev;

/** Milliseconds between two paced releases; 0 with pacing off. */
const gapOf = ({ packSize, intervalMs, mode }: Pacing): number => (intervalMs === 0 ? 0 : mode === 'spaced' ? intervalMs / packSize : intervalMs);
