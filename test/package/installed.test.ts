import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { checksumOf } from '../../server/packages/checksum';
import { eventually } from '../support/eventually';
import { HttpDevice } from '../support/http-device';
import { MqttDevice, sha256 } from '../support/mqtt-clients';
import { adminClient, startServer, stopServer, type Admin } from '../support/standalone';
import { installInto, NODE_RED_DIR, packTarball, PACKAGE, passwordHash, redToken, startNodeRed, stopNodeRed, type RunningRed } from '../support/user-node-red';

interface Ref {
  id: { id: string };
}
type FlowNode = Record<string, unknown> & { id: string; type: string };

/**
 * The package as a user gets it: `npm pack`, installed with npm into a fresh Node-RED 4.1 user
 * directory beside a Node-RED installed on its own, with the user's own settings.js (adminAuth,
 * httpAdminRoot, httpNodeRoot, credentialSecret). The full example flow is deployed through
 * Node-RED's admin API; devices update over HTTP and MQTT through it; it redeploys, stops on
 * Ctrl-C and starts again.
 */
describe("installed into a user's own Node-RED (npm pack, npm install)", function () {
  this.timeout(120_000);
  const ROOT = path.resolve(__dirname, '..', '..', '..');
  const NODE_TYPES = Object.keys((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } })['node-red'].nodes);
  const EDITOR = { user: 'admin', password: 'editor-admin-pw' };
  const VIEWER = { user: 'viewer', password: 'viewer-pw' };
  const OTA_PASSWORD = 'ota-admin-pw-1';
  let scratch: string;
  let userDir: string;
  let red: RunningRed;
  let token: string;
  let flow: FlowNode[];
  let otaServerId: string;
  let admin: Admin;
  let otaApi: string;
  let mqttUrl: string;
  let profileId: string;
  let packageId: string;
  const firmware = Buffer.from(Array.from({ length: 150_000 }, (_, i) => (i * 31) & 0xff));

  const auth = (t: string): Record<string, string> => ({ Authorization: `Bearer ${t}` });
  const get = (url: string, t?: string): Promise<Response> => fetch(url, { headers: { Accept: 'application/json', ...(t ? auth(t) : {}) } });

  async function deploy(nodes: FlowNode[], t = token): Promise<Response> {
    return fetch(`${red.admin}/flows`, {
      method: 'POST',
      headers: { ...auth(t), 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(nodes),
    });
  }

  /** Once the flow's ota-server logs where its REST API listens, and its MQTT endpoint is up. */
  async function otaServerUp(listening: Promise<RegExpExecArray>): Promise<void> {
    const m = await listening;
    otaApi = `http://127.0.0.1:${m[1] as string}`;
    admin = await adminClient(otaApi, OTA_PASSWORD);
    const mqtt = await admin.endpoint('MQTT');
    mqttUrl = `mqtt://127.0.0.1:${mqtt.port}`;
  }
  const listeningLine = (): Promise<RegExpExecArray> => red.nextLine(/ThingsBoard REST API listening on 127\.0\.0\.1:(\d+)/);

  async function createDevice(name: string): Promise<{ id: string; token: string }> {
    const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
    return { id: d.id.id, token: (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId };
  }

  const latestState = async (deviceId: string): Promise<string | undefined> =>
    (await admin.request<Record<string, Array<{ value: string }>>>('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=fw_state`)).fw_state?.[0]?.value;

  before(async function () {
    this.timeout(300_000);
    scratch = await mkdtemp(path.join(os.tmpdir(), 'ota-installed-'));
    userDir = path.join(scratch, 'user');
    await installInto(userDir, await packTarball(scratch), scratch);
    // A user's own settings.js: their logins and secret, their roots, our settings by name.
    const settings = {
      uiPort: 0,
      uiHost: '127.0.0.1',
      flowFile: 'flows.json',
      credentialSecret: 'the users own secret',
      httpAdminRoot: '/admin',
      httpNodeRoot: '/hooks',
      adminAuth: {
        type: 'credentials',
        users: [
          { username: EDITOR.user, password: passwordHash(EDITOR.password), permissions: '*' },
          { username: VIEWER.user, password: passwordHash(VIEWER.password), permissions: 'read' },
        ],
      },
      logging: { console: { level: 'info', metrics: false, audit: false } },
      editorTheme: { tours: false },
      otaServerHttpPort: 0,
      otaServerHttpHost: '127.0.0.1',
      otaMqttEndpointPort: 0,
      otaMqttEndpointHost: '127.0.0.1',
      otaCoapEndpointPort: 0,
      otaCoapEndpointHost: '127.0.0.1',
    };
    await writeFile(path.join(userDir, 'settings.js'), `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
    red = await startNodeRed(userDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    token = await redToken(red.admin, EDITOR.user, EDITOR.password);
  });

  after(async () => {
    if (red) await stopNodeRed(red);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('installs only what the nodes need: no second Node-RED in the user directory, no tests', () => {
    const found: string[] = [];
    const walk = (modules: string): void => {
      for (const e of readdirSync(modules, { withFileTypes: true })) {
        if (!e.isDirectory()) continue;
        const dir = path.join(modules, e.name);
        if (e.name.startsWith('@')) {
          if (e.name === '@node-red') found.push(dir);
          else walk(dir);
          continue;
        }
        if (e.name === 'node-red' || e.name === 'node-red-node-test-helper') found.push(dir);
        if (existsSync(path.join(dir, 'node_modules'))) walk(path.join(dir, 'node_modules'));
      }
    };
    walk(path.join(userDir, 'node_modules'));
    expect(found).to.deep.equal([]);
    const installed = path.join(userDir, 'node_modules', ...PACKAGE.split('/'));
    for (const unwanted of ['dist/test', 'dist/bench', 'server', 'flows']) expect(existsSync(path.join(installed, unwanted)), unwanted).to.equal(false);
  });

  it('asks for a login before its admin API answers', async () => {
    expect((await get(`${red.admin}/nodes`)).status).to.equal(401);
  });

  it('registers every node type from the user directory, enabled, without errors', async () => {
    const res = await get(`${red.admin}/nodes`, token);
    expect(res.status).to.equal(200);
    const sets = ((await res.json()) as Array<{ module: string; types: string[]; enabled: boolean; local: boolean; err?: string }>).filter((s) => s.module === PACKAGE);
    expect(sets.flatMap((s) => s.types).sort()).to.deep.equal([...NODE_TYPES].sort());
    // `local`: loaded from the user directory's node_modules, where npm installed it.
    for (const s of sets) expect(s, s.types.join()).to.include({ enabled: true, local: true }).and.not.have.property('err');
  });

  it('lists the examples under Import > Examples', async () => {
    const res = await get(`${red.admin}/library/examples/flows/${PACKAGE}`, token);
    expect(res.status).to.equal(200);
    const listed = JSON.stringify(await res.json());
    const shipped = readdirSync(path.join(ROOT, 'flows')).filter((f) => f.endsWith('.json'));
    expect(shipped.length).to.be.greaterThan(1);
    for (const f of shipped) expect(listed, f).to.include(JSON.stringify(f.replace(/\.json$/, '')));
  });

  it('deploys the full example flow through the admin API, with the ota-server password as a credential', async () => {
    const res = await get(`${red.admin}/library/examples/flows/${PACKAGE}/${encodeURIComponent('ThingsBoard-compatible OTA server')}`, token);
    expect(res.status).to.equal(200);
    const example = (await res.json()) as FlowNode[];
    const tab = example.find((n) => typeof n.z === 'string')?.z as string;
    flow = [{ id: tab, type: 'tab', label: 'OTA server' }, ...example];
    const server = flow.find((n) => n.type === 'ota-server') as FlowNode;
    otaServerId = server.id;
    server.credentials = { adminPassword: OTA_PASSWORD };
    const listening = listeningLine();
    const deployed = await deploy(flow);
    expect(deployed.status, await deployed.clone().text()).to.be.oneOf([200, 204]);
    await otaServerUp(listening);
    expect(NODE_TYPES.filter((t) => t !== 'ota-server' && !flow.some((n) => n.type === t))).to.deep.equal([]);
  });

  it("keeps that credential encrypted with the user's credentialSecret", async () => {
    const creds = await eventually(() => readFile(path.join(userDir, 'flows_cred.json'), 'utf8'), 'flows_cred.json');
    expect(creds).to.not.include(OTA_PASSWORD);
    expect(JSON.parse(creds)).to.have.property('$');
  });

  it('serves the REST API and the dashboard on the ota-server port, not under httpNodeRoot', async () => {
    const dash = await fetch(`${otaApi}/dashboard/`);
    expect(dash.status).to.equal(200);
    expect(dash.headers.get('content-type')).to.match(/^text\/html/);
    await dash.arrayBuffer();
    const user = await admin.request<{ email: string }>('GET', '/auth/user');
    expect(user.email).to.equal('tenant@thingsboard.org');
  });

  it("answers the editor's pickers behind the user's permissions", async () => {
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'user-red-fleet' })).id.id;
    const picker = `${red.admin}/ota-server/${otaServerId}/profiles`;
    expect((await get(picker)).status).to.equal(401);
    const viewer = await redToken(red.admin, VIEWER.user, VIEWER.password, 'read');
    const res = await get(picker, viewer);
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { data: Array<{ name: string }> }).data.map((p) => p.name)).to.include('user-red-fleet');
    expect((await deploy(flow, viewer)).status, 'a read-only user cannot deploy').to.equal(401);
  });

  it('updates an HTTP device and an MQTT device through the deployed flow', async () => {
    packageId = (await admin.firmware(profileId, 'user-red-fw', '1.2.0', firmware, 'CRC32')).id.id;
    const h = await createDevice('user-red-http');
    const m = await createDevice('user-red-mqtt');
    const httpDevice = new HttpDevice(otaApi, h.token);
    const mqttDevice = await MqttDevice.connect(mqttUrl, m.token, 4);
    try {
      await mqttDevice.subscribe(['v1/devices/me/attributes']);
      const toldMqtt = mqttDevice.next('v1/devices/me/attributes', 30_000);
      // The HTTP device long-polls, and asks for its attributes after an empty poll (as pipeline-http does).
      const toldHttp = eventually(
        async () =>
          (await httpDevice.waitForUpdate(1000)) ?? (await httpDevice.attributes('?sharedKeys=fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm')).body.shared,
        'the HTTP device told of its firmware',
        { timeoutMs: 30_000 },
      );
      await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });

      const fwHttp = await toldHttp;
      expect(fwHttp).to.include({ fw_title: 'user-red-fw', fw_version: '1.2.0' });
      const gotHttp = await httpDevice.update(fwHttp, { chunkSize: 32_768 });
      expect(sha256(gotHttp)).to.equal(sha256(firmware));

      const fwMqtt = JSON.parse((await toldMqtt).payload.toString()) as Record<string, unknown>;
      expect(fwMqtt).to.include({ fw_title: 'user-red-fw', fw_size: firmware.length, fw_checksum_algorithm: 'CRC32', fw_checksum: checksumOf('CRC32', firmware) });
      await mqttDevice.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING' }));
      const gotMqtt = await mqttDevice.download(firmware.length, 16_384, { requestId: 3 });
      expect(sha256(gotMqtt)).to.equal(sha256(firmware));
      await mqttDevice.publish('v1/devices/me/telemetry', JSON.stringify({ current_fw_title: 'user-red-fw', current_fw_version: '1.2.0', fw_state: 'UPDATED' }));
    } finally {
      await mqttDevice.end();
    }
    await eventually(async () => (await latestState(h.id)) === 'UPDATED' && (await latestState(m.id)) === 'UPDATED', 'both devices UPDATED', { timeoutMs: 10_000, everyMs: 50 });
    const metrics = await admin.request<{ packages: Array<{ packageId: string; updated: number }> }>('GET', '/ota/metrics');
    expect(metrics.packages.find((p) => p.packageId === packageId)).to.include({ updated: 2 });
  });

  it('redeploys: every node restarts, the data stays', async () => {
    const listening = listeningLine();
    const res = await deploy(flow);
    expect(res.status).to.be.oneOf([200, 204]);
    await otaServerUp(listening);
    const devices = await admin.request<{ data: Array<{ name: string }> }>('GET', '/tenant/devices?pageSize=10&page=0');
    expect(devices.data.map((d) => d.name).sort()).to.deep.equal(['user-red-http', 'user-red-mqtt']);
    const device = await MqttDevice.connect(mqttUrl, (await createDevice('after-redeploy')).token, 5);
    await device.end();
  });

  it('stops cleanly on Ctrl-C and starts again with the same flow and credentials', async () => {
    const from = red.output().length;
    expect(await stopNodeRed(red)).to.equal(0);
    const stopping = red.output().slice(from);
    expect(stopping).to.not.match(/\[(error|warn)\]/);
    red = await startNodeRed(userDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    // The flow was deployed before the restart, so the ota-server may already be up: look in the whole log.
    await otaServerUp(
      eventually(() => /ThingsBoard REST API listening on 127\.0\.0\.1:(\d+)/.exec(red.output()), 'the ota-server after the restart', { timeoutMs: 30_000, everyMs: 50 }),
    );
    const devices = await admin.request<{ totalElements: number }>('GET', '/tenant/devices?pageSize=10&page=0');
    expect(devices.totalElements).to.equal(3);
  });

  describe('the installed node-red-ota command', () => {
    const command = (): string => path.join(userDir, 'node_modules', ...PACKAGE.split('/'), 'dist', 'bin', 'ota-server.js');

    it('says how to install Node-RED when none is installed beside it', async () => {
      const failed = await promisify(execFile)(process.execPath, [command()], { env: { ...process.env, OTA_DATA_DIR: path.join(scratch, 'no-red') } }).then(
        () => null,
        (err: Error & { code?: number; stderr?: string }) => err,
      );
      expect(failed?.code).to.equal(1);
      expect(failed?.stderr).to.include('npm install -g node-red @otanr/node-red-ota');
    });

    it('runs the standalone server with the Node-RED installed beside it', async () => {
      // NODE_PATH stands for the global node_modules that `npm install -g node-red @otanr/node-red-ota` shares.
      const server = await startServer(path.join(scratch, 'standalone'), { NODE_PATH: path.resolve(NODE_RED_DIR, '..') }, command());
      try {
        const standalone = await adminClient(server.api);
        expect((await standalone.request<{ email: string }>('GET', '/auth/user')).email).to.equal('tenant@thingsboard.org');
      } finally {
        expect(await stopServer(server)).to.equal(0);
      }
    });
  });
});
