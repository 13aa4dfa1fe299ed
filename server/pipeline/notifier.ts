import type { AttributeMap, AttributeRepository } from '../store/attributes';
import type { Db } from '../store/sqlite/database';
import type { DeviceProfileRepository } from '../store/device-profiles';
import type { Device, DeviceRepository } from '../store/devices';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { AssignmentEvent } from './notify-queue';
import type { Timers } from '../timers';
import { allAttributeKeys, keyPrefix, packageAttributes } from './ota-keys';
import type { OtaPackageRepository, OtaPackageType } from '../store/ota-packages';
import type { OtaStateRepository } from '../store/ota-states';
import type { TelemetryRepository } from '../store/telemetry';

/** What transports deliver to a device: the shared attributes set, and the keys deleted. */
export interface Notification {
  tenantId: TenantId;
  deviceId: DeviceId;
  type: OtaPackageType;
  packageId: OtaPackageId | null;
  attributes: AttributeMap;
  deleted: string[];
  ts: number;
}

export type NotifyOutcome = { notification: Notification } | { dropped: 'device deleted' | 'package changed' | 'package deleted' | 'already notified' };

/** The package a device should run: its own slot, else its profile's (reference §2). */
export function effectivePackageId(device: Pick<Device, 'firmwareId' | 'softwareId'>, profile: { firmwareId: OtaPackageId | null; softwareId: OtaPackageId | null } | null, type: OtaPackageType): OtaPackageId | null {
  const own = type === 'FIRMWARE' ? device.firmwareId : device.softwareId;
  if (own) return own;
  if (!profile) return null;
  return type === 'FIRMWARE' ? profile.firmwareId : profile.softwareId;
}

/**
 * The consumer side of the queue, as ThingsBoard's DefaultOtaPackageStateService.process: a released
 * event whose device is gone or whose effective package changed meanwhile is dropped; otherwise
 * `INITIATED`, then the shared attributes (§1.2).
 */
export class Notifier {
  /** Counts since start, in all and per tenant. */
  readonly stats = { notified: 0, dropped: 0 };
  private readonly perTenant = new Map<TenantId, { notified: number; dropped: number }>();

  statsFor(tenantId: TenantId): { notified: number; dropped: number } {
    return { ...(this.perTenant.get(tenantId) ?? { notified: 0, dropped: 0 }) };
  }

  constructor(
    private readonly db: Db,
    private readonly deps: {
      devices: DeviceRepository;
      profiles: DeviceProfileRepository;
      packages: OtaPackageRepository;
      attributes: AttributeRepository;
      telemetry: TelemetryRepository;
      states: OtaStateRepository;
    },
    private readonly timers: Pick<Timers, 'now'>,
  ) {}

  async process(ev: AssignmentEvent): Promise<NotifyOutcome> {
    const outcome = await this.decide(ev);
    let t = this.perTenant.get(ev.tenantId);
    if (!t) this.perTenant.set(ev.tenantId, (t = { notified: 0, dropped: 0 }));
    const key = 'dropped' in outcome ? 'dropped' : 'notified';
    this.stats[key] += 1;
    t[key] += 1;
    return outcome;
  }

  private async decide(ev: AssignmentEvent): Promise<NotifyOutcome> {
    const { devices, profiles, packages, attributes, telemetry, states } = this.deps;
    const device = await devices.findById(ev.tenantId, ev.deviceId);
    if (!device) return { dropped: 'device deleted' };
    const profile = await profiles.findById(ev.tenantId, device.deviceProfileId);
    if (effectivePackageId(device, profile, ev.type) !== ev.packageId) return { dropped: 'package changed' };

    if (ev.packageId === null) {
      // The attributes were deleted when the slot emptied; this tells the device.
      return { notification: { ...base(ev), attributes: {}, deleted: allAttributeKeys(ev.type) } };
    }
    const target = this.db.prepare('SELECT package_id, ts, notified FROM ota_targets WHERE device_id = ? AND type = ?').get(ev.deviceId, ev.type) as
      | { package_id: string | null; ts: number; notified: number }
      | undefined;
    if (target && target.notified === 1 && target.package_id === ev.packageId && target.ts === ev.ts) return { dropped: 'already notified' };
    const pkg = await packages.findById(ev.tenantId, ev.packageId);
    if (!pkg) return { dropped: 'package deleted' };

    const now = this.timers.now();
    await telemetry.save(ev.deviceId, [{ ts: now, values: { [`${keyPrefix(ev.type)}_state`]: 'INITIATED' } }]);
    states.setState(ev.deviceId, ev.tenantId, ev.type, 'INITIATED', now, null);
    const { set, remove } = packageAttributes(pkg);
    const deleted = await attributes.delete(ev.deviceId, 'SHARED', remove);
    await attributes.save(ev.deviceId, 'SHARED', set, ev.ts);
    this.db
      .prepare('INSERT OR REPLACE INTO ota_targets (device_id, type, package_id, ts, notified) VALUES (?, ?, ?, ?, 1)')
      .run(ev.deviceId, ev.type, ev.packageId, ev.ts);
    return { notification: { ...base(ev), attributes: set, deleted } };
  }
}

const base = (ev: AssignmentEvent) => ({ tenantId: ev.tenantId, deviceId: ev.deviceId, type: ev.type, packageId: ev.packageId, ts: ev.ts });
