import type { DeviceId, TenantId } from '../../ids';
import type { Notification } from '../../pipeline/notifier';

/** Why a device's long polls end early: it was deleted, or its token changed (reference §4). */
export type GoneReason = 'device-deleted' | 'credentials-changed';

interface Waiter {
  tenantId: TenantId;
  onUpdate(update: Record<string, unknown>): void;
  onGone(reason: GoneReason): void;
}

/**
 * The HTTP device transport's live part: devices long-polling `attributes/updates`, woken by a
 * notification for them. Everything else of the HTTP API is plain request/response.
 */
export class HttpDeviceSessions {
  private readonly waiters = new Map<DeviceId, Set<Waiter>>();

  /**
   * Waits for the next update of a device; `onGone` is called instead if the device is deleted
   * or its token changes meanwhile. `cancel` removes the wait (timeout, closed socket).
   */
  wait(device: { id: DeviceId; tenantId: TenantId }, onUpdate: (update: Record<string, unknown>) => void, onGone: (reason: GoneReason) => void = () => undefined): () => void {
    const deviceId = device.id;
    let set = this.waiters.get(deviceId);
    if (!set) this.waiters.set(deviceId, (set = new Set()));
    const waiter: Waiter = { tenantId: device.tenantId, onUpdate, onGone };
    set.add(waiter);
    return () => {
      set.delete(waiter);
      if (set.size === 0 && this.waiters.get(deviceId) === set) this.waiters.delete(deviceId);
    };
  }

  /** Delivers to every waiting request of the device; answers how many were waiting. */
  deliver(n: Pick<Notification, 'deviceId' | 'attributes' | 'deleted'>): number {
    // Most of a fan-out's devices are not long-polling here: no update is made for them.
    if (!this.waiters.has(n.deviceId)) return 0;
    const set = this.take(n.deviceId);
    const update = updateMessage(n);
    for (const w of set) w.onUpdate(update);
    return set.size;
  }

  /** The device was deleted: its waiting requests end (ThingsBoard answers them 403, reference §4). */
  deviceDeleted(deviceId: DeviceId): number {
    return this.end(deviceId, 'device-deleted');
  }

  /**
   * Ends the device's waiting requests: deleted, or its token changed (a request made with the
   * old token must not outlive it). Answers how many were waiting.
   */
  end(deviceId: DeviceId, reason: GoneReason): number {
    const set = this.take(deviceId);
    for (const w of set) w.onGone(reason);
    return set.size;
  }

  private take(deviceId: DeviceId): Set<Waiter> {
    const set = this.waiters.get(deviceId) ?? new Set<Waiter>();
    this.waiters.delete(deviceId);
    return set;
  }

  get waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }

  /** Long polls of one tenant's devices (a tenant admin's view of `GET /api/ota/endpoints`). */
  waitingOf(tenantId: TenantId): number {
    let n = 0;
    for (const s of this.waiters.values()) for (const w of s) if (w.tenantId === tenantId) n += 1;
    return n;
  }
}

/** ThingsBoard's attribute update JSON: the set keys flat, plus `deleted` when keys were deleted (§3.2). */
export function updateMessage(n: Pick<Notification, 'attributes' | 'deleted'>): Record<string, unknown> {
  return n.deleted.length ? { ...n.attributes, deleted: n.deleted } : { ...n.attributes };
}
