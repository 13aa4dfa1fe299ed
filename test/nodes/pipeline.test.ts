import { expect } from 'chai';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import otaAssign from '../../nodes/ota-assign';
import otaCoap from '../../nodes/ota-coap';
import otaCoapEndpoint from '../../nodes/ota-coap-endpoint';
import otaLwm2m from '../../nodes/ota-lwm2m';
import otaLwm2mEndpoint from '../../nodes/ota-lwm2m-endpoint';
import otaMqtt from '../../nodes/ota-mqtt';
import otaMqttEndpoint from '../../nodes/ota-mqtt-endpoint';
import otaHttp from '../../nodes/ota-http';
import otaNotify from '../../nodes/ota-notify';
import otaPackageStore from '../../nodes/ota-package-store';
import otaRollout from '../../nodes/ota-rollout';
import otaRateQueue from '../../nodes/ota-rate-queue';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import otaStateTracker from '../../nodes/ota-state-tracker';
import type { FleetMetrics, StateChange } from '../../server/pipeline/state-tracker';
import { arrivals, helper, nodeOf, registerCatalogs, translated, type CaughtError, type FlowNode, type Msg } from './flow-helper';
import { eventually } from '../support/eventually';

/** The example flow `npm start` deploys, as the build ships it. */
const EXAMPLE = path.resolve(__dirname, '../../../flows/ThingsBoard-compatible OTA server.json');
const TYPES = [
  'ota-server',
  'ota-package-store',
  'ota-assign',
  'ota-rate-queue',
  'ota-notify',
  'ota-http',
  'ota-state-tracker',
  'ota-mqtt-endpoint',
  'ota-mqtt',
  'ota-coap-endpoint',
  'ota-coap',
  'ota-lwm2m-endpoint',
  'ota-lwm2m',
  'ota-rollout',
];
const FIRMWARE = Buffer.from('my-firmware 1.0.0\n'.repeat(300));

/** The id of the node of `type` (and `name`, when several) in the example flow. */
const idOf = (flow: FlowNode[], type: string, name?: string): string => {
  const node = flow.find((n) => n.type === type && (name === undefined || n.name === name));
  if (!node) throw new Error(`the example flow has no ${type} ${name ?? ''}`);
  return node.id;
};

describe('the OTA pipeline in Node-RED', function () {
  let dir: string;
  let flow: FlowNode[];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-pipeline-nodes-'));
    await helper.startServer();
    await registerCatalogs(...TYPES);

    // The example's own nodes and wires; its debug nodes become probes, its inject and comment
    // nodes go; the server listens on a free local port; pacing and the metrics interval are off.
    const example = JSON.parse(readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
    const tab = example.find((n) => n.z)?.z as string;
    flow = [
      { id: tab, type: 'tab' },
      ...example
        .filter((n) => n.type !== 'inject' && n.type !== 'comment')
        .map((n): FlowNode => {
          if (n.type === 'debug') return { id: n.id, z: tab, type: 'helper', name: n.name };
          if (n.type === 'ota-server') return { ...n, dataDir: path.join(dir, 'data'), httpPort: '0', httpHost: '127.0.0.1' };
          if (n.type === 'ota-rate-queue') return { ...n, intervalMs: '0' };
          if (n.type === 'ota-mqtt-endpoint' || n.type === 'ota-coap-endpoint' || n.type === 'ota-lwm2m-endpoint') return { ...n, port: '0', host: '127.0.0.1' };
          if (n.type === 'ota-state-tracker') return { ...n, metricsIntervalMs: '0' };
          return n;
        }),
      { id: 'catcher', z: tab, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', z: tab, type: 'helper' },
    ];
    expect([...new Set(flow.map((n) => n.type))]).to.include.members(TYPES);
  });

  afterEach(async () => {
    await helper.unload();
    await helper.stopServer();
    await rm(dir, { recursive: true, force: true });
  });

  it('takes one device from an assignment to a long-polled notification, and its UPDATED report to a state change and metrics', async () => {
    await helper.load(
      translated(
        otaServer,
        otaPackageStore,
        otaAssign,
        otaRateQueue,
        otaNotify,
        otaHttp,
        otaStateTracker,
        otaMqttEndpoint,
        otaMqtt,
        otaCoapEndpoint,
        otaCoap,
        otaLwm2mEndpoint,
        otaLwm2m,
        otaRollout,
      ),
      flow,
      {
        [idOf(flow, 'ota-server')]: { adminPassword: 'secret-pw' },
      },
    );
    const packages = arrivals(idOf(flow, 'helper', 'packages'));
    const stale = arrivals(idOf(flow, 'helper', 'stale events'));
    const tracked = arrivals(idOf(flow, 'helper', 'states and metrics'));
    const caught = arrivals('caught');
    let failedWith: string | null = null;
    const failure = caught.next().then(({ msg }) => {
      failedWith = (msg.error as CaughtError).message;
      throw new Error(`a node failed: ${failedWith}`);
    });
    failure.catch(() => undefined);
    /** `p`, unless a node of the flow fails first. */
    const orFailure = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failure]);

    // A package uploaded through the store node, a device of the default profile long-polling.
    nodeOf(idOf(flow, 'ota-package-store')).receive({
      operation: 'upload',
      package: { title: 'my-firmware', version: '1.0.0', type: 'FIRMWARE', deviceProfile: 'default' },
      payload: FIRMWARE,
      fileName: 'my-firmware.bin',
      checksumAlgorithm: 'SHA256',
    } as Msg);
    const uploaded = (await orFailure(packages.next())).msg.payload as { id: { id: string }; hasData: boolean };
    expect(uploaded.hasData).to.equal(true);

    const server = nodeOf<OtaServerNode>(idOf(flow, 'ota-server'));
    const engine = await server.engine;
    const tenantId = await server.tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const device = await engine.devices.save(tenantId, { name: 'thermostat-1', deviceProfileId: { id: profile.id } });
    const api = `http://127.0.0.1:${engine.httpAddress?.port}/api/v1/${device.accessToken}`;
    const poll = fetch(`${api}/attributes/updates?timeout=5000`);
    await eventually(() => engine.pipeline.httpSessions.waiting === 1, 'the device to long-poll');

    // The example's "assign example" message: through assign, queue, notify to the HTTP device.
    nodeOf(idOf(flow, 'ota-assign')).receive({ payload: { deviceProfile: 'default', type: 'FIRMWARE', package: { title: 'my-firmware', version: '1.0.0' } } } as Msg);
    const res = await orFailure(poll);
    expect(res.status).to.equal(200);
    const update = (await res.json()) as Record<string, unknown>;
    expect(update).to.deep.equal({
      fw_title: 'my-firmware',
      fw_version: '1.0.0',
      fw_size: FIRMWARE.length,
      fw_checksum_algorithm: 'SHA256',
      fw_checksum: createHash('sha256').update(FIRMWARE).digest('hex'),
      fw_signature: update.fw_signature,
      fw_signature_algorithm: 'ED25519',
    });
    // The signature (issue 14) is the tenant key's, over the SHA-256 of the bytes.
    const { publicKey } = await engine.packages.signing.publicKeyOf(tenantId);
    const digest = createHash('sha256').update(FIRMWARE).digest();
    expect(verify(null, digest, createPublicKey(publicKey), Buffer.from(String(update.fw_signature), 'base64'))).to.equal(true);

    // The device downloads what it was told, and reports it runs it.
    const download = await fetch(`${api}/firmware?title=my-firmware&version=1.0.0`);
    expect(Buffer.from(await download.arrayBuffer())).to.deep.equal(FIRMWARE);
    const report = await fetch(`${api}/telemetry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ current_fw_title: 'my-firmware', current_fw_version: '1.0.0', fw_state: 'UPDATED' }),
    });
    expect(report.status).to.equal(200);

    const state = await orFailure(tracked.next());
    expect(state.msg.topic).to.equal('state');
    expect(state.msg.payload as StateChange).to.include({ tenantId, deviceId: device.id, type: 'FIRMWARE', from: 'INITIATED', to: 'UPDATED', error: null, reason: 'reported' });

    const metrics = await orFailure(tracked.next());
    expect(metrics.msg.topic).to.equal('metrics');
    expect((metrics.msg.payload as FleetMetrics).packages).to.deep.equal([
      {
        packageId: uploaded.id.id,
        title: 'my-firmware',
        version: '1.0.0',
        type: 'FIRMWARE',
        targeted: 1,
        pending: 0,
        inProgress: 0,
        updated: 1,
        failed: 0,
        onTarget: 1,
        coverage: 1,
      },
    ]);
    expect(stale.queued, 'nothing was dropped as stale').to.equal(0);
    expect(failedWith, 'no node failed').to.equal(null);
    expect(await engine.pipeline.queue.depth()).to.equal(0);
  });
});
