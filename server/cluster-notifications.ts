import { CLUSTER_PAYLOAD_MAX_BYTES } from './store/cluster-bus';
import type { DeviceId, OtaPackageId, TenantId } from './ids';
import type { AttributeMap } from './store/attributes';
import type { Notification } from './pipeline/notifier';
import type { OtaPackageType } from './store/ota-packages';

/**
 * Notifications as they travel between instances: a batch's devices share everything but their id
 * (the same package, its attributes, the same ts), so a group carries that once and the device ids
 * after it. A 500-device batch is then a few bus messages (each under the bus's payload limit),
 * not 500.
 */
export interface NotificationGroup {
  tenantId: TenantId;
  type: OtaPackageType;
  packageId: OtaPackageId | null;
  ts: number;
  attributes: AttributeMap;
  deleted: string[];
  deviceIds: DeviceId[];
}

/** Bytes of a group's shared part kept free for the bus's envelope around it. */
const ENVELOPE_ALLOWANCE = 256;

/**
 * Groups of notifications that differ only in their device, each holding at most `maxBytes` of
 * JSON (one bus message; Infinity: no limit, as ota-notify's batches in a flow).
 */
export function groupNotifications(notifications: readonly Notification[], maxBytes = CLUSTER_PAYLOAD_MAX_BYTES): NotificationGroup[] {
  const byShared = new Map<string, { shared: Omit<NotificationGroup, 'deviceIds'>; deviceIds: DeviceId[] }>();
  let last: { n: Notification; deviceIds: DeviceId[] } | null = null;
  for (const n of notifications) {
    // A batch's devices come in runs sharing one attribute map (Notifier): only the first of a run is keyed.
    if (!last || !sameShared(last.n, n)) {
      const shared = { tenantId: n.tenantId, type: n.type, packageId: n.packageId, ts: n.ts, attributes: n.attributes, deleted: n.deleted };
      const key = JSON.stringify(shared);
      let group = byShared.get(key);
      if (!group) byShared.set(key, (group = { shared, deviceIds: [] }));
      last = { n, deviceIds: group.deviceIds };
    }
    last.deviceIds.push(n.deviceId);
  }
  const out: NotificationGroup[] = [];
  for (const [key, { shared, deviceIds }] of byShared) {
    // A device id costs its JSON string and a comma.
    const perDevice = (deviceIds[0] ?? '').length + 3;
    const room = maxBytes - ENVELOPE_ALLOWANCE - Buffer.byteLength(key);
    const size = Math.max(1, Math.floor(room / perDevice));
    for (let from = 0; from < deviceIds.length; from += size) out.push({ ...shared, deviceIds: deviceIds.slice(from, from + size) });
  }
  return out;
}

const sameShared = (a: Notification, b: Notification): boolean =>
  a.attributes === b.attributes && a.deleted === b.deleted && a.ts === b.ts && a.packageId === b.packageId && a.type === b.type && a.tenantId === b.tenantId;

/** The notifications a group stands for, one per device (sharing its attribute map: delivery only reads it). */
export function ungroupNotifications(g: NotificationGroup): Notification[] {
  // A literal, not a spread of the rest: a fan-out makes one per device and transport, and V8 copies a spread ~30x slower.
  return g.deviceIds.map((deviceId) => ({ tenantId: g.tenantId, deviceId, type: g.type, packageId: g.packageId, attributes: g.attributes, deleted: g.deleted, ts: g.ts }));
}
