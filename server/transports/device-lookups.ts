import type { ClusterBus } from '../store/cluster-bus';
import type { DeviceProfile, DeviceProfileRepository } from '../store/device-profiles';
import type { Device, DeviceRepository } from '../store/devices';
import type { EngineEvents } from '../events';
import type { DeviceId, DeviceProfileId, TenantId } from '../ids';
import type { Logger } from '../logger';
import type { OtaPackageRepository, OtaPackageType } from '../store/ota-packages';
import { devicePackage, type DevicePackage } from './firmware-download';

/** The cluster bus topic of cache invalidations: what one instance changed, the others forget. */
export const LOOKUP_INVALIDATION_TOPIC = 'lookup-cache';

export interface LookupCacheLimits {
  /** Entries per cache (tokens; device packages; profiles) before the least recently used goes (`OTA_LOOKUP_CACHE_MAX_ENTRIES`). */
  maxEntries: number;
  /**
   * How long an entry is trusted (`OTA_LOOKUP_CACHE_TTL_MS`): the bound on staleness should an
   * invalidation from another instance be lost (its LISTEN connection was down). 0 turns caching off.
   */
  ttlMs: number;
}

export const LOOKUP_CACHE_DEFAULTS: LookupCacheLimits = { maxEntries: 10_000, ttlMs: 1000 };

const ENV: Record<keyof LookupCacheLimits, string> = {
  maxEntries: 'OTA_LOOKUP_CACHE_MAX_ENTRIES',
  ttlMs: 'OTA_LOOKUP_CACHE_TTL_MS',
};

/** The limits from the environment (non-negative integers; a size of at least 1); the defaults for the rest. */
export function lookupCacheLimitsFromEnv(env: NodeJS.ProcessEnv): LookupCacheLimits {
  const out = { ...LOOKUP_CACHE_DEFAULTS };
  for (const key of Object.keys(ENV) as Array<keyof LookupCacheLimits>) {
    const raw = env[ENV[key]]?.trim();
    if (!raw) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < (key === 'maxEntries' ? 1 : 0))
      throw new Error(`${ENV[key]} must be a ${key === 'maxEntries' ? 'positive' : 'non-negative'} integer, not '${raw}'`);
    out[key] = n;
  }
  return out;
}

/**
 * What to forget, as sent between instances: a device (by id and by the tokens it had and has), or
 * every device's package and every profile (a profile or a package changed: rare, and a profile
 * reaches many devices).
 */
export type LookupInvalidation = { deviceId: string; tokens: string[] } | { packages: 'all' };

interface Entry<V> {
  value: V;
  expires: number;
}

/** A map with least-recently-used eviction past `max` entries and a deadline per entry. */
class LruTtl<V> {
  private readonly map = new Map<string, Entry<V>>();

  constructor(private readonly max: number) {}

  get(key: string, now: number): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    if (e.expires <= now) return undefined;
    this.map.set(key, e); // most recently used last: Map keeps insertion order
    return e.value;
  }

  set(key: string, value: V, expires: number): void {
    this.map.delete(key);
    this.map.set(key, { value, expires });
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}

export interface DeviceLookupDeps {
  devices: Pick<DeviceRepository, 'findByAccessToken' | 'findById'>;
  profiles: Pick<DeviceProfileRepository, 'findById'>;
  packages: Pick<OtaPackageRepository, 'findById'>;
  events: EngineEvents;
  bus: ClusterBus;
  logger: Pick<Logger, 'warn'>;
  now: () => number;
}

/**
 * The per-request lookups of the device paths, cached per instance (issue 9): access token ->
 * device, device -> its effective package (with the blob it is read from), and device profile (its
 * payload type and protobuf schemas, read on every MQTT CONNECT and CoAP uplink). A hit costs a map
 * lookup instead of one to three store queries.
 *
 * Invalidation, so that a stale entry never serves another device's or a deleted package's bytes
 * nor accepts an old token:
 * - here, on the engine's events (emitted after each commit): a device saved (token, slots,
 *   profile) or deleted forgets that device; a profile or package saved or deleted forgets every
 *   device's package and every profile;
 * - on the other instances sharing the store, by the same message on the cluster bus;
 * - a load that started before an invalidation is not cached (a generation count), so a value read
 *   just before a commit cannot outlive it;
 * - every entry expires after `ttlMs`, which bounds staleness should a bus message be lost.
 * Unknown tokens are not cached: they would only make room for a stranger's guesses.
 */
export class DeviceLookups {
  private readonly tokens: LruTtl<Device>;
  /** The token each cached device was found by, to forget it by device id. */
  private readonly tokenOf = new Map<string, string>();
  private readonly packages: LruTtl<{ tenantId: TenantId; found: DevicePackage }>;
  private readonly profiles: LruTtl<DeviceProfile>;
  private generation = 0;
  /** Invalidations of this tick, sent to the other instances in one message batch. */
  private outbox: LookupInvalidation[] = [];
  private readonly unhook: Array<() => void> = [];

  constructor(
    private readonly deps: DeviceLookupDeps,
    private readonly limits: LookupCacheLimits = LOOKUP_CACHE_DEFAULTS,
  ) {
    this.tokens = new LruTtl(limits.maxEntries);
    this.packages = new LruTtl(limits.maxEntries);
    this.profiles = new LruTtl(limits.maxEntries);
    const { events } = deps;
    // A new device is in no instance's cache (unknown tokens and ids are not cached): forgotten
    // here only, which keeps bulk creation free of bus traffic.
    const onDeviceSaved = ({ before, after }: { before: Device | null; after: Device }): void => {
      const m = { deviceId: after.id, tokens: before && before.accessToken !== after.accessToken ? [before.accessToken, after.accessToken] : [after.accessToken] };
      if (before) this.changed(m);
      else this.forget(m);
    };
    const onDeviceDeleted = ({ device }: { device: Device }): void => this.changed({ deviceId: device.id, tokens: [device.accessToken] });
    const onOther = (): void => this.changed({ packages: 'all' });
    events.on('deviceSaved', onDeviceSaved);
    events.on('deviceDeleted', onDeviceDeleted);
    for (const name of ['deviceProfileSaved', 'deviceProfileDeleted', 'packageSaved', 'packageDeleted'] as const) events.on(name, onOther);
    this.unhook.push(
      () => events.off('deviceSaved', onDeviceSaved),
      () => events.off('deviceDeleted', onDeviceDeleted),
      ...(['deviceProfileSaved', 'deviceProfileDeleted', 'packageSaved', 'packageDeleted'] as const).map((name) => () => events.off(name, onOther)),
      deps.bus.subscribe(LOOKUP_INVALIDATION_TOPIC, (m) => this.forget(m as LookupInvalidation)),
    );
  }

  /** The device whose access token this is (HTTP and CoAP authenticate each request by it), or null. */
  async deviceByToken(token: string): Promise<Device | null> {
    const now = this.deps.now();
    const hit = this.tokens.get(token, now);
    if (hit) return hit;
    const generation = this.generation;
    const device = await this.deps.devices.findByAccessToken(token);
    if (device && generation === this.generation && this.limits.ttlMs > 0) {
      this.tokens.set(token, device, now + this.limits.ttlMs);
      this.tokenOf.set(device.id, token);
      if (this.tokenOf.size > this.limits.maxEntries) this.tokenOf.delete(this.tokenOf.keys().next().value as string);
    }
    return device;
  }

  /** The device's effective package of `type` as it is now (its own slot, else its profile's), or why there is none. */
  async packageOf(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<DevicePackage> {
    const key = `${deviceId}/${type}`;
    const now = this.deps.now();
    const hit = this.packages.get(key, now);
    if (hit && hit.tenantId === tenantId) return hit.found;
    const generation = this.generation;
    const device = await this.deps.devices.findById(tenantId, deviceId);
    // A device that is gone has nothing: not cached, its id will not come back.
    if (!device) return { error: 'NOT_FOUND' };
    const found = await devicePackage(device, type, { profiles: { findById: (t, id) => this.profileOf(t, id) }, packages: this.deps.packages });
    if (generation === this.generation && this.limits.ttlMs > 0) this.packages.set(key, { tenantId, found }, now + this.limits.ttlMs);
    return found;
  }

  /** A profile of the tenant as it is now (the protobuf check of MQTT CONNECT and CoAP uplinks), or null. */
  async profileOf(tenantId: TenantId, profileId: DeviceProfileId): Promise<DeviceProfile | null> {
    const key = `${tenantId}/${profileId}`;
    const now = this.deps.now();
    const hit = this.profiles.get(key, now);
    if (hit) return hit;
    const generation = this.generation;
    const profile = await this.deps.profiles.findById(tenantId, profileId);
    // An unknown profile is not cached: a device names only its own, which exists.
    if (profile && generation === this.generation && this.limits.ttlMs > 0) this.profiles.set(key, profile, now + this.limits.ttlMs);
    return profile;
  }

  /** Entries held now (tokens, device packages, profiles), for tests and diagnostics. */
  get size(): { tokens: number; packages: number; profiles: number } {
    return { tokens: this.tokens.size, packages: this.packages.size, profiles: this.profiles.size };
  }

  /** Stops listening to the engine's events and the bus. */
  close(): void {
    for (const u of this.unhook.splice(0)) u();
    this.tokens.clear();
    this.packages.clear();
    this.profiles.clear();
    this.tokenOf.clear();
  }

  /** A change made here: forgotten here at once, and on the other instances through the bus. */
  private changed(m: LookupInvalidation): void {
    this.forget(m);
    if (this.outbox.push(m) > 1) return;
    queueMicrotask(() => {
      const batch = this.outbox;
      this.outbox = [];
      // One 'all' stands for any number of them.
      const all = batch.find((x) => 'packages' in x);
      const send = all ? [all, ...batch.filter((x) => !('packages' in x))] : batch;
      this.deps.bus
        .publish(LOOKUP_INVALIDATION_TOPIC, send)
        .catch((err: Error) => this.deps.logger.warn(`cannot tell the other instances to forget cached lookups: ${err.message}`));
    });
  }

  private forget(m: LookupInvalidation): void {
    this.generation += 1;
    if ('packages' in m) {
      this.packages.clear();
      return this.profiles.clear();
    }
    const token = this.tokenOf.get(m.deviceId);
    if (token !== undefined) this.tokens.delete(token);
    this.tokenOf.delete(m.deviceId);
    for (const t of m.tokens) this.tokens.delete(t);
    this.packages.delete(`${m.deviceId}/FIRMWARE`);
    this.packages.delete(`${m.deviceId}/SOFTWARE`);
  }
}
