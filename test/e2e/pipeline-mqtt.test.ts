import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { checksumOf } from '../../server/packages/checksum';
import { MqttDevice, sha256 } from '../support/mqtt-clients';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';
import { eventually } from '../support/eventually';

const run = promisify(execFile);

interface Ref {
  id: { id: string };
}
interface Metrics {
  packages: Array<{ packageId: string; targeted: number; updated: number; failed: number; coverage: number }>;
}

/**
 * The example flow's MQTT path, as `npm start` deploys it: ota-notify -> ota-mqtt -> devices built
 * for ThingsBoard (MQTT.js at 3.1.1 and 5, mosquitto's clients) -> ota-state-tracker.
 */
describe('update pipeline over MQTT (example flow, npm start)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let mqttUrl: string;
  let mqttPort: number;
  let profileId: string;
  const firmware = randomBytes(100_000);
  let packageId: string;

  async function createDevice(name: string): Promise<{ id: string; token: string }> {
    const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
    const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`);
    return { id: d.id.id, token: creds.credentialsId };
  }

  /** What ThingsBoard's SDK does once told: DOWNLOADING, chunks, verify, report, UPDATED. */
  async function update(device: MqttDevice, fw: Record<string, unknown>, requestId: number): Promise<Buffer> {
    const report = (state: string, extra: Record<string, unknown> = {}) =>
      device.publish('v1/devices/me/telemetry', JSON.stringify({ current_fw_title: 'Initial', current_fw_version: 'v0', fw_state: state, ...extra }));
    await report('DOWNLOADING');
    const data = await device.download(Number(fw.fw_size), 4096, { requestId });
    await report('DOWNLOADED');
    expect(checksumOf(String(fw.fw_checksum_algorithm) as 'CRC32', data)).to.equal(fw.fw_checksum);
    await report('VERIFIED');
    await report('UPDATING');
    await device.publish('v1/devices/me/telemetry', JSON.stringify({ current_fw_title: fw.fw_title, current_fw_version: fw.fw_version, fw_state: 'UPDATED' }));
    return data;
  }

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-mqtt-e2e-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
    const endpoint = await admin.endpoint('MQTT');
    mqttPort = endpoint.port;
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'mqtt-fleet' })).id.id;
    const info = await admin.firmware(profileId, 'mqtt-fw', '3.0.0', firmware, 'CRC32');
    packageId = info.id.id;
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('updates an MQTT 3.1.1 device and an MQTT 5 device when the profile gets the package', async () => {
    const a = await createDevice('mqtt-v4');
    const b = await createDevice('mqtt-v5');
    const v4 = await MqttDevice.connect(mqttUrl, a.token, 4);
    const v5 = await MqttDevice.connect(mqttUrl, b.token, 5);
    try {
      // The v5 device uses the short topic family, as some firmware does.
      await v4.subscribe(['v1/devices/me/attributes']);
      await v5.subscribe(['v2/a']);
      const toldA = v4.next('v1/devices/me/attributes', 20_000);
      const toldB = v5.next('v2/a', 20_000);
      await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });
      const fwA = JSON.parse((await toldA).payload.toString()) as Record<string, unknown>;
      const fwB = JSON.parse((await toldB).payload.toString()) as Record<string, unknown>;
      expect(fwA).to.include({ fw_title: 'mqtt-fw', fw_version: '3.0.0', fw_size: firmware.length, fw_checksum_algorithm: 'CRC32', fw_checksum: checksumOf('CRC32', firmware) });
      expect(fwB).to.include({ fw_title: 'mqtt-fw' });
      const [dataA, dataB] = await Promise.all([update(v4, fwA, 1), update(v5, fwB, 7)]);
      expect(sha256(dataA)).to.equal(sha256(firmware));
      expect(sha256(dataB)).to.equal(sha256(firmware));
      // Nothing of one device reached the other.
      expect(v4.inbox.pending.every((m) => !m.topic.startsWith('v2/a'))).to.equal(true);
    } finally {
      await Promise.all([v4.end(), v5.end()]);
    }
    const m = await eventually(async () => {
      const p = (await admin.request<Metrics>('GET', '/ota/metrics')).packages.find((x) => x.packageId === packageId);
      return p && p.updated === 2 ? p : undefined;
    }, 'both devices UPDATED in the metrics');
    expect(m).to.include({ targeted: 2, updated: 2, failed: 0 });
  });

  it('serves mosquitto clients: the notification, the attributes and the chunks', async () => {
    // The device waits in a profile without firmware until mosquitto_sub listens, then moves over:
    // the move queues it, and the notification reaches mosquitto_sub.
    const staging = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'mqtt-staging' })).id.id;
    const d = await admin.request<Ref>('POST', '/device', { name: 'mqtt-mosquitto', deviceProfileId: { id: staging, entityType: 'DEVICE_PROFILE' } });
    const c = { id: d.id.id, token: (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId };
    const args = (...rest: string[]): string[] => ['-h', '127.0.0.1', '-p', String(mqttPort), '-u', c.token, ...rest];
    const connections = async (): Promise<number> =>
      (await admin.request<Array<{ transport: string; connections: number }>>('GET', '/ota/endpoints')).find((e) => e.transport === 'MQTT')?.connections ?? 0;
    const before = await connections();
    const sub = run('mosquitto_sub', args('-q', '1', '-t', 'v1/devices/me/attributes', '-C', '1', '-W', '20'));
    await eventually(async () => (await connections()) > before, 'mosquitto_sub to connect');
    await admin.request('POST', `/device/${c.id}`, { deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
    expect(JSON.parse((await sub).stdout)).to.include({ fw_title: 'mqtt-fw', fw_version: '3.0.0' });
    const attrs = await run(
      'mosquitto_rr',
      args('-W', '5', '-t', 'v1/devices/me/attributes/request/1', '-e', 'v1/devices/me/attributes', '-m', '{"sharedKeys":"fw_title,fw_size"}'),
    );
    expect(JSON.parse(attrs.stdout)).to.deep.equal({ shared: { fw_title: 'mqtt-fw', fw_size: firmware.length } });
    const parts: Buffer[] = [];
    for (let i = 0, got = 0; got < firmware.length; i++) {
      const { stdout } = await run('mosquitto_rr', args('-W', '5', '-N', '-t', `v2/fw/request/1/chunk/${i}`, '-e', 'v2/fw/error', '-m', '16384'), { encoding: 'buffer' });
      parts.push(stdout);
      got += stdout.length;
    }
    expect(sha256(Buffer.concat(parts))).to.equal(sha256(firmware));
    await run('mosquitto_pub', args('-q', '1', '-t', 'v1/devices/me/telemetry', '-m', '{"fw_state":"UPDATED","current_fw_title":"mqtt-fw","current_fw_version":"3.0.0"}'));
    await eventually(async () => {
      const latest = await admin.request<Record<string, Array<{ value: string }>>>('GET', `/plugins/telemetry/DEVICE/${c.id}/values/timeseries?keys=fw_state`);
      return latest.fw_state?.[0]?.value === 'UPDATED';
    }, 'the reported state');
  });

  it('tells an unassigned device NOT_FOUND on v2/fw/error and closes the connection', async () => {
    const other = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'mqtt-empty' })).id.id;
    const d = await admin.request<Ref>('POST', '/device', { name: 'mqtt-nothing', deviceProfileId: { id: other, entityType: 'DEVICE_PROFILE' } });
    const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    const device = await MqttDevice.connect(mqttUrl, token, 4);
    const error = device.next('v2/fw/error');
    device.send('v2/fw/request/1/chunk/0', '1024');
    expect((await error).payload.toString()).to.equal('NOT_FOUND');
    await device.closed;
  });

  it('answers a chunk size above the limit with PAYLOAD_TOO_LARGE, then DISCONNECT 0x83 (MQTT 5)', async () => {
    const d = await createDevice('mqtt-greedy');
    const device = await MqttDevice.connect(mqttUrl, d.token, 5);
    const error = device.next('v2/fw/error');
    device.send('v2/fw/request/1/chunk/0', String(65536 + 1));
    expect((await error).payload.toString()).to.equal('PAYLOAD_TOO_LARGE');
    await device.closed;
    expect((device.disconnect as { reasonCode?: number } | null)?.reasonCode).to.equal(0x83);
  });

  it('keeps devices apart: a notification and an answer reach only their own device', async () => {
    const staging = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'mqtt-apart' })).id.id;
    const make = async (name: string) => {
      const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: staging, entityType: 'DEVICE_PROFILE' } });
      return { id: d.id.id, token: (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId };
    };
    const [a, b] = [await make('mqtt-apart-a'), await make('mqtt-apart-b')];
    const da = await MqttDevice.connect(mqttUrl, a.token, 4);
    const db = await MqttDevice.connect(mqttUrl, b.token, 5);
    try {
      await da.subscribe(['v1/devices/me/attributes', 'v1/devices/me/attributes/response/+']);
      await db.subscribe(['v1/devices/me/attributes', 'v1/devices/me/attributes/response/+']);
      const told = da.next('v1/devices/me/attributes', 20_000);
      await admin.request('POST', `/device/${a.id}`, { deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
      expect(JSON.parse((await told).payload.toString())).to.include({ fw_title: 'mqtt-fw' });
      await da.ask('v1/devices/me/attributes/request/5', '{"sharedKeys":"fw_title"}', 'v1/devices/me/attributes/response/5');
      // B asks too, so a message meant for it has had time to arrive: it holds only its own answer.
      await db.ask('v1/devices/me/attributes/request/6', '{"sharedKeys":"fw_title"}', 'v1/devices/me/attributes/response/6');
      expect(db.inbox.pending).to.have.length(0);
    } finally {
      await Promise.all([da.end(), db.end()]);
    }
  });

  it('serves 500 connected devices downloading a 1 MB package in 16 KB chunks at once', async function () {
    this.timeout(180_000);
    const fleet = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'mqtt-500' })).id.id;
    const big = randomBytes(1024 * 1024);
    const info = await admin.firmware(fleet, 'mqtt-500-fw', '1', big);
    await admin.request('POST', `/deviceProfile/${fleet}`, { firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });
    const tokens: string[] = [];
    for (let i = 0; i < 500; i++) {
      const d = await admin.request<Ref>('POST', '/device', { name: `mqtt-500-${i}`, deviceProfileId: { id: fleet, entityType: 'DEVICE_PROFILE' } });
      tokens.push((await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId);
    }
    // 500 CONNECTs, then 500 requests in every round, against one server on a loaded machine: the
    // clients' usual 5 s for a CONNACK or a chunk ran out under load (the test's own timeout bounds it all).
    const patient = 60_000;
    const devices = await Promise.all(tokens.map((t, i) => MqttDevice.connect(mqttUrl, t, i % 2 ? 5 : 4, { connectTimeout: patient })));
    try {
      const digests = await Promise.all(devices.map(async (d) => sha256(await d.download(big.length, 16 * 1024, { chunkMs: patient }))));
      expect(new Set(digests)).to.deep.equal(new Set([sha256(big)]));
    } finally {
      await Promise.all(devices.map((d) => d.end()));
    }
  });

  it('refuses an unknown token with CONNACK 5 (3.1.1) and 0x86 (MQTT 5)', async () => {
    const v4 = await MqttDevice.connect(mqttUrl, 'no-such-token', 4).catch((err: Error & { code?: number }) => err);
    expect(v4).to.be.instanceOf(Error);
    expect((v4 as Error & { code?: number }).code).to.equal(5);
    const v5 = await MqttDevice.connect(mqttUrl, 'no-such-token', 5, { password: 'x' }).catch((err: Error & { code?: number }) => err);
    expect((v5 as Error & { code?: number }).code).to.equal(0x86);
  });
});
