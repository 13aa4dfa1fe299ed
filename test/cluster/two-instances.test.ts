/**
 * Two `npm start` instances on one PostgreSQL database, each with its own data directory, as two
 * machines behind a load balancer: MQTT devices connected to one, HTTP devices long-polling the
 * other, one paced profile assignment made through either. Runs in the PostgreSQL run only
 * (.mocharc.postgres.json).
 */
import { expect } from 'chai';
import { HttpDevice } from '../support/http-device';
import { eventually } from '../support/eventually';
import { MqttDevice } from '../support/mqtt-clients';
import { stopServer, type Admin, type Running } from '../support/standalone';
import { TwoInstances } from '../support/cluster';

interface Ref {
  id: { id: string };
}
interface Metrics {
  packages: Array<{ packageId: string; targeted: number; updated: number }>;
}

const N_MQTT = 8;
const N_HTTP = 8;

describe('two instances on one PostgreSQL (npm start twice)', function () {
  this.timeout(120_000);
  const cluster = new TwoInstances('ota-cluster');
  let a: Running;
  let b: Running;
  let adminA: Admin;
  let adminB: Admin;
  let profileId: string;
  const mqtt: Array<{ id: string; device: MqttDevice }> = [];
  const http: Array<{ id: string; token: string }> = [];

  async function pkg(admin: Admin, version: string): Promise<string> {
    const info = await admin.firmware(profileId, 'cluster-fw', version, Buffer.from(`firmware ${version}`));
    return info.id.id;
  }

  /** The fw_* updates an MQTT device received for `version`. */
  const mqttUpdates = (d: MqttDevice, version: string): number =>
    d.inbox.pending.filter((m) => m.topic === 'v1/devices/me/attributes' && (JSON.parse(m.payload.toString()) as Record<string, unknown>).fw_version === version).length;

  /** An HTTP device as a robust one is: long polls, and asks for its attributes after an empty poll. */
  async function httpFirmware(base: () => string, token: string, version: string, told: Map<string, number>): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const device = new HttpDevice(base(), token);
      const update = await device.waitForUpdate(500).catch(() => null);
      if (update?.fw_version === version) {
        told.set(token, (told.get(token) ?? 0) + 1);
        return;
      }
      const { body } = await device.attributes('?sharedKeys=fw_version').catch(() => ({ body: {} as Record<string, Record<string, unknown>> }));
      if (body.shared?.fw_version === version) return;
    }
    throw new Error(`HTTP device ${token} never saw firmware ${version}`);
  }

  before(async () => {
    // Slow enough pacing that a drain takes seconds: 2 devices every 500 ms per instance.
    ({ a, b, adminA, adminB } = await cluster.start({ TB_QUEUE_CORE_OTA_PACK_SIZE: '2', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '500', OTA_QUEUE_LEASE_MS: '2000' }));
    profileId = (await adminA.request<Ref>('POST', '/deviceProfile', { name: 'cluster' })).id.id;
    const endpointB = await adminB.endpoint('MQTT');
    for (let i = 0; i < N_MQTT + N_HTTP; i++) {
      // Made on either instance: both see every device.
      const admin = i % 2 ? adminB : adminA;
      const d = await admin.request<Ref>('POST', '/device', { name: `cluster-${i}`, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
      const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
      if (i < N_MQTT) {
        const device = await MqttDevice.connect(`mqtt://127.0.0.1:${endpointB.port}`, token, 4);
        await device.subscribe(['v1/devices/me/attributes']);
        mqtt.push({ id: d.id.id, device });
      } else {
        http.push({ id: d.id.id, token });
      }
    }
  });

  after(async () => {
    await Promise.all(mqtt.map((m) => m.device.end()));
    await cluster.stop('SIGKILL');
  });

  it('updates every device, each notified once, wherever it is connected; then loses nothing when an instance is killed mid-drain', async () => {
    // 1. MQTT devices on B, HTTP devices on A, the assignment through A.
    const v1 = await pkg(adminA, '1.0');
    const told = new Map<string, number>();
    const httpDone = Promise.all(http.map((h) => httpFirmware(() => a.api, h.token, '1.0', told)));
    await adminA.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: v1, entityType: 'OTA_PACKAGE' } });
    await eventually(async () => mqtt.every((m) => mqttUpdates(m.device, '1.0') >= 1) || undefined, 'every MQTT device told of 1.0', { timeoutMs: 60000, everyMs: 50 });
    await httpDone;
    // Every device reports UPDATED, MQTT ones through B, HTTP ones through A.
    for (const m of mqtt) await m.device.publish('v1/devices/me/telemetry', JSON.stringify({ current_fw_title: 'cluster-fw', current_fw_version: '1.0', fw_state: 'UPDATED' }));
    for (const h of http) await new HttpDevice(a.api, h.token).telemetry({ current_fw_title: 'cluster-fw', current_fw_version: '1.0', fw_state: 'UPDATED' });
    for (const admin of [adminA, adminB]) {
      await eventually(
        async () => (await admin.request<Metrics>('GET', '/ota/metrics')).packages.find((p) => p.packageId === v1 && p.updated === N_MQTT + N_HTTP),
        'every device UPDATED, seen from both instances',
        { timeoutMs: 20000, everyMs: 50 },
      );
    }
    expect(
      mqtt.map((m) => mqttUpdates(m.device, '1.0')),
      'each MQTT device notified exactly once',
    ).to.deep.equal(mqtt.map(() => 1));
    expect([...told.values()].every((n) => n === 1)).to.equal(true);

    // 2. A second package; A is killed (kill -9) once the drain has begun. HTTP devices go to B, as
    // a load balancer sends them; what A claimed and never released comes back after its lease.
    const v2 = await pkg(adminB, '2.0');
    await adminB.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: v2, entityType: 'OTA_PACKAGE' } });
    await eventually(async () => mqtt.some((m) => mqttUpdates(m.device, '2.0') >= 1) || undefined, 'the drain begun', { timeoutMs: 20000, everyMs: 50 });
    await stopServer(a, 'SIGKILL');
    await Promise.all(http.map((h) => httpFirmware(() => b.api, h.token, '2.0', new Map())));
    await eventually(async () => mqtt.every((m) => mqttUpdates(m.device, '2.0') >= 1) || undefined, 'every MQTT device told of 2.0', { timeoutMs: 60000, everyMs: 50 });
    expect(
      mqtt.map((m) => mqttUpdates(m.device, '2.0')),
      'each MQTT device notified exactly once',
    ).to.deep.equal(mqtt.map(() => 1));
  });
});
