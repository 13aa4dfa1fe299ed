import { expect } from 'chai';
import { EngineEvents } from '../../server/events';
import type { DeviceId, DeviceProfileId, TenantId } from '../../server/ids';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { DeviceContext } from '../../server/transports/device-context';
import { followDeviceSnapshots, type SessionSnapshots, type SnapshotFollower } from '../../server/transports/device-snapshots';

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
  let applied: Array<{ device?: string; profile?: string | null; revoked?: string }>;
  let follower: SnapshotFollower;

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
      revoked: (id, reason) => applied.push({ revoked: `${id} ${reason}` }),
    };
    const ctx = { ...rows.ctx, events, logger: { warn: () => undefined } } as unknown as DeviceContext;
    follower = followDeviceSnapshots(ctx, sessions, 'test');
  });

  afterEach(() => follower.stop());

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

  describe('a session being opened (it read its device, but holds() does not know it yet)', () => {
    /** A session of d1 opening: `holds` answers false until `end`, as a transport's would. */
    const opening = () => {
      held.devices.clear();
      held.profiles.clear();
      const o = follower.opening();
      return {
        held: (d: Device) => {
          held.devices.add(d.id);
          held.profiles.add(d.deviceProfileId);
          o.end(d);
        },
        refused: () => o.end(null),
      };
    };

    it('reads the device again once held when it was saved here meanwhile, and applies it', async () => {
      const o = opening();
      rows.device = device(2, 'renamed-while-opening');
      events.emit('deviceSaved', { before: device(1), after: rows.device });
      expect(applied, 'no session held it yet').to.deep.equal([]);
      o.held(device(1));
      await settle();
      expect(applied).to.deep.equal([{ device: 'renamed-while-opening', profile: 'p1' }]);
    });

    it('reads the device again when it changed elsewhere, or its profile here or elsewhere', async () => {
      const changes = [
        () => events.emit('deviceChangedElsewhere', { tenantId: TENANT, deviceId: 'd1' as DeviceId }),
        () => events.emit('deviceProfileSaved', { before: profile('p1', 1), after: profile('p1', 2) }),
        () => events.emit('deviceProfileChangedElsewhere', { tenantId: TENANT, profileId: 'p1' as DeviceProfileId }),
      ];
      for (const [i, change] of changes.entries()) {
        const o = opening();
        rows.device = device(i + 2, `v${i + 2}`);
        change();
        o.held(device(1));
        await settle();
        expect(applied.at(-1), `change ${i}`).to.deep.equal({ device: `v${i + 2}`, profile: 'p1' });
      }
    });

    it('ends the sessions of a device deleted or re-keyed meanwhile, here or elsewhere', async () => {
      const o1 = opening();
      events.emit('deviceDeleted', { device: device(1) });
      rows.device = null as unknown as Device; // gone from the store
      o1.held(device(1));
      await settle();
      rows.device = { ...device(2), accessToken: 'token-2' };
      const o2 = opening();
      events.emit('deviceRevoked', { tenantId: TENANT, deviceId: 'd1' as DeviceId, reason: 'credentials-changed' });
      o2.held(device(1));
      await settle();
      expect(applied).to.deep.equal([{ revoked: 'd1 device-deleted' }, { revoked: 'd1 credentials-changed' }]);
    });

    it('reads nothing when nothing of its device changed, when it was refused, or for changes heard before it began', async () => {
      events.emit('deviceSaved', { before: device(1), after: device(2, 'before-opening') });
      applied.length = 0;
      const o = opening();
      events.emit('deviceSaved', { before: null, after: { ...device(1), id: 'd2' as DeviceId } });
      events.emit('deviceProfileSaved', { before: profile('p9', 1), after: profile('p9', 2) });
      o.held(device(2));
      const refused = opening();
      events.emit('deviceSaved', { before: device(2), after: device(3) });
      refused.refused();
      await settle();
      expect(rows.reads).to.equal(0);
    });

    it('reads again, past the changes it remembers, every session opened before they were forgotten', async () => {
      const o = opening();
      const other = opening();
      for (let i = 0; i <= 10_000; i++) events.emit('deviceChangedElsewhere', { tenantId: TENANT, deviceId: `other-${i}` as DeviceId });
      other.refused();
      rows.device = device(2, 'read-again');
      o.held(device(1));
      await settle();
      expect(applied).to.deep.equal([{ device: 'read-again', profile: 'p1' }]);
    });
  });
});
