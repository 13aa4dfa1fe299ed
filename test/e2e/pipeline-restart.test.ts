import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ADMIN_PASSWORD, ADMIN_USER, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';
import { eventually } from '../support/eventually';

interface Ref {
  id: { id: string };
}
type History = Record<string, Array<{ ts: number; value: string }>>;

/** Slow enough that a restart lands half-way through the drain: one device every 300 ms. */
const PACE = { TB_QUEUE_CORE_OTA_PACK_SIZE: '1', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '300' };
const FLEET = 8;

async function fleetWithPackage(admin: Admin, name: string): Promise<{ profileId: string; packageId: string; devices: string[] }> {
  const profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name })).id.id;
  const info = await admin.firmware(profileId, `${name}-fw`, '1', randomBytes(4096));
  const devices: string[] = [];
  for (let i = 0; i < FLEET; i++)
    devices.push((await admin.request<Ref>('POST', '/device', { name: `${name}-${i}`, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } })).id.id);
  return { profileId, packageId: info.id.id, devices };
}

const states = async (admin: Admin, deviceId: string): Promise<string[]> =>
  (
    (await admin.request<History>('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=fw_state&startTs=0&endTs=${Date.now() + 60_000}&limit=100&orderBy=ASC`))
      .fw_state ?? []
  ).map((p) => p.value);

async function notifiedCount(admin: Admin, devices: string[]): Promise<number> {
  let n = 0;
  for (const d of devices) if ((await states(admin, d)).includes('INITIATED')) n += 1;
  return n;
}

describe('update pipeline across restarts', function () {
  this.timeout(90_000);
  let dataDir: string;
  let server: Running | undefined;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-restart-'));
  });
  afterEach(async () => {
    if (server) await stopServer(server, 'SIGKILL');
    server = undefined;
    await rm(dataDir, { recursive: true, force: true });
  });

  it('loses nothing and notifies no device twice when stopped half-way through the queue', async () => {
    server = await startServer(dataDir, PACE);
    let admin = await adminClient(server.api);
    const { profileId, packageId, devices } = await fleetWithPackage(admin, 'restart');
    await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });
    await eventually(async () => (await notifiedCount(admin, devices)) >= 2, 'two devices notified', { timeoutMs: 5000, everyMs: 50 });
    expect(await stopServer(server)).to.equal(0);

    server = await startServer(dataDir, PACE);
    admin = await adminClient(server.api);
    await eventually(async () => (await notifiedCount(admin, devices)) === FLEET, 'every device notified after the restart', { timeoutMs: 20_000, everyMs: 100 });
    for (const d of devices) {
      const s = await states(admin, d);
      expect(
        s.filter((x) => x === 'INITIATED'),
        `${d}: ${s.join(',')}`,
      ).to.have.length(1);
      expect(
        s.filter((x) => x === 'QUEUED'),
        `${d}: ${s.join(',')}`,
      ).to.have.length(1);
    }
  });

  it('still notifies every device after kill -9 in the middle of a drain', async () => {
    server = await startServer(dataDir, PACE);
    let admin = await adminClient(server.api);
    const { profileId, packageId, devices } = await fleetWithPackage(admin, 'crash');
    await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });
    await eventually(async () => (await notifiedCount(admin, devices)) >= 2, 'two devices notified', { timeoutMs: 5000, everyMs: 50 });
    await stopServer(server, 'SIGKILL');

    server = await startServer(dataDir, PACE);
    admin = await adminClient(server.api);
    await eventually(async () => (await notifiedCount(admin, devices)) === FLEET, 'every device notified after the crash', { timeoutMs: 20_000, everyMs: 100 });
    for (const d of devices) {
      const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${d}/credentials`);
      const attrs = (await (await fetch(`${server.api}/api/v1/${creds.credentialsId}/attributes?sharedKeys=fw_title`)).json()) as { shared?: Record<string, unknown> };
      expect(attrs.shared?.fw_title).to.equal('crash-fw');
    }
  });

  it('drops a stale event at ota-notify and counts it', async () => {
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '100', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '0' });
    const admin = await adminClient(server.api);
    const { profileId, packageId, devices } = await fleetWithPackage(admin, 'stale');
    await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });
    await eventually(async () => (await notifiedCount(admin, devices)) === FLEET, 'every device notified', { timeoutMs: 5000, everyMs: 50 });
    const user = await admin.request<{ tenantId: { id: string } }>('GET', '/auth/user');

    // Feed ota-notify an event the device no longer matches, as a message lost and replayed late would be.
    const editor = server.editor;
    const tokenRes = await fetch(`${editor}/auth/token`, {
      method: 'POST',
      body: new URLSearchParams({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username: ADMIN_USER, password: ADMIN_PASSWORD }),
    });
    const auth = { Authorization: `Bearer ${((await tokenRes.json()) as { access_token: string }).access_token}` };
    const flows = (await (await fetch(`${editor}/flows`, { headers: { ...auth, 'Node-RED-API-Version': 'v2' } })).json()) as { rev: string; flows: Array<Record<string, unknown>> };
    const notify = flows.flows.find((n) => n.type === 'ota-notify') as Record<string, unknown>;
    const stale = { tenantId: user.tenantId.id, deviceId: devices[0], type: 'FIRMWARE', packageId: '00000000-0000-4000-8000-000000000000', ts: Date.now() };
    const inject = {
      id: 'e2e0stale0inject',
      type: 'inject',
      z: notify.z,
      name: 'stale',
      props: [{ p: 'payload' }],
      payload: JSON.stringify(stale),
      payloadType: 'json',
      repeat: '',
      once: false,
      x: 100,
      y: 700,
      wires: [[notify.id]],
    };
    const deploy = await fetch(`${editor}/flows`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json', 'Node-RED-API-Version': 'v2', 'Node-RED-Deployment-Type': 'nodes' },
      body: JSON.stringify({ rev: flows.rev, flows: [...flows.flows, inject] }),
    });
    expect(deploy.status).to.equal(200);
    const before = await admin.request<{ notifications: { dropped: number } }>('GET', '/ota/metrics');
    await eventually(async () => (await fetch(`${editor}/inject/${inject.id}`, { method: 'POST', headers: auth })).status === 200, 'the inject node to be deployed', {
      timeoutMs: 5000,
      everyMs: 100,
    });
    await eventually(
      async () => (await admin.request<{ notifications: { dropped: number } }>('GET', '/ota/metrics')).notifications.dropped === before.notifications.dropped + 1,
      'the stale event to be dropped',
      { timeoutMs: 2500, everyMs: 50 },
    );
    expect((await states(admin, devices[0] as string)).filter((s) => s === 'INITIATED')).to.have.length(1);
  });
});
