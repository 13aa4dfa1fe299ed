import { expect } from 'chai';
import type { Node } from 'node-red';
import otaHttp from '../../nodes/ota-http';
import { acquireEngine, releaseEngine, type Device, type OtaEngine, type OtaPackage } from '../../server';
import type { TenantId } from '../../server/ids';
import type { Notification } from '../../server/pipeline/notifier';
import {
  arrivals,
  helper,
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
import { eventually } from '../support/eventually';

const FIRMWARE = Buffer.from('http device firmware 3.1\n'.repeat(40));

describe('ota-http node', function () {
  const dataDir = nodeSpecSetup('ota-http-node-', ['ota-http']);

  const httpNodes = (fields: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'http', z: 'tab', type: 'ota-http', name: 'http devices', server: 'srv', progress: true, wires: [['out']], ...fields },
    { id: 'out', z: 'tab', type: 'helper' },
  ];

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(fields?: Record<string, unknown>, server: Record<string, unknown> = {}): Promise<void> {
    await loadOtaFlow([otaHttp], otaFlow(dataDir(), httpNodes(fields), ['http'], server));
    out = arrivals('out');
    input = inputsTo('http');
  }

  const http = (): Node => nodeOf('http');

  interface Fixture {
    engine: OtaEngine;
    tenantId: TenantId;
    device: Device;
    pkg: OtaPackage;
    /** `/api/v1/{token}` of the device on the engine's HTTP port. */
    api: string;
  }

  /** A device of the default profile with a firmware package assigned, and its HTTP API. */
  async function device(name = 'thermostat-1'): Promise<Fixture> {
    const engine = await serverNode().engine;
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const pkg =
      (await engine.packages.page(tenantId, { pageSize: 1, page: 0 })).data[0] ??
      (await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '3.1', profileId: profile.id }, FIRMWARE));
    const saved = await engine.devices.save(tenantId, { name, deviceProfileId: { id: profile.id }, firmwareId: { id: pkg.id } });
    return { engine, tenantId, device: saved, pkg, api: `http://127.0.0.1:${engine.httpAddress?.port}/api/v1/${saved.accessToken}` };
  }

  const notification = (f: Fixture): Notification => ({
    tenantId: f.tenantId,
    deviceId: f.device.id,
    type: 'FIRMWARE',
    packageId: f.pkg.id,
    attributes: { fw_title: 'thermo-fw', fw_version: '3.1', fw_size: FIRMWARE.length },
    deleted: ['fw_url'],
    ts: Date.now(),
  });

  const postJson = (url: string, body: unknown): Promise<Response> => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  /** The next message on the output. */
  const next = async (): Promise<Msg> => (await out.next()).msg;

  describe('notifications', function () {
    beforeEach(() => start());

    it('shows the port its devices reach it on', async () => {
      const engine = await serverNode().engine;
      const status = await statusWhen(http(), (s) => s.fill === 'green');
      expect(status).to.deep.equal({ fill: 'green', shape: 'dot', text: `listening :${engine.httpAddress?.port}` });
      expect(status.text).to.equal(translate('ota-http.status.listening', { port: Number(engine.httpAddress?.port) }));
    });

    it('wakes the device long-polling for attribute updates that a notification on its input is for', async () => {
      const target = await device('thermostat-1');
      const bystander = await device('thermostat-2');
      const sessions = target.engine.pipeline.httpSessions;
      const polled = fetch(`${target.api}/attributes/updates?timeout=5000`);
      const stillWaiting = new AbortController();
      const other = fetch(`${bystander.api}/attributes/updates?timeout=5000`, { signal: stillWaiting.signal }).catch((err: Error) => err);
      await eventually(() => sessions.waiting === 2, 'both devices to long-poll');

      await input.run({ topic: 'notification', payload: notification(target) });
      const res = await polled;
      expect(res.status).to.equal(200);
      expect(await res.json()).to.deep.equal({ fw_title: 'thermo-fw', fw_version: '3.1', fw_size: FIRMWARE.length, deleted: ['fw_url'] });
      expect(sessions.waiting, 'the other device still waits').to.equal(1);
      expect(statusOf(http())).to.deep.equal({ fill: 'green', shape: 'dot', text: '1 polling' });
      expect(statusOf(http())?.text).to.equal(translate('ota-http.status.polling', { count: 1 }));
      // The input message is not passed on.
      expect(out.queued).to.equal(0);
      stillWaiting.abort();
      expect(await other).to.be.instanceOf(Error);
    });

    it('wakes every device of a group of notifications (ota-notify, one message per batch)', async () => {
      const devices = [await device('thermostat-1'), await device('thermostat-2')];
      const sessions = (devices[0] as Fixture).engine.pipeline.httpSessions;
      const polled = devices.map((d) => fetch(`${d.api}/attributes/updates?timeout=5000`));
      await eventually(() => sessions.waiting === 2, 'both devices to long-poll');
      const { deviceId: _, ...shared } = notification(devices[0] as Fixture);
      await input.run({ topic: 'notifications', payload: [{ ...shared, deviceIds: devices.map((d) => d.device.id) }] });
      for (const res of await Promise.all(polled))
        expect(await res.json()).to.deep.equal({ fw_title: 'thermo-fw', fw_version: '3.1', fw_size: FIRMWARE.length, deleted: ['fw_url'] });
      expect(sessions.waiting).to.equal(0);
    });
  });

  describe('uplink', function () {
    it('sends telemetry a device POSTs with topic telemetry', async () => {
      await start();
      const f = await device();
      const before = Date.now();
      expect((await postJson(`${f.api}/telemetry`, { fw_state: 'DOWNLOADING' })).status).to.equal(200);
      const msg = await next();
      expect(msg.topic).to.equal('telemetry');
      const payload = msg.payload as { ts: number; entries: Array<{ ts: number; values: unknown }> };
      expect(payload).to.deep.include({ tenantId: f.tenantId, deviceId: f.device.id, deviceName: 'thermostat-1', transport: 'HTTP', kind: 'telemetry' });
      expect(payload.ts).to.be.within(before, Date.now());
      expect(payload.entries).to.deep.equal([{ ts: payload.entries[0]?.ts, values: { fw_state: 'DOWNLOADING' } }]);
    });

    it('sends client attributes a device POSTs with topic attributes', async () => {
      await start();
      const f = await device();
      expect((await postJson(`${f.api}/attributes`, { model: 'T-1000' })).status).to.equal(200);
      const msg = await next();
      expect(msg.topic).to.equal('attributes');
      expect(msg.payload).to.deep.include({ deviceId: f.device.id, kind: 'attributes', attributes: { model: 'T-1000' } });
    });

    it('sends the progress of each download with topic download', async () => {
      await start();
      const f = await device();
      const whole = await fetch(`${f.api}/firmware?title=thermo-fw&version=3.1`);
      expect(Buffer.from(await whole.arrayBuffer())).to.deep.equal(FIRMWARE);
      const msg = await next();
      expect(msg.topic).to.equal('download');
      expect(msg.payload).to.deep.include({
        deviceId: f.device.id,
        transport: 'HTTP',
        kind: 'download',
        type: 'FIRMWARE',
        packageId: f.pkg.id,
        bytes: FIRMWARE.length,
        offset: 0,
        size: FIRMWARE.length,
      });

      const chunk = await fetch(`${f.api}/firmware?title=thermo-fw&version=3.1&size=100&chunk=2`);
      expect((await chunk.arrayBuffer()).byteLength).to.equal(100);
      expect((await next()).payload).to.deep.include({ kind: 'download', bytes: 100, offset: 200, size: FIRMWARE.length });
    });

    it('sends no download progress when its progress option is off, and telemetry still', async () => {
      await start({ progress: false });
      const f = await device();
      const whole = await fetch(`${f.api}/firmware?title=thermo-fw&version=3.1`);
      expect((await whole.arrayBuffer()).byteLength).to.equal(FIRMWARE.length);
      await postJson(`${f.api}/telemetry`, { fw_state: 'DOWNLOADED' });
      const msg = await next();
      expect(msg.topic, 'the download sent nothing').to.equal('telemetry');
      expect(sentBy(http()).map((m) => (m as Msg).topic)).to.deep.equal(['telemetry']);
    });
  });

  describe('bad input', function () {
    beforeEach(() => start());

    it('sends an assignment event to Catch and wakes no device', async () => {
      const f = await device();
      const polled = fetch(`${f.api}/attributes/updates?timeout=5000`).catch((err: Error) => err);
      await eventually(() => f.engine.pipeline.httpSessions.waiting === 1, 'the device to long-poll');
      const error = await input.fail({ payload: { tenantId: f.tenantId, deviceId: f.device.id, type: 'FIRMWARE', packageId: f.pkg.id, ts: Date.now() } });
      expect(error.message).to.equal('Error: msg.payload must be a notification from ota-notify');
      expect(error.source).to.include({ id: 'http', type: 'ota-http' });
      expect(f.engine.pipeline.httpSessions.waiting).to.equal(1);
      expect(sentBy(http())).to.deep.equal([]);
      expect(statusOf(http())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
      expect(shownStatus('node-red:common.status.error')).to.equal('error');
      await helper.unload();
      // The server closes the waiting request when it stops.
      expect(await polled).to.be.instanceOf(Error);
    });
  });

  describe('without a server', function () {
    it('shows a red status and logs an error when no server is configured', async () => {
      await helper.load(translated(otaHttp), [{ id: 'tab', type: 'tab' }, ...httpNodes({ server: '' })]);
      expect(statusOf(http())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-http.status.no-server' });
      expect(shownStatus('ota-http.status.no-server')).to.equal('no server');
      expect(logged(http(), 'error')).to.deep.equal(['No OTA server configured']);
    });

    it('shows a red status when its server did not start', async () => {
      await start({}, { httpPort: 'eighty' });
      expect(await statusWhen(http(), (s) => s.fill === 'red')).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-http.status.engine-error' });
      expect(shownStatus('ota-http.status.engine-error')).to.equal('engine error');
    });
  });

  describe('closing', function () {
    it("stops sending the devices' requests, and the next deploy on the same data directory sends them again", async () => {
      await start();
      const f = await device();
      const held = await acquireEngine({ dataDir: dataDir() });
      try {
        const old = http();
        await helper.unload();
        // Only the engine's own listener stays: its download progress (server/fleet/download-progress.ts).
        expect(held.events.listenerCount('uplink')).to.equal(1);
        // The server still serves the device; the stopped node no longer forwards what it sends.
        expect((await postJson(`${f.api}/telemetry`, { fw_state: 'DOWNLOADING' })).status).to.equal(200);
        expect(sentBy(old)).to.deep.equal([]);

        await start();
        await postJson(`${f.api}/telemetry`, { fw_state: 'DOWNLOADED' });
        expect(((await next()).payload as { entries: Array<{ values: unknown }> }).entries[0]?.values).to.deep.equal({ fw_state: 'DOWNLOADED' });
      } finally {
        await helper.unload();
        await releaseEngine(held);
      }
    });

    it('leaves no timer running, even with a device long-polling when the flow stops', async () => {
      const timers = trackTimers();
      await start();
      const f = await device();
      const polled = fetch(`${f.api}/attributes/updates?timeout=60000`).catch((err: Error) => err);
      await eventually(() => f.engine.pipeline.httpSessions.waiting === 1, 'the device to long-poll');
      await helper.unload();
      expect(await polled).to.be.instanceOf(Error);
      expect(await timers.live()).to.deep.equal([]);
    });
  });
});
