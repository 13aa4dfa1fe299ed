import { expect } from 'chai';
import { EngineEvents } from '../../server/events';
import type { DeviceId, DeviceProfileId, OtaPackageId, TenantId } from '../../server/ids';
import type { ClusterBus } from '../../server/store/cluster-bus';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { OtaPackage } from '../../server/store/ota-packages';
import { DeviceLookups, LOOKUP_INVALIDATION_TOPIC, lookupCacheLimitsFromEnv, type LookupInvalidation } from '../../server/transports/device-lookups';
import { eventually } from '../support/eventually';
import { packageRow } from '../support/package-row';

const TENANT = 'tenant-1' as TenantId;
const OTHER_TENANT = 'tenant-2' as TenantId;

const device = (id: string, token: string, firmwareId: string | null = null): Device => ({
  id: id as DeviceId,
  tenantId: TENANT,
  name: id,
  label: null,
  deviceProfileId: 'profile-1' as DeviceProfileId,
  firmwareId: firmwareId as OtaPackageId | null,
  softwareId: null,
  accessToken: token,
  credentialsId: `cred-${id}`,
  createdTime: 0,
  version: 1,
  extra: {},
});

const profile = (firmwareId: string | null): DeviceProfile => ({
  id: 'profile-1' as DeviceProfileId,
  tenantId: TENANT,
  name: 'p',
  description: null,
  isDefault: false,
  firmwareId: firmwareId as OtaPackageId | null,
  softwareId: null,
  createdTime: 0,
  version: 1,
  extra: {},
});

const pkg = (id: string, sha: string): OtaPackage =>
  packageRow(TENANT, 'profile-1' as DeviceProfileId, { id: id as OtaPackageId, title: id, version: '1', url: null, dataSize: 10, blobSha256: sha, createdTime: 0 });

/** An in-memory store that counts its queries; `gate` holds a query until released. */
class Rows {
  devices = new Map<string, Device>();
  profile = profile(null);
  packages = new Map<string, OtaPackage>();
  queries = 0;
  gate: Promise<void> | null = null;

  private async q<T>(v: T): Promise<T> {
    this.queries += 1;
    if (this.gate) await this.gate;
    return v;
  }

  readonly repos = {
    devices: {
      findByAccessToken: (token: string) => this.q([...this.devices.values()].find((d) => d.accessToken === token) ?? null),
      findById: (tenantId: TenantId, id: DeviceId) => this.q(this.devices.get(id)?.tenantId === tenantId ? (this.devices.get(id) as Device) : null),
    },
    profiles: { findById: () => this.q(this.profile) },
    packages: { findById: (_t: TenantId, id: OtaPackageId) => this.q(this.packages.get(id) ?? null) },
  };
}

/** A bus of several instances in one process: what one publishes, the others hear. */
class Bus {
  private readonly members: Array<Map<string, Set<(p: unknown) => void>>> = [];
  readonly sent: LookupInvalidation[] = [];

  member(): ClusterBus {
    const listeners = new Map<string, Set<(p: unknown) => void>>();
    this.members.push(listeners);
    return {
      reachesOthers: true,
      publish: async (topic, payloads) => {
        this.sent.push(...(payloads as LookupInvalidation[]));
        for (const other of this.members) if (other !== listeners) for (const p of payloads) for (const l of other.get(topic) ?? []) l(p);
      },
      subscribe: (topic, listener) => {
        let set = listeners.get(topic);
        if (!set) listeners.set(topic, (set = new Set()));
        set.add(listener);
        return () => set.delete(listener);
      },
      close: async () => undefined,
    };
  }
}

describe('device lookup caches', () => {
  let rows: Rows;
  let events: EngineEvents;
  let bus: Bus;
  let now: number;
  let lookups: DeviceLookups;
  const open: DeviceLookups[] = [];

  const make = (e = events, b = bus.member(), limits = { maxEntries: 100, ttlMs: 60_000 }): DeviceLookups => {
    const l = new DeviceLookups({ ...rows.repos, events: e, bus: b, logger: { warn: () => undefined }, now: () => now }, limits);
    open.push(l);
    return l;
  };

  beforeEach(() => {
    rows = new Rows();
    events = new EngineEvents();
    bus = new Bus();
    now = 1_000;
    rows.devices.set('d1', device('d1', 'token-1', 'fw-a'));
    rows.packages.set('fw-a', pkg('fw-a', 'a'.repeat(64)));
    rows.packages.set('fw-b', pkg('fw-b', 'b'.repeat(64)));
    lookups = make();
  });

  afterEach(() => {
    for (const l of open.splice(0)) l.close();
  });

  const packageId = async (l = lookups, id = 'd1', tenant = TENANT): Promise<string> => {
    const found = await l.packageOf(tenant, id as DeviceId, 'FIRMWARE');
    return 'error' in found ? found.error : found.pkg.id;
  };

  it('answers a token and a device package from the cache after the first query', async () => {
    expect((await lookups.deviceByToken('token-1'))?.id).to.equal('d1');
    expect(await packageId()).to.equal('fw-a');
    const queries = rows.queries;
    for (let i = 0; i < 5; i++) {
      expect((await lookups.deviceByToken('token-1'))?.id).to.equal('d1');
      expect(await packageId()).to.equal('fw-a');
    }
    expect(rows.queries).to.equal(queries);
  });

  it('does not cache an unknown token: a device created with it is found at once', async () => {
    expect(await lookups.deviceByToken('token-2')).to.equal(null);
    const d2 = device('d2', 'token-2');
    rows.devices.set('d2', d2);
    events.emit('deviceSaved', { before: null, after: d2 });
    expect((await lookups.deviceByToken('token-2'))?.id).to.equal('d2');
  });

  it('refuses the old token at once after a credentials change, and finds the device by the new one', async () => {
    const before = rows.devices.get('d1') as Device;
    await lookups.deviceByToken('token-1');
    const after = { ...before, accessToken: 'token-1b' };
    rows.devices.set('d1', after);
    events.emit('deviceSaved', { before, after });
    expect(await lookups.deviceByToken('token-1')).to.equal(null);
    expect((await lookups.deviceByToken('token-1b'))?.id).to.equal('d1');
  });

  it('forgets a deleted device: its token is refused and it has no package', async () => {
    const d1 = rows.devices.get('d1') as Device;
    await lookups.deviceByToken('token-1');
    await packageId();
    rows.devices.delete('d1');
    events.emit('deviceDeleted', { device: d1 });
    expect(await lookups.deviceByToken('token-1')).to.equal(null);
    expect(await packageId()).to.equal('NOT_FOUND');
  });

  it('follows a reassignment of the device', async () => {
    const before = rows.devices.get('d1') as Device;
    expect(await packageId()).to.equal('fw-a');
    const after = { ...before, firmwareId: 'fw-b' as OtaPackageId };
    rows.devices.set('d1', after);
    events.emit('deviceSaved', { before, after });
    expect(await packageId()).to.equal('fw-b');
  });

  it("follows a change of the device's profile assignment", async () => {
    rows.devices.set('d1', device('d1', 'token-1', null));
    expect(await packageId()).to.equal('NOT_FOUND');
    const before = rows.profile;
    rows.profile = profile('fw-b');
    events.emit('deviceProfileSaved', { before, after: rows.profile });
    expect(await packageId()).to.equal('fw-b');
  });

  it('forgets a deleted package, and a package whose row changed', async () => {
    expect(await packageId()).to.equal('fw-a');
    const a = rows.packages.get('fw-a') as OtaPackage;
    rows.packages.delete('fw-a');
    events.emit('packageDeleted', { pkg: a });
    expect(await packageId()).to.equal('NOT_FOUND');
    rows.packages.set('fw-a', { ...a, url: 'http://example.invalid/fw', blobSha256: null });
    events.emit('packageSaved', { before: a, after: rows.packages.get('fw-a') as OtaPackage });
    expect(await packageId()).to.equal('FAILURE');
  });

  it('never answers a device of another tenant', async () => {
    expect(await packageId()).to.equal('fw-a');
    expect(await packageId(lookups, 'd1', OTHER_TENANT)).to.equal('NOT_FOUND');
  });

  it('does not cache what was read before an invalidation that came while the query ran', async () => {
    const before = rows.devices.get('d1') as Device;
    let release: () => void = () => undefined;
    rows.gate = new Promise((r) => (release = r));
    const stale = lookups.deviceByToken('token-1');
    const stalePackage = packageId();
    // The change commits and is announced while both queries are still out.
    const after = { ...before, accessToken: 'token-1b', firmwareId: 'fw-b' as OtaPackageId };
    rows.devices.set('d1', after);
    events.emit('deviceSaved', { before, after });
    rows.gate = null;
    release();
    await stale;
    await stalePackage;
    expect(await lookups.deviceByToken('token-1')).to.equal(null);
    expect(await packageId()).to.equal('fw-b');
  });

  it('tells the other instances, which forget the same entries; creating a device sends nothing', async () => {
    const events2 = new EngineEvents();
    const other = make(events2);
    expect((await other.deviceByToken('token-1'))?.id).to.equal('d1');
    expect(await packageId(other)).to.equal('fw-a');
    const d2 = device('d2', 'token-2');
    rows.devices.set('d2', d2);
    events.emit('deviceSaved', { before: null, after: d2 });
    const before = rows.devices.get('d1') as Device;
    const after = { ...before, accessToken: 'token-1b', firmwareId: 'fw-b' as OtaPackageId };
    rows.devices.set('d1', after);
    events.emit('deviceSaved', { before, after });
    await new Promise((r) => setImmediate(r));
    expect(bus.sent).to.deep.equal([{ deviceId: 'd1', tokens: ['token-1', 'token-1b'] }]);
    expect(await other.deviceByToken('token-1')).to.equal(null);
    expect(await packageId(other)).to.equal('fw-b');

    rows.profile = profile('fw-a');
    events.emit('deviceProfileSaved', { before: profile(null), after: rows.profile });
    events.emit('packageSaved', { before: null, after: rows.packages.get('fw-a') as OtaPackage });
    await new Promise((r) => setImmediate(r));
    // Several changes of a tick travel as one batch, and one "every package" stands for all of them.
    expect(bus.sent.slice(1)).to.deep.equal([{ packages: 'all' }]);
  });

  it('hears the bus on the topic of its own', async () => {
    const b = bus.member();
    await lookups.deviceByToken('token-1');
    await b.publish(LOOKUP_INVALIDATION_TOPIC, [{ deviceId: 'd1', tokens: [] }]);
    const queries = rows.queries;
    await lookups.deviceByToken('token-1');
    expect(rows.queries, 'the token was looked up again').to.equal(queries + 1);
  });

  it('lets an entry expire after its time to live, which bounds a lost invalidation', async () => {
    const l = make(events, bus.member(), { maxEntries: 100, ttlMs: 500 });
    await l.deviceByToken('token-1');
    // A change this instance never hears of (on another instance, its message lost).
    rows.devices.set('d1', { ...(rows.devices.get('d1') as Device), accessToken: 'token-1b' });
    now += 499;
    expect((await l.deviceByToken('token-1'))?.id).to.equal('d1');
    now += 1;
    expect(await l.deviceByToken('token-1')).to.equal(null);
  });

  it('answers a profile from the cache, and reads it again once it was saved here or on another instance', async () => {
    // Another instance: its own events, the same bus.
    const other = make(new EngineEvents());
    const read = async (l: DeviceLookups): Promise<number | undefined> => (await l.profileOf(TENANT, 'profile-1' as DeviceProfileId))?.version;
    expect(await read(lookups)).to.equal(1);
    expect(await read(other)).to.equal(1);
    const queries = rows.queries;
    expect(await read(lookups)).to.equal(1);
    expect(rows.queries, 'a hit queries nothing').to.equal(queries);
    rows.profile = { ...profile(null), version: 2 };
    events.emit('deviceProfileSaved', { before: profile(null), after: rows.profile });
    expect(await read(lookups)).to.equal(2);
    await eventually(async () => (await read(other)) === 2, 'the other instance reading it again');
  });

  it('caches nothing with a time to live of 0', async () => {
    const l = make(events, bus.member(), { maxEntries: 100, ttlMs: 0 });
    await l.deviceByToken('token-1');
    await l.packageOf(TENANT, 'd1' as DeviceId, 'FIRMWARE');
    await l.profileOf(TENANT, 'profile-1' as DeviceProfileId);
    expect(l.size).to.deep.equal({ tokens: 0, packages: 0, profiles: 0 });
  });

  it('keeps at most maxEntries per cache, the least recently used going first', async () => {
    const l = make(events, bus.member(), { maxEntries: 3, ttlMs: 60_000 });
    for (let i = 0; i < 10; i++) rows.devices.set(`x${i}`, device(`x${i}`, `tx${i}`, 'fw-a'));
    for (let i = 0; i < 3; i++) await l.deviceByToken(`tx${i}`);
    await l.deviceByToken('tx0'); // tx1 is now the least recently used
    await l.deviceByToken('tx3');
    for (let i = 4; i < 10; i++) await l.packageOf(TENANT, `x${i}` as DeviceId, 'FIRMWARE');
    // Every device of the test is of one profile: one entry.
    expect(l.size).to.deep.equal({ tokens: 3, packages: 3, profiles: 1 });
    const queries = rows.queries;
    await l.deviceByToken('tx0');
    expect(rows.queries, 'tx0 still cached').to.equal(queries);
    await l.deviceByToken('tx1');
    expect(rows.queries, 'tx1 evicted').to.equal(queries + 1);
  });

  it('stops listening when closed', async () => {
    lookups.close();
    expect(events.listenerCount('deviceSaved')).to.equal(0);
    expect(events.listenerCount('packageDeleted')).to.equal(0);
  });

  it('reads its limits from OTA_LOOKUP_CACHE_MAX_ENTRIES and OTA_LOOKUP_CACHE_TTL_MS', () => {
    expect(lookupCacheLimitsFromEnv({})).to.deep.equal({ maxEntries: 10_000, ttlMs: 1000 });
    expect(lookupCacheLimitsFromEnv({ OTA_LOOKUP_CACHE_MAX_ENTRIES: '50', OTA_LOOKUP_CACHE_TTL_MS: '0' })).to.deep.equal({ maxEntries: 50, ttlMs: 0 });
    expect(() => lookupCacheLimitsFromEnv({ OTA_LOOKUP_CACHE_MAX_ENTRIES: '0' })).to.throw(/OTA_LOOKUP_CACHE_MAX_ENTRIES must be a positive integer/);
    expect(() => lookupCacheLimitsFromEnv({ OTA_LOOKUP_CACHE_TTL_MS: '-1' })).to.throw(/OTA_LOOKUP_CACHE_TTL_MS/);
  });
});
