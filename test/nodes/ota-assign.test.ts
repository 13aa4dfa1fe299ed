import { expect } from 'chai';
import otaAssign from '../../nodes/ota-assign';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import { acquireEngine, releaseEngine, type Device, type OtaEngine, type OtaPackage } from '../../server';
import type { TenantId } from '../../server/ids';
import {
  arrivals,
  hasMessage,
  helper,
  inputsTo,
  loadOtaFlow,
  logged,
  nodeOf,
  nodeSpecSetup,
  otaFlow,
  packageWithData,
  quietFor,
  sentBy,
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

const FIRMWARE = Buffer.from('sensor firmware 1.0.0\n'.repeat(64));

describe('ota-assign node', function () {
  const dataDir = nodeSpecSetup('ota-assign-node-', ['ota-assign']);

  const assignNodes = (fields: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'assign', z: 'tab', type: 'ota-assign', name: 'assign firmware', server: 'srv', wires: [['out']], ...fields },
    { id: 'out', z: 'tab', type: 'helper' },
  ];

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(fields: Record<string, unknown> = {}): Promise<void> {
    await loadOtaFlow([otaAssign], otaFlow(dataDir(), assignNodes(fields), ['assign']));
    out = arrivals('out');
    input = inputsTo('assign');
    await statusWhen(nodeOf('assign'), (s) => s.fill === 'green');
  }

  const server = (): OtaServerNode => nodeOf<OtaServerNode>('srv');

  /** The default profile, three devices in it, and a firmware package for it with its bytes. */
  async function fleet(): Promise<{ engine: OtaEngine; tenantId: TenantId; profileId: string; devices: Device[]; pkg: OtaPackage }> {
    const engine = await server().engine;
    const tenantId = await server().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const devices: Device[] = [];
    for (const name of ['sensor-1', 'sensor-2', 'sensor-3']) devices.push(await engine.devices.save(tenantId, { name, deviceProfileId: { id: profile.id } }));
    const pkg = await packageWithData(engine, tenantId, { title: 'sensor-fw', version: '1.0.0', profileId: profile.id }, FIRMWARE);
    return { engine, tenantId, profileId: profile.id, devices, pkg };
  }

  /** The next `n` messages on the output. */
  async function take(n: number): Promise<Msg[]> {
    const msgs: Msg[] = [];
    for (let i = 0; i < n; i++) msgs.push((await out.next()).msg);
    return msgs;
  }

  describe('assignments', function () {
    beforeEach(() => start());

    it('sends one message per device of a profile assigned a package by title and version', async () => {
      const { engine, tenantId, profileId, devices, pkg } = await fleet();
      await input.run({ payload: { deviceProfile: 'default', type: 'FIRMWARE', package: { title: 'sensor-fw', version: '1.0.0' } }, correlation: 'job-7' });
      const before = Date.now();
      const msgs = await take(3);

      expect(msgs.map((m) => m.topic)).to.deep.equal(['assignment', 'assignment', 'assignment']);
      expect(msgs.map((m) => (m.payload as { deviceId: string }).deviceId)).to.have.members(devices.map((d) => d.id));
      for (const m of msgs) {
        expect(m.payload).to.have.keys(['tenantId', 'deviceId', 'type', 'packageId', 'ts']);
        expect(m.payload).to.include({ tenantId, type: 'FIRMWARE', packageId: pkg.id });
        expect((m.payload as { ts: number }).ts).to.be.within(before - 5000, Date.now());
        // New messages: the input's own properties are not passed on.
        expect(m).to.not.have.property('correlation');
      }
      expect((await engine.profiles.get(tenantId, profileId)).firmwareId).to.equal(pkg.id);
      await quietFor(50);
      expect(out.queued, 'one message per device, no more').to.equal(0);
    });

    it('counts the messages it sent in its status', async () => {
      await fleet();
      expect(statusOf(nodeOf('assign'))).to.deep.equal({ fill: 'green', shape: 'ring', text: 'ota-assign.status.ready' });
      expect(shownStatus('ota-assign.status.ready')).to.equal('ready');
      await input.run({ payload: { deviceProfile: 'default', package: { title: 'sensor-fw', version: '1.0.0' } } });
      await take(3);
      const status = await statusWhen(nodeOf('assign'), (s) => s.text === '3 sent');
      expect(status).to.deep.equal({ fill: 'green', shape: 'dot', text: '3 sent' });
      expect(status.text).to.equal(translate('ota-assign.status.sent', { count: 3 }));
    });

    it('unassigns a single device named in msg.payload.device when msg.payload.package is null', async () => {
      const { engine, tenantId, devices, pkg } = await fleet();
      await engine.devices.save(tenantId, { firmwareId: { id: pkg.id } }, { mergeInto: devices[0].id });
      expect((await take(1))[0].payload).to.include({ deviceId: devices[0].id, packageId: pkg.id });

      await input.run({ payload: { device: 'sensor-1', type: 'firmware', package: null } });
      const [msg] = await take(1);
      expect(msg.topic).to.equal('assignment');
      expect(msg.payload).to.include({ tenantId, deviceId: devices[0].id, type: 'FIRMWARE', packageId: null });
      expect((await engine.devices.get(tenantId, devices[0].id)).firmwareId).to.equal(null);
    });

    it("takes ThingsBoard's {entityType, id} references for the profile and the package", async () => {
      const { devices, profileId, pkg } = await fleet();
      await input.run({
        payload: { deviceProfile: { entityType: 'DEVICE_PROFILE', id: profileId }, type: 'FIRMWARE', package: { entityType: 'OTA_PACKAGE', id: pkg.id } },
      });
      const msgs = await take(3);
      expect(msgs.map((m) => (m.payload as { deviceId: string }).deviceId)).to.have.members(devices.map((d) => d.id));
      expect(msgs.every((m) => (m.payload as { packageId: string }).packageId === pkg.id)).to.equal(true);
    });

    it('also sends the changes made through the engine, as the REST API makes them', async () => {
      const { engine, tenantId, pkg } = await fleet();
      const device = await engine.devices.save(tenantId, { name: 'sensor-4', type: 'default', firmwareId: { id: pkg.id } });
      const [msg] = await take(1);
      expect(msg.topic).to.equal('assignment');
      expect(msg.payload).to.include({ tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id });
      // The node took the event: the engine did not queue the device itself.
      expect(await engine.pipeline.queue.depth()).to.equal(0);
      await statusWhen(nodeOf('assign'), (s) => s.text === '1 sent');
    });
  });

  describe('one message per batch', function () {
    beforeEach(() => start({ batch: true }));

    it("sends a profile's devices changed together as one message, an array of their events", async () => {
      const { tenantId, devices, pkg } = await fleet();
      await input.run({ payload: { deviceProfile: 'default', type: 'FIRMWARE', package: { title: 'sensor-fw', version: '1.0.0' } } });
      const [msg] = await take(1);
      expect(msg.topic).to.equal('assignments');
      const events = msg.payload as Array<Record<string, unknown>>;
      expect(events.map((e) => e.deviceId)).to.have.members(devices.map((d) => d.id));
      for (const e of events) {
        expect(e).to.have.keys(['tenantId', 'deviceId', 'type', 'packageId', 'ts']);
        expect(e).to.include({ tenantId, type: 'FIRMWARE', packageId: pkg.id });
      }
      await quietFor(50);
      expect(out.queued, 'one message for the three devices').to.equal(0);
      await statusWhen(nodeOf('assign'), (s) => s.text === '3 sent');
    });
  });

  describe('bad input', function () {
    beforeEach(() => start());

    it('sends a payload that is not an assignment to Catch, sends nothing and shows an error', async () => {
      const error = await input.fail({ payload: 'assign everything' });
      expect(error.message).to.equal('Error: msg.payload needs deviceProfile or device (an id or a name)');
      expect(error.source).to.include({ id: 'assign', type: 'ota-assign' });
      expect(sentBy(nodeOf('assign'))).to.deep.equal([]);
      expect(statusOf(nodeOf('assign'))).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
      expect(shownStatus('node-red:common.status.error')).to.equal('error');
    });

    it('sends an unknown package type to Catch', async () => {
      const error = await input.fail({ payload: { deviceProfile: 'default', type: 'BOOTLOADER', package: null } });
      expect(error.message).to.equal('Error: msg.payload.type must be FIRMWARE or SOFTWARE, not BOOTLOADER');
    });

    it('sends an assignment without msg.payload.package to Catch', async () => {
      const error = await input.fail({ payload: { deviceProfile: 'default', type: 'FIRMWARE' } });
      expect(error.message).to.equal('Error: msg.payload.package is required: a package id, {title, version}, or null to unassign');
    });

    it('sends a package that does not exist to Catch and changes nothing', async () => {
      const { engine, tenantId, profileId } = await fleet();
      const error = await input.fail({ payload: { deviceProfile: 'default', package: { title: 'sensor-fw', version: '9.9.9' } } });
      expect(error.message).to.equal("OtaError: No package 'sensor-fw' version '9.9.9'");
      expect((await engine.profiles.get(tenantId, profileId)).firmwareId).to.equal(null);
      await quietFor(50);
      expect(out.queued).to.equal(0);
    });

    it("sends ThingsBoard's refusal of a package of another type to Catch", async () => {
      const { engine, tenantId, profileId } = await fleet();
      await packageWithData(engine, tenantId, { title: 'app', version: '2.0', profileId, type: 'SOFTWARE' }, FIRMWARE);
      const error = await input.fail({ payload: { deviceProfile: 'default', type: 'FIRMWARE', package: { title: 'app', version: '2.0' } } });
      expect(error.message).to.equal("OtaError: Can't assign firmware with type: SOFTWARE");
    });
  });

  describe('without a server', function () {
    it('shows a red status and logs an error when no server is configured', async () => {
      await helper.load(translated(otaAssign), [{ id: 'tab', type: 'tab' }, ...assignNodes({ server: '' })]);
      expect(statusOf(nodeOf('assign'))).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-assign.status.no-server' });
      expect(shownStatus('ota-assign.status.no-server')).to.equal('no server');
      expect(logged(nodeOf('assign'), 'error')).to.deep.equal(['No OTA server configured']);
    });

    it('shows a red status when its server did not start', async () => {
      await helper.load(translated(otaServer, otaAssign), otaFlow(dataDir(), assignNodes(), ['assign'], { httpPort: 'eighty' }));
      const status = await statusWhen(nodeOf('assign'), (s) => s.fill === 'red');
      expect(status).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-assign.status.engine-error' });
      expect(hasMessage('ota-assign.status.engine-error')).to.equal(true);
    });
  });

  describe('closing', function () {
    it("stops taking the engine's assignment events, so a redeploy on the same data directory takes them again", async () => {
      await start();
      const { tenantId, pkg } = await fleet();
      // Keep the engine open across the redeploy, as a config node that stays deployed would.
      const held = await acquireEngine({ dataDir: dataDir() });
      try {
        await helper.unload();
        expect(held.events.listenerCount('assignment')).to.equal(0);
        // With no ota-assign listening, the engine queues the device itself.
        await held.devices.save(tenantId, { name: 'sensor-4', type: 'default', firmwareId: { id: pkg.id } });
        await eventually(async () => (await held.pipeline.queue.depth()) === 1, 'the engine to queue the device');

        await start();
        expect(await server().engine).to.equal(held);
        const device = await held.devices.save(tenantId, { name: 'sensor-5', type: 'default', firmwareId: { id: pkg.id } });
        expect((await take(1))[0].payload).to.include({ deviceId: device.id, packageId: pkg.id });
        expect(held.events.listenerCount('assignment')).to.equal(1);
      } finally {
        await helper.unload();
        await releaseEngine(held);
      }
    });

    it('leaves no timer running after the flow stops', async () => {
      const timers = trackTimers();
      await start();
      await fleet();
      await input.run({ payload: { deviceProfile: 'default', package: { title: 'sensor-fw', version: '1.0.0' } } });
      await take(3);
      await helper.unload();
      expect(await timers.live()).to.deep.equal([]);
    });
  });
});
