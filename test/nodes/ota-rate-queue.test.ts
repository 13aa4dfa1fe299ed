import { expect } from 'chai';
import type { Node, NodeStatus } from 'node-red';
import otaRateQueue from '../../nodes/ota-rate-queue';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import { acquireEngine, releaseEngine, type OtaEngine } from '../../server';
import type { AssignmentEvent } from '../../server/pipeline/notify-queue';
import type { DeviceId, TenantId } from '../../server/ids';
import {
  arrivals,
  hasMessage,
  helper,
  inputsTo,
  loadOtaFlow,
  logged,
  nodeOf,
  nodeSpecSetup,
  onStatus,
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
  within,
  type FlowNode,
  type Msg,
} from './flow-helper';
import { eventually } from '../support/eventually';

describe('ota-rate-queue node', function () {
  const dataDir = nodeSpecSetup('ota-rate-queue-node-', ['ota-rate-queue']);

  const queueNodes = (fields: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'queue', z: 'tab', type: 'ota-rate-queue', name: 'paced queue', server: 'srv', packSize: '2', intervalMs: '0', mode: 'burst', wires: [['out']], ...fields },
    { id: 'out', z: 'tab', type: 'helper' },
  ];
  const flow = (fields?: Record<string, unknown>): FlowNode[] => otaFlow(dataDir(), queueNodes(fields), ['queue']);

  let out: ReturnType<typeof arrivals>;
  let input: ReturnType<typeof inputsTo>;
  async function start(fields?: Record<string, unknown>): Promise<void> {
    await loadOtaFlow([otaRateQueue], flow(fields));
    out = arrivals('out');
    input = inputsTo('queue');
    await statusWhen(queue(), (s) => s.fill === 'grey' || s.fill === 'blue');
  }

  const queue = (): Node => nodeOf('queue');
  const server = (): OtaServerNode => nodeOf<OtaServerNode>('srv');
  /** The status the help promises for `depth` devices queued: blue while some wait, grey when empty, yellow ring while paused. */
  const depthStatus = (depth: number): NodeStatus => ({ fill: depth ? 'blue' : 'grey', shape: 'dot', text: translate('ota-rate-queue.status.depth', { depth }) });
  const pausedStatus = (depth: number): NodeStatus => ({ fill: 'yellow', shape: 'ring', text: translate('ota-rate-queue.status.paused', { depth }) });

  /** `n` devices of the default profile and a firmware package for them: one assignment event each. */
  async function events(n: number): Promise<{ engine: OtaEngine; tenantId: TenantId; events: AssignmentEvent[] }> {
    const engine = await server().engine;
    const tenantId = await server().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const pkg = await packageWithData(engine, tenantId, { title: 'sensor-fw', version: '1.0.0', profileId: profile.id }, Buffer.from('firmware bytes'));
    const evs: AssignmentEvent[] = [];
    for (let i = 1; i <= n; i++) {
      const device = await engine.devices.save(tenantId, { name: `sensor-${i}`, deviceProfileId: { id: profile.id } });
      evs.push({ tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, ts: Date.now() });
    }
    return { engine, tenantId, events: evs };
  }

  const assignment = (ev: AssignmentEvent): Msg => ({ topic: 'assignment', payload: ev });

  /** The next message on the output, and when it came. */
  async function next(): Promise<{ msg: Msg; at: number }> {
    const { msg } = await out.next();
    return { msg, at: Date.now() };
  }

  describe('pacing', function () {
    it('releases a pack of packSize at once in burst mode, and the next pack an interval later', async () => {
      // An interval longer than a status label's 250 ms, so the count between the packs shows.
      await start({ packSize: '2', intervalMs: '600', mode: 'burst' });
      const { events: evs } = await events(3);
      await input.runAll(evs.map(assignment));

      const first = await next();
      const second = await next();
      expect(second.at - first.at, 'the first two leave together').to.be.below(100);
      expect(out.queued, 'the third waits for the next interval').to.equal(0);
      expect(await statusWhen(queue(), (s) => s.text === depthStatus(1).text)).to.deep.equal(depthStatus(1));

      const third = await next();
      expect(third.at - first.at, 'the third leaves an interval later').to.be.at.least(580);
      expect([first, second, third].map((r) => r.msg.topic)).to.deep.equal(['release', 'release', 'release']);
      expect([first, second, third].map((r) => r.msg.payload)).to.deep.equal(evs);
      expect(await statusWhen(queue(), (s) => s.fill === 'grey')).to.deep.equal(depthStatus(0));
    });

    it('writes QUEUED and the target telemetry for each device it queues', async () => {
      await start({ intervalMs: '60000', packSize: '1', mode: 'spaced' });
      const { engine, events: evs } = await events(2);
      await input.runAll(evs.map(assignment));
      await next();
      const latest = await engine.pipeline.telemetry.latest(evs[1].deviceId, ['fw_state', 'target_fw_title', 'target_fw_version', 'target_fw_ts']);
      expect(latest.fw_state?.value).to.equal('QUEUED');
      expect(latest.target_fw_title?.value).to.equal('sensor-fw');
      expect(latest.target_fw_version?.value).to.equal('1.0.0');
      expect(latest.target_fw_ts?.value).to.equal(evs[1].ts);
    });

    it('shows how many devices are queued', async () => {
      await start({ intervalMs: '60000', packSize: '1', mode: 'spaced' });
      expect(statusOf(queue())).to.deep.equal({ fill: 'grey', shape: 'dot', text: '0 queued' });
      const { events: evs } = await events(3);
      await input.runAll(evs.map(assignment));
      await next();
      expect(await statusWhen(queue(), (s) => s.text === '2 queued')).to.deep.equal({ fill: 'blue', shape: 'dot', text: '2 queued' });
      expect(hasMessage('ota-rate-queue.status.depth')).to.equal(true);
    });
  });

  describe('control messages', function () {
    it('stops releasing on pause and releases again on resume', async () => {
      await start({ intervalMs: '0' });
      const { events: evs } = await events(2);
      await input.run({ pause: true });
      expect(statusOf(queue())).to.deep.equal(pausedStatus(0));
      await input.runAll(evs.map(assignment));
      expect(await statusWhen(queue(), (s) => s.text === 'paused, 2 queued')).to.deep.equal({ fill: 'yellow', shape: 'ring', text: 'paused, 2 queued' });
      // Unpaced, a release would come within a tick.
      await quietFor(100);
      expect(out.queued).to.equal(0);

      await input.run({ topic: 'resume' });
      expect([(await next()).msg.payload, (await next()).msg.payload]).to.deep.equal(evs);
      expect(await statusWhen(queue(), (s) => s.fill === 'grey')).to.deep.equal(depthStatus(0));
    });

    it('releases everything queued at once on flush, ignoring the pace, even while paused', async () => {
      await start({ packSize: '1', intervalMs: '60000', mode: 'spaced' });
      const { events: evs } = await events(3);
      await input.runAll(evs.map(assignment));
      expect((await next()).msg.payload).to.deep.equal(evs[0]);
      await input.run({ topic: 'pause' });

      await input.run({ flush: true });
      const [a, b] = [await next(), await next()];
      expect([a.msg.payload, b.msg.payload]).to.deep.equal([evs[1], evs[2]]);
      expect(b.at - a.at).to.be.below(100);
      expect(await statusWhen(queue(), (s) => s.text === 'paused, 0 queued')).to.deep.equal(pausedStatus(0));
    });

    it("passes an unassignment through at once, cancelling the device's queued event", async () => {
      await start({ packSize: '1', intervalMs: '60000', mode: 'spaced' });
      const { engine, events: evs } = await events(2);
      await input.runAll(evs.map(assignment));
      expect((await next()).msg.payload).to.deep.equal(evs[0]);
      expect(await engine.pipeline.queue.depth()).to.equal(1);

      const unassign: AssignmentEvent = { ...evs[1], packageId: null, ts: Date.now() };
      await input.run({ topic: 'assignment', payload: unassign, correlation: 'job-9' });
      const { msg } = await next();
      expect(msg.topic).to.equal('release');
      expect(msg.payload).to.deep.equal(unassign);
      expect(await engine.pipeline.queue.depth()).to.equal(0);
      expect(statusOf(queue())).to.deep.equal(depthStatus(0));
    });
  });

  describe('one message per batch', function () {
    it('takes an array of events as one message and releases them together as one array, in queue order', async () => {
      await start({ intervalMs: '0', batch: true });
      const { engine, events: evs } = await events(3);
      await input.run({ topic: 'assignments', payload: evs });
      const { msg } = await next();
      expect(msg.topic).to.equal('release');
      expect(msg.payload, 'one message for the released batch').to.deep.equal(evs);
      await quietFor(50);
      expect(out.queued).to.equal(0);
      expect(await engine.pipeline.queue.depth()).to.equal(0);
      const latest = await engine.pipeline.telemetry.latest(evs[2].deviceId, ['fw_state', 'target_fw_version']);
      expect(latest.fw_state?.value, 'each device of the array was queued as one by one').to.equal('QUEUED');
      expect(latest.target_fw_version?.value).to.equal('1.0.0');
    });

    it('releases an array sent to it one event per message without the option (a flow of per-device nodes)', async () => {
      await start({ intervalMs: '0' });
      const { events: evs } = await events(2);
      await input.run({ topic: 'assignments', payload: evs });
      expect([(await next()).msg.payload, (await next()).msg.payload]).to.deep.equal(evs);
    });

    it('passes the unassignments of an array through at once, as one array, and queues the rest', async () => {
      await start({ packSize: '1', intervalMs: '60000', mode: 'spaced', batch: true });
      const { engine, events: evs } = await events(3);
      await input.run({ payload: [evs[0]] });
      expect((await next()).msg.payload).to.deep.equal([evs[0]]);
      const unassign: AssignmentEvent = { ...evs[1], packageId: null, ts: Date.now() };
      await input.run({ payload: [unassign, evs[2]] });
      const { msg } = await next();
      expect(msg.payload, 'the unassignment leaves at once').to.deep.equal([unassign]);
      expect(await engine.pipeline.queue.depth(), 'the other waits for its turn').to.equal(1);
    });

    it('keeps the order of an array: an unassignment after an assignment of the same device leaves it unqueued', async () => {
      await start({ packSize: '1', intervalMs: '60000', mode: 'spaced', batch: true });
      const { engine, events: evs } = await events(2);
      await input.run({ payload: [evs[0]] });
      expect((await next()).msg.payload).to.deep.equal([evs[0]]);
      const unassign: AssignmentEvent = { ...evs[1], packageId: null, ts: Date.now() };
      await input.run({ payload: [evs[1], unassign] });
      expect((await next()).msg.payload).to.deep.equal([unassign]);
      expect(await engine.pipeline.queue.depth(), 'the later unassignment wins').to.equal(0);
    });

    it('refuses an array holding anything but assignment events, queueing none of it', async () => {
      await start({ intervalMs: '0', batch: true });
      const { engine, events: evs } = await events(1);
      const error = await input.fail({ payload: [evs[0], { deviceProfile: 'default' }] });
      expect(error.message).to.equal('Error: msg.payload must be an assignment event {tenantId, deviceId, type, packageId, ts} from ota-assign');
      expect(await engine.pipeline.queue.depth()).to.equal(0);
      expect(sentBy(queue())).to.deep.equal([]);
    });
  });

  describe('bad input', function () {
    beforeEach(() => start({ intervalMs: '0' }));

    it('sends a payload that is not an assignment event to Catch, queues and sends nothing', async () => {
      const error = await input.fail({ payload: { deviceProfile: 'default', package: null } });
      expect(error.message).to.equal('Error: msg.payload must be an assignment event {tenantId, deviceId, type, packageId, ts} from ota-assign');
      expect(error.source).to.include({ id: 'queue', type: 'ota-rate-queue' });
      expect(sentBy(queue())).to.deep.equal([]);
      expect(await (await server().engine).pipeline.queue.depth()).to.equal(0);
      expect(statusOf(queue())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
      expect(shownStatus('node-red:common.status.error')).to.equal('error');
    });

    it('sends an event of an unknown package type to Catch', async () => {
      const tenantId = await server().tenantId();
      const error = await input.fail({ payload: { tenantId, deviceId: 'd' as DeviceId, type: 'BOOTLOADER', packageId: null, ts: 1 } });
      expect(error.message).to.match(/^Error: msg\.payload must be an assignment event/);
    });

    it('sends an event without its tenantId to Catch rather than skipping it silently', async () => {
      const { engine, events: evs } = await events(1);
      const { tenantId: _tenant, ...partial } = evs[0];
      const error = await input.fail({ payload: partial });
      expect(error.message).to.equal('Error: msg.payload must be an assignment event {tenantId, deviceId, type, packageId, ts} from ota-assign');
      expect(await engine.pipeline.queue.depth()).to.equal(0);
    });
  });

  describe('without a server', function () {
    it('shows a red status and logs an error when no server is configured', async () => {
      await helper.load(translated(otaRateQueue), [{ id: 'tab', type: 'tab' }, ...queueNodes({ server: '' })]);
      expect(statusOf(queue())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-rate-queue.status.no-server' });
      expect(shownStatus('ota-rate-queue.status.no-server')).to.equal('no server');
      expect(logged(queue(), 'error')).to.deep.equal(['No OTA server configured']);
    });
  });

  describe('closing', function () {
    /** Keeps the engine open across `helper.unload()`, as a config node that stays deployed would. */
    async function holdingEngine(test: (engine: OtaEngine) => Promise<void>): Promise<void> {
      const held = await acquireEngine({ dataDir: dataDir() });
      try {
        await test(held);
      } finally {
        await helper.unload();
        await releaseEngine(held);
      }
    }

    it('drains no more once the flow stops; the next deploy releases what was left', async () => {
      await start({ intervalMs: '0' });
      const { events: evs } = await events(1);
      await holdingEngine(async (engine) => {
        const old = queue();
        await helper.unload();
        expect(engine.pipeline.queue.listenerCount('depth')).to.equal(0);
        await engine.pipeline.queue.enqueue(evs[0]);
        // Unpaced, the old node would release it within a tick.
        await quietFor(100);
        expect(await engine.pipeline.queue.depth()).to.equal(1);
        expect(sentBy(old)).to.deep.equal([]);

        await start({ intervalMs: '0' });
        expect((await next()).msg.payload).to.deep.equal(evs[0]);
      });
    });

    it('resumes a paused queue when deployed again', async () => {
      await start({ intervalMs: '0' });
      const { events: evs } = await events(1);
      await holdingEngine(async () => {
        await input.run({ topic: 'pause' });
        await input.run(assignment(evs[0]));
        await helper.unload();

        await start({ intervalMs: '0' });
        expect((await within(next(), 2000, 'release after the redeploy')).msg.payload).to.deep.equal(evs[0]);
      });
    });

    it('a second rate-queue node of the same server shows red, says why, and releases nothing', async () => {
      const both = otaFlow(
        dataDir(),
        [
          { id: 'first', z: 'tab', type: 'ota-rate-queue', server: 'srv', packSize: '5', intervalMs: '0', mode: 'spaced', wires: [['byFirst']] },
          { id: 'byFirst', z: 'tab', type: 'helper' },
          ...queueNodes({ intervalMs: '0' }),
        ],
        ['queue'],
      );
      await helper.load(translated(otaServer, otaRateQueue), both, { srv: { adminPassword: 'secret-pw' } });
      out = arrivals('out', 'byFirst');
      input = inputsTo('queue');
      expect(await statusWhen(queue(), (s) => s.fill === 'red')).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-rate-queue.status.second' });
      expect(hasMessage('ota-rate-queue.status.second')).to.equal(true);
      expect(logged(queue(), 'error')).to.deep.equal([translate('ota-rate-queue.errors.second', { other: 'first' })]);
      const { events: evs } = await events(1);
      await input.run(assignment(evs[0]));
      const released = await within(out.next(), 2000, 'release by the first node');
      expect([released.at, released.msg.payload]).to.deep.equal(['byFirst', evs[0]]);
      expect(statusOf(queue())?.fill, 'the second stays red').to.equal('red');
    });

    it('keeps draining when another rate-queue node of the same server is removed', async () => {
      const both = otaFlow(
        dataDir(),
        [{ id: 'first', z: 'tab', type: 'ota-rate-queue', server: 'srv', packSize: '5', intervalMs: '60000', mode: 'spaced', wires: [[]] }, ...queueNodes({ intervalMs: '0' })],
        ['queue'],
      );
      await helper.load(translated(otaServer, otaRateQueue), both, { srv: { adminPassword: 'secret-pw' } });
      out = arrivals('out');
      // 'first' starts first, so it is the one that drains; 'queue' says it does not.
      await statusWhen(queue(), (s) => s.fill === 'red');
      await helper.setFlows(
        both.filter((n) => n.id !== 'first'),
        'nodes',
      );
      // The node left takes over the queue.
      await statusWhen(queue(), (s) => s.fill === 'grey');
      const seen: string[] = [];
      onStatus(queue(), (s) => seen.push(String(s.text)));

      const { engine, events: evs } = await events(1);
      await engine.pipeline.queue.enqueue(evs[0]);
      expect((await within(next(), 2000, 'release by the node left')).msg.payload).to.deep.equal(evs[0]);
      await eventually(() => seen.includes('0 queued'), "the node left to show the queue's depth", { timeoutMs: 2000 });
      expect(seen).to.deep.equal(['1 queued', '0 queued']);
    });

    it('leaves no timer behind when the flow stops, even while its server stays up', async () => {
      await start({ packSize: '1', intervalMs: '60000', mode: 'spaced' });
      const { events: evs } = await events(3);
      await holdingEngine(async (engine) => {
        // The engine stays up on purpose: its dashboard watcher keeps ticking, and is not the node's.
        const timers = trackTimers(['server/fleet/fleet-watch']);
        await input.runAll(evs.map(assignment));
        await next();
        await helper.unload();
        expect(await timers.live()).to.deep.equal([]);
        expect(await engine.pipeline.queue.depth()).to.equal(2);
      });
    });
  });
});
