import { expect } from 'chai';
import type { Node } from 'node-red';
import otaServer from '../../nodes/ota-server';
import otaStateTracker from '../../nodes/ota-state-tracker';
import { acquireEngine, releaseEngine, type Device, type OtaEngine, type OtaPackage } from '../../server';
import type { TenantId } from '../../server/ids';
import type { FleetMetrics, StateChange } from '../../server/pipeline/state-tracker';
import type { TelemetryEntry } from '../../server/store/telemetry';
import type { UplinkEvent } from '../../server/pipeline/uplink';
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
  sentBy,
  serverNode,
  shownStatus,
  statusOf,
  statusWhen,
  trackTimers,
  translate,
  translated,
  within,
  type FlowNode,
} from './flow-helper';
import { eventually } from '../support/eventually';

describe('ota-state-tracker node', function () {
  const dataDir = nodeSpecSetup('ota-state-tracker-node-', ['ota-state-tracker']);

  const trackerNodes = (fields: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'tracker', z: 'tab', type: 'ota-state-tracker', name: 'states', server: 'srv', timeoutS: '', maxRetries: '', metricsIntervalMs: '0', wires: [['out']], ...fields },
    { id: 'out', z: 'tab', type: 'helper' },
  ];
  const flow = (fields?: Record<string, unknown>, server?: Record<string, unknown>): FlowNode[] => otaFlow(dataDir(), trackerNodes(fields), ['tracker'], server);

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(fields?: Record<string, unknown>, server?: Record<string, unknown>): Promise<void> {
    await loadOtaFlow([otaStateTracker], flow(fields, server));
    out = arrivals('out');
    input = inputsTo('tracker');
  }

  const tracker = (): Node => nodeOf('tracker');

  interface Fixture {
    engine: OtaEngine;
    tenantId: TenantId;
    profileId: string;
    device: Device;
    pkg: OtaPackage;
  }

  /** A device that ota-notify has told about its new firmware: in INITIATED. */
  async function initiated(): Promise<Fixture> {
    const engine = await serverNode().engine;
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const pkg = await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '4.0', profileId: profile.id }, Buffer.from('firmware 4.0'));
    const device = await engine.devices.save(tenantId, { name: 'thermostat-1', deviceProfileId: { id: profile.id }, firmwareId: { id: pkg.id } });
    await eventually(async () => (await engine.pipeline.queue.depth()) === 1, 'the engine to queue the device');
    const outcome = await engine.pipeline.notifier.process({ tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, ts: Date.now() });
    if (!('notification' in outcome)) throw new Error(`the device was not notified: ${outcome.dropped}`);
    return { engine, tenantId, profileId: profile.id, device, pkg };
  }

  const uplink = (f: Fixture, entries: TelemetryEntry[]): Extract<UplinkEvent, { kind: 'telemetry' }> => ({
    tenantId: f.tenantId,
    deviceId: f.device.id,
    deviceName: f.device.name,
    transport: 'HTTP',
    ts: Date.now(),
    kind: 'telemetry',
    entries,
  });

  /** The next message on the output, checked to have `topic`. */
  async function next<T>(topic: 'state' | 'metrics'): Promise<T> {
    const { msg } = await out.next();
    expect(msg.topic).to.equal(topic);
    return msg.payload as T;
  }

  describe('device reports', function () {
    beforeEach(() => start());

    it('sends each fw_state change a device reports, oldest first, then the metrics', async () => {
      const f = await initiated();
      const t = Date.now() + 10;
      await input.run({
        payload: uplink(f, [
          { ts: t + 1, values: { fw_state: 'DOWNLOADED' } },
          { ts: t, values: { fw_state: 'DOWNLOADING' } },
        ]),
      });

      const base = { tenantId: f.tenantId, deviceId: f.device.id, type: 'FIRMWARE', error: null, reason: 'reported' };
      expect(await next<StateChange>('state')).to.deep.equal({ ...base, from: 'INITIATED', to: 'DOWNLOADING', ts: t });
      expect(await next<StateChange>('state')).to.deep.equal({ ...base, from: 'DOWNLOADING', to: 'DOWNLOADED', ts: t + 1 });
      const metrics = await next<FleetMetrics>('metrics');
      expect(metrics.packages).to.have.length(1);
      expect(metrics.packages[0]).to.include({
        packageId: f.pkg.id,
        title: 'thermo-fw',
        version: '4.0',
        type: 'FIRMWARE',
        targeted: 1,
        pending: 0,
        inProgress: 1,
        updated: 0,
        failed: 0,
      });
    });

    it("sends the device's fw_error with a FAILED it reports", async () => {
      const f = await initiated();
      await input.run({ payload: uplink(f, [{ ts: Date.now() + 10, values: { fw_state: 'FAILED', fw_error: 'Checksum verification failed!' } }]) });
      expect(await next<StateChange>('state')).to.include({ from: 'INITIATED', to: 'FAILED', error: 'Checksum verification failed!', reason: 'reported' });
      // No retries configured: the metrics come next, no re-queue.
      expect((await next<FleetMetrics>('metrics')).packages[0]).to.include({ failed: 1 });
    });

    it('lets a late report change nothing', async () => {
      const f = await initiated();
      const t = Date.now() + 10;
      await input.run({ payload: uplink(f, [{ ts: t, values: { fw_state: 'UPDATING' } }]) });
      expect(await next<StateChange>('state')).to.include({ from: 'INITIATED', to: 'UPDATING' });
      await next('metrics');

      await input.run({ payload: uplink(f, [{ ts: t - 5, values: { fw_state: 'DOWNLOADING' } }]) });
      expect(out.queued, 'a late report sends nothing').to.equal(0);
      await input.run({ payload: uplink(f, [{ ts: t + 5, values: { fw_state: 'UPDATED' } }]) });
      expect(await next<StateChange>('state'), 'the recorded state is still UPDATING').to.include({ from: 'UPDATING', to: 'UPDATED' });
    });

    it('accepts attribute and download events and changes nothing for them', async () => {
      const f = await initiated();
      const { kind: _telemetry, entries: _entries, ...common } = uplink(f, []);
      await input.run({ payload: { ...common, kind: 'attributes', attributes: { fw_state: 'UPDATED' } } });
      await input.run({ payload: { ...common, kind: 'download', type: 'FIRMWARE', packageId: f.pkg.id, bytes: 12, offset: 0, size: 12 } });
      await input.run({ topic: 'metrics' });
      expect((await next<FleetMetrics>('metrics')).packages[0]).to.include({ pending: 1, inProgress: 0, updated: 0 });
      expect(out.queued).to.equal(0);
    });
  });

  describe('metrics', function () {
    beforeEach(() => start());

    it('sends the fleet metrics on msg.topic metrics and shows the updated and failed counts', async () => {
      const f = await initiated();
      await input.run({ payload: uplink(f, [{ ts: Date.now() + 10, values: { fw_state: 'UPDATED', current_fw_title: 'thermo-fw', current_fw_version: '4.0' } }]) });
      await next('state');
      await next('metrics');

      await input.run({ topic: 'metrics', payload: 'ignored' });
      const metrics = await next<FleetMetrics>('metrics');
      const counts = { type: 'FIRMWARE', targeted: 1, pending: 0, inProgress: 0, updated: 1, failed: 0, onTarget: 1, coverage: 1 };
      expect(metrics.packages).to.deep.equal([{ packageId: f.pkg.id, title: 'thermo-fw', version: '4.0', ...counts }]);
      expect(metrics.profiles).to.deep.equal([{ deviceProfileId: f.profileId, name: 'default', ...counts }]);
      expect(metrics.ts).to.be.within(Date.now() - 5000, Date.now());
      expect(statusOf(tracker())).to.deep.equal({ fill: 'green', shape: 'dot', text: '1 done, 0 failed' });
      expect(statusOf(tracker())?.text).to.equal(translate('ota-state-tracker.status.counts', { updated: 1, failed: 0 }));
    });
  });

  describe('timeouts and retries', function () {
    it('fails a silent INITIATED device after the timeout, and queues it again once', async () => {
      await start({ timeoutS: '1', maxRetries: '1' });
      const f = await initiated();

      const timedOut = await next<StateChange>('state');
      expect(timedOut).to.include({ deviceId: f.device.id, from: 'INITIATED', to: 'FAILED', reason: 'timeout', error: 'Update timed out: no progress for 1 s in state INITIATED' });
      const retry = await next<StateChange>('state');
      expect(retry).to.include({ deviceId: f.device.id, from: 'FAILED', to: 'QUEUED', reason: 'retry', error: 'retry 1 of 1' });
      expect((await next<FleetMetrics>('metrics')).packages[0]).to.include({ pending: 1, failed: 0 });
      expect((await f.engine.pipeline.telemetry.latest(f.device.id, ['fw_error'])).fw_error?.value).to.equal(timedOut.error);

      // Released and notified again, it stays silent again: this time it stays FAILED.
      await f.engine.pipeline.notifier.process({ tenantId: f.tenantId, deviceId: f.device.id, type: 'FIRMWARE', packageId: f.pkg.id, ts: retry.ts });
      expect(await next<StateChange>('state')).to.include({ from: 'INITIATED', to: 'FAILED', reason: 'timeout' });
      expect((await next<FleetMetrics>('metrics')).packages[0], 'no second retry before the metrics').to.include({ failed: 1, pending: 0 });
    });
  });

  describe('bad input', function () {
    beforeEach(() => start());

    it('sends a payload that is not an uplink event to Catch, sending nothing', async () => {
      const f = await initiated();
      const error = await input.fail({ payload: { tenantId: f.tenantId, deviceId: f.device.id, type: 'FIRMWARE', packageId: f.pkg.id, ts: Date.now() } });
      expect(error.message).to.equal('Error: msg.payload must be an uplink event from a transport node (ota-http, ota-mqtt, ...)');
      expect(error.source).to.include({ id: 'tracker', type: 'ota-state-tracker' });
      expect(sentBy(tracker())).to.deep.equal([]);
      expect(statusOf(tracker())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
      expect(shownStatus('node-red:common.status.error')).to.equal('error');
    });

    it('sends a telemetry event without entries to Catch with the same message', async () => {
      const f = await initiated();
      const { entries: _entries, ...partial } = uplink(f, []);
      const error = await input.fail({ payload: partial });
      expect(error.message).to.equal('Error: msg.payload must be an uplink event from a transport node (ota-http, ota-mqtt, ...)');
    });
  });

  describe('without a server', function () {
    it('shows a red status and logs an error when no server is configured', async () => {
      await helper.load(translated(otaStateTracker), [{ id: 'tab', type: 'tab' }, ...trackerNodes({ server: '' })]);
      expect(statusOf(tracker())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-state-tracker.status.no-server' });
      expect(shownStatus('ota-state-tracker.status.no-server')).to.equal('no server');
      expect(logged(tracker(), 'error')).to.deep.equal(['No OTA server configured']);
    });

    it('shows a red status when its server did not start', async () => {
      await start({}, { httpPort: 'eighty' });
      expect(await statusWhen(tracker(), (s) => s.fill === 'red')).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-state-tracker.status.engine-error' });
      expect(shownStatus('ota-state-tracker.status.engine-error')).to.equal('engine error');
    });
  });

  describe('closing', function () {
    it('stops its timeout checks and pending metrics when the flow stops, even while its server stays up', async () => {
      // Opened first, without HTTP: the engine's own listener is not part of what the flow must release.
      const held = await acquireEngine({
        dataDir: dataDir(),
        http: false,
        admin: { password: 'secret-pw' },
        logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
      });
      try {
        const timers = trackTimers();
        await start({ timeoutS: '1', metricsIntervalMs: '60000' });
        const f = await initiated();
        await input.run({ payload: uplink(f, [{ ts: Date.now() + 10, values: { fw_state: 'DOWNLOADING' } }]) });
        await next('state');
        await helper.unload();
        expect(await timers.live()).to.deep.equal([]);

        // The same data directory serves the next deploy.
        await start({ metricsIntervalMs: '0' });
        await input.run({ payload: uplink(f, [{ ts: Date.now() + 20, values: { fw_state: 'DOWNLOADED' } }]) });
        expect(await next<StateChange>('state')).to.include({ from: 'DOWNLOADING', to: 'DOWNLOADED' });
      } finally {
        await helper.unload();
        await releaseEngine(held);
      }
    });

    it('a second tracker of the same server shows red and says why, leaving the first its settings', async () => {
      const both = otaFlow(
        dataDir(),
        [
          { id: 'first', z: 'tab', type: 'ota-state-tracker', server: 'srv', timeoutS: '', maxRetries: '', metricsIntervalMs: '0', wires: [[]] },
          ...trackerNodes({ timeoutS: '1' }),
        ],
        ['tracker'],
      );
      await helper.load(translated(otaServer, otaStateTracker), both, { srv: { adminPassword: 'secret-pw' } });
      const tracker = nodeOf('tracker');
      expect(await statusWhen(tracker, (s) => s.fill === 'red')).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-state-tracker.status.second' });
      expect(hasMessage('ota-state-tracker.status.second')).to.equal(true);
      expect(logged(tracker, 'error')).to.deep.equal([translate('ota-state-tracker.errors.second', { other: 'first' })]);
      expect((await serverNode().engine).pipeline.tracker.owner).to.equal('first');
    });

    it('hands the timeouts to the tracker left when the tracker that had them is removed', async () => {
      const both = otaFlow(
        dataDir(),
        [
          { id: 'first', z: 'tab', type: 'ota-state-tracker', server: 'srv', timeoutS: '1', maxRetries: '', metricsIntervalMs: '0', wires: [[]] },
          ...trackerNodes({ timeoutS: '1' }),
        ],
        ['tracker'],
      );
      await helper.load(translated(otaServer, otaStateTracker), both, { srv: { adminPassword: 'secret-pw' } });
      await helper.setFlows(
        both.filter((n) => n.id !== 'first'),
        'nodes',
      );
      out = arrivals('out');
      const f = await initiated();
      const timedOut = await within(next<StateChange>('state'), 3000, 'timeout from the tracker left');
      expect(timedOut).to.include({ deviceId: f.device.id, to: 'FAILED', reason: 'timeout' });
    });
  });
});
