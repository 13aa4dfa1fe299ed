import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Node } from 'node-red';
import otaMqtt from '../../nodes/ota-mqtt';
import otaMqttEndpoint, { resolveEndpointOptions, type OtaMqttEndpointNode } from '../../nodes/ota-mqtt-endpoint';
import type { Device, OtaEngine, OtaPackage } from '../../server';
import type { TenantId } from '../../server/ids';
import type { Notification } from '../../server/pipeline/notifier';
import { MqttDevice } from '../support/mqtt-clients';
import {
  arrivals,
  editorFile,
  hasMessage,
  helper,
  helpSections,
  inputsTo,
  loadOtaFlow,
  logged,
  nodeOf,
  nodeSpecSetup,
  otaFlow,
  packageWithData,
  sentBy,
  serverNode,
  shownStatus,
  statusOf,
  statusWhen,
  trackTimers,
  translate,
  translated,
  type FlowNode,
  type Msg,
} from './flow-helper';

const FIRMWARE = Buffer.from('mqtt device firmware 4.2\n'.repeat(400));

/** A port nobody listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

describe('ota-mqtt and ota-mqtt-endpoint nodes', function () {
  this.timeout(20_000);
  const devices: MqttDevice[] = [];
  const dataDir = nodeSpecSetup('ota-mqtt-node-', ['ota-mqtt', 'ota-mqtt-endpoint'], {
    tearDown: () => {
      for (const d of devices.splice(0)) d.client.end(true);
    },
  });

  const mqttNodes = (fields: Record<string, unknown> = {}, endpoint: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'ep', type: 'ota-mqtt-endpoint', name: 'device endpoint', server: 'srv', port: '0', host: '127.0.0.1', ...endpoint },
    { id: 'mq', z: 'tab', type: 'ota-mqtt', name: 'mqtt devices', endpoint: 'ep', progress: true, wires: [['out']], ...fields },
    { id: 'out', z: 'tab', type: 'helper' },
  ];
  const flow = (fields?: Record<string, unknown>, endpoint?: Record<string, unknown>): FlowNode[] => otaFlow(dataDir(), mqttNodes(fields, endpoint), ['mq']);

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(fields?: Record<string, unknown>, endpoint?: Record<string, unknown>): Promise<void> {
    await loadOtaFlow([otaMqttEndpoint, otaMqtt], flow(fields, endpoint));
    out = arrivals('out');
    input = inputsTo('mq');
  }

  const mq = (): Node => nodeOf('mq');
  const endpointNode = (): OtaMqttEndpointNode => nodeOf<OtaMqttEndpointNode>('ep');
  const urlOf = async (): Promise<string> => `mqtt://127.0.0.1:${(await endpointNode().transport).address?.port}`;

  interface Fixture {
    engine: OtaEngine;
    tenantId: TenantId;
    device: Device;
    pkg: OtaPackage;
  }

  async function fixture(name = 'thermostat-1'): Promise<Fixture> {
    const engine = await serverNode().engine;
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const pkg =
      (await engine.packages.page(tenantId, { pageSize: 1, page: 0 })).data[0] ??
      (await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '4.2', profileId: profile.id }, FIRMWARE));
    const device = await engine.devices.save(tenantId, { name, deviceProfileId: { id: profile.id }, firmwareId: { id: pkg.id } });
    return { engine, tenantId, device, pkg };
  }

  async function connect(f: Fixture, version: 4 | 5 = 4): Promise<MqttDevice> {
    const d = await MqttDevice.connect(await urlOf(), f.device.accessToken, version);
    devices.push(d);
    return d;
  }

  const notification = (f: Fixture): Notification => ({
    tenantId: f.tenantId,
    deviceId: f.device.id,
    type: 'FIRMWARE',
    packageId: f.pkg.id,
    attributes: { fw_title: 'thermo-fw', fw_version: '4.2', fw_size: FIRMWARE.length },
    deleted: ['fw_url'],
    ts: Date.now(),
  });

  const next = async (): Promise<Msg> => (await out.next()).msg;

  describe('the endpoint', () => {
    it('listens, logs where, and is listed among the server endpoints while deployed', async () => {
      await start();
      const transport = await endpointNode().transport;
      const port = transport.address?.port;
      expect(port).to.be.a('number').above(0);
      expect(logged(endpointNode(), 'log')).to.include(`ThingsBoard MQTT device API listening on mqtt://127.0.0.1:${port}`);
      const engine = await serverNode().engine;
      expect(engine.listEndpoints().filter((e) => e.transport === 'MQTT')).to.deep.equal([{ transport: 'MQTT', host: '127.0.0.1', port, connections: 0 }]);
      const f = await fixture();
      await connect(f);
      expect(engine.listEndpoints().find((e) => e.transport === 'MQTT')?.connections).to.equal(1);
    });

    it('frees its port on a redeploy, so the new endpoint binds it again, and on stop', async () => {
      const port = await freePort();
      await start({}, { port: String(port) });
      const f = await fixture();
      const before = await connect(f);
      const first = await endpointNode().transport;
      // A changed endpoint restarts: the old one must have let go of the port first.
      await helper.setFlows(flow({}, { port: String(port), maxChunkSize: '32768' }), 'nodes', { srv: { adminPassword: 'secret-pw' } });
      const second = await endpointNode().transport;
      expect(second).to.not.equal(first);
      expect(second.address?.port).to.equal(port);
      await before.closed;
      const after = await connect(f);
      const reply = await after.ask('v1/devices/me/rpc/request/1', '{"method":"getSessionLimits"}', 'v1/devices/me/rpc/response/1');
      expect(JSON.parse(reply.payload.toString())).to.include({ maxPayloadSize: 32768 });
      const engine = await serverNode().engine;
      await helper.unload();
      expect(engine.listEndpoints().filter((e) => e.transport === 'MQTT')).to.deep.equal([]);
      await new Promise<void>((resolve, reject) => {
        const s = net.createServer().listen(port, '127.0.0.1', () => s.close(() => resolve()));
        s.once('error', reject);
      });
    });

    it('logs why it did not start when its port is taken, and its ota-mqtt nodes show an error', async () => {
      const blocker = net.createServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
      try {
        await start({}, { port: String((blocker.address() as net.AddressInfo).port) });
        expect(await statusWhen(mq(), (s) => s.fill === 'red')).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-mqtt.status.endpoint-error' });
        expect(shownStatus('ota-mqtt.status.endpoint-error')).to.equal('endpoint error');
        expect(logged(endpointNode(), 'error')[0]).to.match(/^The MQTT endpoint did not start: listen EADDRINUSE/);
      } finally {
        blocker.close();
      }
    });

    it("prefers the node's field to settings.js, and settings.js to the environment", () => {
      const env = { OTA_MQTT_PORT: '1884', OTA_MQTT_HOST: '10.0.0.1', OTA_MQTT_MAX_CHUNK_SIZE: '1024' };
      expect(resolveEndpointOptions({}, {}, {}, {})).to.deep.equal({ port: 1883, host: '0.0.0.0', maxChunkSize: 65536 });
      expect(resolveEndpointOptions({}, {}, {}, env)).to.deep.equal({ port: 1884, host: '10.0.0.1', maxChunkSize: 1024 });
      expect(resolveEndpointOptions({}, {}, { otaMqttEndpointPort: 1885, otaMqttEndpointHost: '127.0.0.1' }, env)).to.include({ port: 1885, host: '127.0.0.1' });
      expect(resolveEndpointOptions({ port: '8883', host: '', maxChunkSize: '4096' }, {}, { otaMqttEndpointPort: 1885 }, env)).to.include({
        port: 8883,
        host: '10.0.0.1',
        maxChunkSize: 4096,
      });
      expect(resolveEndpointOptions({}, { tlsCert: 'CERT', tlsKey: 'KEY' }, {}, {}).tls).to.deep.equal({ cert: 'CERT', key: 'KEY' });
    });

    it('reads the TLS certificate, key and client CA from the files the environment names, and the auth cache size', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'mqtt-endpoint-tls-'));
      try {
        for (const f of ['cert', 'key', 'ca']) await writeFile(path.join(dir, `${f}.pem`), `${f.toUpperCase()} PEM`);
        const env = {
          OTA_MQTT_TLS_CERT_FILE: path.join(dir, 'cert.pem'),
          OTA_MQTT_TLS_KEY_FILE: path.join(dir, 'key.pem'),
          OTA_MQTT_TLS_CA_FILE: path.join(dir, 'ca.pem'),
          OTA_MQTT_AUTH_CACHE_SIZE: '50',
        };
        expect(resolveEndpointOptions({}, {}, {}, env)).to.deep.include({ tls: { cert: 'CERT PEM', key: 'KEY PEM', ca: 'CA PEM' }, authCacheSize: 50 });
        expect(resolveEndpointOptions({}, { tlsCert: 'CERT', tlsKey: 'KEY', tlsCa: 'CA' }, {}, env).tls).to.deep.equal({ cert: 'CERT', key: 'KEY', ca: 'CA' });
        expect(() => resolveEndpointOptions({}, {}, {}, { ...env, OTA_MQTT_TLS_CA_FILE: path.join(dir, 'missing.pem') })).to.throw(/Cannot read OTA_MQTT_TLS_CA_FILE/);
        expect(() => resolveEndpointOptions({}, { tlsCa: 'CA' }, {}, {})).to.throw('A client CA needs TLS: give the server certificate and key too');
        expect(() => resolveEndpointOptions({}, {}, {}, { OTA_MQTT_AUTH_CACHE_SIZE: '-1' })).to.throw('Invalid OTA_MQTT_AUTH_CACHE_SIZE: -1');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses a bad port or chunk size, and a certificate without its key', () => {
      expect(() => resolveEndpointOptions({ port: '70000' }, {}, {}, {})).to.throw('Invalid MQTT port: 70000');
      expect(() => resolveEndpointOptions({ maxChunkSize: 'big' }, {}, {}, {})).to.throw('Invalid maximum chunk size: big');
      expect(() => resolveEndpointOptions({}, { tlsCert: 'CERT' }, {}, {})).to.throw('TLS needs both a certificate and its private key');
    });
  });

  describe('notifications', () => {
    beforeEach(() => start());

    it('shows how many devices are connected', async () => {
      expect(await statusWhen(mq(), (s) => s.fill === 'green')).to.deep.equal({ fill: 'green', shape: 'dot', text: '0 connected' });
      const f = await fixture();
      const d = await connect(f);
      expect(await statusWhen(mq(), (s) => s.text === '1 connected')).to.deep.equal({ fill: 'green', shape: 'dot', text: '1 connected' });
      expect(translate('ota-mqtt.status.connected', { count: 1 })).to.equal('1 connected');
      await d.end();
      await statusWhen(mq(), (s) => s.text === '0 connected');
    });

    it('delivers a notification on its input to the device subscribed to attribute updates, and no other', async () => {
      const target = await fixture('thermostat-1');
      const bystander = await fixture('thermostat-2');
      const d = await connect(target, 5);
      const other = await connect(bystander);
      await d.subscribe(['v1/devices/me/attributes']);
      await other.subscribe(['v1/devices/me/attributes']);
      await input.run({ topic: 'notification', payload: notification(target) });
      const m = await d.next('v1/devices/me/attributes');
      expect(JSON.parse(m.payload.toString())).to.deep.equal({ fw_title: 'thermo-fw', fw_version: '4.2', fw_size: FIRMWARE.length, deleted: ['fw_url'] });
      // The input message is not passed on, and the other device got nothing.
      await other.ask('v1/devices/me/attributes/request/1', '{}', 'v1/devices/me/attributes/response/1');
      expect(other.inbox.pending).to.deep.equal([]);
      expect(out.queued).to.equal(0);
    });

    it('delivers each notification of an array (ota-notify, one message per batch)', async () => {
      const first = await fixture('thermostat-1');
      const second = await fixture('thermostat-2');
      const a = await connect(first);
      const b = await connect(second);
      await a.subscribe(['v1/devices/me/attributes']);
      await b.subscribe(['v1/devices/me/attributes']);
      await input.run({ topic: 'notifications', payload: [notification(first), notification(second)] });
      for (const d of [a, b]) expect(JSON.parse((await d.next('v1/devices/me/attributes')).payload.toString())).to.include({ fw_title: 'thermo-fw', fw_version: '4.2' });
    });

    it('delivers to every device of a group, and of each group in an array (ota-notify, one message per batch)', async () => {
      const fixtures = [await fixture('thermostat-1'), await fixture('thermostat-2'), await fixture('thermostat-3')];
      const devices = await Promise.all(fixtures.map((f) => connect(f)));
      for (const d of devices) await d.subscribe(['v1/devices/me/attributes']);
      const { deviceId: _, ...shared } = notification(fixtures[0] as Fixture);
      const ids = fixtures.map((f) => f.device.id);
      await input.run({
        topic: 'notifications',
        payload: [
          { ...shared, deviceIds: ids.slice(0, 2) },
          { ...shared, attributes: { fw_version: '4.3' }, deviceIds: ids.slice(2) },
        ],
      });
      for (const d of devices.slice(0, 2))
        expect(JSON.parse((await d.next('v1/devices/me/attributes')).payload.toString())).to.include({ fw_title: 'thermo-fw', fw_version: '4.2' });
      expect(JSON.parse((await (devices[2] as MqttDevice).next('v1/devices/me/attributes')).payload.toString())).to.deep.equal({ fw_version: '4.3', deleted: ['fw_url'] });
      await input.run({ topic: 'notifications', payload: { ...shared, attributes: { fw_version: '4.4' }, deviceIds: [ids[1]] } });
      expect(JSON.parse((await (devices[1] as MqttDevice).next('v1/devices/me/attributes')).payload.toString())).to.include({ fw_version: '4.4' });
    });

    it('sends a group whose device ids are not all strings to Catch, delivering nothing', async () => {
      const f = await fixture();
      const d = await connect(f);
      await d.subscribe(['v1/devices/me/attributes']);
      const { deviceId, ...shared } = notification(f);
      const error = await input.fail({ payload: [{ ...shared, deviceIds: [deviceId, 7] }] });
      expect(error.message).to.equal('Error: msg.payload must be a notification from ota-notify');
      await d.ask('v1/devices/me/attributes/request/1', '{}', 'v1/devices/me/attributes/response/1');
      expect(d.inbox.pending).to.deep.equal([]);
    });

    it('sends an array holding anything but notifications to Catch', async () => {
      const f = await fixture();
      const error = await input.fail({ payload: [notification(f), { deviceId: f.device.id }] });
      expect(error.message).to.equal('Error: msg.payload must be a notification from ota-notify');
    });

    it('sends an assignment event to Catch', async () => {
      const f = await fixture();
      const error = await input.fail({ payload: { tenantId: f.tenantId, deviceId: f.device.id, type: 'FIRMWARE', packageId: f.pkg.id, ts: Date.now() } });
      expect(error.message).to.equal('Error: msg.payload must be a notification from ota-notify');
      expect(error.source).to.include({ id: 'mq', type: 'ota-mqtt' });
      expect(statusOf(mq())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
    });
  });

  describe('uplink', () => {
    it('sends telemetry, attributes and download progress of its devices, with topic = kind', async () => {
      await start();
      const f = await fixture();
      const d = await connect(f);
      await d.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING' }));
      const telemetry = await next();
      expect(telemetry.topic).to.equal('telemetry');
      expect(telemetry.payload).to.deep.include({ tenantId: f.tenantId, deviceId: f.device.id, deviceName: 'thermostat-1', transport: 'MQTT', kind: 'telemetry' });
      await d.publish('v2/a', JSON.stringify({ model: 'T-2000' }));
      const attributes = await next();
      expect(attributes.topic).to.equal('attributes');
      expect(attributes.payload).to.deep.include({ kind: 'attributes', attributes: { model: 'T-2000' } });
      await d.ask('v2/fw/request/1/chunk/1', '1000', 'v2/fw/response/1/chunk/1');
      const download = await next();
      expect(download.topic).to.equal('download');
      expect(download.payload).to.deep.include({ kind: 'download', type: 'FIRMWARE', packageId: f.pkg.id, bytes: 1000, offset: 1000, size: FIRMWARE.length });
    });

    it('sends no download progress when its progress option is off, and telemetry still', async () => {
      await start({ progress: false });
      const f = await fixture();
      const d = await connect(f);
      expect((await d.ask('v2/fw/request/1/chunk/0', '', 'v2/fw/response/1/chunk/0')).payload.equals(FIRMWARE)).to.equal(true);
      await d.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADED' }));
      expect((await next()).topic, 'the download sent nothing').to.equal('telemetry');
      expect(sentBy(mq()).map((m) => (m as Msg).topic)).to.deep.equal(['telemetry']);
    });
  });

  describe('without an endpoint', () => {
    it('shows a red status and logs an error', async () => {
      await helper.load(translated(otaMqtt), [
        { id: 'tab', type: 'tab' },
        { id: 'mq', z: 'tab', type: 'ota-mqtt', endpoint: '', wires: [[]] },
      ]);
      expect(statusOf(mq())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-mqtt.status.no-endpoint' });
      expect(shownStatus('ota-mqtt.status.no-endpoint')).to.equal('no endpoint');
      expect(logged(mq(), 'error')).to.deep.equal(['No OTA MQTT endpoint configured']);
    });
  });

  describe('closing', () => {
    it('closes every device connection (MQTT 5: DISCONNECT 0x8B) and leaves no timer of its own running', async () => {
      const timers = trackTimers();
      await start();
      const f = await fixture();
      const d = await connect(f, 5);
      await d.subscribe(['v1/devices/me/attributes']);
      await statusWhen(mq(), (s) => s.text === '1 connected');
      await helper.unload();
      await d.closed;
      expect(d.disconnect).to.include({ cmd: 'disconnect', reasonCode: 0x8b });
      // Only this transport's timers are this spec's business (the engine's are the server's).
      expect((await timers.live()).filter((stack) => /mqtt/i.test(stack))).to.deep.equal([]);
    });
  });

  describe('editor', () => {
    for (const type of ['ota-mqtt', 'ota-mqtt-endpoint']) {
      it(`${type}: names only messages its catalog defines, and documents itself in the help sections`, () => {
        const { html, keys } = editorFile(type);
        expect(keys).to.have.length.above(5);
        expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
        expect(helpSections(html, type)).to.deep.equal(['Inputs', 'Outputs', 'Details', 'References']);
        expect(html).to.not.match(/<(b|i|strong)>/);
      });
    }

    it('ota-mqtt-endpoint keeps the TLS certificate and key in credentials', () => {
      const { html } = editorFile('ota-mqtt-endpoint');
      expect(html).to.match(/tlsCert: \{ type: "text" \},\s*tlsKey: \{ type: "password" \}/);
      for (const field of ['port', 'host', 'maxChunkSize']) expect(html).to.match(new RegExp(`id="node-config-input-${field}"`));
      expect(html).to.match(/<textarea id="node-config-input-tlsKey"/);
    });
  });
});
