import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EngineEvents } from '../../server/events';
import { DownloadProgress, SERVED_TOPIC } from '../../server/fleet/download-progress';
import type { ClusterBus } from '../../server/store/cluster-bus';
import { backgroundTimers } from '../../server/fleet/fleet-watch';
import { LIVE_PROGRESS_DEFAULTS, LiveProgress, liveProgressSettingsFromEnv, type ProgressEntry, type ProgressEvent } from '../../server/fleet/live-progress';
import type { DeviceId, OtaPackageId, TenantId } from '../../server/ids';
import { openStore } from '../../server/store/open-store';
import type { Store } from '../../server/store/store';
import { quietLogger } from './pipeline-support';

/** What one stream was sent, with a way to await its next event. */
class Received {
  readonly events: ProgressEntry[][] = [];
  private waiters: Array<() => void> = [];
  private read = 0;
  /** What the sink answers for the next event (false: not taken). */
  answer = true;

  readonly sink = (ev: ProgressEvent): boolean => {
    this.events.push(ev.data.devices);
    for (const w of this.waiters.splice(0)) w();
    return this.answer;
  };

  /** The next event not read yet, once it came. */
  async next(): Promise<ProgressEntry[]> {
    while (this.events.length <= this.read) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.events[this.read++] as ProgressEntry[];
  }
}

describe('live download progress for the dashboard streams', () => {
  describe('OTA_DASHBOARD_PROGRESS_MS and OTA_DASHBOARD_PROGRESS_MAX_DEVICES', () => {
    it('are 250 ms and 1,000 devices unless set, and refuse what is no whole number in range', () => {
      expect(liveProgressSettingsFromEnv({})).to.deep.equal({ intervalMs: 250, maxDevices: 1000 });
      expect(liveProgressSettingsFromEnv({ OTA_DASHBOARD_PROGRESS_MS: '', OTA_DASHBOARD_PROGRESS_MAX_DEVICES: '' })).to.deep.equal(LIVE_PROGRESS_DEFAULTS);
      expect(liveProgressSettingsFromEnv({ OTA_DASHBOARD_PROGRESS_MS: '500', OTA_DASHBOARD_PROGRESS_MAX_DEVICES: '20' })).to.deep.equal({ intervalMs: 500, maxDevices: 20 });
      for (const bad of ['0', '49', '60001', '1.5', 'soon']) {
        expect(() => liveProgressSettingsFromEnv({ OTA_DASHBOARD_PROGRESS_MS: bad }), bad).to.throw(
          `OTA_DASHBOARD_PROGRESS_MS must be a whole number of milliseconds from 50 to 60000, not '${bad}'`,
        );
      }
      for (const bad of ['0', '-1', '100001', 'all']) {
        expect(() => liveProgressSettingsFromEnv({ OTA_DASHBOARD_PROGRESS_MAX_DEVICES: bad }), bad).to.throw(
          `OTA_DASHBOARD_PROGRESS_MAX_DEVICES must be a whole number of devices from 1 to 100000, not '${bad}'`,
        );
      }
    });
  });

  describe('fed by the bytes served', () => {
    const tenant = randomUUID() as TenantId;
    const other = randomUUID() as TenantId;
    const pkg = randomUUID() as OtaPackageId;
    const SIZE = 100_000;
    let dataDir: string;
    let store: Store;
    let downloads: DownloadProgress;
    let live: LiveProgress;
    /** Another instance's side of the cluster bus: what it says reaches this instance's listener. */
    let fromOtherInstance: (payload: unknown) => void;

    beforeEach(async () => {
      dataDir = await mkdtemp(path.join(tmpdir(), 'ota-live-progress-'));
      store = await openStore({ dataDir });
      const bus: ClusterBus = {
        reachesOthers: true,
        publish: () => Promise.resolve(),
        subscribe: (topic, listener) => {
          if (topic === SERVED_TOPIC) fromOtherInstance = listener;
          return () => undefined;
        },
        close: () => Promise.resolve(),
      };
      // Nothing is written during a test: what a stream is sent comes from what waits in memory.
      downloads = new DownloadProgress(
        new EngineEvents(),
        { downloads: store.downloads, transaction: (work) => store.transaction(work), cluster: bus },
        { maxPending: 100_000, flushMs: 60_000 },
        quietLogger,
      );
      live = new LiveProgress(downloads, { intervalMs: 50, maxDevices: 1000 }, quietLogger, backgroundTimers);
    });

    afterEach(async () => {
      live.stop();
      await downloads.close();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    const devices = (n: number): DeviceId[] => Array.from({ length: n }, () => randomUUID() as DeviceId);
    const serve = (tenantId: TenantId, deviceId: DeviceId, start: number, end: number, type: 'FIRMWARE' | 'SOFTWARE' = 'FIRMWARE'): void =>
      downloads.served(tenantId, deviceId, type, pkg, SIZE, start, end, Date.now());

    it('sends each followed device once per round with its latest bytes; a flood of chunks waits as one entry per followed device', async () => {
      const fleet = devices(5000);
      const followed = fleet.slice(0, 1000);
      const got = new Received();
      const stream = live.open(tenant, got.sink);
      expect(live.follow(tenant, stream, followed)).to.equal(true);
      // 10 chunks of 1,000 bytes to each of 5,000 devices, in one turn: 50,000 chunks.
      for (let c = 0; c < 10; c++) for (const d of fleet) serve(tenant, d, c * 1000, (c + 1) * 1000);
      expect(live.waiting, 'what waits for the next round').to.equal(1000);
      const first = await got.next();
      expect(first).to.have.length(1000);
      expect(new Set(first.map((e) => e.deviceId))).to.deep.equal(new Set(followed));
      for (const e of first) expect(e).to.deep.include({ type: 'FIRMWARE', packageId: pkg, bytes: 10_000, size: SIZE, percent: 10 });
      expect(live.waiting).to.equal(0);

      // The next chunk of one device: the next event carries it alone.
      serve(tenant, followed[7] as DeviceId, 10_000, 20_000);
      serve(tenant, fleet[4000] as DeviceId, 10_000, 20_000);
      const second = await got.next();
      expect(second.map((e) => [e.deviceId, e.bytes, e.percent])).to.deep.equal([[followed[7], 20_000, 20]]);
      expect(got.events).to.have.length(2);
    });

    it('follows only what the stream asked for last, and never past its cap', async () => {
      const [a, b] = devices(2) as [DeviceId, DeviceId];
      const got = new Received();
      const stream = live.open(tenant, got.sink);
      live.follow(tenant, stream, [a]);
      live.follow(tenant, stream, [b]);
      serve(tenant, a, 0, 1000);
      expect(live.waiting, 'a is no longer followed').to.equal(0);
      serve(tenant, b, 0, 5000, 'SOFTWARE');
      const [entry, ...more] = await got.next();
      expect(more).to.deep.equal([]);
      expect(entry).to.deep.include({ deviceId: b, type: 'SOFTWARE', packageId: pkg, bytes: 5000, size: SIZE, percent: 5 });
      expect(() => live.follow(tenant, stream, devices(1001))).to.throw(RangeError, 'a live stream follows 1000 devices at most');
      live.close(stream);
      expect(live.follow(tenant, stream, [a]), 'a closed stream').to.equal(false);
      serve(tenant, b, 5000, 6000, 'SOFTWARE');
      expect(live.waiting).to.equal(0);
    });

    it("never sends a device to another tenant's stream, nor lets another tenant change what a stream follows", async () => {
      const [mine, theirs] = devices(2) as [DeviceId, DeviceId];
      const got = new Received();
      const foreign = new Received();
      const stream = live.open(tenant, got.sink);
      const otherStream = live.open(other, foreign.sink);
      expect(live.follow(other, stream, [theirs]), "another tenant naming this tenant's stream").to.equal(false);
      // Both streams name both devices; each hears only its own tenant's.
      live.follow(tenant, stream, [mine, theirs]);
      live.follow(other, otherStream, [mine, theirs]);
      serve(tenant, mine, 0, 2000);
      serve(other, theirs, 0, 3000);
      expect((await got.next()).map((e) => [e.deviceId, e.bytes])).to.deep.equal([[mine, 2000]]);
      expect((await foreign.next()).map((e) => [e.deviceId, e.bytes])).to.deep.equal([[theirs, 3000]]);
    });

    it('offers again, newer, what a stream could not take, instead of queueing behind it', async () => {
      const [d] = devices(1) as [DeviceId];
      const got = new Received();
      live.follow(tenant, live.open(tenant, got.sink), [d]);
      got.answer = false;
      serve(tenant, d, 0, 1000);
      expect((await got.next()).map((e) => e.bytes)).to.deep.equal([1000]);
      got.answer = true;
      expect(live.waiting, 'kept for the next round').to.equal(1);
      serve(tenant, d, 1000, 4000);
      expect(live.waiting).to.equal(1);
      expect((await got.next()).map((e) => e.bytes)).to.deep.equal([4000]);
      expect(live.waiting).to.equal(0);
    });

    it('adds what another instance served, heard on the cluster bus', async () => {
      const [d] = devices(1) as [DeviceId];
      const got = new Received();
      live.follow(tenant, live.open(tenant, got.sink), [d]);
      serve(tenant, d, 0, 1000);
      expect((await got.next()).map((e) => e.bytes)).to.deep.equal([1000]);
      fromOtherInstance([{ tenantId: tenant, deviceId: d, type: 'FIRMWARE', packageId: pkg, size: SIZE, ranges: [[500, 3000]], ts: Date.now() }]);
      expect((await got.next()).map((e) => e.bytes)).to.deep.equal([3000]);
    });
  });
});
