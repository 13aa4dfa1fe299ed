import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { OtaPackageType } from './ota-packages';

/** One device's change of target package; `packageId: null` is an unassignment. */
export interface AssignmentEvent {
  tenantId: TenantId;
  deviceId: DeviceId;
  type: OtaPackageType;
  packageId: OtaPackageId | null;
  ts: number;
}

/** A queued event handed to one consumer until it acks it (done) or releases it (back in the queue). */
export interface ClaimedEvent extends AssignmentEvent {
  /** The queue row's identity: a newer assignment for the same device replaces the row, so an ack never drops it. */
  seq: number;
}

/** A notify_queue row as both databases return it (same column types in each). */
export interface NotifyQueueRow {
  seq: number;
  tenant_id: string;
  device_id: string;
  type: string;
  package_id: string | null;
  ts: number;
}

export const toClaimedEvent = (r: NotifyQueueRow): ClaimedEvent => ({
  seq: r.seq,
  tenantId: r.tenant_id as TenantId,
  deviceId: r.device_id as DeviceId,
  type: r.type as OtaPackageType,
  packageId: r.package_id as OtaPackageId | null,
  ts: r.ts,
});

/**
 * The durable queue between assignment and notification: one row per device and type, release in
 * the order queued. Claims carry a lease so that, with several consumers on one database, a row
 * claimed by a consumer that died returns to the queue when its lease runs out.
 *
 * A released row is handed on, not removed: it leaves the queue in the notifier's transaction, the
 * one that writes its INITIATED (`ackEvents`), so a crash between the two loses nothing. Until then
 * it stays claimed; once its lease has run out it is claimed again.
 */
/** The settings row holding the time the next paced release may go (ms), shared by every instance. */
export const PACE_SETTING = 'notify_queue.next_release_at';

export interface NotifyQueueRepository {
  /** Queues the events; a device's newer event replaces its queued one (and goes to the back). */
  put(events: readonly AssignmentEvent[]): Promise<void>;
  /** Drops a device's queued row of that type, claimed or not. */
  remove(deviceId: DeviceId, type: OtaPackageType): Promise<void>;
  /**
   * Up to `limit` unclaimed rows (or rows whose lease ended before `now`), oldest first, leased
   * until `now + leaseMs` and handed on (no longer waiting) in the same statement: the consumer
   * acks them, releases them, or leaves them to the notifier's `ackEvents` (or their lease's end).
   */
  claim(limit: number, now: number, leaseMs: number): Promise<ClaimedEvent[]>;
  /** Done with these: they leave the queue (unless replaced meanwhile by a newer event). */
  ack(claims: readonly ClaimedEvent[]): Promise<void>;
  /** Not done: back to the queue in their place, waiting again, for the next claim. */
  release(claims: readonly ClaimedEvent[]): Promise<void>;
  /** The notifier is done with these events: their rows handed on leave the queue (a row replaced meanwhile by a newer event, or never handed on, stays). */
  ackEvents(events: readonly AssignmentEvent[]): Promise<void>;
  /**
   * The pace every consumer on this database shares (pacing is cluster-wide): the ms to wait before
   * the next paced release, 0 when it may go now. Inside a transaction it holds the pace until
   * commit, so of two instances asking at once one releases and the other then waits.
   */
  paceWait(now: number): Promise<number>;
  /** A paced release went out: the next one may go at `at`. */
  paceNext(at: number): Promise<void>;
  /** Rows waiting (not handed on), in all or for one tenant. */
  depth(tenantId?: TenantId): Promise<number>;
  /** Every row, waiting or handed on and not acked yet. */
  size(): Promise<number>;
}
