import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { HttpDevice } from '../support/http-device';
import { ADMIN_PASSWORD, ADMIN_USER, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';
import { eventually } from '../support/eventually';

/**
 * The numbered examples do what their comment says, deployed as a user would import them into
 * `npm start` (empty flow file), their inject buttons pressed through the editor's admin API.
 */
const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');

interface FlowNode {
  id: string;
  type: string;
  z?: string;
  name?: string;
}

describe('example flows, deployed and run', function () {
  this.timeout(60_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let editorToken: string;
  const deployed: FlowNode[] = [];

  const editor = async (method: string, url: string, body?: unknown): Promise<Response> =>
    fetch(`${server.editor}${url}`, {
      method,
      headers: { Authorization: `Bearer ${editorToken}`, 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  /** Adds an example, on a tab of its own, to what is deployed. */
  async function deploy(file: string): Promise<FlowNode[]> {
    const nodes = JSON.parse(await readFile(path.join(EXAMPLES, `${file}.json`), 'utf8')) as FlowNode[];
    const tab = nodes.find((n) => n.z)?.z as string;
    deployed.push({ id: tab, type: 'tab', name: file }, ...nodes);
    const res = await editor('POST', '/flows', deployed);
    expect(res.status, await res.text()).to.be.oneOf([200, 204]);
    return nodes;
  }

  /** Presses the inject node named `name`, once the deployed flow has started it. */
  async function press(nodes: FlowNode[], name: string): Promise<void> {
    const inject = nodes.find((n) => n.type === 'inject' && n.name === name);
    if (!inject) throw new Error(`no inject node '${name}'`);
    await eventually(async () => (await editor('POST', `/inject/${inject.id}`)).status === 200, `inject '${name}'`);
  }

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-examples-'));
    await mkdir(path.join(dataDir, 'node-red'), { recursive: true });
    await writeFile(path.join(dataDir, 'node-red', 'flows.json'), '[]');
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
    const login = await fetch(`${server.editor}/auth/token`, {
      method: 'POST',
      body: new URLSearchParams({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username: ADMIN_USER, password: ADMIN_PASSWORD }),
    });
    editorToken = ((await login.json()) as { access_token: string }).access_token;
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('01 uploads demo-firmware 1.0.0 for the default profile', async () => {
    const nodes = await deploy('01 - Upload a package');
    await press(nodes, 'upload demo firmware');
    const found = await eventually(async () => {
      const page = await admin.request<{ data: Array<Record<string, unknown>> }>('GET', '/otaPackages?pageSize=10&page=0&textSearch=demo-firmware');
      return page.data[0];
    }, 'the uploaded package');
    expect(found).to.include({
      title: 'demo-firmware',
      version: '1.0.0',
      type: 'FIRMWARE',
      hasData: true,
      dataSize: 65536,
      checksumAlgorithm: 'SHA256',
      fileName: 'demo-firmware-1.0.0.bin',
    });
  });

  it("06 takes an HTTP device of the default profile from the assignment to UPDATED, and 02's node fields assign too", async () => {
    const profiles = await admin.request<{ data: Array<{ id: { id: string }; name: string; firmwareId: { id: string } | null }> }>('GET', '/deviceProfiles?pageSize=10&page=0');
    const profile = profiles.data.find((p) => p.name === 'default');
    const created = await admin.request<{ id: { id: string } }>('POST', '/device', { name: 'demo-device', deviceProfileId: { entityType: 'DEVICE_PROFILE', id: profile?.id.id } });
    const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${created.id.id}/credentials`);
    const device = new HttpDevice(server.api, creds.credentialsId);

    const pipeline = await deploy('06 - Track update states');
    await press(pipeline, 'assign demo firmware');
    const fw = await eventually(
      async () => (await device.attributes('?sharedKeys=fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm')).body.shared,
      'the firmware attributes',
    );
    expect(fw).to.include({ fw_title: 'demo-firmware', fw_version: '1.0.0', fw_size: 65536 });
    await device.update(fw, { chunkSize: 4096 });
    expect(device.states).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED']);
    const metrics = await eventually(async () => {
      const m = await admin.request<{ packages: Array<{ title: string; updated: number }> }>('GET', '/ota/metrics');
      return m.packages.find((p) => p.title === 'demo-firmware' && p.updated === 1);
    }, 'the device counted as updated');
    expect(metrics).to.include({ updated: 1 });

    // 02 unassigns, then assigns again with the package and profile set in its node.
    const assign = await deploy('02 - Assign a package to a profile');
    await press(assign, 'unassign');
    await eventually(async () => (await admin.request<{ firmwareId: unknown }>('GET', `/deviceProfile/${profile?.id.id}`)).firmwareId === null, 'the profile unassigned');
    await press(assign, "assign (node's fields)");
    const again = await eventually(
      async () => (await admin.request<{ firmwareId: { id: string } | null }>('GET', `/deviceProfile/${profile?.id.id}`)).firmwareId,
      'the profile assigned again',
    );
    expect(again.id).to.be.a('string');
  });

  it('10 uploads demo-firmware 1.1.0 and rolls it out to the default profile in waves, to COMPLETED', async () => {
    const page = await admin.request<{ data: Array<{ id: { id: string }; name: string }> }>('GET', '/tenant/devices?pageSize=10&page=0&textSearch=demo-device');
    const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${page.data[0]?.id.id}/credentials`);
    const device = new HttpDevice(server.api, creds.credentialsId);

    const nodes = await deploy('10 - Roll out in waves');
    await press(nodes, 'upload demo firmware 1.1.0');
    await eventually(
      async () => (await admin.request<{ data: unknown[] }>('GET', '/otaPackages?pageSize=10&page=0&textSearch=demo-firmware')).data.length === 2,
      'the new package',
    );
    await press(nodes, 'roll out in waves');
    const fw = await eventually(async () => {
      const shared = (await device.attributes('?sharedKeys=fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm')).body.shared;
      return shared?.fw_version === '1.1.0' ? shared : null;
    }, 'the device told of 1.1.0 by the first wave');
    await device.update(fw, { chunkSize: 4096 });
    const done = await eventually(
      async () => {
        const rollouts = await admin.request<{ data: Array<{ name: string; state: string; waves: Array<{ state: string; devices: number; updated: number }> }> }>(
          'GET',
          '/ota/rollouts?pageSize=10&page=0',
        );
        const r = rollouts.data.find((x) => x.name === 'demo-firmware 1.1.0 in waves');
        return r?.state === 'COMPLETED' ? r : null;
      },
      'the rollout completed',
      { everyMs: 100 },
    );
    expect(done.waves.map((w) => [w.state, w.devices, w.updated])).to.deep.equal([
      ['PASSED', 1, 1],
      ['PASSED', 0, 0],
      ['PASSED', 0, 0],
    ]);
  });
});
