import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { DeviceProfile, DeviceProfileRepository } from '../store/device-profiles';
import type { DeviceProfileService } from '../devices/device-profile-service';
import type { Device, DeviceRepository, PackageSlot } from '../store/devices';
import type { DeviceService } from '../devices/device-service';
import { invalid } from '../errors';
import type { EngineEvents } from '../events';
import { isUuid, type DeviceId, type OtaPackageId, type TenantId } from '../ids';
import { effectivePackageId } from './notifier';
import type { AssignmentEvent, NotifyQueue } from './notify-queue';
import type { Timers } from '../timers';
import { allAttributeKeys } from './ota-keys';
import type { OtaPackageRepository, OtaPackageType } from '../store/ota-packages';
import type { Logger } from '../logger';
import type { Store } from '../store/store';

const TYPES: readonly OtaPackageType[] = ['FIRMWARE', 'SOFTWARE'];
/** ThingsBoard pages a profile's devices 100 at a time; so do we, never the whole fleet in memory. */
const PAGE = 100;
/**
 * Devices of a profile emitted between two yields to the event loop. The stages after ota-assign
 * write what arrives in one turn in one transaction, so this is their batch: 100 (one page) made
 * four commits and a queue count per 100 devices, the largest cost of a 10,000-device fan-out.
 */
const TURN = 1000;
/** Devices queued again per transaction on start. */
const RECONCILE_BATCH = 500;
const slotOf = (type: OtaPackageType): PackageSlot => (type === 'FIRMWARE' ? 'firmware_id' : 'software_id');

/** An assignment asked for by a flow message (ota-assign's input). */
export interface AssignRequest {
  /** A device profile or a device, by id or by name. */
  target: { deviceProfile: string } | { device: string };
  type: OtaPackageType;
  /** A package by id, by `{title, version}`, or null to unassign. */
  package: string | { title: string; version: string } | null;
}

/**
 * Turns saves of devices and profiles into per-device assignment events, with ThingsBoard's
 * triggers (reference §2): a device created or changed, moved to another profile, or a profile's
 * slot changed (only devices with an empty own slot). An emptied slot deletes the nine shared keys
 * at once. Events go to the `assignment` listeners (the ota-assign node); with none, straight into
 * the queue so nothing waits for a restart.
 */
export class AssignmentService {
  constructor(
    private readonly store: Store,
    private readonly deps: {
      events: EngineEvents;
      devices: DeviceRepository;
      profiles: DeviceProfileRepository;
      packages: OtaPackageRepository;
      queue: NotifyQueue;
      deviceService: DeviceService;
      profileService: DeviceProfileService;
      logger: Logger;
    },
    private readonly timers: Pick<Timers, 'now'>,
  ) {
    const guard = (p: Promise<unknown>): void => {
      const tracked = p.catch((err: Error) => deps.logger.error(`assignment failed: ${err.message}`)).finally(() => this.inFlight.delete(tracked));
      this.inFlight.add(tracked);
    };
    deps.events.on('deviceSaved', ({ before, after }) => guard(this.onDeviceSaved(before, after)));
    deps.events.on('deviceProfileSaved', ({ before, after }) => guard(this.onProfileSaved(before, after)));
  }

  private readonly inFlight = new Set<Promise<unknown>>();
  /** Tenants a flow's ota-assign node takes the assignments of, with how many nodes claim each. */
  private readonly claimed = new Map<TenantId, number>();

  /**
   * A flow acts for one tenant (its ota-server node's): its ota-assign node claims that tenant's
   * assignments, and every other tenant's go straight to the queue, so a tenant made through the
   * API is updated while a flow runs for another (issue 10). Answers the release of the claim.
   * With listeners but no claim at all (a flow of older nodes), the listeners take every assignment.
   */
  claim(tenantId: TenantId): () => void {
    this.claimed.set(tenantId, (this.claimed.get(tenantId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.claimed.get(tenantId) ?? 1) - 1;
      if (n > 0) this.claimed.set(tenantId, n);
      else this.claimed.delete(tenantId);
    };
  }

  /** Resolves once every assignment fan-out under way has finished (the engine waits before closing). */
  async idle(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  /** ota-assign's input: resolves names, then saves the profile or device like the REST API does. */
  async assign(tenantId: TenantId, req: AssignRequest): Promise<{ entity: 'DEVICE_PROFILE' | 'DEVICE'; id: string; packageId: OtaPackageId | null }> {
    const packageId = req.package === null ? null : await this.resolvePackage(tenantId, req.package);
    const field = req.type === 'FIRMWARE' ? 'firmwareId' : 'softwareId';
    const value = packageId ? { id: packageId, entityType: 'OTA_PACKAGE' } : null;
    if ('deviceProfile' in req.target) {
      const ref = req.target.deviceProfile;
      const profile = isUuid(ref) ? await this.deps.profileService.get(tenantId, ref) : await this.deps.profiles.findByName(tenantId, ref);
      if (!profile) throw invalid(`No device profile named '${ref}'`);
      await this.deps.profileService.save(tenantId, { [field]: value }, { mergeInto: profile.id });
      return { entity: 'DEVICE_PROFILE', id: profile.id, packageId };
    }
    const ref = req.target.device;
    const device = isUuid(ref) ? await this.deps.deviceService.get(tenantId, ref) : await this.deps.devices.findByName(tenantId, ref);
    if (!device) throw invalid(`No device named '${ref}'`);
    await this.deps.deviceService.save(tenantId, { [field]: value }, { mergeInto: device.id });
    return { entity: 'DEVICE', id: device.id, packageId };
  }

  /**
   * On start: every device whose effective package differs from the last target it was queued or
   * notified for (a message lost mid-flow, a crash) is queued again; emptied slots are cleared.
   */
  async reconcile(): Promise<{ queued: number; cleared: number }> {
    let queued = 0;
    let cleared = 0;
    for (const type of TYPES) {
      const rows = await this.store.targets.drifted(type);
      const requeue: AssignmentEvent[] = [];
      for (const r of rows) {
        if (r.effective === null) {
          await this.clear(r.deviceId, type);
          cleared += 1;
        } else {
          // A released-but-unnotified event keeps its timestamp, so it is still the same assignment.
          const ts = r.target === r.effective && r.ts !== null ? r.ts : this.timers.now();
          requeue.push({ tenantId: r.tenantId, deviceId: r.deviceId, type, packageId: r.effective, ts });
        }
      }
      for (let i = 0; i < requeue.length; i += RECONCILE_BATCH) {
        queued += (await this.deps.queue.enqueueAll(requeue.slice(i, i + RECONCILE_BATCH))).filter(Boolean).length;
      }
    }
    return { queued, cleared };
  }

  private async onDeviceSaved(before: Device | null, after: Device): Promise<void> {
    const newProfile = await this.deps.profiles.findById(after.tenantId, after.deviceProfileId);
    const oldProfile = before ? await this.deps.profiles.findById(before.tenantId, before.deviceProfileId) : null;
    for (const type of TYPES) {
      const next = effectivePackageId(after, newProfile, type);
      const prev = before ? effectivePackageId(before, oldProfile, type) : null;
      if (next === prev) continue;
      await this.emit({ tenantId: after.tenantId, deviceId: after.id, type, packageId: next, ts: this.timers.now() });
    }
  }

  private async onProfileSaved(before: DeviceProfile | null, after: DeviceProfile): Promise<void> {
    if (!before) return; // ThingsBoard: creating a profile triggers nothing
    for (const type of TYPES) {
      const field = type === 'FIRMWARE' ? 'firmwareId' : 'softwareId';
      if (before[field] === after[field]) continue;
      let afterId = '';
      // The first page flows at once; later pages are gathered up to a turn's worth and emitted
      // together: with an asynchronous store (PostgreSQL) every page read is a turn of its own, and
      // pages emitted one by one made the stages after ota-assign write batches of 100, not 1,000.
      let gathered: AssignmentEvent[] = [];
      for (let first = true; ; first = false) {
        const page = await this.deps.devices.listInheriting(after.tenantId, after.id, slotOf(type), afterId, PAGE);
        gathered.push(...page.map((d) => ({ tenantId: after.tenantId, deviceId: d.id, type, packageId: after[field], ts: this.timers.now() })));
        const last = page.length < PAGE;
        if (first || last || gathered.length >= TURN) {
          await this.emitAll(gathered);
          gathered = [];
          if (!last) await yieldToLoop();
        }
        if (last) break;
        afterId = (page[page.length - 1] as Device).id;
      }
    }
  }

  private emit(ev: AssignmentEvent): Promise<void> {
    return this.emitAll([ev]);
  }

  /** A page of devices: with nobody listening, queued in one transaction. */
  private async emitAll(events: readonly AssignmentEvent[]): Promise<void> {
    for (const ev of events) if (ev.packageId === null) await this.clear(ev.deviceId, ev.type);
    const toFlow = (ev: AssignmentEvent): boolean => this.deps.events.listenerCount('assignment') > 0 && (this.claimed.size === 0 || this.claimed.has(ev.tenantId));
    for (const ev of events) if (toFlow(ev)) this.deps.events.emit('assignment', ev);
    const queued = events.filter((ev) => !toFlow(ev) && ev.packageId !== null);
    if (queued.length) await this.deps.queue.enqueueAll(queued);
  }

  /** An emptied slot: the nine shared keys go at once (not queued), as in ThingsBoard. */
  private async clear(deviceId: DeviceId, type: OtaPackageType): Promise<void> {
    await this.deps.queue.cancel(deviceId, type);
    await this.store.attributes.delete(deviceId, 'SHARED', allAttributeKeys(type));
  }

  private async resolvePackage(tenantId: TenantId, ref: string | { title: string; version: string }): Promise<OtaPackageId> {
    if (typeof ref === 'string') {
      if (!isUuid(ref)) throw invalid(`Not a package id: ${ref}`);
      return ref as OtaPackageId;
    }
    const pkg = await this.deps.packages.findByTitleVersion(tenantId, ref.title, ref.version);
    if (!pkg) throw invalid(`No package '${ref.title}' version '${ref.version}'`);
    return pkg.id;
  }
}
