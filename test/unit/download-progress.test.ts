import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { DEFAULT_MAX_TRACKED_DEVICES, maxTrackedDownloadsFromEnv, merge } from '../../server/fleet/download-progress';
import { MqttTransport } from '../../server/transports/mqtt/mqtt-transport';
import { MqttDevice } from '../support/mqtt-clients';
import { ApiHarness, ok, unique } from '../support/api-harness';
import { useHarness } from './pipeline-support';
import type { DeviceId } from '../../server/ids';

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
        const seen = h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE');
        expect(seen).to.include({ packageId: pkg.id, servedBytes: 8000, size: 10_000, percent: 80 });
        await d.ask('v2/fw/request/3/chunk/2', '4000', 'v2/fw/response/3/chunk/2');
        expect(h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE')).to.include({ servedBytes: 10_000, percent: 100 });

        const next = await h.binaryPackage(profile, { title: 'mqtt-fw', version: '2.0.0', bytes: randomBytes(5000) });
        await h.setDevicePackage(device, 'FIRMWARE', next.id);
        await d.ask('v2/fw/request/4/chunk/0', '1000', 'v2/fw/response/4/chunk/0');
        expect(h.engine.downloads.of(h.tenantId, device.id as DeviceId, 'FIRMWARE')).to.include({ packageId: next.id, servedBytes: 1000, percent: 20 });
      } finally {
        d.client.end(true);
        await transport.stop();
      }
    });
  });
});
