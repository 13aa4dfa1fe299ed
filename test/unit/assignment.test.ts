import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { DeviceRepository } from '../../server/store/devices';
import type { AssignmentEvent } from '../../server/pipeline/notify-queue';
import { allAttributeKeys } from '../../server/pipeline/ota-keys';
import { FakeTimers, PipelineHarness, quietLogger, settle, useHarness } from './pipeline-support';
import { eventually } from '../support/eventually';

const FW_KEYS = ['fw_title', 'fw_version', 'fw_ts', 'fw_state', 'fw_size', 'fw_checksum', 'fw_checksum_algorithm', 'fw_url', 'fw_tag', 'fw_signature', 'fw_signature_algorithm'];

/** The shared attributes a notification would have written, so an unassignment has something to delete. */
const notifiedAttributes = { fw_title: 't', fw_version: 'v', fw_tag: 'g', fw_size: 1, fw_checksum: 'c', fw_checksum_algorithm: 'SHA256', fw_url: 'u', fw_ts: 1, fw_state: 'x' };

describe('assignment (reference §2 triggers)', () => {
  const harness = useHarness();

  it('emits one event when a device is created with an effective package', async () => {
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile);
    await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
    const events = h.recordAssignments();
    const device = await h.device(profile);
    await settle();
    expect(events).to.deep.equal([{ tenantId: h.tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, ts: h.timers.now() }]);
  });

  it('emits nothing when a device is created without any package', async () => {
    const h = harness();
    const profile = await h.profile();
    const events = h.recordAssignments();
    await h.device(profile);
    await settle();
    expect(events).to.deep.equal([]);
  });

  it('emits an event when a device is changed to another package', async () => {
    const h = harness();
    const profile = await h.profile();
    const a = await h.binaryPackage(profile, { version: '1' });
    const b = await h.binaryPackage(profile, { version: '2' });
    const device = await h.device(profile, { firmwareId: a.id });
    await settle();
    const events = h.recordAssignments();
    await h.setDevicePackage(device, 'FIRMWARE', b.id);
    await settle();
    expect(events.map((e) => [e.deviceId, e.type, e.packageId])).to.deep.equal([[device.id, 'FIRMWARE', b.id]]);
  });

  it('emits packageId null and deletes the fw_* shared attributes (the nine of ThingsBoard and our two signature keys) at once when the own slot is emptied', async () => {
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile);
    const device = await h.device(profile, { firmwareId: pkg.id });
    await settle();
    await h.pipeline.attributes.save(device.id, 'SHARED', { ...notifiedAttributes, sw_title: 'stays', other: 1 }, 1);
    const events = h.recordAssignments();
    await h.setDevicePackage(device, 'FIRMWARE', null);
    await settle();
    expect(events.map((e) => [e.deviceId, e.type, e.packageId])).to.deep.equal([[device.id, 'FIRMWARE', null]]);
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({ other: 1, sw_title: 'stays' });
    expect(allAttributeKeys('FIRMWARE')).to.have.members(FW_KEYS);
  });

  it('falls back to the profile package (not null) when the own slot is emptied under a profile that has one', async () => {
    const h = harness();
    const profile = await h.profile();
    const own = await h.binaryPackage(profile, { version: 'own' });
    const shared = await h.binaryPackage(profile, { version: 'profile' });
    const device = await h.device(profile, { firmwareId: own.id });
    await h.setProfilePackage(profile, 'FIRMWARE', shared.id);
    await settle();
    const events = h.recordAssignments();
    await h.setDevicePackage(device, 'FIRMWARE', null);
    await settle();
    expect(events.map((e) => e.packageId)).to.deep.equal([shared.id]);
  });

  it('emits an event when a device moves to a profile with another effective package', async () => {
    const h = harness();
    const p1 = await h.profile();
    const p2 = await h.profile();
    const a = await h.binaryPackage(p1);
    const b = await h.binaryPackage(p2);
    await h.setProfilePackage(p1, 'FIRMWARE', a.id);
    await h.setProfilePackage(p2, 'FIRMWARE', b.id);
    const device = await h.device(p1);
    await settle();
    const events = h.recordAssignments();
    await h.updateDevice(device, { deviceProfileId: { id: p2.id, entityType: 'DEVICE_PROFILE' } });
    await settle();
    expect(events.map((e) => [e.deviceId, e.packageId])).to.deep.equal([[device.id, b.id]]);
  });

  it('clears the attributes when a device moves to a profile without a package, and stays silent between two empty profiles', async () => {
    const h = harness();
    const p1 = await h.profile();
    const p2 = await h.profile();
    const p3 = await h.profile();
    const a = await h.binaryPackage(p1);
    await h.setProfilePackage(p1, 'FIRMWARE', a.id);
    const device = await h.device(p1);
    await settle();
    await h.pipeline.attributes.save(device.id, 'SHARED', notifiedAttributes, 1);
    const events = h.recordAssignments();
    const moved = await h.updateDevice(device, { deviceProfileId: { id: p2.id, entityType: 'DEVICE_PROFILE' } });
    await settle();
    expect(events.map((e) => e.packageId)).to.deep.equal([null]);
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
    await h.updateDevice(moved, { deviceProfileId: { id: p3.id, entityType: 'DEVICE_PROFILE' } });
    await settle();
    expect(events).to.have.length(1);
  });

  it('emits events only for the devices whose own slot is empty when a profile slot changes', async () => {
    const h = harness();
    const profile = await h.profile();
    const other = await h.profile();
    const own = await h.binaryPackage(profile, { version: 'own' });
    const pkg = await h.binaryPackage(profile, { version: 'fleet' });
    const inheriting = [await h.device(profile), await h.device(profile), await h.device(profile)];
    await h.device(profile, { firmwareId: own.id });
    await h.device(other);
    await settle();
    const events = h.recordAssignments();
    await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
    await eventually(() => events.length >= 3, 'three events');
    await settle();
    expect(events.map((e) => e.deviceId)).to.have.members(inheriting.map((d) => d.id));
    expect(events.every((e) => e.packageId === pkg.id && e.type === 'FIRMWARE')).to.equal(true);
  });

  it('emits null for each inheriting device and clears them when a profile slot is emptied', async () => {
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile);
    const own = await h.binaryPackage(profile, { version: 'own' });
    await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
    const inheriting = await h.device(profile);
    const keeping = await h.device(profile, { firmwareId: own.id });
    await settle();
    for (const d of [inheriting, keeping]) await h.pipeline.attributes.save(d.id, 'SHARED', notifiedAttributes, 1);
    const events = h.recordAssignments();
    await h.setProfilePackage(profile, 'FIRMWARE', null);
    await eventually(() => events.length >= 1, 'the unassignment');
    await settle();
    expect(events.map((e) => [e.deviceId, e.packageId])).to.deep.equal([[inheriting.id, null]]);
    expect(await h.pipeline.attributes.get(inheriting.id, 'SHARED')).to.deep.equal({});
    expect(await h.pipeline.attributes.get(keeping.id, 'SHARED')).to.deep.equal(notifiedAttributes);
  });

  it('emits nothing when a profile is created', async () => {
    const h = harness();
    const events = h.recordAssignments();
    await h.profile();
    await settle();
    expect(events).to.deep.equal([]);
  });

  it('emits nothing when the same package is saved again on a device or a profile', async () => {
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile);
    const own = await h.binaryPackage(profile, { version: 'own' });
    await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
    const device = await h.device(profile, { firmwareId: own.id });
    const inheriting = await h.device(profile);
    await settle();
    const events = h.recordAssignments();
    await h.setDevicePackage(device, 'FIRMWARE', own.id);
    await h.updateDevice(inheriting, { label: 'renamed' });
    await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
    await settle(6);
    expect(events).to.deep.equal([]);
  });

  it('keeps firmware and software independent', async () => {
    const h = harness();
    const profile = await h.profile();
    const fw = await h.binaryPackage(profile, { type: 'FIRMWARE' });
    const sw = await h.binaryPackage(profile, { type: 'SOFTWARE' });
    const device = await h.device(profile, { firmwareId: fw.id });
    await settle();
    await h.pipeline.attributes.save(device.id, 'SHARED', { ...notifiedAttributes, sw_title: 's', sw_version: 'v' }, 1);
    const events = h.recordAssignments();
    await h.setProfilePackage(profile, 'SOFTWARE', sw.id);
    await eventually(() => events.length >= 1, 'the software event');
    await settle();
    expect(events.map((e) => [e.deviceId, e.type, e.packageId])).to.deep.equal([[device.id, 'SOFTWARE', sw.id]]);
    await h.setProfilePackage(profile, 'SOFTWARE', null);
    await eventually(() => events.length >= 2, 'the software unassignment');
    await settle();
    expect(events[1]).to.include({ type: 'SOFTWARE', packageId: null });
    const shared = await h.pipeline.attributes.get(device.id, 'SHARED');
    expect(shared).to.not.have.any.keys('sw_title', 'sw_version');
    expect(shared).to.include({ fw_title: 't', fw_version: 'v' });
  });

  it('queues the event itself when nothing listens for assignments', async () => {
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile, { title: 'direct', version: '3.1' });
    const device = await h.device(profile, { firmwareId: pkg.id });
    await settle();
    expect(await h.pipeline.queue.depth()).to.equal(1);
    const latest = await h.pipeline.telemetry.latest(device.id, ['fw_state', 'target_fw_title', 'target_fw_version']);
    expect(latest.fw_state?.value).to.equal('QUEUED');
    expect(latest.target_fw_title?.value).to.equal('direct');
    expect(latest.target_fw_version?.value).to.equal('3.1');
  });

  it('does not queue when a listener takes the events', async () => {
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile);
    const events = h.recordAssignments();
    await h.device(profile, { firmwareId: pkg.id });
    await settle();
    expect(events).to.have.length(1);
    expect(await h.pipeline.queue.depth()).to.equal(0);
  });

  describe('assign()', () => {
    it('assigns to a profile by name and a package by {title, version}', async () => {
      const h = harness();
      const profile = await h.profile('thermostats');
      const pkg = await h.binaryPackage(profile, { title: 'thermo', version: '2.0' });
      const device = await h.device(profile);
      await settle();
      const events = h.recordAssignments();
      const result = await h.pipeline.assignment.assign(h.tenantId, { target: { deviceProfile: 'thermostats' }, type: 'FIRMWARE', package: { title: 'thermo', version: '2.0' } });
      expect(result).to.deep.equal({ entity: 'DEVICE_PROFILE', id: profile.id, packageId: pkg.id });
      expect((await h.engine.profiles.get(h.tenantId, profile.id)).firmwareId).to.equal(pkg.id);
      await eventually(() => events.length >= 1, 'the event');
      expect(events.map((e) => [e.deviceId, e.packageId])).to.deep.equal([[device.id, pkg.id]]);
    });

    it('assigns to a device by name and a package by id, then unassigns with null', async () => {
      const h = harness();
      const profile = await h.profile();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { name: 'boiler-7' });
      await settle();
      const events = h.recordAssignments();
      const result = await h.pipeline.assignment.assign(h.tenantId, { target: { device: 'boiler-7' }, type: 'FIRMWARE', package: pkg.id });
      expect(result).to.deep.equal({ entity: 'DEVICE', id: device.id, packageId: pkg.id });
      expect((await h.engine.devices.get(h.tenantId, device.id)).firmwareId).to.equal(pkg.id);
      const cleared = await h.pipeline.assignment.assign(h.tenantId, { target: { device: device.id }, type: 'FIRMWARE', package: null });
      expect(cleared).to.deep.equal({ entity: 'DEVICE', id: device.id, packageId: null });
      expect((await h.engine.devices.get(h.tenantId, device.id)).firmwareId).to.equal(null);
      await settle();
      expect(events.map((e) => e.packageId)).to.deep.equal([pkg.id, null]);
    });

    it('assigns to a profile by id and unassigns it with null', async () => {
      const h = harness();
      const profile = await h.profile();
      const pkg = await h.binaryPackage(profile, { type: 'SOFTWARE' });
      await h.pipeline.assignment.assign(h.tenantId, { target: { deviceProfile: profile.id }, type: 'SOFTWARE', package: pkg.id });
      expect((await h.engine.profiles.get(h.tenantId, profile.id)).softwareId).to.equal(pkg.id);
      const r = await h.pipeline.assignment.assign(h.tenantId, { target: { deviceProfile: profile.id }, type: 'SOFTWARE', package: null });
      expect(r.packageId).to.equal(null);
      expect((await h.engine.profiles.get(h.tenantId, profile.id)).softwareId).to.equal(null);
    });

    it('refuses unknown names and packages with messages that say what is missing', async () => {
      const h = harness();
      const profile = await h.profile('known');
      await h.device(profile, { name: 'dev' });
      const fails = async (p: Promise<unknown>): Promise<string> => {
        try {
          await p;
        } catch (err) {
          return (err as Error).message;
        }
        throw new Error('expected a failure');
      };
      const a = h.pipeline.assignment;
      expect(await fails(a.assign(h.tenantId, { target: { deviceProfile: 'nope' }, type: 'FIRMWARE', package: null }))).to.equal("No device profile named 'nope'");
      expect(await fails(a.assign(h.tenantId, { target: { device: 'nope' }, type: 'FIRMWARE', package: null }))).to.equal("No device named 'nope'");
      expect(await fails(a.assign(h.tenantId, { target: { device: 'dev' }, type: 'FIRMWARE', package: { title: 'x', version: '1' } }))).to.equal("No package 'x' version '1'");
      expect(await fails(a.assign(h.tenantId, { target: { device: 'dev' }, type: 'FIRMWARE', package: 'not-a-uuid' }))).to.equal('Not a package id: not-a-uuid');
      expect(await fails(a.assign(h.tenantId, { target: { device: 'dev' }, type: 'FIRMWARE', package: randomUUID() }))).to.equal("Can't assign non-existent firmware!");
    });
  });

  it('pages a profile of 2,500 devices 100 at a time into 2,500 events', async function () {
    this.timeout(20_000);
    const h = harness();
    const profile = await h.profile();
    const pkg = await h.binaryPackage(profile);
    h.insertDevices(profile, 2500);
    const repo = (h.pipeline.assignment as unknown as { deps: { devices: DeviceRepository } }).deps.devices;
    const calls: Array<{ limit: number; returned: number }> = [];
    const original = repo.listInheriting.bind(repo);
    repo.listInheriting = async (...args) => {
      const page = await original(...args);
      calls.push({ limit: args[4], returned: page.length });
      return page;
    };
    let callsAtFirstEvent = -1;
    const events: AssignmentEvent[] = [];
    h.engine.events.on('assignment', (ev) => {
      if (events.length === 0) callsAtFirstEvent = calls.length;
      events.push(ev);
    });
    await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
    await eventually(() => events.length >= 2500, '2,500 events', { timeoutMs: 20_000 });
    await settle();
    expect(events).to.have.length(2500);
    expect(new Set(events.map((e) => e.deviceId)).size).to.equal(2500);
    expect(events.every((e) => e.packageId === pkg.id)).to.equal(true);
    expect(calls.every((c) => c.limit === 100 && c.returned <= 100)).to.equal(true);
    expect(calls).to.have.length(26);
    expect(callsAtFirstEvent, 'events flow before the next page is read').to.equal(1);
  });

  describe('reconcile()', () => {
    it('re-queues a device whose effective package differs from its last target, then does nothing', async () => {
      const h = harness();
      const profile = await h.profile();
      const pkg = await h.binaryPackage(profile);
      // A listener that loses the event: the message never reached the queue (an unwired stage, a crash).
      const lost = h.recordAssignments();
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      expect(lost).to.have.length(1);
      expect(await h.pipeline.queue.depth()).to.equal(0);
      expect(await h.pipeline.assignment.reconcile()).to.deep.equal({ queued: 1, cleared: 0 });
      expect(await h.pipeline.queue.depth()).to.equal(1);
      const released: AssignmentEvent[] = [];
      h.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => released.push(...evs));
      await h.pipeline.queue.flush();
      expect(released.map((e) => [e.deviceId, e.packageId])).to.deep.equal([[device.id, pkg.id]]);
      expect(await h.pipeline.assignment.reconcile()).to.deep.equal({ queued: 1, cleared: 0 }, 'released but not notified yet');
      await h.pipeline.queue.flush();
      expect('notification' in (await h.pipeline.notifier.process(released[1] as AssignmentEvent))).to.equal(true);
      expect(await h.pipeline.assignment.reconcile()).to.deep.equal({ queued: 0, cleared: 0 });
      expect(await h.pipeline.queue.depth()).to.equal(0);
    });

    it('re-queues a released-but-unnotified event with its original ts', async () => {
      const h = harness();
      const profile = await h.profile();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      const queuedAt = h.timers.now();
      const released: AssignmentEvent[] = [];
      h.pipeline.queue.start({ packSize: 1, intervalMs: 1000, mode: 'spaced' }, (evs) => released.push(...evs));
      await h.timers.advance(0);
      expect(released).to.have.length(1);
      h.pipeline.queue.stop(); // the notifier never saw it
      await h.timers.advance(60_000);
      expect(await h.pipeline.assignment.reconcile()).to.deep.equal({ queued: 1, cleared: 0 });
      const again: AssignmentEvent[] = [];
      h.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => again.push(...evs));
      await h.pipeline.queue.flush();
      expect(again).to.deep.equal([{ tenantId: h.tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, ts: queuedAt }]);
      expect(await h.pipeline.assignment.reconcile()).to.deep.equal({ queued: 1, cleared: 0 }, 'still not notified');
    });

    it('on start, clears the attributes of a device whose slot emptied while the engine was down', async () => {
      const timers = new FakeTimers();
      const first = await PipelineHarness.open({ timers });
      let second: PipelineHarness | undefined;
      try {
        const profile = await first.profile();
        const pkg = await first.binaryPackage(profile);
        const device = await first.device(profile, { firmwareId: pkg.id });
        await settle();
        const released: AssignmentEvent[] = [];
        first.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => released.push(...evs));
        await first.pipeline.queue.flush();
        expect('notification' in (await first.pipeline.notifier.process(released[0] as AssignmentEvent))).to.equal(true);
        expect(await first.pipeline.attributes.get(device.id, 'SHARED', ['fw_title'])).to.deep.equal({ fw_title: pkg.title });
        await first.closeEngine();

        // While down, the slot is emptied without any event (a crash between the save and its handler).
        const db = first.openDb();
        db.prepare('UPDATE devices SET firmware_id = NULL WHERE id = ?').run(device.id);
        db.close();

        const logged: string[] = [];
        second = await PipelineHarness.open({ timers, dataDir: first.dataDir, logger: { ...quietLogger, info: (m) => logged.push(m) } });
        expect(logged).to.deep.equal(['reconciled: 0 device(s) queued again, 1 cleared']);
        expect(await second.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
        expect(await second.pipeline.assignment.reconcile()).to.deep.equal({ queued: 0, cleared: 0 });
        expect(await second.pipeline.queue.depth()).to.equal(0);
      } finally {
        if (second) await second.close();
        else await first.close();
      }
    });

    it('leaves queued and notified devices alone', async () => {
      const h = harness();
      const profile = await h.profile();
      const pkg = await h.binaryPackage(profile);
      await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
      const notified = await h.device(profile);
      await settle();
      const released: AssignmentEvent[] = [];
      h.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => released.push(...evs));
      await h.pipeline.queue.flush();
      h.pipeline.queue.stop();
      expect(released.map((e) => e.deviceId)).to.deep.equal([notified.id]);
      expect('notification' in (await h.pipeline.notifier.process(released[0] as AssignmentEvent))).to.equal(true);
      await h.device(profile);
      await h.device(profile, { firmwareId: pkg.id });
      await settle();
      expect(await h.pipeline.queue.depth()).to.equal(2);
      expect(await h.pipeline.assignment.reconcile()).to.deep.equal({ queued: 0, cleared: 0 });
      expect(await h.pipeline.queue.depth()).to.equal(2);
    });
  });
});
