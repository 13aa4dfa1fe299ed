import { expect } from 'chai';
import { createHash } from 'node:crypto';
import type { Node } from 'node-red';
import otaNotify from '../../nodes/ota-notify';
import type { Device, OtaEngine, OtaPackage } from '../../server';
import type { TenantId } from '../../server/ids';
import type { AssignmentEvent } from '../../server/pipeline/notify-queue';
import {
  arrivals,
  helper,
  inputsTo,
  loadOtaFlow,
  logged,
  nodeOf,
  nodeSpecSetup,
  onStatus,
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

const FIRMWARE = Buffer.from('thermostat firmware 2.0\n'.repeat(50));
/** ThingsBoard's nine keys and our two signature keys (issue 14). */
const NINE_KEYS = ['fw_title', 'fw_version', 'fw_ts', 'fw_state', 'fw_size', 'fw_checksum', 'fw_checksum_algorithm', 'fw_url', 'fw_tag', 'fw_signature', 'fw_signature_algorithm'];

describe('ota-notify node', function () {
  const dataDir = nodeSpecSetup('ota-notify-node-', ['ota-notify']);

  const notifyNodes = (fields: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'notify', z: 'tab', type: 'ota-notify', name: 'notify devices', server: 'srv', wires: [['notified'], ['stale']], ...fields },
    { id: 'notified', z: 'tab', type: 'helper' },
    { id: 'stale', z: 'tab', type: 'helper' },
  ];

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(server: Record<string, unknown> = {}): Promise<void> {
    await loadOtaFlow([otaNotify], otaFlow(dataDir(), notifyNodes(), ['notify'], server));
    out = arrivals('notified', 'stale');
    input = inputsTo('notify');
  }

  const notify = (): Node => nodeOf('notify');

  interface Fixture {
    engine: OtaEngine;
    tenantId: TenantId;
    profileId: string;
    device: Device;
    pkg: OtaPackage;
    /** The event that assigned `pkg` to `device`, as ota-rate-queue releases it. */
    event: AssignmentEvent;
  }

  /** A device assigned a firmware package (queued by the engine itself: no ota-assign here). */
  async function assigned(): Promise<Fixture> {
    const engine = await serverNode().engine;
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const pkg = await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '2.0', profileId: profile.id }, FIRMWARE);
    const device = await engine.devices.save(tenantId, { name: 'thermostat-1', deviceProfileId: { id: profile.id }, firmwareId: { id: pkg.id } });
    await eventually(async () => (await engine.pipeline.queue.depth()) === 1, 'the engine to queue the device');
    const event: AssignmentEvent = { tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, ts: Date.now() };
    return { engine, tenantId, profileId: profile.id, device, pkg, event };
  }

  /** Sends `ev` and answers the message that came of it, and on which output. */
  async function release(ev: unknown, extra: Record<string, unknown> = {}): Promise<{ at: string; msg: Msg }> {
    await input.run({ topic: 'release', payload: ev, ...extra });
    const result = await out.next();
    expect(out.queued, 'one message per event').to.equal(0);
    return result;
  }

  describe('fresh events', function () {
    beforeEach(() => start());

    it('writes INITIATED and the fw_* shared attributes, and sends a notification on output 1', async () => {
      const { engine, tenantId, device, pkg, event } = await assigned();
      await engine.pipeline.attributes.save(device.id, 'SHARED', { fw_url: 'http://old.example/fw.bin' }, 1);

      const { at, msg } = await release(event, { correlation: 'job-3' });
      expect(at).to.equal('notified');
      expect(msg.topic).to.equal('notification');
      expect(msg.correlation, 'the incoming message passes through').to.equal('job-3');
      const attributes = {
        fw_title: 'thermo-fw',
        fw_version: '2.0',
        fw_size: FIRMWARE.length,
        fw_checksum_algorithm: 'SHA256',
        fw_checksum: createHash('sha256').update(FIRMWARE).digest('hex'),
        fw_signature: pkg.signature,
        fw_signature_algorithm: 'ED25519',
      };
      expect(msg.payload).to.deep.equal({ tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, attributes, deleted: ['fw_url'], ts: event.ts });

      expect(await engine.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal(attributes);
      expect((await engine.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.equal('INITIATED');
    });

    it('tells a device whose package was unassigned which nine keys are gone', async () => {
      const { engine, tenantId, device } = await assigned();
      await engine.devices.save(tenantId, { firmwareId: null }, { mergeInto: device.id });
      const event: AssignmentEvent = { tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: null, ts: Date.now() };
      const { at, msg } = await release(event);
      expect(at).to.equal('notified');
      expect(msg.payload).to.deep.equal({ tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: null, attributes: {}, deleted: NINE_KEYS, ts: event.ts });
    });
  });

  describe('one message per batch', function () {
    beforeEach(async () => {
      await loadOtaFlow([otaNotify], otaFlow(dataDir(), notifyNodes({ batch: true }), ['notify']));
      out = arrivals('notified', 'stale');
      input = inputsTo('notify');
    });

    it('sends the notifications of events released together as one message: a group of the devices told the same thing, in release order', async () => {
      const { engine, tenantId, profileId, pkg, event } = await assigned();
      const second = await engine.devices.save(tenantId, { name: 'thermostat-2', deviceProfileId: { id: profileId }, firmwareId: { id: pkg.id } });
      const gone: AssignmentEvent = { ...event, deviceId: 'f0000000-0000-4000-8000-000000000000' as AssignmentEvent['deviceId'] };
      await input.runAll([event, { ...event, deviceId: second.id }, gone].map((ev) => ({ topic: 'release', payload: ev })));

      const arrived = [await out.next(), await out.next()];
      const notified = arrived.filter((a) => a.at === 'notified');
      expect(notified, 'one message for both notifications').to.have.length(1);
      const msg = (notified[0] as { msg: Msg }).msg;
      expect(msg.topic).to.equal('notifications');
      const sent = msg.payload as Array<{ deviceIds: string[]; attributes: Record<string, unknown> }>;
      expect(sent, 'both devices get the same attributes: one group').to.have.length(1);
      expect(sent[0]).to.include({ tenantId, type: 'FIRMWARE', packageId: event.packageId, ts: event.ts });
      expect(sent[0]?.deviceIds).to.deep.equal([event.deviceId, second.id]);
      expect(sent[0]?.attributes.fw_title).to.equal('thermo-fw');
      const dropped = arrived.find((a) => a.at === 'stale');
      expect(dropped?.msg.reason, 'a stale event is still dropped one message at a time').to.equal('device deleted');
      expect(out.queued).to.equal(0);
    });
  });

  describe('a released batch as one message (ota-rate-queue with "One message per batch")', function () {
    async function twoDevicesAndAStaleOne(): Promise<{ events: AssignmentEvent[]; engine: OtaEngine }> {
      const { engine, tenantId, profileId, pkg, event } = await assigned();
      const second = await engine.devices.save(tenantId, { name: 'thermostat-2', deviceProfileId: { id: profileId }, firmwareId: { id: pkg.id } });
      const gone: AssignmentEvent = { ...event, deviceId: 'f0000000-0000-4000-8000-000000000000' as AssignmentEvent['deviceId'] };
      return { engine, events: [event, gone, { ...event, deviceId: second.id }] };
    }

    it('decides the array in one go and sends its notifications as one message with "One message per batch"', async () => {
      await loadOtaFlow([otaNotify], otaFlow(dataDir(), notifyNodes({ batch: true }), ['notify']));
      out = arrivals('notified', 'stale');
      input = inputsTo('notify');
      const { engine, events } = await twoDevicesAndAStaleOne();
      await input.run({ topic: 'release', payload: events });
      const arrived = [await out.next(), await out.next()];
      const notified = arrived.filter((a) => a.at === 'notified').map((a) => a.msg);
      expect(notified).to.have.length(1);
      expect(notified[0]?.topic).to.equal('notifications');
      const sent = notified[0]?.payload as Array<{ deviceIds: string[]; attributes: Record<string, unknown> }>;
      expect(sent).to.have.length(1);
      expect(sent[0]?.deviceIds).to.deep.equal([events[0]?.deviceId, events[2]?.deviceId]);
      expect(sent[0]?.attributes.fw_title).to.equal('thermo-fw');
      const stale = arrived.find((a) => a.at === 'stale')?.msg;
      expect(stale).to.include({ topic: 'dropped', reason: 'device deleted' });
      expect(stale?.payload, 'a stale event leaves alone, unchanged').to.deep.equal(events[1]);
      expect(out.queued).to.equal(0);
      expect(engine.pipeline.notifier.stats).to.deep.equal({ notified: 2, dropped: 1 });
      for (const ev of [events[0], events[2]] as AssignmentEvent[]) {
        expect((await engine.pipeline.attributes.get(ev.deviceId, 'SHARED')).fw_version).to.equal('2.0');
        expect((await engine.pipeline.telemetry.latest(ev.deviceId, ['fw_state'])).fw_state?.value).to.equal('INITIATED');
      }
    });

    it('sends one notification per message without the option, each with attributes of its own', async () => {
      await start();
      const { events } = await twoDevicesAndAStaleOne();
      await input.run({ topic: 'release', payload: events, correlation: 'job-5' });
      const arrived = [await out.next(), await out.next(), await out.next()];
      const notified = arrived.filter((a) => a.at === 'notified').map((a) => a.msg);
      expect(notified.map((m) => (m.payload as { deviceId: string }).deviceId)).to.deep.equal([events[0]?.deviceId, events[2]?.deviceId]);
      expect(notified.map((m) => m.topic)).to.deep.equal(['notification', 'notification']);
      expect(notified[0]?.correlation, 'the incoming message passes through').to.equal('job-5');
      const [a, b] = notified.map((m) => (m.payload as { attributes: Record<string, unknown> }).attributes);
      expect(a).to.deep.equal(b);
      expect(a, 'messages never share an object: a node after this one may change its own').to.not.equal(b);
      (a as Record<string, unknown>).fw_title = 'changed downstream';
      expect(b?.fw_title).to.equal('thermo-fw');
      expect(arrived.filter((x) => x.at === 'stale')).to.have.length(1);
    });

    it('refuses an array holding anything but assignment events, writing nothing', async () => {
      await start();
      const { engine, event } = await assigned();
      const error = await input.fail({ payload: [event, { deviceId: event.deviceId }] });
      expect(error.message).to.equal('Error: msg.payload must be an assignment event released by ota-rate-queue');
      expect(engine.pipeline.notifier.stats).to.deep.equal({ notified: 0, dropped: 0 });
      expect(sentBy(notify())).to.deep.equal([]);
    });
  });

  describe('stale events', function () {
    beforeEach(() => start());

    it('drops the event of a deleted device on output 2 with msg.reason, writing nothing', async () => {
      const { engine, tenantId, device, event } = await assigned();
      await engine.devices.delete(tenantId, device.id);
      const { at, msg } = await release(event, { correlation: 'job-4' });
      expect(at).to.equal('stale');
      expect(msg).to.include({ topic: 'dropped', reason: 'device deleted', correlation: 'job-4' });
      expect(msg.payload).to.deep.equal(event);
      expect(await engine.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
    });

    it('drops an event whose package changed after it was queued', async () => {
      const { engine, tenantId, profileId, device, event } = await assigned();
      const newer = await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '2.1', profileId }, FIRMWARE);
      await engine.devices.save(tenantId, { firmwareId: { id: newer.id } }, { mergeInto: device.id });
      const queuedVersion = async (): Promise<unknown> => (await engine.pipeline.telemetry.latest(device.id, ['target_fw_version'])).target_fw_version?.value;
      await eventually(async () => (await queuedVersion()) === '2.1', 'the engine to queue the newer package');
      const { at, msg } = await release(event);
      expect(at).to.equal('stale');
      expect(msg).to.include({ topic: 'dropped', reason: 'package changed' });
      expect(msg.payload).to.deep.equal(event);
      expect(await engine.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
      expect((await engine.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.equal('QUEUED');
    });

    it('drops the same event arriving twice', async () => {
      const { event } = await assigned();
      expect((await release(event)).at).to.equal('notified');
      const { at, msg } = await release(event);
      expect(at).to.equal('stale');
      expect(msg.reason).to.equal('already notified');
    });

    it('counts the notifications sent and the events dropped in its status', async () => {
      const { engine, tenantId, device, event } = await assigned();
      await release(event);
      // A count is shown at most every 250 ms (STYLE.md): await it rather than read it at once.
      expect(await statusWhen(notify(), (s) => s.text === '1 sent, 0 stale')).to.deep.equal({ fill: 'green', shape: 'dot', text: '1 sent, 0 stale' });
      await release(event);
      await engine.devices.delete(tenantId, device.id);
      await release(event);
      expect(await statusWhen(notify(), (s) => s.text === '1 sent, 2 stale')).to.deep.equal({ fill: 'green', shape: 'dot', text: '1 sent, 2 stale' });
      expect(statusOf(notify())?.text).to.equal(translate('ota-notify.status.counts', { notified: 1, dropped: 2 }));
    });
  });

  describe('status under load', function () {
    beforeEach(() => start());

    it('shows a burst of released events as a few status changes, ending with the final count', async () => {
      const { event } = await assigned();
      const shown: string[] = [];
      const stop = onStatus(notify(), (s) => shown.push(String(s.text)));
      try {
        // The same event 40 times: the first is notified, the other 39 are dropped as already notified.
        await input.runAll(Array.from({ length: 40 }, () => ({ topic: 'release', payload: event })));
        await statusWhen(notify(), (s) => s.text === '1 sent, 39 stale');
      } finally {
        stop();
      }
      expect(shown.at(-1)).to.equal('1 sent, 39 stale');
      expect(shown.length, `status texts shown: ${shown.join(' | ')}`).to.be.below(5);
    });
  });

  describe('bad input', function () {
    beforeEach(() => start());

    it('sends an uplink event to Catch, sends and writes nothing', async () => {
      const { engine, tenantId, device } = await assigned();
      const uplink = { tenantId, deviceId: device.id, deviceName: device.name, transport: 'HTTP', ts: Date.now(), kind: 'telemetry', entries: [] };
      const error = await input.fail({ payload: uplink });
      expect(error.message).to.equal('Error: msg.payload must be an assignment event released by ota-rate-queue');
      expect(error.source).to.include({ id: 'notify', type: 'ota-notify' });
      expect(sentBy(notify())).to.deep.equal([]);
      expect(await engine.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
      expect(engine.pipeline.notifier.stats).to.deep.equal({ notified: 0, dropped: 0 });
      expect(statusOf(notify())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
      expect(shownStatus('node-red:common.status.error')).to.equal('error');
    });

    it('sends an event without packageId to Catch rather than dropping it as stale', async () => {
      const { engine, event } = await assigned();
      const { packageId: _dropped, ...partial } = event;
      const error = await input.fail({ payload: partial });
      expect(error.message).to.equal('Error: msg.payload must be an assignment event released by ota-rate-queue');
      expect(engine.pipeline.notifier.stats).to.deep.equal({ notified: 0, dropped: 0 });
    });
  });

  describe('without a server', function () {
    it('shows a red status and logs an error when no server is configured', async () => {
      await helper.load(translated(otaNotify), [{ id: 'tab', type: 'tab' }, ...notifyNodes({ server: '' })]);
      expect(statusOf(notify())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-notify.status.no-server' });
      expect(shownStatus('ota-notify.status.no-server')).to.equal('no server');
      expect(logged(notify(), 'error')).to.deep.equal(['No OTA server configured']);
    });

    it('shows a red status when its server did not start, and sends events to Catch', async () => {
      await start({ httpPort: 'eighty' });
      const status = await statusWhen(notify(), (s) => s.fill === 'red');
      expect(status).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-notify.status.engine-error' });
      expect(shownStatus('ota-notify.status.engine-error')).to.equal('engine error');
      const error = await input.fail({ payload: { tenantId: 't', deviceId: 'd', type: 'FIRMWARE', packageId: null, ts: 1 } });
      expect(error.source.id).to.equal('notify');
    });
  });

  describe('closing', function () {
    it('leaves nothing behind: the same data directory serves the next deploy, and no timer runs', async () => {
      const timers = trackTimers();
      await start();
      const { event } = await assigned();
      await helper.unload();
      expect(await timers.live()).to.deep.equal([]);

      await start();
      const { at, msg } = await release(event);
      expect(at).to.equal('notified');
      expect(msg.payload).to.include({ deviceId: event.deviceId, packageId: event.packageId });
    });
  });
});
