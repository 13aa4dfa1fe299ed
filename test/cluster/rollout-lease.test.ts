/**
 * Two engines on one PostgreSQL database, both driving rollouts: each running rollout is driven by
 * one of them (its lease), so every device of a wave is assigned once; when that instance stops,
 * the other takes the rollout over. Runs in the PostgreSQL run only (.mocharc.postgres.json).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { OtaEngine } from '../../server/engine';
import type { DeviceId, TenantId } from '../../server/ids';
import { eventually } from '../support/eventually';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { quietLogger } from '../support/api-harness';

describe('rollouts driven once by two instances on one PostgreSQL', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  const dirs: string[] = [];
  const engines: OtaEngine[] = [];

  const open = async (): Promise<OtaEngine> => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-rollout-lease-'));
    dirs.push(dataDir);
    const engine = await OtaEngine.open({ dataDir, databaseUrl: database.url, http: false, admin: { password: 'lease-test-password' }, logger: quietLogger, rolloutTickMs: 50 });
    engines.push(engine);
    return engine;
  };

  before(async () => {
    database = await createTestDatabase();
  });

  after(async () => {
    for (const e of engines) await e.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    await database?.drop();
  });

  it('assigns every device of a wave once, from one instance, and the other takes over when it stops', async () => {
    const a = await open();
    const b = await open();
    const tenantId = a.bootstrap.admin.tenantId as TenantId;
    const profile = await a.profiles.save(tenantId, { name: 'lease-fleet' });
    const info = await a.packages.saveInfo(tenantId, { deviceProfileId: profile.id, type: 'FIRMWARE', title: 'lease-fw', version: '2.0.0' });
    const staged = await a.packages.stage(Readable.from([Buffer.from('firmware')]), 'SHA256');
    const pkg = await a.packages.attachData(tenantId, info.id, staged, {
      fileName: 'fw.bin',
      contentType: 'application/octet-stream',
      checksumAlgorithm: 'SHA256',
      checksum: null,
    });
    const devices: DeviceId[] = [];
    for (let i = 0; i < 20; i++) devices.push((await a.devices.save(tenantId, { name: `lease-${String(i).padStart(2, '0')}`, deviceProfileId: { id: profile.id } })).id);

    // Who saved each device with the package: the instance driving the rollout.
    const assignedBy = new Map<string, string[]>();
    for (const [name, engine] of [
      ['a', a],
      ['b', b],
    ] as const) {
      engine.events.on('deviceSaved', ({ before, after }) => {
        if (after.firmwareId === pkg.id && before?.firmwareId !== pkg.id) assignedBy.set(after.id, [...(assignedBy.get(after.id) ?? []), name]);
      });
    }

    const rollout = await a.rollouts.create(tenantId, {
      name: 'lease',
      packageId: pkg.id,
      spec: {
        target: { deviceProfileId: profile.id },
        waves: [{ count: 10 }, { count: 10 }],
        gate: { minSuccessRate: 100, minFinished: 1, waitSeconds: 0 },
        abort: { maxFailureRate: 100, minFinished: 1 },
        window: null,
        forceDowngrade: false,
      },
    });
    await b.rollouts.start(tenantId, rollout.id);
    await eventually(() => assignedBy.size === 10, 'the first wave assigned', { timeoutMs: 20_000 });
    const first = [...assignedBy.values()];
    expect(
      first.every((by) => by.length === 1),
      JSON.stringify(first),
    ).to.equal(true);
    const driver = first[0]?.[0] as 'a' | 'b';
    expect(first.every((by) => by[0] === driver)).to.equal(true);

    // The driving instance stops (its lease given up); its first wave's devices report UPDATED.
    const [gone, other] = driver === 'a' ? [a, b] : [b, a];
    await gone.close();
    for (const id of devices.slice(0, 10)) {
      await other.pipeline.tracker.handleUplink({
        tenantId,
        deviceId: id,
        deviceName: id,
        transport: 'HTTP',
        ts: Date.now(),
        kind: 'telemetry',
        entries: [{ ts: Date.now(), values: { fw_state: 'UPDATED' } }],
      });
    }
    await eventually(() => assignedBy.size === 20, 'the second wave assigned by the other instance', { timeoutMs: 20_000 });
    const second = devices.slice(10).map((id) => assignedBy.get(id));
    expect(second).to.deep.equal(devices.slice(10).map(() => [driver === 'a' ? 'b' : 'a']));
    // The driver records a device ASSIGNED just after saving it (the event awaited above): the view once no device of the second wave is pending.
    const view = await eventually(
      async () => {
        const v = await other.rollouts.view(await other.rollouts.get(tenantId, rollout.id));
        return v.waveViews[1]?.pending === 0 ? v : undefined;
      },
      'the second wave recorded',
      { timeoutMs: 20_000 },
    );
    expect(view.waveViews.map((w) => [w.state, w.updated, w.inProgress])).to.deep.equal([
      ['PASSED', 10, 0],
      ['RUNNING', 0, 10],
    ]);
  });
});
