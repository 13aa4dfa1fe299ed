import type { DeviceId } from './ids';
import type { Notification } from './notifier';

type Waiter = (update: Record<string, unknown>) => void;

/**
 * The HTTP device transport's live part: devices long-polling `attributes/updates`, woken by a
 * notification for them. Everything else of the HTTP API is plain request/response.
 */
export class HttpDeviceSessions {
  private readonly waiters = new Map<DeviceId, Set<Waiter>>();

  /** Waits for the next update of a device; `cancel` removes the wait (timeout, closed socket). */
  wait(deviceId: DeviceId, onUpdate: Waiter): () => void {
    let set = this.waiters.get(deviceId);
    if (!set) this.waiters.set(deviceId, (set = new Set()));
    set.add(onUpdate);
    return () => {
      set.delete(onUpdate);
      if (set.size === 0 && this.waiters.get(deviceId) === set) this.waiters.delete(deviceId);
    };
  }

  /** Delivers to every waiting request of the device; answers how many were waiting. */
  deliver(n: Pick<Notification, 'deviceId' | 'attributes' | 'deleted'>): number {
    const set = this.waiters.get(n.deviceId);
    if (!set) return 0;
    this.waiters.delete(n.deviceId);
    const update = updateMessage(n);
    for (const w of set) w(update);
    return set.size;
  }

  get waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }
}

/** ThingsBoard's attribute update JSON: the set keys flat, plus `deleted` when keys were deleted (§3.2). */
export function updateMessage(n: Pick<Notification, 'attributes' | 'deleted'>): Record<string, unknown> {
  return n.deleted.length ? { ...n.attributes, deleted: n.deleted } : { ...n.attributes };
}
