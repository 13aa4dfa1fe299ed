import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { DeviceId, TenantId } from '../../server/ids';
import type { TelemetryValue } from '../../server/store/telemetry';
import { ADMIN_USER, ApiHarness, expectError, ok, unique, type ApiClient, type DeviceBody, type DeviceProfileBody, type PackageInfo, type PageData } from '../support/api-harness';
import { FakeTimers } from '../unit/pipeline-support';

interface RolloutBody {
  id: { entityType: string; id: string };
  name: string;
  state: string;
  reason: string | null;
  currentWave: number;
  waves: Array<{ state: string; devices: number; updated: number; failed: number; inProgress: number; pending: number; skipped: number }>;
  gate: Record<string, number>;
  abort: Record<string, number>;
  window: unknown;
}

/**
 * The rollouts REST API (issue 14) on a real engine, with a clock the test moves and the driver
 * stepped by hand (`rolloutDriver.tick()`). No queue consumer runs here, so assigned devices stay
 * in the queue: what the window and take-back tests look at.
 */
describe('admin API: rollouts (/api/ota/rollouts)', () => {
  let h: ApiHarness;
  let timers: FakeTimers;
  /** Logged in again after the clock jumps past the token's lifetime. */
  let admin: ApiClient;
  // 2026-01-16 is a Friday; 12:00 UTC.
  const FRIDAY_NOON = Date.parse('2026-01-16T12:00:00Z');

  before(async () => {
    timers = new FakeTimers(FRIDAY_NOON);
    h = await ApiHarness.start({ timers, rolloutTickMs: false });
    admin = h.admin;
  });
  /** Moves the engine's clock to `iso`; the admin's token (issued on the engine's clock) is renewed. */
  const clockTo = async (iso: string): Promise<void> => {
    await timers.advance(Date.parse(iso) - timers.now());
    admin = await h.login(ADMIN_USER, h.password);
  };
  after(async () => h?.close());

  async function fleet(n: number): Promise<{ profile: DeviceProfileBody; pkg: PackageInfo; devices: DeviceBody[] }> {
    const profile = await admin.createProfile();
    const pkg = await admin.createPackageWithData({ deviceProfileId: profile.id.id, version: '2.0.0' }, randomBytes(64));
    const devices: DeviceBody[] = [];
    for (let i = 0; i < n; i++) devices.push(await admin.createDevice({ name: `${profile.name}-${String(i).padStart(2, '0')}`, deviceProfileId: profile.id }));
    return { profile, pkg, devices };
  }

  const body = (f: { profile: DeviceProfileBody; pkg: PackageInfo }, extra: Record<string, unknown> = {}) => ({
    name: unique('rollout'),
    packageId: f.pkg.id,
    target: { deviceProfileId: f.profile.id },
    waves: [{ percent: 50 }, { percent: 100 }],
    ...extra,
  });
  const create = async (b: unknown): Promise<RolloutBody> => ok<RolloutBody>(await admin.post('/api/ota/rollouts', b));
  const command = async (id: string, c: string, b: unknown = {}): Promise<RolloutBody> => ok<RolloutBody>(await admin.post(`/api/ota/rollouts/${id}/${c}`, b));
  const get = async (id: string): Promise<RolloutBody> => ok<RolloutBody>(await admin.get(`/api/ota/rollouts/${id}`));
  const depth = (): Promise<number> => h.engine.pipeline.queue.depth();
  const ownFirmware = async (d: DeviceBody): Promise<string | null> => ok<DeviceBody>(await admin.get(`/api/device/${d.id.id}`)).firmwareId?.id ?? null;
  /** A device reports a state, as any transport hands it to the state tracker. */
  const report = (d: DeviceBody, values: Record<string, TelemetryValue>) =>
    h.engine.pipeline.tracker.handleUplink({
      tenantId: d.tenantId.id as TenantId,
      deviceId: d.id.id as DeviceId,
      deviceName: d.name,
      transport: 'HTTP',
      ts: timers.now(),
      kind: 'telemetry',
      entries: [{ ts: timers.now(), values }],
    });
  const tick = async (): Promise<void> => {
    await h.engine.rolloutDriver.tick();
    await h.engine.pipeline.assignment.idle();
  };

  it('creates a DRAFT with the default gate and abort rule, and reads it back alone and in a page', async () => {
    const f = await fleet(2);
    const created = await create(body(f));
    expect(created).to.include({ state: 'DRAFT', reason: null, currentWave: 0 });
    expect(created.id.entityType).to.equal('OTA_ROLLOUT');
    expect(created.gate).to.deep.equal({ minSuccessRate: 100, minFinished: 1, waitSeconds: 0 });
    expect(created.abort).to.deep.equal({ maxFailureRate: 100, minFinished: 1 });
    expect(created.window).to.equal(null);
    expect(created.waves.map((w) => w.state)).to.deep.equal(['PENDING', 'PENDING']);
    expect(await get(created.id.id)).to.deep.equal(created);
    const page = ok<PageData<RolloutBody>>(await admin.get('/api/ota/rollouts?pageSize=100&page=0&sortProperty=createdTime&sortOrder=DESC'));
    expect(page.data.map((r) => r.id.id)).to.include(created.id.id);
    // Nothing is assigned before start.
    expect(await ownFirmware(f.devices[0] as DeviceBody)).to.equal(null);
  });

  it('refuses bad bodies with ThingsBoard error JSON and creates nothing', async () => {
    const f = await fleet(1);
    const before = ok<PageData<RolloutBody>>(await admin.get('/api/ota/rollouts?pageSize=1&page=0')).totalElements;
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), waves: [] }), 400, /^Invalid request body: waves must NOT have fewer than 1 items$/, 31);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), waves: [{ percent: 120 }] }), 400, /^Invalid request body: waves\.0/);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), waves: [{ percent: 10, count: 3 }] }), 400, /^Invalid request body/);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), target: {} }), 400, /^Invalid request body: target/);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), gate: { minSuccessRate: -1 } }), 400, /^Invalid request body: gate\.minSuccessRate/);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), surprise: 1 }), 400, /must NOT have additional properties/);
    const window = { days: ['MON'], from: '22:00', to: '04:00', timeZone: 'Europe/Berlin' };
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), window: { ...window, from: '25:00' } }), 400, /^Invalid request body: window/);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), window: { ...window, days: ['FUNDAY'] } }), 400, /^Invalid request body: window/);
    expectError(await admin.post('/api/ota/rollouts', { ...body(f), window: { ...window, timeZone: 'Mars/Olympus' } }), 400, "Unknown time zone: 'Mars/Olympus'", 31);
    expectError(
      await admin.post('/api/ota/rollouts', { ...body(f), packageId: { entityType: 'OTA_PACKAGE', id: '00000000-0000-4000-8000-000000000000' } }),
      400,
      "Can't create a rollout of a non-existent package!",
    );
    expectError(
      await admin.post('/api/ota/rollouts', { ...body(f), target: { deviceIds: ['00000000-0000-4000-8000-000000000000'] } }),
      400,
      /^Device with id \[.*\] is not found!$/,
    );
    expectError(await admin.request('POST', '/api/ota/rollouts', { body: Buffer.from('{"name":'), headers: { 'Content-Type': 'application/json' } }), 400);
    expect(ok<PageData<RolloutBody>>(await admin.get('/api/ota/rollouts?pageSize=1&page=0')).totalElements).to.equal(before);
  });

  it("is tenant-scoped: another tenant's rollout is not found, and its list is its own", async () => {
    const f = await fleet(1);
    const mine = await create(body(f));
    const other = await h.otherTenant();
    expectError(await other.get(`/api/ota/rollouts/${mine.id.id}`), 404, `Rollout with id [${mine.id.id}] is not found!`, 32);
    expectError(await other.post(`/api/ota/rollouts/${mine.id.id}/start`, {}), 404);
    expect(ok<PageData<RolloutBody>>(await other.get('/api/ota/rollouts?pageSize=10&page=0')).totalElements).to.equal(0);
    // Another tenant's package is not a package of this one.
    expectError(await other.post('/api/ota/rollouts', body(f)), 400, "Can't create a rollout of a non-existent package!");
    expectError(await h.anonymous().get(`/api/ota/rollouts/${mine.id.id}`), 401);
    expect((await get(mine.id.id)).state).to.equal('DRAFT');
  });

  it('starts, pauses, resumes and cancels, refusing moves its state does not allow', async () => {
    const f = await fleet(4);
    const base = await depth();
    const r = await create(body(f));
    expectError(await admin.post(`/api/ota/rollouts/${r.id.id}/pause`, {}), 400, "Rollout is DRAFT: it can't be paused!", 31);
    const started = await command(r.id.id, 'start');
    expect(started.state).to.equal('RUNNING');
    expect(started.waves.map((w) => [w.devices, w.pending])).to.deep.equal([
      [2, 2],
      [2, 2],
    ]);
    expectError(await admin.post(`/api/ota/rollouts/${r.id.id}/start`, {}), 400, 'Rollout is RUNNING: only a DRAFT rollout can be started!');
    await tick();
    const first = await get(r.id.id);
    expect(first.waves.map((w) => [w.state, w.inProgress])).to.deep.equal([
      ['RUNNING', 2],
      ['PENDING', 0],
    ]);
    expect(await depth()).to.equal(base + 2);
    // Pausing takes the two queued devices back: out of the queue, their own slot as it was.
    expect((await command(r.id.id, 'pause')).state).to.equal('PAUSED');
    expect(await depth()).to.equal(base);
    expect(await ownFirmware(f.devices[0] as DeviceBody)).to.equal(null);
    expect((await get(r.id.id)).waves[0]).to.include({ pending: 2, inProgress: 0 });
    await tick();
    expect(await depth()).to.equal(base);
    expectError(await admin.post(`/api/ota/rollouts/${r.id.id}/pause`, {}), 400, "Rollout is PAUSED: it can't be paused!");
    expect((await command(r.id.id, 'resume')).state).to.equal('RUNNING');
    await tick();
    expect(await depth()).to.equal(base + 2);
    expect(await ownFirmware(f.devices[0] as DeviceBody)).to.equal(f.pkg.id.id);
    const cancelled = await command(r.id.id, 'cancel');
    expect(cancelled.state).to.equal('CANCELLED');
    expect(cancelled.waves[0]?.state).to.equal('FAILED');
    expect(await depth()).to.equal(base);
    expectError(await admin.post(`/api/ota/rollouts/${r.id.id}/resume`, {}), 400, 'Rollout is CANCELLED: only a PAUSED rollout can be resumed!');
    expectError(await admin.post(`/api/ota/rollouts/${r.id.id}/abort`, { rollback: 'yes' }), 400, /^Invalid request body: rollback/);
    expectError(await admin.get('/api/ota/rollouts/not-a-uuid'), 404);
  });

  it('moves to the next wave when the gate passes, after waitSeconds, and completes', async () => {
    const f = await fleet(4);
    const r = await create(body(f, { gate: { minSuccessRate: 50, minFinished: 2, waitSeconds: 60 } }));
    await command(r.id.id, 'start');
    await tick();
    const [a, b, c] = f.devices as [DeviceBody, DeviceBody, DeviceBody];
    await report(a, { fw_state: 'UPDATED' });
    await tick();
    expect((await get(r.id.id)).waves.map((w) => w.state)).to.deep.equal(['RUNNING', 'PENDING']);
    await report(b, { fw_state: 'FAILED', fw_error: 'flash' });
    await tick();
    expect(
      (await get(r.id.id)).waves.map((w) => w.state),
      'the gate passed, waiting 60 s',
    ).to.deep.equal(['RUNNING', 'PENDING']);
    await timers.advance(60_000);
    await tick();
    const second = await get(r.id.id);
    expect(second.waves.map((w) => w.state)).to.deep.equal(['PASSED', 'RUNNING']);
    expect(second.waves[0]).to.include({ updated: 1, failed: 1 });
    expect(second.currentWave).to.equal(1);
    await report(c, { fw_state: 'UPDATED' });
    await report(f.devices[3] as DeviceBody, { fw_state: 'UPDATED' });
    await tick();
    await timers.advance(60_000);
    await tick();
    const done = await get(r.id.id);
    expect(done.state).to.equal('COMPLETED');
    expect(done.waves.map((w) => w.state)).to.deep.equal(['PASSED', 'PASSED']);
  });

  it('stops with the reason when a finished wave falls below the gate', async () => {
    const f = await fleet(4);
    const r = await create(body(f, { gate: { minSuccessRate: 100, minFinished: 1, waitSeconds: 0 }, abort: { maxFailureRate: 100, minFinished: 100 } }));
    await command(r.id.id, 'start');
    await tick();
    await report(f.devices[0] as DeviceBody, { fw_state: 'UPDATED' });
    await report(f.devices[1] as DeviceBody, { fw_state: 'FAILED' });
    await tick();
    const stopped = await get(r.id.id);
    expect(stopped.state).to.equal('ABORTED');
    expect(stopped.reason).to.equal('gate failed: success rate 50 % (1 of 2 finished) is below 100 %');
    expect(stopped.waves.map((w) => [w.state, w.pending])).to.deep.equal([
      ['FAILED', 0],
      ['PENDING', 2],
    ]);
    expect(await ownFirmware(f.devices[2] as DeviceBody)).to.equal(null);
  });

  it('aborts with rollback: updated devices get their previous package again, queued ones are taken back', async () => {
    const f = await fleet(4);
    const previous = await admin.createPackageWithData({ deviceProfileId: f.profile.id.id, version: '1.0.0' }, randomBytes(64));
    // Device 0 had its own 1.0.0; the others followed the profile (no package).
    ok(await admin.post(`/api/device/${f.devices[0]?.id.id}`, { firmwareId: previous.id }));
    await h.engine.pipeline.assignment.idle();
    const r = await create(body(f, { waves: [{ count: 3 }, { count: 1 }] }));
    await command(r.id.id, 'start');
    await tick();
    await report(f.devices[0] as DeviceBody, { fw_state: 'UPDATED' });
    await report(f.devices[1] as DeviceBody, { fw_state: 'UPDATED' });
    const aborted = await command(r.id.id, 'abort', { rollback: true });
    expect(aborted.state).to.equal('ABORTED');
    expect(aborted.reason).to.equal('2 updated device(s) rolled back');
    await h.engine.pipeline.assignment.idle();
    expect(await ownFirmware(f.devices[0] as DeviceBody)).to.equal(previous.id.id);
    expect(await ownFirmware(f.devices[1] as DeviceBody)).to.equal(null);
    // Device 2 was still queued: taken back, not rolled back; device 3 never assigned.
    expect(await ownFirmware(f.devices[2] as DeviceBody)).to.equal(null);
    expect(await ownFirmware(f.devices[3] as DeviceBody)).to.equal(null);
    expectError(await admin.post(`/api/ota/rollouts/${r.id.id}/abort`, {}), 400, "Rollout is ABORTED: it can't be aborted!");
  });

  it('refuses to start a downgrade unless forceDowngrade is set (the downgrade guard)', async () => {
    const f = await fleet(2);
    await report(f.devices[1] as DeviceBody, { current_fw_title: 'fw', current_fw_version: '3.0.0' });
    const r = await create(body(f));
    expectError(
      await admin.post(`/api/ota/rollouts/${r.id.id}/start`, {}),
      400,
      `Can't assign firmware version 2.0.0: it is a downgrade, device '${f.devices[1]?.name}' runs 3.0.0! Save with forceDowngrade=true to assign it anyway.`,
      31,
    );
    expect((await get(r.id.id)).state).to.equal('DRAFT');
    const forced = await create(body(f, { forceDowngrade: true }));
    expect((await command(forced.id.id, 'start')).state).to.equal('RUNNING');
    await command(forced.id.id, 'cancel');
  });

  it('targets a list of devices, or a profile filtered by name', async () => {
    const f = await fleet(4);
    const byList = await command((await create(body(f, { target: { deviceIds: [f.devices[3]?.id.id, f.devices[1]?.id] }, waves: [{ percent: 100 }] }))).id.id, 'start');
    expect(byList.waves[0]?.devices).to.equal(2);
    const byName = await command(
      (await create(body(f, { target: { deviceProfileId: f.profile.id, nameFilter: `${f.profile.name}-0`.toUpperCase() }, waves: [{ count: 2 }, { count: 10 }] }))).id.id,
      'start',
    );
    expect(byName.waves.map((w) => w.devices)).to.deep.equal([2, 2]);
    const none = await create(body(f, { target: { deviceProfileId: f.profile.id, nameFilter: 'nobody' } }));
    expectError(await admin.post(`/api/ota/rollouts/${none.id.id}/start`, {}), 400, 'The rollout target has no devices!');
    for (const r of [byList, byName]) await command(r.id.id, 'cancel');
  });

  it('notifies no device outside the maintenance window (crossing midnight, in its time zone)', async () => {
    const f = await fleet(2);
    // Friday 22:00 to Saturday 04:00 in Berlin (UTC+1 in January); the clock says Friday 12:00 UTC.
    const window = { days: ['FRI'], from: '22:00', to: '04:00', timeZone: 'Europe/Berlin' };
    const base = await depth();
    const r = await create(body(f, { window, waves: [{ percent: 100 }] }));
    await command(r.id.id, 'start');
    await tick();
    const waiting = await get(r.id.id);
    expect(waiting).to.include({ state: 'RUNNING', reason: 'waiting for the maintenance window' });
    expect(waiting.waves[0]).to.include({ state: 'PENDING', pending: 2 });
    expect(await depth()).to.equal(base);
    expect(await ownFirmware(f.devices[0] as DeviceBody)).to.equal(null);

    await clockTo('2026-01-16T21:00:00Z'); // Friday 22:00 in Berlin
    await tick();
    const open = await get(r.id.id);
    expect(open.reason).to.equal(null);
    expect(open.waves[0]).to.include({ state: 'RUNNING', inProgress: 2 });
    expect(await depth()).to.equal(base + 2);

    await clockTo('2026-01-17T03:00:00Z'); // Saturday 04:00 in Berlin: closed
    await tick();
    const closed = await get(r.id.id);
    expect(closed.reason).to.equal('outside the maintenance window');
    expect(closed.waves[0]).to.include({ state: 'RUNNING', inProgress: 0, pending: 2 });
    expect(await depth()).to.equal(base);
    expect(await ownFirmware(f.devices[0] as DeviceBody)).to.equal(null);

    await clockTo('2026-01-23T21:30:00Z'); // the next Friday night
    await tick();
    expect((await get(r.id.id)).waves[0]).to.include({ inProgress: 2 });
    expect(await depth()).to.equal(base + 2);
    await command(r.id.id, 'cancel');
  });
});
