import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { DeviceId, OtaPackageId } from '../../server/ids';
import type { NotifyOutcome } from '../../server/pipeline/notifier';
import { DEFAULT_QUEUE_LEASE_MS, NotifyQueue, pacingFromEnv, queueLeaseFromEnv, type AssignmentEvent, type Pacing } from '../../server/pipeline/notify-queue';
import type { OtaPackage } from '../../server/store/ota-packages';
import { SqliteStore } from '../../server/store/sqlite/sqlite-store';
import { eventually } from '../support/eventually';
import { FakeTimers, T0, settle, type PipelineHarness, useHarness } from './pipeline-support';

interface Release {
  /** Milliseconds after the first release. */
  at: number;
  events: AssignmentEvent[];
}

/** Starts the queue with `pacing`, recording each release and when it happened. */
function record(h: PipelineHarness, pacing: Pacing): Release[] {
  const releases: Release[] = [];
  h.pipeline.queue.start(pacing, (events) => releases.push({ at: h.timers.now(), events }));
  return releases;
}

const offsets = (rs: Release[]): number[] => rs.map((r) => r.at - (rs[0]?.at ?? 0));
const sizes = (rs: Release[]): number[] => rs.map((r) => r.events.length);

describe('notify queue', () => {
  const harness = useHarness();
  let profile: DeviceProfile;
  let pkg: OtaPackage;

  /** `n` devices queued for `pkg`, one event each, in this order. */
  async function queued(h: PipelineHarness, n: number): Promise<DeviceId[]> {
    const ids = h.insertDevices(profile, n);
    for (const id of ids) await h.pipeline.queue.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'FIRMWARE', packageId: pkg.id, ts: h.timers.now() });
    return ids;
  }

  beforeEach(async () => {
    const h = harness();
    profile = await h.profile();
    pkg = await h.binaryPackage(profile, { title: 'queue-fw', version: '4.2', tag: 'queue-fw 4.2' });
  });

  describe('enqueue', () => {
    it('writes target_fw_title, target_fw_version, target_fw_tag, target_fw_ts and fw_state QUEUED at the event ts', async () => {
      const h = harness();
      const [id] = h.insertDevices(profile, 1) as [DeviceId];
      const ts = T0 + 1234;
      expect(await h.pipeline.queue.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'FIRMWARE', packageId: pkg.id, ts })).to.equal(true);
      expect(await h.pipeline.telemetry.latest(id)).to.deep.equal({
        target_fw_title: { ts, value: 'queue-fw' },
        target_fw_version: { ts, value: '4.2' },
        target_fw_tag: { ts, value: 'queue-fw 4.2' },
        target_fw_ts: { ts, value: ts },
        fw_state: { ts, value: 'QUEUED' },
      });
      const history = await h.pipeline.telemetry.history(id, ['fw_state'], { startTs: 0, endTs: T0 * 2, limit: 10, order: 'ASC' });
      expect(history).to.deep.equal({ fw_state: [{ ts, value: 'QUEUED' }] });
      expect(await h.pipeline.queue.depth()).to.equal(1);
    });

    it('writes no target tag for a package without one, and sw_* keys for software', async () => {
      const h = harness();
      const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'app', version: '9' });
      const [id] = h.insertDevices(profile, 1) as [DeviceId];
      await h.pipeline.queue.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'SOFTWARE', packageId: sw.id, ts: T0 });
      const latest = await h.pipeline.telemetry.latest(id);
      expect(Object.keys(latest)).to.have.members(['target_sw_title', 'target_sw_version', 'target_sw_ts', 'sw_state']);
      expect(latest.sw_state?.value).to.equal('QUEUED');
    });

    it('queues a device at most once per type: a newer assignment replaces the queued one', async () => {
      const h = harness();
      const newer = await h.binaryPackage(profile, { version: '4.3' });
      const sw = await h.binaryPackage(profile, { type: 'SOFTWARE' });
      const [id, other] = h.insertDevices(profile, 2) as [DeviceId, DeviceId];
      const q = h.pipeline.queue;
      await q.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'FIRMWARE', packageId: pkg.id, ts: T0 });
      await q.enqueue({ tenantId: h.tenantId, deviceId: other, type: 'FIRMWARE', packageId: pkg.id, ts: T0 + 1 });
      await q.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'FIRMWARE', packageId: pkg.id, ts: T0 + 2 });
      await q.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'FIRMWARE', packageId: newer.id, ts: T0 + 3 });
      await q.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'SOFTWARE', packageId: sw.id, ts: T0 + 4 });
      expect(await q.depth()).to.equal(3);
      const releases = record(h, { packSize: 1, intervalMs: 0, mode: 'spaced' });
      expect(await q.flush()).to.equal(3);
      expect(releases.flatMap((r) => r.events).map((e) => [e.deviceId, e.type, e.packageId, e.ts])).to.deep.equal([
        [other, 'FIRMWARE', pkg.id, T0 + 1],
        [id, 'FIRMWARE', newer.id, T0 + 3],
        [id, 'SOFTWARE', sw.id, T0 + 4],
      ]);
    });

    it('skips a package that no longer exists, writing nothing', async () => {
      const h = harness();
      const [id] = h.insertDevices(profile, 1) as [DeviceId];
      expect(await h.pipeline.queue.enqueue({ tenantId: h.tenantId, deviceId: id, type: 'FIRMWARE', packageId: randomUUID() as OtaPackageId, ts: T0 })).to.equal(false);
      expect(await h.pipeline.queue.depth()).to.equal(0);
      expect(await h.pipeline.telemetry.latest(id)).to.deep.equal({});
    });

    it('treats packageId null as a cancel of what is queued', async () => {
      const h = harness();
      const [id] = await queued(h, 1);
      expect(await h.pipeline.queue.enqueue({ tenantId: h.tenantId, deviceId: id as DeviceId, type: 'FIRMWARE', packageId: null, ts: T0 + 1 })).to.equal(false);
      expect(await h.pipeline.queue.depth()).to.equal(0);
    });

    it('reports the depth on every change', async () => {
      const h = harness();
      const depths: number[] = [];
      h.pipeline.queue.on('depth', (d) => depths.push(d));
      const [a] = await queued(h, 2);
      await h.pipeline.queue.cancel(a as DeviceId, 'FIRMWARE');
      expect(depths).to.deep.equal([1, 2, 1]);
    });
  });

  describe('pacing', () => {
    it('spaced: releases one device every interval/packSize ms (5 per 200 ms = 40 ms apart)', async () => {
      const h = harness();
      const ids = await queued(h, 5);
      const releases = record(h, { packSize: 5, intervalMs: 200, mode: 'spaced' });
      await h.timers.advance(0);
      expect(sizes(releases)).to.deep.equal([1]);
      await h.timers.advance(39);
      expect(sizes(releases)).to.deep.equal([1], 'not before 40 ms');
      await h.timers.advance(1);
      expect(sizes(releases)).to.deep.equal([1, 1]);
      await h.timers.advance(1000);
      expect(offsets(releases)).to.deep.equal([0, 40, 80, 120, 160]);
      expect(releases.map((r) => r.events[0]?.deviceId)).to.deep.equal(ids);
      expect(await h.pipeline.queue.depth()).to.equal(0);
      expect(h.timers.pending, 'no timer left once empty').to.equal(0);
    });

    it('spaced: a device queued while idle goes at once, the next one a gap after it', async () => {
      const h = harness();
      const releases = record(h, { packSize: 4, intervalMs: 1000, mode: 'spaced' });
      await h.timers.advance(5000);
      await queued(h, 2);
      await h.timers.advance(0);
      expect(sizes(releases)).to.deep.equal([1]);
      await h.timers.advance(250);
      expect(offsets(releases)).to.deep.equal([0, 250]);
    });

    it('burst: releases packSize at once every interval', async () => {
      const h = harness();
      await queued(h, 7);
      const releases = record(h, { packSize: 3, intervalMs: 1000, mode: 'burst' });
      await h.timers.advance(0);
      expect(sizes(releases)).to.deep.equal([3]);
      await h.timers.advance(999);
      expect(sizes(releases)).to.deep.equal([3]);
      await h.timers.advance(5000);
      expect(sizes(releases)).to.deep.equal([3, 3, 1]);
      expect(offsets(releases)).to.deep.equal([0, 1000, 2000]);
    });

    it('interval 0: releases everything at once, in batches that leave the event loop breathing', async () => {
      const h = harness();
      await queued(h, 600);
      const releases = record(h, { packSize: 100, intervalMs: 0, mode: 'spaced' });
      await h.timers.advance(0);
      expect(releases.reduce((n, r) => n + r.events.length, 0)).to.equal(600);
      expect(releases.length).to.be.greaterThan(1);
      expect(releases.every((r) => r.at === T0)).to.equal(true);
      expect(await h.pipeline.queue.depth()).to.equal(0);
    });

    it('pauses and resumes where it left off', async () => {
      const h = harness();
      await queued(h, 4);
      const q = h.pipeline.queue;
      const releases = record(h, { packSize: 5, intervalMs: 200, mode: 'spaced' });
      await h.timers.advance(0);
      q.pause();
      expect(q.paused).to.equal(true);
      await h.timers.advance(10_000);
      expect(sizes(releases)).to.deep.equal([1]);
      expect(await q.depth()).to.equal(3);
      q.resume();
      expect(q.paused).to.equal(false);
      await h.timers.advance(0);
      expect(sizes(releases)).to.deep.equal([1, 1]);
      await h.timers.advance(80);
      expect(offsets(releases)).to.deep.equal([0, 10_000, 10_040, 10_080]);
    });

    it('flush releases everything queued now, ignoring the pace', async () => {
      const h = harness();
      const ids = await queued(h, 4);
      const q = h.pipeline.queue;
      const depths: number[] = [];
      q.on('depth', (d) => depths.push(d));
      const releases = record(h, { packSize: 1, intervalMs: 60_000, mode: 'spaced' });
      expect(await q.flush()).to.equal(4);
      expect(releases.flatMap((r) => r.events.map((e) => e.deviceId))).to.deep.equal(ids);
      expect(await q.depth()).to.equal(0);
      expect(depths.at(-1)).to.equal(0);
      await h.timers.advance(120_000);
      expect(releases.flatMap((r) => r.events)).to.have.length(4);
    });

    it('flush without a consumer releases nothing and keeps the rows', async () => {
      const h = harness();
      await queued(h, 3);
      expect(await h.pipeline.queue.flush()).to.equal(0);
      expect(await h.pipeline.queue.depth()).to.equal(3);
    });

    it('counts the depth per tenant', async () => {
      const h = harness();
      await queued(h, 3);
      const other = await h.engine.accounts.createTenant('Other', 'other@example.com', 'x-other-password');
      const otherProfile = await h.profile('theirs', other.tenant.id);
      const theirPkg = await h.binaryPackage(otherProfile, {}, other.tenant.id);
      const [theirs] = h.insertDevices(otherProfile, 1) as [DeviceId];
      await h.pipeline.queue.enqueue({ tenantId: other.tenant.id, deviceId: theirs, type: 'FIRMWARE', packageId: theirPkg.id, ts: T0 });
      expect(await h.pipeline.queue.depth(h.tenantId)).to.equal(3);
      expect(await h.pipeline.queue.depth(other.tenant.id)).to.equal(1);
      expect(await h.pipeline.queue.depth()).to.equal(4);
    });

    it('stop keeps what is queued: another queue over the same database releases it', async () => {
      const h = harness();
      const ids = await queued(h, 3);
      const releases = record(h, { packSize: 1, intervalMs: 1000, mode: 'spaced' });
      await h.timers.advance(0);
      h.pipeline.queue.stop();
      await h.timers.advance(10_000);
      expect(sizes(releases)).to.deep.equal([1]);
      expect(await h.pipeline.queue.depth()).to.equal(2);

      const db = h.openDb();
      try {
        const timers = new FakeTimers(h.timers.now());
        const again = new NotifyQueue(new SqliteStore(db), timers);
        expect(await again.depth()).to.equal(2);
        const later: AssignmentEvent[] = [];
        again.start({ packSize: 1, intervalMs: 1000, mode: 'spaced' }, (evs) => later.push(...evs));
        await timers.advance(1000);
        expect(later.map((e) => e.deviceId)).to.deep.equal(ids.slice(1));
        again.stop();
      } finally {
        db.close();
      }
    });
  });

  describe('handing on to the notifier', () => {
    const rows = (h: PipelineHarness): number => {
      const db = h.openDb();
      try {
        return (db.prepare('SELECT count(*) AS n FROM notify_queue').get() as { n: number }).n;
      } finally {
        db.close();
      }
    };

    it('keeps a released row until the notifier commits: a failed commit leaves it to be released again after the lease', async () => {
      const h = harness();
      const device = await h.device(profile, { firmwareId: pkg.id });
      await settle();
      expect(await h.pipeline.queue.depth()).to.equal(1);
      // The notifier's commit fails, as when the instance dies between the release and that commit.
      const db = h.openDb();
      db.exec("CREATE TRIGGER bench_fail_notify BEFORE INSERT ON ota_targets WHEN NEW.notified = 1 BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
      const outcomes: Array<NotifyOutcome | Error> = [];
      const q = h.pipeline.queue;
      q.start({ packSize: 10, intervalMs: 0, mode: 'spaced' }, (events) => {
        for (const ev of events)
          h.pipeline.notifier.process(ev).then(
            (o) => outcomes.push(o),
            (err: Error) => outcomes.push(err),
          );
        return 'notifier acks';
      });
      try {
        await h.timers.advance(0);
        await eventually(() => outcomes.length === 1, 'the notifier tried');
        expect(outcomes[0]).to.be.instanceOf(Error);
        expect(await q.depth(), 'handed on: no longer waiting').to.equal(0);
        expect(rows(h), 'but still in the queue').to.equal(1);
        expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});

        db.exec('DROP TRIGGER bench_fail_notify');
        await h.timers.advance(DEFAULT_QUEUE_LEASE_MS - 1000);
        expect(outcomes, 'not released again while its lease runs').to.have.length(1);
        await h.timers.advance(2000);
        await eventually(() => outcomes.length === 2, 'released again after the lease');
        expect(outcomes[1]).to.have.property('notification');
        expect(rows(h), "acked in the notifier's commit").to.equal(0);
        expect((await h.pipeline.attributes.get(device.id, 'SHARED')).fw_version).to.equal(pkg.version);
        await h.timers.advance(60_000);
        expect(outcomes, 'released once more, not again').to.have.length(2);
      } finally {
        q.stop();
        db.close();
      }
    });

    it('removes a released row at once when the consumer is not the notifier (other nodes between them)', async () => {
      const h = harness();
      await queued(h, 2);
      const releases = record(h, { packSize: 10, intervalMs: 0, mode: 'spaced' });
      await h.timers.advance(0);
      expect(sizes(releases)).to.deep.equal([2]);
      expect(rows(h)).to.equal(0);
      h.pipeline.queue.stop();
    });
  });

  describe('queueLeaseFromEnv', () => {
    it('is 30 s unless OTA_QUEUE_LEASE_MS says otherwise, and refuses a value that is no lease', () => {
      expect(queueLeaseFromEnv({})).to.equal(30_000);
      expect(queueLeaseFromEnv({ OTA_QUEUE_LEASE_MS: '' })).to.equal(30_000);
      expect(queueLeaseFromEnv({ OTA_QUEUE_LEASE_MS: '5000' })).to.equal(5000);
      for (const bad of ['abc', '999', '-1', '1000.5']) expect(() => queueLeaseFromEnv({ OTA_QUEUE_LEASE_MS: bad }), bad).to.throw(/OTA_QUEUE_LEASE_MS must be/);
    });
  });

  describe('pacingFromEnv', () => {
    it("defaults to ThingsBoard's 100 per 60000 ms, spaced", () => {
      expect(pacingFromEnv({})).to.deep.equal({ packSize: 100, intervalMs: 60000, mode: 'spaced' });
    });

    it('reads TB_QUEUE_CORE_OTA_PACK_SIZE and TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS', () => {
      expect(pacingFromEnv({ TB_QUEUE_CORE_OTA_PACK_SIZE: '5', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '200' })).to.deep.equal({ packSize: 5, intervalMs: 200, mode: 'spaced' });
    });

    it("reads the docs' TB_QUEUE_CORE_FW_PACK_* names too, the OTA names winning", () => {
      expect(pacingFromEnv({ TB_QUEUE_CORE_FW_PACK_SIZE: '7', TB_QUEUE_CORE_FW_PACK_INTERVAL_MS: '700' })).to.deep.equal({ packSize: 7, intervalMs: 700, mode: 'spaced' });
      expect(
        pacingFromEnv({ TB_QUEUE_CORE_OTA_PACK_SIZE: '5', TB_QUEUE_CORE_FW_PACK_SIZE: '7', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '200', TB_QUEUE_CORE_FW_PACK_INTERVAL_MS: '700' }),
      ).to.deep.equal({ packSize: 5, intervalMs: 200, mode: 'spaced' });
    });

    it('ignores empty, negative and non-numeric values', () => {
      expect(pacingFromEnv({ TB_QUEUE_CORE_OTA_PACK_SIZE: '', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: 'soon' })).to.deep.equal({ packSize: 100, intervalMs: 60000, mode: 'spaced' });
      expect(pacingFromEnv({ TB_QUEUE_CORE_OTA_PACK_SIZE: '-3', TB_QUEUE_CORE_FW_PACK_SIZE: '9' }).packSize).to.equal(9);
      expect(pacingFromEnv({ TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '0' }).intervalMs).to.equal(0);
    });
  });
});
