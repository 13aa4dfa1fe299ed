import { expect } from 'chai';
import { createSocket, type Socket } from 'node:dgram';
import { Agent } from 'coap';
import type { Node } from 'node-red';
import otaCoap from '../../nodes/ota-coap';
import otaCoapEndpoint, { resolveCoapLimits, resolveCoapOptions, type OtaCoapEndpointNode } from '../../nodes/ota-coap-endpoint';
import { acquireEngine, releaseEngine, type Device, type OtaEngine, type OtaPackage } from '../../server';
import type { TenantId } from '../../server/ids';
import type { Notification } from '../../server/pipeline/notifier';
import { coapObserve, coapRequest } from '../support/coap-clients';
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
  registerCatalogs,
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

const FIRMWARE = Buffer.from('coap device firmware 4.2\n'.repeat(200));

/** A UDP port nothing listens on right now. */
async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Binds `port` and lets it go again: fails with EADDRINUSE while someone holds it. */
async function bindOnce(port: number): Promise<void> {
  const s = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, '127.0.0.1', resolve);
    });
  } finally {
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

describe('ota-coap node', function () {
  let agentSocket: Socket;
  let agent: Agent;
  const dataDir = nodeSpecSetup('ota-coap-node-', ['ota-coap', 'ota-coap-endpoint'], {
    setUp: () => {
      agentSocket = createSocket('udp4');
      agent = new Agent({ socket: agentSocket });
    },
    tearDown: async () => {
      agent.close();
      await new Promise<void>((resolve) => agentSocket.close(() => resolve()));
    },
  });

  const coapNodes = (fields: Record<string, unknown> = {}, endpoint: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'coapEp', type: 'ota-coap-endpoint', name: 'devices udp', server: 'srv', port: '0', host: '127.0.0.1', blockSize: '1024', ...endpoint },
    { id: 'coap', z: 'tab', type: 'ota-coap', name: 'coap devices', endpoint: 'coapEp', progress: true, wires: [['out']], ...fields },
    { id: 'out', z: 'tab', type: 'helper' },
  ];
  const flow = (fields?: Record<string, unknown>, endpoint?: Record<string, unknown>): FlowNode[] => otaFlow(dataDir(), coapNodes(fields, endpoint), ['coap']);

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(fields?: Record<string, unknown>, endpoint?: Record<string, unknown>): Promise<void> {
    await loadOtaFlow([otaCoapEndpoint, otaCoap], flow(fields, endpoint));
    out = arrivals('out');
    input = inputsTo('coap');
  }

  const coap = (): Node => nodeOf('coap');
  const endpointNode = (): OtaCoapEndpointNode => nodeOf<OtaCoapEndpointNode>('coapEp');
  const coapPort = async (): Promise<number> => {
    const a = (await endpointNode().transport).address;
    if (!a) throw new Error('the endpoint is not listening');
    return a.port;
  };

  interface Fixture {
    engine: OtaEngine;
    tenantId: TenantId;
    device: Device;
    pkg: OtaPackage;
    port: number;
  }

  /** A device of the default profile with a firmware package assigned, and the endpoint's port. */
  async function device(name = 'valve-1'): Promise<Fixture> {
    const engine = await serverNode().engine;
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const pkg =
      (await engine.packages.page(tenantId, { pageSize: 1, page: 0 })).data[0] ??
      (await packageWithData(engine, tenantId, { title: 'valve-fw', version: '4.2', profileId: profile.id }, FIRMWARE));
    const saved = await engine.devices.save(tenantId, { name, deviceProfileId: { id: profile.id }, firmwareId: { id: pkg.id } });
    return { engine, tenantId, device: saved, pkg, port: await coapPort() };
  }

  const notification = (f: Fixture): Notification => ({
    tenantId: f.tenantId,
    deviceId: f.device.id,
    type: 'FIRMWARE',
    packageId: f.pkg.id,
    attributes: { fw_title: 'valve-fw', fw_version: '4.2', fw_size: FIRMWARE.length },
    deleted: ['fw_url'],
    ts: Date.now(),
  });
  const next = async (): Promise<Msg> => (await out.next()).msg;

  describe('the endpoint', function () {
    it('listens on its port and is listed by the engine as a COAP endpoint with its observers', async () => {
      await start();
      const engine = await serverNode().engine;
      const port = await coapPort();
      expect(engine.listEndpoints().filter((e) => e.transport === 'COAP')).to.deep.equal([{ transport: 'COAP', host: '127.0.0.1', port, connections: 0 }]);
      expect(logged(endpointNode(), 'log')).to.include(`ThingsBoard CoAP device API listening on udp 127.0.0.1:${port}`);
      const f = await device();
      const obs = await coapObserve(agent, port, { pathname: `/api/v1/${f.device.accessToken}/attributes` });
      expect(engine.listEndpoints().find((e) => e.transport === 'COAP')?.connections).to.equal(1);
      obs.stream.close();
    });

    it('frees its UDP port on redeploy, so the new endpoint binds the same port, and on stop', async () => {
      const port = await freePort();
      await start({}, { port: String(port) });
      const held = await acquireEngine({ dataDir: dataDir() });
      try {
        const f = await device();
        const first = endpointNode();
        expect((await coapRequest(agent, port, { method: 'GET', pathname: `/fw/${f.device.accessToken}`, query: 'size=10' })).payload).to.deep.equal(FIRMWARE.subarray(0, 10));

        await helper.setFlows(flow({}, { port: String(port), name: 'devices udp, renamed' }), 'nodes');
        expect(endpointNode(), 'a new endpoint node').to.not.equal(first);
        expect((await endpointNode().transport).address?.port).to.equal(port);
        expect((await coapRequest(agent, port, { method: 'GET', pathname: `/fw/${f.device.accessToken}`, query: 'size=10&chunk=1' })).payload).to.deep.equal(
          FIRMWARE.subarray(10, 20),
        );
        expect(held.listEndpoints().filter((e) => e.transport === 'COAP')).to.have.length(1);

        await helper.unload();
        await bindOnce(port);
        expect(held.listEndpoints().filter((e) => e.transport === 'COAP')).to.deep.equal([]);
      } finally {
        await releaseEngine(held);
      }
    });

    it('takes its port from settings, then OTA_COAP_PORT, then 5683, and its address from settings, OTA_COAP_HOST, 0.0.0.0', () => {
      const env = { OTA_COAP_PORT: '15683', OTA_COAP_HOST: '10.0.0.1' };
      expect(resolveCoapOptions({ port: '7000', host: '127.0.0.1', blockSize: '256' }, { otaCoapEndpointPort: 8000 }, env)).to.deep.equal({
        port: 7000,
        host: '127.0.0.1',
        blockSize: 256,
      });
      expect(resolveCoapOptions({ port: '', host: ' ' }, { otaCoapEndpointPort: 8000, otaCoapEndpointHost: '::1', otaCoapEndpointBlockSize: 64 }, env)).to.deep.equal({
        port: 8000,
        host: '::1',
        blockSize: 64,
      });
      expect(resolveCoapOptions({}, {}, env)).to.deep.equal({ port: 15683, host: '10.0.0.1', blockSize: 1024 });
      expect(resolveCoapOptions({}, {}, {})).to.deep.equal({ port: 5683, host: '0.0.0.0', blockSize: 1024 });
      expect(() => resolveCoapOptions({ port: '70000' }, {}, {})).to.throw('bad-port: 70000');
      expect(() => resolveCoapOptions({ port: 'coap' }, {}, {})).to.throw('bad-port: coap');
      expect(() => resolveCoapOptions({ blockSize: '1000' }, {}, {})).to.throw('bad-block-size: 1000');
    });

    it('takes its limits from OTA_COAP_* variables, keeping the defaults for those unset, and refuses a bad one', () => {
      expect(resolveCoapLimits({})).to.deep.equal({});
      expect(
        resolveCoapLimits({ OTA_COAP_MAX_OBSERVATIONS: '500', OTA_COAP_MAX_OBSERVATIONS_PER_DEVICE: '2', OTA_COAP_PAGE_CACHE_BYTES: '0', OTA_COAP_DEDUP_ENTRIES: ' ' }),
      ).to.deep.equal({
        maxObservations: 500,
        maxObservationsPerDevice: 2,
        pageCacheBytes: 0,
      });
      expect(() => resolveCoapLimits({ OTA_COAP_MAX_EXCHANGES_PER_PEER: '0' })).to.throw('bad-limit: OTA_COAP_MAX_EXCHANGES_PER_PEER=0');
      expect(() => resolveCoapLimits({ OTA_COAP_UPLOAD_BYTES: '1e6' })).to.throw('bad-limit: OTA_COAP_UPLOAD_BYTES=1e6');
    });

    it('logs why it did not start, and its ota-coap nodes show it', async () => {
      await start({}, { port: '99999' });
      expect(await statusWhen(coap(), (s) => s.fill === 'red')).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-coap.status.not-listening' });
      expect(shownStatus('ota-coap.status.not-listening')).to.equal('not listening');
      expect(logged(endpointNode(), 'error')).to.deep.equal(['The CoAP endpoint did not start: Invalid CoAP port: 99999 (use 0-65535, 0 for any free port)']);
    });

    it('does not start on a port in use', async () => {
      const holder = createSocket('udp4');
      await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', resolve));
      try {
        await start({}, { port: String(holder.address().port) });
        await statusWhen(coap(), (s) => s.fill === 'red');
        expect(logged(endpointNode(), 'error')[0]).to.match(/^The CoAP endpoint did not start: bind EADDRINUSE/);
      } finally {
        await new Promise<void>((resolve) => holder.close(() => resolve()));
      }
    });
  });

  describe('notifications', function () {
    it('delivers a notification on its input to the device observing its attributes, and shows the observers', async () => {
      await start();
      const target = await device('valve-1');
      const bystander = await device('valve-2');
      expect(statusOf(coap())).to.deep.equal({ fill: 'green', shape: 'dot', text: '0 observing' });
      const watched = await coapObserve(agent, target.port, { pathname: `/api/v1/${target.device.accessToken}/attributes` });
      const other = await coapObserve(agent, target.port, { pathname: `/api/v1/${bystander.device.accessToken}/attributes` });
      expect(await statusWhen(coap(), (s) => s.text === '2 observing')).to.deep.equal({ fill: 'green', shape: 'dot', text: '2 observing' });
      expect(translate('ota-coap.status.observing', { count: 2 })).to.equal('2 observing');

      await input.run({ topic: 'notification', payload: notification(target) });
      const update = await watched.next();
      expect(update.code).to.equal('2.05');
      expect(JSON.parse(update.payload.toString())).to.deep.equal({ fw_title: 'valve-fw', fw_version: '4.2', fw_size: FIRMWARE.length, deleted: ['fw_url'] });
      expect(out.queued, 'the input message is not passed on').to.equal(0);

      watched.stream.close();
      other.stream.close();
    });
  });

  describe('uplink', function () {
    it('sends telemetry and attributes a device POSTs, with topic telemetry and attributes', async () => {
      await start();
      const f = await device();
      const before = Date.now();
      expect((await coapRequest(agent, f.port, { method: 'POST', pathname: `/api/v1/${f.device.accessToken}/telemetry`, payload: '{"fw_state":"DOWNLOADING"}' })).code).to.equal(
        '2.01',
      );
      const msg = await next();
      expect(msg.topic).to.equal('telemetry');
      const payload = msg.payload as { ts: number; entries: Array<{ values: unknown }> };
      expect(payload).to.deep.include({ tenantId: f.tenantId, deviceId: f.device.id, deviceName: 'valve-1', transport: 'COAP', kind: 'telemetry' });
      expect(payload.ts).to.be.within(before, Date.now());
      expect(payload.entries.map((e) => e.values)).to.deep.equal([{ fw_state: 'DOWNLOADING' }]);

      await coapRequest(agent, f.port, { method: 'POST', pathname: `/api/v1/${f.device.accessToken}/attributes`, payload: '{"model":"V-2"}' });
      const attrs = await next();
      expect(attrs.topic).to.equal('attributes');
      expect(attrs.payload).to.deep.include({ deviceId: f.device.id, transport: 'COAP', kind: 'attributes', attributes: { model: 'V-2' } });
    });

    it('sends the progress of each block of a download with topic download', async () => {
      await start();
      const f = await device();
      const res = await coapRequest(agent, f.port, { method: 'GET', pathname: `/fw/${f.device.accessToken}`, query: 'title=valve-fw&version=4.2' });
      expect(res.payload).to.deep.equal(FIRMWARE);
      const blocks = Math.ceil(FIRMWARE.length / 1024);
      const seen: unknown[] = [];
      for (let i = 0; i < blocks; i++) seen.push((await next()).payload);
      expect(seen[0]).to.deep.include({
        deviceId: f.device.id,
        transport: 'COAP',
        kind: 'download',
        type: 'FIRMWARE',
        packageId: f.pkg.id,
        bytes: 1024,
        offset: 0,
        size: FIRMWARE.length,
      });
      expect(seen.at(-1)).to.deep.include({ bytes: FIRMWARE.length - (blocks - 1) * 1024, offset: (blocks - 1) * 1024 });
    });

    it('sends no download progress when its progress option is off, and telemetry still', async () => {
      await start({ progress: false });
      const f = await device();
      expect((await coapRequest(agent, f.port, { method: 'GET', pathname: `/fw/${f.device.accessToken}` })).payload.length).to.equal(FIRMWARE.length);
      await coapRequest(agent, f.port, { method: 'POST', pathname: `/api/v1/${f.device.accessToken}/telemetry`, payload: '{"fw_state":"DOWNLOADED"}' });
      expect((await next()).topic, 'the download sent nothing').to.equal('telemetry');
      expect(sentBy(coap()).map((m) => (m as Msg).topic)).to.deep.equal(['telemetry']);
    });
  });

  describe('closing', function () {
    it('leaves no timer running after downloads, telemetry and an observation, when the flow stops', async () => {
      const timers = trackTimers();
      await start();
      const f = await device();
      await coapObserve(agent, f.port, { pathname: `/api/v1/${f.device.accessToken}/attributes` });
      await coapRequest(agent, f.port, { method: 'GET', pathname: `/fw/${f.device.accessToken}` });
      await coapRequest(agent, f.port, { method: 'POST', pathname: `/api/v1/${f.device.accessToken}/telemetry`, payload: '{"fw_state":"DOWNLOADED"}', confirmable: false });
      await input.run({ payload: notification(f) });
      await helper.unload();
      // The CoAP side's timers: the transport's and the coap package's server (its client, run
      // by the spec for the device, is not the flow's; other parts of the engine have their own specs).
      const coapTimers = (await timers.live()).filter((stack) => /coap/.test(stack) && !stack.includes('coap-clients'));
      expect(coapTimers).to.deep.equal([]);
    });
  });

  describe('bad input', function () {
    it('sends an assignment event to Catch and notifies no device', async () => {
      await start();
      const f = await device();
      const error = await input.fail({ payload: { tenantId: f.tenantId, deviceId: f.device.id, type: 'FIRMWARE', packageId: f.pkg.id, ts: Date.now() } });
      expect(error.message).to.equal('Error: msg.payload must be a notification from ota-notify');
      expect(error.source).to.include({ id: 'coap', type: 'ota-coap' });
      expect(sentBy(coap())).to.deep.equal([]);
      expect(statusOf(coap())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
    });

    it('shows a red status and logs an error when no endpoint is configured', async () => {
      await helper.load(translated(otaCoap), [{ id: 'tab', type: 'tab' }, ...coapNodes({ endpoint: '' }).slice(1)]);
      expect(statusOf(coap())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-coap.status.no-endpoint' });
      expect(shownStatus('ota-coap.status.no-endpoint')).to.equal('no endpoint');
      expect(logged(coap(), 'error')).to.deep.equal(['No CoAP endpoint configured']);
    });
  });
});

describe('ota-coap editor files', function () {
  before(() => helper.startServer().then(() => registerCatalogs('ota-coap', 'ota-coap-endpoint')));
  after(() => helper.stopServer());

  for (const [type, fields, prefix] of [
    ['ota-coap', ['name', 'endpoint', 'progress'], 'node-input'],
    ['ota-coap-endpoint', ['name', 'server', 'port', 'host', 'blockSize'], 'node-config-input'],
  ] as const) {
    const { html, keys } = editorFile(type);

    it(`${type}: has a dialog input for every field, and every catalog key it names`, () => {
      for (const field of fields) expect(html, field).to.include(`id="${prefix}-${field}"`);
      expect(keys.length).to.be.greaterThan(3);
      expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
    });

    it(`${type}: documents itself in the sections of the help style guide`, () => {
      expect(helpSections(html, type)).to.deep.equal(['Inputs', 'Outputs', 'Details', 'References']);
      expect(html).to.not.match(/<(b|i|strong)>/);
    });
  }

  it('ota-coap: is in the OTA category with its colour, its values literal', () => {
    const { html } = editorFile('ota-coap');
    expect(html).to.include('category: "OTA"');
    expect(html).to.include('color: "#87A980"');
    for (const code of ['2.01', '2.05', '4.00', '4.01', '4.02', '4.04', '4.05']) expect(html, code).to.include(`<code>${code}</code>`);
  });
});
