import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setMaxListeners } from 'node:events';
import { expect } from 'chai';
import { runDevice, type DeviceResult, type Phase } from '../../sim/device';
import { HttpDeviceLink } from '../../sim/http-device';
import { eventually } from '../support/eventually';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

interface Ref {
  id: { id: string };
}
interface WaveJson {
  state: string;
  devices: number;
  updated: number;
  failed: number;
  inProgress: number;
  pending: number;
}
interface RolloutJson {
  id: { id: string };
  tenantId: { id: string };
  state: string;
  reason: string | null;
  waves: WaveJson[];
}
type History = Record<string, Array<{ ts: number; value: string }>>;

interface Fleet {
  profileId: string;
  pkg: { id: string; title: string; version: string };
  devices: Array<{ id: string; name: string; token: string }>;
}

/** Simulated devices (sim/device.ts over HTTP) running until they finish or `stop()`; `notified` holds who got the firmware. */
class RunningFleet {
  readonly phases = new Map<string, Phase>();
  readonly notified = new Set<string>();
  private readonly controller = new AbortController();
  readonly results: Promise<DeviceResult[]>;

  constructor(api: string, fleet: Fleet, failing: (index: number) => boolean, only: (name: string) => boolean = () => true) {
    setMaxListeners(0, this.controller.signal);
    const observer = {
      phase: (name: string, phase: Phase) => {
        this.phases.set(name, phase);
        if (phase === 'downloading') this.notified.add(name);
      },
      bytes: () => undefined,
    };
    this.results = Promise.all(
      fleet.devices
        .map((d, i) => ({ d, i }))
        .filter(({ d }) => only(d.name))
        .map(({ d, i }) =>
          runDevice(
            new HttpDeviceLink(api, d.token, 1024, 0, 2000),
            { name: d.name, failWith: failing(i) ? 'Simulated failure: flash write failed' : null, pace: 0, target: { title: fleet.pkg.title, version: fleet.pkg.version } },
            observer,
            this.controller.signal,
          ),
        ),
    );
  }

  count(phase: Phase): number {
    return [...this.phases.values()].filter((p) => p === phase).length;
  }

  /** Ends the devices still waiting (they would never be told anything). */
  async stop(): Promise<DeviceResult[]> {
    this.controller.abort();
    return this.results;
  }
}

/**
 * Rollouts end to end (issue 14): `npm start` with its default flow, simulated HTTP devices
 * (sim/device.ts), the REST API; outcomes come from the devices' own reports.
 */
describe('rollouts in waves (npm start, simulated devices)', function () {
  this.timeout(180_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  const fleets: RunningFleet[] = [];

  const env = { TB_QUEUE_CORE_OTA_PACK_SIZE: '20', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100', OTA_ROLLOUT_TICK_MS: '100', OTA_UPDATE_TIMEOUT_S: '60' };

  async function createFleet(name: string, size: number): Promise<Fleet> {
    const profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name })).id.id;
    const info = await admin.firmware(profileId, `${name}-fw`, '2.0.0', randomBytes(4096));
    const devices = [];
    for (let i = 0; i < size; i++) {
      const deviceName = `${name}-${String(i).padStart(3, '0')}`;
      const d = await admin.request<Ref>('POST', '/device', { name: deviceName, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
      const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`);
      devices.push({ id: d.id.id, name: deviceName, token: creds.credentialsId });
    }
    return { profileId, pkg: { id: info.id.id, title: `${name}-fw`, version: '2.0.0' }, devices };
  }

  const rolloutBody = (fleet: Fleet, extra: Record<string, unknown> = {}) => ({
    name: `roll out ${fleet.pkg.title}`,
    packageId: { entityType: 'OTA_PACKAGE', id: fleet.pkg.id },
    target: { deviceProfileId: { entityType: 'DEVICE_PROFILE', id: fleet.profileId } },
    waves: [{ percent: 10 }, { percent: 50 }, { percent: 100 }],
    gate: { minSuccessRate: 90, minFinished: 5, waitSeconds: 0 },
    abort: { maxFailureRate: 30, minFinished: 5 },
    window: null,
    forceDowngrade: false,
    ...extra,
  });
  const get = (id: string): Promise<RolloutJson> => admin.request<RolloutJson>('GET', `/ota/rollouts/${id}`);
  const ended = (id: string): Promise<RolloutJson> =>
    eventually(async () => ((r) => (['COMPLETED', 'ABORTED', 'CANCELLED'].includes(r.state) ? r : null))(await get(id)), 'the rollout to end', {
      timeoutMs: 120_000,
      everyMs: 200,
    });
  /** The shared attribute keys a device sees (ThingsBoard's device API). */
  const shared = async (token: string): Promise<string[]> => {
    const res = await fetch(`${server.api}/api/v1/${token}/attributes?sharedKeys=fw_title,fw_version`);
    return Object.keys(((await res.json()) as { shared?: Record<string, unknown> }).shared ?? {});
  };
  const initiated = async (deviceId: string): Promise<number> => {
    const h = await admin.request<History>('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=fw_state&startTs=0&endTs=${Date.now() + 60_000}&limit=1000`);
    return (h.fw_state ?? []).filter((p) => p.value === 'INITIATED').length;
  };

  /** The rollout series of `/metrics` (local scrapers need no token). */
  const metricLines = async (prefix: string): Promise<string[]> => (await (await fetch(`${server.api}/metrics`)).text()).split('\n').filter((l) => l.startsWith(prefix));

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-rollouts-'));
    server = await startServer(dataDir, env);
    admin = await adminClient(server.api);
  });

  afterEach(async () => {
    for (const f of fleets.splice(0)) await f.stop();
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('rolls a package out to 100 devices, 5 % failing, through every wave to COMPLETED', async () => {
    const fleet = await createFleet('wave-ok', 100);
    // One failing device in each of waves 2 and 3 twice over, none where a wave of 10 would fall below 90 %.
    const failing = new Set([15, 35, 55, 75, 95]);
    const devices = new RunningFleet(server.api, fleet, (i) => failing.has(i));
    fleets.push(devices);
    const created = await admin.request<RolloutJson>('POST', '/ota/rollouts', rolloutBody(fleet));
    expect(created.state).to.equal('DRAFT');
    const started = await admin.request<RolloutJson>('POST', `/ota/rollouts/${created.id.id}/start`);
    expect(started.state).to.equal('RUNNING');
    expect(started.waves.map((w) => w.devices)).to.deep.equal([10, 40, 50]);

    const done = await ended(created.id.id);
    expect(done.state, JSON.stringify(done)).to.equal('COMPLETED');
    expect(done.reason).to.equal(null);
    expect(done.waves.map((w) => w.state)).to.deep.equal(['PASSED', 'PASSED', 'PASSED']);
    expect(done.waves.map((w) => [w.updated, w.failed])).to.deep.equal([
      [10, 0],
      [38, 2],
      [47, 3],
    ]);
    expect(await metricLines('ota_rollouts{')).to.include.members([
      `ota_rollouts{tenant="${done.tenantId.id}",state="COMPLETED"} 1`,
      `ota_rollouts{tenant="${done.tenantId.id}",state="RUNNING"} 0`,
    ]);
    const results = await devices.results;
    expect(results.filter((r) => r.phase === 'updated')).to.have.length(95);
    expect(results.filter((r) => r.phase === 'failed' && r.intended)).to.have.length(5);
  });

  it('aborts in the first wave with 40 % failing; the other devices are never notified', async () => {
    const fleet = await createFleet('wave-bad', 100);
    const devices = new RunningFleet(server.api, fleet, (i) => i % 5 < 2);
    fleets.push(devices);
    const created = await admin.request<RolloutJson>('POST', '/ota/rollouts', rolloutBody(fleet));
    await admin.request('POST', `/ota/rollouts/${created.id.id}/start`);

    const done = await ended(created.id.id);
    expect(done.state).to.equal('ABORTED');
    expect(done.reason).to.match(/^failure rate \d+(\.\d)? % \(\d+ of \d+ finished\) reached the abort threshold of 30 %$/);
    expect(done.waves.map((w) => w.state)).to.deep.equal(['FAILED', 'PENDING', 'PENDING']);
    expect(done.waves[1]?.updated).to.equal(0);
    // Nothing is left in the queue to tell anyone later.
    await eventually(async () => (await admin.request<{ queue: { depth: number } }>('GET', '/ota/metrics')).queue.depth === 0, 'an empty queue');
    const late = fleet.devices.slice(10);
    expect(late.filter((d) => devices.notified.has(d.name))).to.deep.equal([]);
    for (const d of late.slice(0, 20)) {
      expect(await shared(d.token)).to.not.include('fw_title');
      expect(await initiated(d.id)).to.equal(0);
    }
    expect(devices.notified.size).to.be.at.most(10);
  });

  it('pauses, survives a restart while paused, resumes and completes; each device notified once', async () => {
    const fleet = await createFleet('wave-restart', 20);
    // Slow pacing, so that pausing finds devices still in the queue.
    await stopServer(server);
    server = await startServer(dataDir, { ...env, TB_QUEUE_CORE_OTA_PACK_SIZE: '2', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '1000' });
    admin = await adminClient(server.api);
    let devices = new RunningFleet(server.api, fleet, () => false);
    fleets.push(devices);
    const created = await admin.request<RolloutJson>(
      'POST',
      '/ota/rollouts',
      rolloutBody(fleet, { waves: [{ count: 10 }, { count: 10 }], gate: { minSuccessRate: 100, minFinished: 10, waitSeconds: 0 } }),
    );
    await admin.request('POST', `/ota/rollouts/${created.id.id}/start`);
    await eventually(() => devices.count('updated') >= 2, 'two devices updated', { timeoutMs: 30_000 });
    const paused = await admin.request<RolloutJson>('POST', `/ota/rollouts/${created.id.id}/pause`);
    expect(paused.state).to.equal('PAUSED');
    // The devices already told finish; the ones still queued were taken back.
    const settled = await eventually(async () => ((r) => (r.waves[0]?.inProgress === 0 ? r : null))(await get(created.id.id)), 'wave 1 settled', {
      everyMs: 200,
      timeoutMs: 30_000,
    });
    const firstWave = settled.waves[0] as WaveJson;
    expect(firstWave.pending, JSON.stringify(firstWave)).to.be.greaterThan(0);
    expect(firstWave.updated + firstWave.pending).to.equal(10);
    const updatedBefore = firstWave.updated;
    await eventually(() => devices.count('updated') === updatedBefore, 'the devices to have finished');
    await devices.stop();

    await stopServer(server);
    server = await startServer(dataDir, env);
    admin = await adminClient(server.api);
    const afterRestart = await get(created.id.id);
    expect(afterRestart.state).to.equal('PAUSED');
    const series = `tenant="${afterRestart.tenantId.id}",rollout="${created.id.id}",name="roll out wave-restart-fw"`;
    expect(await metricLines('ota_rollout_current_wave{')).to.include(`ota_rollout_current_wave{${series}} 1`);
    expect(await metricLines('ota_rollout_devices{')).to.include(`ota_rollout_devices{${series},status="PENDING"} ${10 + 10 - updatedBefore}`);
    expect(afterRestart.waves[0]).to.include({ state: 'RUNNING', updated: updatedBefore, pending: 10 - updatedBefore });
    expect((await admin.request<{ queue: { depth: number } }>('GET', '/ota/metrics')).queue.depth).to.equal(0);

    const done = new Set(fleet.devices.filter((d) => devices.phases.get(d.name) === 'updated').map((d) => d.name));
    devices = new RunningFleet(
      server.api,
      fleet,
      () => false,
      (name) => !done.has(name),
    );
    fleets.push(devices);
    expect((await admin.request<RolloutJson>('POST', `/ota/rollouts/${created.id.id}/resume`)).state).to.equal('RUNNING');
    const finished = await ended(created.id.id);
    expect(finished.state).to.equal('COMPLETED');
    expect(finished.waves.map((w) => w.updated)).to.deep.equal([10, 10]);
    for (const d of fleet.devices) expect(await initiated(d.id), d.name).to.equal(1);
  });
});
