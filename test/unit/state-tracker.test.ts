import { expect } from 'chai';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { AssignmentEvent } from '../../server/pipeline/notify-queue';
import type { OtaStateRow } from '../../server/store/ota-states';
import { SqliteOtaStateRepository } from '../../server/store/sqlite/ota-states';
import type { OtaPackageType } from '../../server/store/ota-packages';
import type { StateChange } from '../../server/pipeline/state-tracker';
import { T0, settle, type PipelineHarness, useHarness } from './pipeline-support';
import { eventually } from '../support/eventually';

describe('state tracker', () => {
  const harness = useHarness();
  let profile: DeviceProfile;

  beforeEach(async () => {
    profile = await harness().profile();
  });

  /** The tracker's row for a device, read through a second connection. */
  async function stateOf(h: PipelineHarness, device: Device, type: OtaPackageType = 'FIRMWARE'): Promise<OtaStateRow | null> {
    const db = h.openDb();
    try {
      return await new SqliteOtaStateRepository(db).get(device.id, type);
    } finally {
      db.close();
    }
  }

  /** Moves the clock, then reports `values` stamped with the new time. */
  async function reportLater(h: PipelineHarness, device: Device, values: Record<string, string>, ms = 10): Promise<StateChange[]> {
    await h.timers.advance(ms);
    return h.pipeline.tracker.handleUplink(h.report(device, values));
  }

  /** Releases what is queued and lets the notifier process it: the device gets INITIATED. */
  async function notifyAll(h: PipelineHarness): Promise<void> {
    const released: AssignmentEvent[] = [];
    h.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => released.push(...evs));
    await h.pipeline.queue.flush();
    h.pipeline.queue.stop();
    for (const ev of released) await h.pipeline.notifier.process(ev);
  }

  describe('reports', () => {
    it('records the eight ThingsBoard states and IDLE, each change once', async () => {
      const h = harness();
      const device = await h.device(profile);
      const states = ['IDLE', 'QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED', 'FAILED'];
      const changes: StateChange[] = [];
      for (const s of states) changes.push(...(await reportLater(h, device, { fw_state: s })));
      expect(changes.map((c) => [c.from, c.to, c.reason])).to.deep.equal(states.map((s, i) => [i === 0 ? null : states[i - 1], s, 'reported']));
      expect(changes.every((c) => c.deviceId === device.id && c.type === 'FIRMWARE' && c.tenantId === h.tenantId)).to.equal(true);
      expect(await reportLater(h, device, { fw_state: 'FAILED' }), 'the same state again is no change').to.deep.equal([]);
      expect(await reportLater(h, device, { fw_state: 'REBOOTING' }), 'not a state').to.deep.equal([]);
      expect((await stateOf(h, device))?.state).to.equal('FAILED');
    });

    it('keeps fw_error with a FAILED report and tracks sw_state apart', async () => {
      const h = harness();
      const device = await h.device(profile);
      const changes = await reportLater(h, device, { fw_state: 'FAILED', fw_error: 'Checksum verification failed!', sw_state: 'DOWNLOADING' });
      expect(changes.map((c) => [c.type, c.to, c.error])).to.deep.equal([
        ['FIRMWARE', 'FAILED', 'Checksum verification failed!'],
        ['SOFTWARE', 'DOWNLOADING', null],
      ]);
      expect((await stateOf(h, device))?.error).to.equal('Checksum verification failed!');
      expect((await stateOf(h, device, 'SOFTWARE'))?.state).to.equal('DOWNLOADING');
    });

    it('treats the empty fw_error the Python SDK sends as no error', async () => {
      const h = harness();
      const device = await h.device(profile);
      const [change] = await reportLater(h, device, { current_fw_title: 'Initial', current_fw_version: 'v0', fw_state: 'IDLE', fw_error: '' });
      expect(change?.error).to.equal(null);
    });

    it('never lets a late report (older ts) overwrite a newer one', async () => {
      const h = harness();
      const device = await h.device(profile);
      const t = h.timers.now();
      await h.pipeline.tracker.handleUplink(h.report(device, { fw_state: 'UPDATED' }, t + 200));
      expect(await h.pipeline.tracker.handleUplink(h.report(device, { fw_state: 'DOWNLOADING' }, t + 100))).to.deep.equal([]);
      expect(await stateOf(h, device)).to.include({ state: 'UPDATED', stateTs: t + 200 });
      const [next] = await h.pipeline.tracker.handleUplink(h.report(device, { fw_state: 'FAILED' }, t + 300));
      expect(next).to.include({ from: 'UPDATED', to: 'FAILED' });
    });

    it('applies the entries of one message in time order, whatever order they came in', async () => {
      const h = harness();
      const device = await h.device(profile);
      const t = h.timers.now();
      const changes = await h.pipeline.tracker.handleUplink(
        h.uplink(device, [
          { ts: t + 30, values: { fw_state: 'UPDATED' } },
          { ts: t + 10, values: { fw_state: 'DOWNLOADING' } },
          { ts: t + 20, values: { fw_state: 'UPDATING' } },
        ]),
      );
      expect(changes.map((c) => c.to)).to.deep.equal(['DOWNLOADING', 'UPDATING', 'UPDATED']);
      expect((await stateOf(h, device))?.state).to.equal('UPDATED');
    });

    it('records current_fw_title and current_fw_version, alone or with a state', async () => {
      const h = harness();
      const device = await h.device(profile);
      await reportLater(h, device, { current_fw_title: 'thermo', current_fw_version: '1.0' });
      expect(await stateOf(h, device)).to.include({ currentTitle: 'thermo', currentVersion: '1.0', state: null });
      await reportLater(h, device, { current_fw_version: '2.0', fw_state: 'UPDATED' });
      expect(await stateOf(h, device)).to.include({ currentTitle: 'thermo', currentVersion: '2.0', state: 'UPDATED' });
      await reportLater(h, device, { current_sw_title: 'agent', current_sw_version: '7' });
      expect(await stateOf(h, device, 'SOFTWARE')).to.include({ currentTitle: 'agent', currentVersion: '7' });
    });

    it('ignores uplinks that are not telemetry', async () => {
      const h = harness();
      const device = await h.device(profile);
      const ev = {
        tenantId: h.tenantId,
        deviceId: device.id,
        deviceName: device.name,
        transport: 'HTTP' as const,
        ts: T0,
        kind: 'attributes' as const,
        attributes: { fw_state: 'FAILED' },
      };
      expect(await h.pipeline.tracker.handleUplink(ev)).to.deep.equal([]);
      expect(await stateOf(h, device)).to.equal(null);
    });
  });

  describe('metrics', () => {
    it('counts pending, in progress, updated, failed and coverage per package and per profile', async () => {
      const h = harness();
      const a = await h.binaryPackage(profile, { title: 'fleet-fw', version: '2' });
      const b = await h.binaryPackage(profile, { title: 'beta-fw', version: '3' });
      const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'agent', version: '1' });
      const [queued, initiated, downloading, verified, updated, failed] = await Promise.all(Array.from({ length: 6 }, () => h.device(profile)));
      const beta = await h.device(profile, { firmwareId: b.id, softwareId: sw.id });
      await settle();
      // Everyone but `queued` is told; beta's software stays queued.
      await h.setProfilePackage(profile, 'FIRMWARE', a.id);
      await eventually(async () => (await h.pipeline.queue.depth()) === 8, 'eight queued');
      const q: AssignmentEvent[] = [];
      h.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => q.push(...evs));
      await h.pipeline.queue.flush();
      h.pipeline.queue.stop();
      for (const ev of q) {
        if (ev.deviceId === queued!.id) await h.pipeline.queue.enqueue(ev);
        else if (ev.type === 'FIRMWARE') await h.pipeline.notifier.process(ev);
        else await h.pipeline.queue.enqueue(ev);
      }
      await reportLater(h, downloading!, { fw_state: 'DOWNLOADING' });
      await reportLater(h, verified!, { fw_state: 'VERIFIED' });
      await reportLater(h, updated!, { fw_state: 'UPDATED', current_fw_title: 'fleet-fw', current_fw_version: '2' });
      await reportLater(h, failed!, { fw_state: 'FAILED', current_fw_title: 'fleet-fw', current_fw_version: '1' });
      await reportLater(h, beta, { fw_state: 'UPDATED', current_fw_title: 'beta-fw', current_fw_version: '3' });
      expect((await stateOf(h, initiated!))?.state).to.equal('INITIATED');

      const m = await h.pipeline.tracker.metrics(h.tenantId);
      expect(m.ts).to.equal(h.timers.now());
      const byPackage = Object.fromEntries(m.packages.map((p) => [p.packageId, p]));
      expect(byPackage[a.id]).to.deep.equal({
        packageId: a.id,
        title: 'fleet-fw',
        version: '2',
        type: 'FIRMWARE',
        targeted: 6,
        pending: 2,
        inProgress: 2,
        updated: 1,
        failed: 1,
        onTarget: 1,
        coverage: 1 / 6,
      });
      expect(byPackage[b.id]).to.deep.equal({
        packageId: b.id,
        title: 'beta-fw',
        version: '3',
        type: 'FIRMWARE',
        targeted: 1,
        pending: 0,
        inProgress: 0,
        updated: 1,
        failed: 0,
        onTarget: 1,
        coverage: 1,
      });
      expect(byPackage[sw.id]).to.deep.equal({
        packageId: sw.id,
        title: 'agent',
        version: '1',
        type: 'SOFTWARE',
        targeted: 1,
        pending: 1,
        inProgress: 0,
        updated: 0,
        failed: 0,
        onTarget: 0,
        coverage: 0,
      });
      expect(m.packages).to.have.length(3);
      const byType = Object.fromEntries(m.profiles.map((p) => [p.type, p]));
      expect(m.profiles).to.have.length(2);
      expect(byType.FIRMWARE).to.deep.equal({
        deviceProfileId: profile.id,
        name: profile.name,
        type: 'FIRMWARE',
        targeted: 7,
        pending: 2,
        inProgress: 2,
        updated: 2,
        failed: 1,
        onTarget: 2,
        coverage: 2 / 7,
      });
      expect(byType.SOFTWARE).to.include({ deviceProfileId: profile.id, targeted: 1, pending: 1, coverage: 0 });
    });

    it('shows a profile assigned a package before it has any device, with 0 devices (the dashboard "By profile" panel)', async () => {
      const h = harness();
      const empty = await h.profile();
      const pkg = await h.binaryPackage(empty, { title: 'early-fw', version: '1' });
      await h.setProfilePackage(empty, 'FIRMWARE', pkg.id);
      await settle();
      const m = await h.pipeline.tracker.metrics(h.tenantId);
      expect(m.profiles.filter((p) => p.deviceProfileId === empty.id)).to.deep.equal([
        { deviceProfileId: empty.id, name: empty.name, type: 'FIRMWARE', targeted: 0, pending: 0, inProgress: 0, updated: 0, failed: 0, onTarget: 0, coverage: 0 },
      ]);
    });

    it("shows one tenant nothing of another's", async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      await h.device(profile, { firmwareId: pkg.id });
      await settle();
      const other = await h.engine.accounts.createTenant('Other', 'other@example.com', 'x-other-password');
      expect((await h.pipeline.tracker.metrics(h.tenantId)).packages).to.have.length(1);
      expect(await h.pipeline.tracker.metrics(other.tenant.id)).to.deep.equal({ ts: h.timers.now(), packages: [], profiles: [] });
    });

    it('stops counting a device once its package is unassigned', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await h.device(profile, { firmwareId: pkg.id });
      await settle();
      expect((await h.pipeline.tracker.metrics(h.tenantId)).packages[0]).to.include({ targeted: 2, pending: 2 });
      await h.setDevicePackage(device, 'FIRMWARE', null);
      await settle();
      expect((await h.pipeline.tracker.metrics(h.tenantId)).packages[0]).to.include({ targeted: 1, pending: 1 });
    });
  });

  describe('timeouts', () => {
    it('turns INITIATED..UPDATING older than the timeout into FAILED with fw_error telemetry', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const devices = await Promise.all(Array.from({ length: 4 }, () => h.device(profile, { firmwareId: pkg.id })));
      const [initiated, downloading, queued, updated] = devices as [Device, Device, Device, Device];
      await settle();
      await notifyAll(h);
      await h.pipeline.queue.enqueue(h.event(queued, 'FIRMWARE', pkg.id));
      await reportLater(h, updated, { fw_state: 'UPDATED' }, 0);
      await reportLater(h, downloading, { fw_state: 'DOWNLOADING' }, 5000);
      const tracker = h.pipeline.tracker;
      tracker.configure({ timeoutMs: 10_000, maxRetries: 0 });

      await h.timers.advance(5000);
      expect(await tracker.checkTimeouts(), 'exactly at the timeout is not past it').to.deep.equal([]);
      await h.timers.advance(1);
      const first = await tracker.checkTimeouts();
      expect(first).to.deep.equal([
        {
          tenantId: h.tenantId,
          deviceId: initiated.id,
          type: 'FIRMWARE',
          from: 'INITIATED',
          to: 'FAILED',
          error: 'Update timed out: no progress for 10 s in state INITIATED',
          ts: T0 + 10_001,
          reason: 'timeout',
        },
      ]);
      expect(await h.pipeline.telemetry.latest(initiated.id, ['fw_state', 'fw_error'])).to.deep.equal({
        fw_state: { ts: T0 + 10_001, value: 'FAILED' },
        fw_error: { ts: T0 + 10_001, value: 'Update timed out: no progress for 10 s in state INITIATED' },
      });
      await h.timers.advance(5000);
      expect((await tracker.checkTimeouts()).map((c) => [c.deviceId, c.from])).to.deep.equal([[downloading.id, 'DOWNLOADING']]);
      await h.timers.advance(60_000);
      expect(await tracker.checkTimeouts(), 'QUEUED, UPDATED and FAILED never time out').to.deep.equal([]);
      expect((await stateOf(h, queued))?.state).to.equal('QUEUED');
      expect((await stateOf(h, updated))?.state).to.equal('UPDATED');
    });

    it('checks on its own clock once started, and stops when stopped', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await notifyAll(h);
      const tracker = h.pipeline.tracker;
      tracker.configure({ timeoutMs: 3000, maxRetries: 0 });
      const seen: StateChange[] = [];
      tracker.start(1000, (changes) => seen.push(...changes));
      await h.timers.advance(3000);
      expect(seen).to.deep.equal([]);
      await h.timers.advance(1000);
      expect(seen.map((c) => [c.deviceId, c.to, c.ts])).to.deep.equal([[device.id, 'FAILED', T0 + 4000]]);
      tracker.stop();
      expect(h.timers.pending).to.equal(0);
    });

    it('does nothing with the timeout off', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await notifyAll(h);
      await h.timers.advance(24 * 3600_000);
      expect(await h.pipeline.tracker.checkTimeouts()).to.deep.equal([]);
    });

    it('does not time out a device whose package was unassigned meanwhile', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await notifyAll(h);
      h.pipeline.tracker.configure({ timeoutMs: 1000, maxRetries: 3 });
      await h.setDevicePackage(device, 'FIRMWARE', null);
      await settle();
      await h.timers.advance(5000);
      expect(await h.pipeline.tracker.checkTimeouts()).to.deep.equal([]);
      expect(await h.pipeline.queue.depth()).to.equal(0);
    });
  });

  describe('retries', () => {
    it('re-queues a FAILED device up to N times, then stops', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      h.pipeline.tracker.configure({ timeoutMs: 0, maxRetries: 2 });
      const q = h.pipeline.queue;

      for (const attempt of [1, 2]) {
        await notifyAll(h);
        expect(await q.depth()).to.equal(0);
        const changes = await reportLater(h, device, { fw_state: 'FAILED', fw_error: 'flash' });
        expect(changes.map((c) => [c.from, c.to, c.reason, c.error])).to.deep.equal([
          ['INITIATED', 'FAILED', 'reported', 'flash'],
          ['FAILED', 'QUEUED', 'retry', `retry ${attempt} of 2`],
        ]);
        expect(await q.depth()).to.equal(1);
        expect((await h.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state).to.deep.equal({ ts: h.timers.now(), value: 'QUEUED' });
      }
      await notifyAll(h);
      const last = await reportLater(h, device, { fw_state: 'FAILED' });
      expect(last.map((c) => c.reason)).to.deep.equal(['reported']);
      expect(await q.depth()).to.equal(0);
      expect(await stateOf(h, device)).to.include({ state: 'FAILED', retries: 2 });
    });

    it('retries a timed-out device too', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await notifyAll(h);
      h.pipeline.tracker.configure({ timeoutMs: 1000, maxRetries: 1 });
      await h.timers.advance(1001);
      const changes = await h.pipeline.tracker.checkTimeouts();
      expect(changes.map((c) => [c.deviceId, c.to, c.reason])).to.deep.equal([
        [device.id, 'FAILED', 'timeout'],
        [device.id, 'QUEUED', 'retry'],
      ]);
      expect(await h.pipeline.queue.depth()).to.equal(1);
    });

    it('resets the retry count for a new target', async () => {
      const h = harness();
      const a = await h.binaryPackage(profile, { version: 'a' });
      const b = await h.binaryPackage(profile, { version: 'b' });
      const device = await h.device(profile, { firmwareId: a.id });
      await settle();
      h.pipeline.tracker.configure({ timeoutMs: 0, maxRetries: 1 });
      await notifyAll(h);
      expect((await reportLater(h, device, { fw_state: 'FAILED' })).map((c) => c.reason)).to.deep.equal(['reported', 'retry']);
      await notifyAll(h);
      expect((await reportLater(h, device, { fw_state: 'FAILED' })).map((c) => c.reason)).to.deep.equal(['reported']);
      expect((await stateOf(h, device))?.retries).to.equal(1);

      await h.timers.advance(10);
      await h.setDevicePackage(device, 'FIRMWARE', b.id);
      await settle();
      expect(await stateOf(h, device)).to.include({ targetPackageId: b.id, retries: 0 });
      await notifyAll(h);
      const changes = await reportLater(h, device, { fw_state: 'FAILED' });
      expect(changes.map((c) => [c.reason, c.error])).to.deep.equal([
        ['reported', null],
        ['retry', 'retry 1 of 1'],
      ]);
      const released: AssignmentEvent[] = [];
      h.pipeline.queue.start({ packSize: 1, intervalMs: 0, mode: 'spaced' }, (evs) => released.push(...evs));
      await h.pipeline.queue.flush();
      expect(released.map((e) => e.packageId)).to.deep.equal([b.id]);
    });

    it('does not retry a device without a target, or with retries off', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const loose = await h.device(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await notifyAll(h);
      h.pipeline.tracker.configure({ timeoutMs: 0, maxRetries: 3 });
      expect((await reportLater(h, loose, { fw_state: 'FAILED' })).map((c) => c.reason)).to.deep.equal(['reported']);
      h.pipeline.tracker.configure({ timeoutMs: 0, maxRetries: 0 });
      expect((await reportLater(h, device, { fw_state: 'FAILED' })).map((c) => c.reason)).to.deep.equal(['reported']);
      expect(await h.pipeline.queue.depth()).to.equal(0);
    });

    it('does not re-queue a package unassigned while the device was updating', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await notifyAll(h);
      await reportLater(h, device, { fw_state: 'DOWNLOADING' });
      await h.setDevicePackage(device, 'FIRMWARE', null);
      await settle();
      h.pipeline.tracker.configure({ timeoutMs: 0, maxRetries: 3 });
      expect((await reportLater(h, device, { fw_state: 'FAILED' })).map((c) => c.reason)).to.deep.equal(['reported']);
      expect(await h.pipeline.queue.depth()).to.equal(0);
      expect((await h.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.not.equal('QUEUED');
    });
  });
});
