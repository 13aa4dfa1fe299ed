import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { checksumOf } from '../../server/packages/checksum';
import { HttpDevice } from '../support/http-device';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';
import { eventually } from '../support/eventually';

interface Ref {
  id: { id: string };
}
interface Metrics {
  packages: Array<{ packageId: string; targeted: number; pending: number; inProgress: number; updated: number; failed: number; coverage: number }>;
  queue: { depth: number };
  notifications: { sent: number; dropped: number };
}
type History = Record<string, Array<{ ts: number; value: string }>>;

/**
 * The whole pipeline of the example flow, as `npm start` deploys it, with real HTTP devices:
 * upload, assign, paced queue, notification, long poll, chunked download, states, metrics.
 */
describe('update pipeline over HTTP (example flow, npm start)', function () {
  this.timeout(90_000);
  const CHUNK = 4096;
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let profileId: string;
  const firmware = randomBytes(150_000);
  let pkg: Record<string, unknown> & Ref;

  async function createPackage(title: string, version: string, bytes: Buffer, algorithm: string, profile = profileId): Promise<Record<string, unknown> & Ref> {
    return admin.firmware(profile, title, version, bytes, algorithm, `${title}-${version}.bin`);
  }

  async function createDevice(name: string, profile = profileId, extra: Record<string, unknown> = {}): Promise<{ id: string; device: HttpDevice }> {
    const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profile, entityType: 'DEVICE_PROFILE' }, ...extra });
    const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`);
    return { id: d.id.id, device: new HttpDevice(server.api, creds.credentialsId) };
  }

  const history = (deviceId: string, keys: string): Promise<History> =>
    admin.request<History>('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=${keys}&startTs=0&endTs=${Date.now() + 60_000}&limit=1000&orderBy=ASC`);
  const metrics = (): Promise<Metrics> => admin.request<Metrics>('GET', '/ota/metrics');

  /** A robust device: long-polls, and asks for its attributes after each empty poll. */
  async function awaitFirmware(device: HttpDevice, rounds = 60): Promise<{ fw: Record<string, unknown>; via: 'long-poll' | 'request' }> {
    for (let i = 0; i < rounds; i++) {
      const update = await device.waitForUpdate(1000);
      if (update && typeof update.fw_title === 'string') return { fw: update, via: 'long-poll' };
      const { body } = await device.attributes('?sharedKeys=fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm');
      if (body.shared?.fw_title) return { fw: body.shared, via: 'request' };
    }
    throw new Error('no firmware assigned');
  }

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-pipeline-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '5', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '200', OTA_UPDATE_TIMEOUT_S: '6' });
    admin = await adminClient(server.api);
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'thermostats' })).id.id;
    pkg = await createPackage('thermo-fw', '2.0.0', firmware, 'MURMUR3_128');
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('updates a profile of 20 devices at the configured pace: 17 updated, 3 failed, coverage 85 %', async () => {
    const fleet = await Promise.all(Array.from({ length: 20 }, (_, i) => createDevice(`thermo-${String(i).padStart(2, '0')}`)));
    const runs = fleet.map(async ({ device }, i) => {
      const { fw, via } = await awaitFirmware(device);
      const data = await device.update(fw, { chunkSize: CHUNK, ...(i < 3 ? { fail: 'Flash write failed' } : {}) });
      return { via, data };
    });
    await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: pkg.id.id, entityType: 'OTA_PACKAGE' } });
    const results = await Promise.all(runs);

    for (const r of results) expect(createHash('sha256').update(r.data).digest('hex')).to.equal(createHash('sha256').update(firmware).digest('hex'));
    expect(
      results.some((r) => r.via === 'long-poll'),
      'at least one device woken by its long poll',
    ).to.equal(true);

    const m = await eventually(async () => {
      const all = await metrics();
      const p = all.packages.find((x) => x.packageId === pkg.id.id);
      return p && p.updated + p.failed === 20 ? p : undefined;
    }, 'metrics to converge');
    expect(m).to.include({ targeted: 20, updated: 17, failed: 3, pending: 0, inProgress: 0 });
    expect(m.coverage).to.be.closeTo(0.85, 1e-9);

    // ThingsBoard's telemetry API shows each device's whole story, the server's states first.
    const h = await history(fleet[5]!.id, 'fw_state,target_fw_title,target_fw_version');
    expect(h.fw_state!.map((p) => p.value)).to.deep.equal(['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED']);
    expect(h.target_fw_title![0]!.value).to.equal('thermo-fw');
    const failed = await admin.request<History>('GET', `/plugins/telemetry/DEVICE/${fleet[0]!.id}/values/timeseries?keys=fw_state,fw_error`);
    expect(failed.fw_state![0]!.value).to.equal('FAILED');
    expect(failed.fw_error![0]!.value).to.equal('Flash write failed');

    // Paced: one device every 200/5 = 40 ms, so 20 INITIATED states span at least ~19 gaps.
    const initiated: number[] = [];
    for (const { id } of fleet) initiated.push((await history(id, 'fw_state')).fw_state!.find((p) => p.value === 'INITIATED')!.ts);
    expect(Math.max(...initiated) - Math.min(...initiated)).to.be.at.least(19 * 40 * 0.9);
  });

  it('writes the shared attributes ThingsBoard writes, with the checksum in the named algorithm', async () => {
    const { device } = await createDevice('thermo-attrs');
    const { fw } = await awaitFirmware(device);
    expect(fw).to.include({
      fw_title: 'thermo-fw',
      fw_version: '2.0.0',
      fw_size: firmware.length,
      fw_checksum_algorithm: 'MURMUR3_128',
      fw_checksum: checksumOf('MURMUR3_128', firmware),
    });
    const { body } = await device.attributes();
    expect(body.shared).to.not.have.property('fw_url');
  });

  it('lets a device override its profile with its own package', async () => {
    const special = randomBytes(20_000);
    const own = await createPackage('thermo-fw', '2.1.0-beta', special, 'SHA256');
    const { device } = await createDevice('thermo-beta', profileId, { firmwareId: { id: own.id.id, entityType: 'OTA_PACKAGE' } });
    const { fw } = await awaitFirmware(device);
    expect(fw.fw_version).to.equal('2.1.0-beta');
    const data = await device.update(fw, { chunkSize: 1024 });
    expect(data.equals(special)).to.equal(true);
    // The profile's package is refused to this device: HTTP checks title and version.
    expect((await device.chunk('thermo-fw', '2.0.0', 1024, 0)).status).to.equal(400);
  });

  it('resumes a cut download with a Range request, and answers HEAD and If-None-Match', async () => {
    const { device } = await createDevice('thermo-range');
    const { fw } = await awaitFirmware(device);
    const q = `?title=thermo-fw&version=2.0.0`;
    const url = `${server.api}/api/v1/${device.token}/firmware${q}`;
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).to.equal(200);
    expect(Number(head.headers.get('content-length'))).to.equal(firmware.length);
    const etag = head.headers.get('etag') as string;
    expect(etag).to.include(String(fw.fw_checksum));
    const first = Buffer.from(await (await fetch(url, { headers: { Range: 'bytes=0-59999' } })).arrayBuffer());
    const rest = await fetch(url, { headers: { Range: 'bytes=60000-' } });
    expect(rest.status).to.equal(206);
    expect(rest.headers.get('content-range')).to.equal(`bytes 60000-${firmware.length - 1}/${firmware.length}`);
    const whole = Buffer.concat([first, Buffer.from(await rest.arrayBuffer())]);
    expect(whole.equals(firmware)).to.equal(true);
    expect((await fetch(url, { headers: { 'If-None-Match': etag } })).status).to.equal(304);
    expect((await fetch(url, { headers: { Range: `bytes=${firmware.length}-` } })).status).to.equal(416);
  });

  it('turns a device that goes silent into FAILED after the timeout', async () => {
    const { id, device } = await createDevice('thermo-silent');
    await awaitFirmware(device);
    await device.report('DOWNLOADING');
    const h = await eventually(
      async () => {
        const latest = await admin.request<History>('GET', `/plugins/telemetry/DEVICE/${id}/values/timeseries?keys=fw_state,fw_error`);
        return latest.fw_state?.[0]?.value === 'FAILED' ? latest : undefined;
      },
      'the timeout',
      { timeoutMs: 20_000, everyMs: 100 },
    );
    expect(h.fw_error![0]!.value).to.match(/timed out.*DOWNLOADING/);
  });

  it('unassigns: the nine fw_* attributes go at once and long-polling devices are told', async () => {
    const other = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'sensors' })).id.id;
    const sensorPkg = await createPackage('sensor-fw', '1.0.0', randomBytes(5000), 'CRC32', other);
    const { device } = await createDevice('sensor-1', other);
    await admin.request('POST', `/deviceProfile/${other}`, { firmwareId: { id: sensorPkg.id.id, entityType: 'OTA_PACKAGE' } });
    await awaitFirmware(device);
    const told = device.waitForUpdate(10_000);
    await admin.request('POST', `/deviceProfile/${other}`, { firmwareId: null });
    const update = await told;
    expect(update).to.not.equal(null);
    expect(update!.deleted).to.include.members(['fw_title', 'fw_version', 'fw_ts', 'fw_state', 'fw_size', 'fw_checksum', 'fw_checksum_algorithm', 'fw_url', 'fw_tag']);
    const { status, body } = await device.attributes('?sharedKeys=fw_title,fw_version');
    expect(status).to.equal(200);
    expect(body).to.deep.equal({});
    expect((await device.chunk('sensor-fw', '1.0.0', 0, 0)).status).to.equal(404);
  });

  it('answers an unknown token with 401 and an out-of-range chunk with an empty 200', async () => {
    const stranger = new HttpDevice(server.api, 'no-such-token');
    expect((await stranger.attributes()).status).to.equal(401);
    expect(await stranger.telemetry({ a: 1 })).to.equal(401);
    const { device } = await createDevice('thermo-eof');
    await awaitFirmware(device);
    const past = await device.chunk('thermo-fw', '2.0.0', CHUNK, Math.ceil(firmware.length / CHUNK));
    expect(past.status).to.equal(200);
    expect(past.headers.get('content-length')).to.equal('0');
  });
});
