import { expect } from 'chai';
import otaRollout from '../../nodes/ota-rollout';
import { arrivals, inputsTo, loadOtaFlow, nodeOf, nodeSpecSetup, otaFlow, packageWithData, serverNode, shownStatus, statusWhen, type FlowNode } from './flow-helper';

describe('ota-rollout node', function () {
  const dataDir = nodeSpecSetup('ota-rollout-node-', ['ota-rollout']);

  const nodes: FlowNode[] = [
    { id: 'rollout', z: 'tab', type: 'ota-rollout', name: 'waves', server: 'srv', wires: [['results'], ['events']] },
    { id: 'results', z: 'tab', type: 'helper' },
    { id: 'events', z: 'tab', type: 'helper' },
  ];

  /** A profile of three devices and a package for it, through the engine. */
  async function fleet(): Promise<{ packageId: string; profileId: string }> {
    const engine = await serverNode().engine;
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.save(tenantId, { name: 'thermostats' });
    const pkg = await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '2.0.0', profileId: profile.id }, Buffer.from('firmware'));
    for (const name of ['t-1', 't-2', 't-3']) await engine.devices.save(tenantId, { name, deviceProfileId: { id: profile.id } });
    return { packageId: pkg.id, profileId: profile.id };
  }

  it('creates and starts a rollout from messages, answering on output 1 and telling wave and state events on output 2', async () => {
    await loadOtaFlow([otaRollout], otaFlow(dataDir(), nodes, ['rollout']));
    const { packageId, profileId } = await fleet();
    const results = arrivals('results');
    const input = inputsTo('rollout');
    await input.run({
      topic: 'create',
      payload: {
        name: 'thermostats 2.0',
        packageId: { entityType: 'OTA_PACKAGE', id: packageId },
        target: { deviceProfileId: { entityType: 'DEVICE_PROFILE', id: profileId } },
        waves: [{ count: 1 }, { percent: 100 }],
      },
      correlation: 'job-1',
    });
    const created = (await results.next()).msg;
    expect(created.correlation, 'the incoming message passes through').to.equal('job-1');
    const draft = created.payload as { id: { id: string }; state: string };
    expect(draft.state).to.equal('DRAFT');

    const events = arrivals('events');
    await input.run({ topic: 'start', payload: draft.id });
    expect(((await results.next()).msg.payload as { state: string }).state).to.equal('RUNNING');
    const seen: Array<[string, unknown, unknown]> = [];
    for (;;) {
      const { msg } = await events.next();
      const p = msg.payload as { state: string; wave?: number; waveState?: string };
      seen.push([String(msg.topic), p.wave ?? p.state, p.waveState ?? null]);
      if (msg.topic === 'wave' && p.waveState === 'RUNNING') break;
    }
    expect(seen).to.deep.include(['state', 'RUNNING', null]);
    expect(seen).to.deep.include(['wave', 0, 'RUNNING']);
    const status = await statusWhen(nodeOf('rollout'), (s) => String(s.text).startsWith('thermostats 2.0'));
    expect(status.text).to.equal(
      shownStatus('ota-rollout.status.state').replace('__name__', 'thermostats 2.0').replace('__state__', 'RUNNING').replace('__wave__', '1').replace('__waves__', '2'),
    );

    await input.run({ topic: 'abort', payload: { id: draft.id.id, rollback: false } });
    expect(((await results.next()).msg.payload as { state: string }).state).to.equal('ABORTED');
  });

  it('sends an unknown command, a bad body, a missing id or an unknown rollout to Catch, sending nothing', async () => {
    await loadOtaFlow([otaRollout], otaFlow(dataDir(), nodes, ['rollout']));
    const input = inputsTo('rollout');
    expect((await input.fail({ topic: 'launch', payload: {} })).message).to.include('msg.topic must be one of create, start, pause, resume, cancel, abort, get');
    expect((await input.fail({ topic: 'create', payload: { name: 'x' } })).message).to.match(/Invalid request body: body must have required property/);
    expect((await input.fail({ topic: 'start', payload: {} })).message).to.include('start needs the rollout\'s id: msg.payload = "<id>" or {"id": "<id>"}');
    expect((await input.fail({ topic: 'get', payload: '00000000-0000-4000-8000-000000000000' })).message).to.include(
      'Rollout with id [00000000-0000-4000-8000-000000000000] is not found!',
    );
  });
});
