import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { DEFAULT_MAX_TRACKED_DEVICES, maxTrackedDownloadsFromEnv, merge } from '../../server/fleet/download-progress';
import { MqttTransport } from '../../server/transports/mqtt/mqtt-transport';
import { MqttDevice } from '../support/mqtt-clients';
import { ApiHarness, ok, unique } from '../support/api-harness';
import { useHarness } from './pipeline-support';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DeviceId, OtaPackageId, TenantId } from '../../server/ids';
import { DownloadProgress } from '../../server/fleet/download-progress';
import { EngineEvents } from '../../server/events';
import { openStore } from '../../server/store/open-store';
import { quietLogger } from './pipeline-support';

interface ProgressBody {
  FIRMWARE: { packageId: string; servedBytes: number; size: number; percent: number; ts: number } | null;
  SOFTWARE: unknown;
}

describe('download progress seen from the server (issue 14)', () => {
  describe('OTA_DOWNLOAD_PROGRESS_MAX_DEVICES', () => {
    it('is 100,000 devices unless set, and refuses a value that is no count of devices', () => {
      expect(maxTrackedDownloadsFromEnv({})).to.equal(DEFAULT_MAX_TRACKED_DEVICES);
      expect(maxTrackedDownloadsFromEnv({ OTA_DOWNLOAD_PROGRESS_MAX_DEVICES: '' })).to.equal(DEFAULT_MAX_TRACKED_DEVICES);
      expect(maxTrackedDownloadsFromEnv({ OTA_DOWNLOAD_PROGRESS_MAX_DEVICES: '500' })).to.equal(500);
      for (const bad of ['0', '-3', '1.5', 'many']) {
        expect(() => maxTrackedDownloadsFromEnv({ OTA_DOWNLOAD_PROGRESS_MAX_DEVICES: bad }), bad).to.throw(
          `OTA_DOWNLOAD_PROGRESS_MAX_DEVICES must be a positive whole number of devices, not '${bad}'`,
        );
      }
    });
  });

  describe('merging served byte ranges', () => {
    it('counts a repeated or overlapping range once, and joins adjacent ones', () => {
      const ranges: Array<[number, number]> = [];
      expect(merge(ranges, 0, 100)).to.equal(100);
      expect(merge(ranges, 0, 100)).to.equal(100);
      expect(merge(ranges, 200, 300)).to.equal(200);
      expect(ranges).to.deep.equal([
        [0, 100],
        [200, 300],
      ]);
      expect(merge(ranges, 50, 250)).to.equal(300);
      expect(merge(ranges, 300, 400)).to.equal(400);
      expect(ranges).to.deep.equal([[0, 400]]);
    });
  });

  describe('over HTTP (chunks and Range), through the REST API and /metrics', () => {
    let h: ApiHarness;
    before(async () => {
      h = await ApiHarness.start();
    });
    after(async () => h?.close());

    it('counts the distinct bytes served as a percentage of the package, a resumed range once', async () => {
      const profile = await h.admin.createProfile();
      const bytes = randomBytes(4000);
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, title: unique('progress'), version: '1.0.0' }, bytes);
      const token = unique('token');
      const device = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, firmwareId: pkg.id }, token);
      const progress = async () => ok<ProgressBody>(await h.admin.get(`/api/ota/device/${device.id.id}/downloadProgress`));
      expect(await progress()).to.deep.equal({ FIRMWARE: null, SOFTWARE: null });

      // The server counts a response once it has sent it all: wait for its download event too.
      const firmware = async (q: string, headers: Record<string, string> = {}): Promise<Buffer> => {
        const counted = new Promise<void>((resolve) => {
          const on = (ev: { kind: string }): void => {
            if (ev.kind !== 'download') return;
            h.engine.events.off('uplink', on);
            resolve();
          };
          h.engine.events.on('uplink', on);
        });
        const res = await fetch(`${h.baseUrl}/api/v1/${token}/firmware?title=${encodeURIComponent(pkg.title)}&version=1.0.0${q}`, { headers });
        const body = Buffer.from(await res.arrayBuffer());
        await counted;
        return body;
      };
      expect(await firmware('&size=1000&chunk=0')).to.have.length(1000);
      expect((await progress()).FIRMWARE).to.include({ packageId: pkg.id.id, servedBytes: 1000, size: 4000, percent: 25 });
      // A resumed download asks again for bytes it had: they are not counted twice.
      expect(await firmware('', { Range: 'bytes=500-1999' })).to.have.length(1500);
      expect((await progress()).FIRMWARE).to.include({ servedBytes: 2000, percent: 50 });
      expect(await firmware('&size=1000&chunk=0')).to.have.length(1000);
      expect((await progress()).FIRMWARE).to.include({ servedBytes: 2000, percent: 50 });

      const metrics = await (await fetch(`${h.baseUrl}/metrics`)).text();
      expect(metrics).to.match(/^ota_download_progress_devices 1$/m);
      expect(metrics).to.match(/^ota_download_progress_ratio 0\.5$/m);

      expect(await firmware('')).to.have.length(4000);
      expect((await progress()).FIRMWARE).to.include({ servedBytes: 4000, percent: 100 });
      // The dashboard's device list shows it for the slot's target package.
      const row = ok<{ firmware: { target: { packageId: string } | null; served: unknown } }>(await h.admin.get(`/api/ota/devices/${device.id.id}`));
      expect(row.firmware.target?.packageId).to.equal(pkg.id.id);
      expect(row.firmware.served).to.deep.equal({ bytes: 4000, size: 4000, percent: 100 });
    });

    it("answers 404 for an unknown device, and another tenant's device is not readable", async () => {
      const other = await h.otherTenant();
      const profile = await h.admin.createProfile();
      const device = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id });
      expect((await other.get(`/api/ota/device/${device.id.id}/downloadProgress`)).status).to.be.oneOf([403, 404]);
      expect((await h.admin.get('/api/ota/device/3f1e5a5c-0000-4000-8000-0000000000ee/downloadProgress')).status).to.equal(404);
    });
  });

  describe('kept in the store', () => {
    it('writes the bytes of many chunks and devices in one transaction, and a restart keeps them', async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'ota-progress-'));
      try {
        let h = await ApiHarness.start({ dataDir });
        const profile = await h.admin.createProfile();
        const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, title: unique('kept'), version: '1.0.0' }, randomBytes(10_000));
        const devices = [];
        for (let i = 0; i < 3; i++) devices.push(await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, firmwareId: pkg.id }));
        const tenantId = devices[0]!.tenantId.id as TenantId;
        await h.close();

        const store = await openStore({ dataDir, databaseUrl: h.databaseUrl });
        let transactions = 0;
        const counting = { downloads: store.downloads, transaction: <T>(work: Parameters<typeof store.transaction<T>>[0]) => (transactions++, store.transaction(work)) };
        const progress = new DownloadProgress(new EngineEvents(), counting, { maxPending: 1000, flushMs: 60_000 }, quietLogger);
        try {
          // 100 chunks of 100 bytes to each device, the first 20 asked for twice (a resumed download).
          for (const d of devices)
            for (let c = 0; c < 100; c++) progress.served(tenantId, d.id.id as DeviceId, 'FIRMWARE', pkg.id.id as OtaPackageId, 10_000, c * 100, c * 100 + 100, 1000 + c);
          for (const d of devices)
            for (let c = 0; c < 20; c++) progress.served(tenantId, d.id.id as DeviceId, 'FIRMWARE', pkg.id.id as OtaPackageId, 10_000, c * 100, c * 100 + 100, 2000);
          await progress.flush();
          expect(transactions).to.equal(1);
          expect(await progress.fleet(tenantId)).to.deep.equal({ devices: 3, servedBytes: 30_000, packageBytes: 30_000, ratio: 1 });
          // Bytes sent again after the write merge with what is stored.
          progress.served(tenantId, devices[0]!.id.id as DeviceId, 'FIRMWARE', pkg.id.id as OtaPackageId, 10_000, 0, 5000, 3000);
          expect(await progress.of(tenantId, devices[0]!.id.id as DeviceId, 'FIRMWARE')).to.deep.include({ servedBytes: 10_000, percent: 100, ts: 3000 });
          expect(transactions).to.equal(2);
        } finally {
          await progress.close();
          await store.close();
        }

        h = await ApiHarness.start({ dataDir });
        try {
          const body = ok<ProgressBody>(await h.admin.get(`/api/ota/device/${devices[1]!.id.id}/downloadProgress`));
          expect(body.FIRMWARE).to.include({ packageId: pkg.id.id, servedBytes: 10_000, percent: 100 });
        } finally {
          await h.close();
        }
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });

  describe('over MQTT chunks', () => {
    const harness = useHarness();

    it('counts each chunk sent, a chunk asked for again once, and starts again for another package', async () => {
      const h = harness();
      const profile = await h.profile();
      const image = randomBytes(10_000);
      const pkg = await h.binaryPackage(profile, { title: 'mqtt-fw', version: '1.0.0', bytes: image });
      const device = await h.device(profile, { firmwareId: pkg.id });
      const transport = new MqttTransport(h.engine.deviceContext, { port: 0, host: '127.0.0.1' });
      const { port } = await transport.start();
      const d = await MqttDevice.connect(`mqtt://127.0.0.1:${port}`, device.accessToken);
      try {
        await d.subscribe(['v2/fw/response/+/chunk/+']);
        await d.ask('v2/fw/request/1/chunk/0', '4000', 'v2/fw/response/1/chunk/0');
        await d.ask('v2/fw/request/1/chunk/1', '4000', 'v2/fw/response/1/chunk/1');
        await d.ask('v2/fw/request/2/chunk/1', '4000', 'v2/fw/response/2/chunk/1');
        const seen = await h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE');
        expect(seen).to.include({ packageId: pkg.id, servedBytes: 8000, size: 10_000, percent: 80 });
        await d.ask('v2/fw/request/3/chunk/2', '4000', 'v2/fw/response/3/chunk/2');
        expect(await h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE')).to.include({ servedBytes: 10_000, percent: 100 });

        const next = await h.binaryPackage(profile, { title: 'mqtt-fw', version: '2.0.0', bytes: randomBytes(5000) });
        await h.setDevicePackage(device, 'FIRMWARE', next.id);
        await d.ask('v2/fw/request/4/chunk/0', '1000', 'v2/fw/response/4/chunk/0');
        expect(await h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE')).to.include({ packageId: next.id, servedBytes: 1000, percent: 20 });
      } finally {
        d.client.end(true);
        await transport.stop();
      }
    });

    it('counts chunks sent out of order, with a gap, as the bytes they cover', async () => {
      const h = harness();
      const profile = await h.profile();
      const pkg = await h.binaryPackage(profile, { title: 'mqtt-gaps', version: '1.0.0', bytes: randomBytes(10_000) });
      const device = await h.device(profile, { firmwareId: pkg.id });
      const transport = new MqttTransport(h.engine.deviceContext, { port: 0, host: '127.0.0.1' });
      const { port } = await transport.start();
      const d = await MqttDevice.connect(`mqtt://127.0.0.1:${port}`, device.accessToken);
      const served = () => h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE');
      try {
        await d.subscribe(['v2/fw/response/+/chunk/+']);
        // Chunks 4 and 0 (a gap between), then 1 inside the gap, then 4 again and 3: 4,000 of 10,000 bytes.
        for (const n of [4, 0, 1, 4, 3]) await d.ask(`v2/fw/request/1/chunk/${n}`, '1000', `v2/fw/response/1/chunk/${n}`);
        expect(await served()).to.include({ servedBytes: 4000, percent: 40 });
        // Then the rest in order, and the gap closes.
        for (const n of [2, 5, 6, 7, 8, 9]) await d.ask(`v2/fw/request/1/chunk/${n}`, '1000', `v2/fw/response/1/chunk/${n}`);
        expect(await served()).to.include({ servedBytes: 10_000, percent: 100 });
      } finally {
        d.client.end(true);
        await transport.stop();
      }
    });
  });
});
