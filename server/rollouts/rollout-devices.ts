import type { DeviceService } from '../devices/device-service';
import type { OtaPackageId, TenantId } from '../ids';
import { effectivePackageId } from '../pipeline/notifier';
import type { Rollout, RolloutDeviceView } from '../store/rollouts';
import type { Store } from '../store/store';

/**
 * What a rollout does to one device, through the same pipeline as any assignment: it sets the
 * device's own package slot (so the device is queued, paced and notified as when saved over the
 * REST API), takes a device that is still waiting in the queue back out, or gives an updated
 * device its previous package again (rollback).
 */
export class RolloutDevices {
  constructor(
    private readonly store: Store,
    private readonly devices: DeviceService,
  ) {}

  private slotOf(r: Rollout): 'firmwareId' | 'softwareId' {
    return r.type === 'FIRMWARE' ? 'firmwareId' : 'softwareId';
  }

  /**
   * Assigns the rollout's package to the device as its own (the downgrade guard applies unless the
   * rollout forces it). The device's slot before is recorded first, so a crash between the two
   * writes still knows what to restore. Answers false when the device is gone or the assignment
   * was refused (the device is then left out).
   */
  async assign(r: Rollout, d: RolloutDeviceView): Promise<{ assigned: boolean; error?: string }> {
    const device = await this.store.devices.findById(r.tenantId, d.deviceId);
    if (!device) return { assigned: false, error: 'device deleted' };
    const own = device[this.slotOf(r)];
    let previous = d.previousPackageId;
    if (own !== r.packageId) {
      previous = own;
      await this.store.rollouts.putDevices([{ ...d, previousPackageId: previous }]);
      try {
        await this.devices.save(r.tenantId, { [this.slotOf(r)]: { id: r.packageId, entityType: 'OTA_PACKAGE' } }, { mergeInto: d.deviceId, forceDowngrade: r.spec.forceDowngrade });
      } catch (err) {
        return { assigned: false, error: (err as Error).message };
      }
    }
    await this.store.rollouts.putDevices([{ ...d, previousPackageId: previous, status: 'ASSIGNED' }]);
    return { assigned: true };
  }

  /**
   * Takes an assigned device that was not yet notified back out of the queue, in one transaction:
   * its queued row goes, its own slot gets its previous value again, and its target says it is on
   * the package it had, so neither reconciliation nor the notifier (which drops an event whose
   * package is no longer the device's) tells it anything. Answers false when it was notified
   * already (it goes on updating) or its slot was changed by someone else meanwhile.
   */
  async takeBack(r: Rollout, d: RolloutDeviceView, now: number): Promise<boolean> {
    const slot = this.slotOf(r);
    return this.store.transaction(async (tx) => {
      const target = await tx.targets.get(d.deviceId, r.type);
      if (target && target.notified && target.packageId === r.packageId) return false;
      const device = await tx.devices.findById(r.tenantId, d.deviceId);
      if (!device || device[slot] !== r.packageId) return false;
      await tx.queue.remove(d.deviceId, r.type);
      const restored = { ...device, [slot]: d.previousPackageId, version: device.version + 1 };
      await tx.devices.update(restored);
      const profile = await tx.profiles.findById(r.tenantId, device.deviceProfileId);
      await tx.states.clearTarget(d.deviceId, r.type);
      await tx.targets.put([{ deviceId: d.deviceId, type: r.type, packageId: effectivePackageId(restored, profile, r.type), ts: now, notified: true }]);
      await tx.rollouts.putDevices([{ ...d, status: 'PENDING' }]);
      return true;
    });
  }

  /** Rollback: the device's own slot gets its previous value again, through the pipeline (it is notified of that package). */
  async restore(tenantId: TenantId, r: Rollout, d: RolloutDeviceView): Promise<boolean> {
    const device = await this.store.devices.findById(tenantId, d.deviceId);
    if (!device || device[this.slotOf(r)] !== r.packageId) return false;
    const previous: OtaPackageId | null = d.previousPackageId;
    await this.devices.save(tenantId, { [this.slotOf(r)]: previous ? { id: previous, entityType: 'OTA_PACKAGE' } : null }, { mergeInto: d.deviceId, forceDowngrade: true });
    return true;
  }
}
