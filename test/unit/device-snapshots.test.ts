import { expect } from 'chai';
import { EngineEvents } from '../../server/events';
import type { DeviceId, DeviceProfileId, TenantId } from '../../server/ids';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { DeviceContext } from '../../server/transports/device-context';
import { followDeviceSnapshots, type SessionSnapshots } from '../../server/transports/device-snapshots';

const TENANT = 'tenant-1' as TenantId;

const device = (version: number, name = `d-v${version}`, profile = 'p1'): Device => ({
  id: 'd1' as DeviceId,
  tenantId: TENANT,
  name,
  label: null,
  deviceProfileId: profile as DeviceProfileId,
  firmwareId: null,
  softwareId: null,
  accessToken: 'token-1',
  credentialsId: 'cred-1',
  createdTime: 0,
  version,
  extra: {},
});

const profile = (id: string, version: number): DeviceProfile => ({
  id: id as DeviceProfileId,
  tenantId: TENANT,
  name: id,
  description: null,
  isDefault: false,
  firmwareId: null,
  softwareId: null,
  createdTime: 0,
  version,
  extra: {},
});

/** The store's rows, each read held until `release` when `hold` is set: a read racing a save. */
class Rows {
  device: Device = device(1);
  profiles = new Map([['p1', profile('p1', 1)]]);
  reads = 0;
  hold = false;
  private waiting: Array<() => void> = [];

  private async read<T>(value: () => T): Promise<T> {
    this.reads += 1;
    if (this.hold) await new Promise<void>((r) => this.waiting.push(r));
    return value();
  }

  release(): void {
    for (const r of this.waiting.splice(0)) r();
  }

  readonly ctx = {
    devices: { findById: () => this.read(() => this.device) },
    profiles: { findById: (_t: TenantId, id: DeviceProfileId) => this.read(() => this.profiles.get(id) ?? null) },
    lookups: { profileOf: (_t: TenantId, id: DeviceProfileId) => this.read(() => this.profiles.get(id) ?? null) },
  };
}

describe('session snapshots (device-snapshots.ts)', () => {
  let rows: Rows;
  let events: EngineEvents;
  let held: { devices: Set<string>; profiles: Set<string> };
  let applied: Array<{ device?: string; profile?: string | null }>;
  let unhook: () => void;

  beforeEach(() => {
    rows = new Rows();
    events = new EngineEvents();
    held = { devices: new Set(['d1']), profiles: new Set(['p1']) };
    applied = [];
    const sessions: SessionSnapshots = {
      holds: (id) => held.devices.has(id),
      holdsProfile: (_t, id) => held.profiles.has(id),
      deviceChanged: (d, p) => applied.push({ device: d.name, ...(p === undefined ? {} : { profile: p?.id ?? null }) }),
      profileChanged: (p) => applied.push({ profile: `${p.id}@${p.version}` }),
    };
    const ctx = { ...rows.ctx, events, logger: { warn: () => undefined } } as unknown as DeviceContext;
    unhook = followDeviceSnapshots(ctx, sessions, 'test');
  });

  afterEach(() => unhook());

  const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('applies a local save at once, reading nothing when the profile stayed', () => {
    events.emit('deviceSaved', { before: device(1), after: device(2, 'renamed') });
    expect(applied).to.deep.equal([{ device: 'renamed' }]);
    expect(rows.reads).to.equal(0);
  });

  it('reads the new profile of a device moved to another one', async () => {
    rows.profiles.set('p2', profile('p2', 1));
    events.emit('deviceSaved', { before: device(1), after: device(2, 'moved', 'p2') });
    await settle();
    expect(applied).to.deep.equal([{ device: 'moved', profile: 'p2' }]);
  });

  it('leaves new devices and new credentials alone (the revocation ends those sessions)', () => {
    events.emit('deviceSaved', { before: null, after: device(1) });
    events.emit('deviceSaved', { before: device(1), after: { ...device(2), accessToken: 'token-2' } });
    expect(applied).to.deep.equal([]);
  });

  it('reads a device changed elsewhere only when a session here holds it', async () => {
    held.devices.clear();
    events.emit('deviceChangedElsewhere', { tenantId: TENANT, deviceId: 'd1' as DeviceId });
    await settle();
    expect(rows.reads).to.equal(0);
    held.devices.add('d1');
    rows.device = device(2, 'renamed-elsewhere');
    events.emit('deviceChangedElsewhere', { tenantId: TENANT, deviceId: 'd1' as DeviceId });
    await settle();
    expect(applied).to.deep.equal([{ device: 'renamed-elsewhere', profile: 'p1' }]);
  });

  it('drops a read that comes back older than a save already applied', async () => {
    rows.hold = true;
    events.emit('deviceChangedElsewhere', { tenantId: TENANT, deviceId: 'd1' as DeviceId });
    // Meanwhile a newer save is applied here; then the older read completes.
    events.emit('deviceSaved', { before: device(1), after: device(3, 'newest') });
    rows.release();
    await settle();
    rows.release();
    await settle();
    expect(applied).to.deep.equal([{ device: 'newest' }]);
  });

  it('reads a profile changed elsewhere only when a session holds one of its devices, in its newest version', async () => {
    events.emit('deviceProfileChangedElsewhere', { tenantId: TENANT, profileId: 'p9' as DeviceProfileId });
    await settle();
    expect(rows.reads).to.equal(0);
    rows.profiles.set('p1', profile('p1', 2));
    events.emit('deviceProfileChangedElsewhere', { tenantId: TENANT, profileId: 'p1' as DeviceProfileId });
    await settle();
    events.emit('deviceProfileSaved', { before: profile('p1', 2), after: profile('p1', 3) });
    events.emit('deviceProfileSaved', { before: profile('p1', 1), after: profile('p1', 2) });
    expect(applied).to.deep.equal([{ profile: 'p1@2' }, { profile: 'p1@3' }]);
  });
});
