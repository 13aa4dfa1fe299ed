/**
 * Several instances on one PostgreSQL database share the notify queue: each its own store (pool,
 * data directory) and NotifyQueue, as two `npm start` processes have. Real timers, real database.
 */
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { newId, type DeviceId, type DeviceProfileId, type TenantId } from '../../server/ids';
import { deviceRow } from '../support/device-row';
import { packageRow } from '../support/package-row';
import { NotifyQueue, type AssignmentEvent } from '../../server/pipeline/notify-queue';
import type { OtaPackage } from '../../server/store/ota-packages';
import { openStore } from '../../server/store/open-store';
import type { Store } from '../../server/store/store';
import { realTimers } from '../../server/timers';
import { eventually } from '../support/eventually';
import { emptyTestDatabase, withTestDatabase } from '../support/postgres';

describe('several instances on one PostgreSQL: the shared notify queue', function () {
  this.timeout(60_000);
  const database = withTestDatabase();
  const opened: Array<{ store: Store; dir: string; closed: boolean }> = [];
  let tenantId: TenantId;
  let pkg: OtaPackage;

  async function instance(): Promise<Store> {
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-instance-'));
    const store = await openStore({ dataDir: dir, databaseUrl: database().url });
    opened.push({ store, dir, closed: false });
    return store;
  }

  /** What a kill -9 leaves: the instance's connections gone, its claims still in the table. */
  async function kill(store: Store): Promise<void> {
    const entry = opened.find((o) => o.store === store);
    if (entry) entry.closed = true;
    await store.close();
  }

  async function devices(store: Store, n: number): Promise<DeviceId[]> {
    const profileId = newId<'DEVICE_PROFILE'>() as DeviceProfileId;
    await store.profiles.insert({
      id: profileId,
      tenantId,
      name: `p-${profileId}`,
      description: null,
      isDefault: false,
      firmwareId: null,
      softwareId: null,
      createdTime: 1,
      version: 1,
      extra: {},
    });
    const ids: DeviceId[] = [];
    for (let i = 0; i < n; i++) {
      const d = deviceRow(tenantId, profileId, { createdTime: i });
      await store.devices.insert(d);
      ids.push(d.id);
    }
    if (!pkg) {
      pkg = packageRow(tenantId, profileId);
      await store.packages.insert(pkg);
    }
    return ids;
  }

  const events = (ids: readonly DeviceId[]): AssignmentEvent[] => ids.map((deviceId) => ({ tenantId, deviceId, type: 'FIRMWARE', packageId: pkg.id, ts: Date.now() }));

  beforeEach(async () => {
    await emptyTestDatabase(database().url);
    const store = await instance();
    tenantId = (await store.tenants.createTenant('cluster')).id;
    pkg = undefined as unknown as OtaPackage;
  });

  afterEach(async () => {
    for (const o of opened.splice(0)) {
      if (!o.closed) await o.store.close();
      await rm(o.dir, { recursive: true, force: true });
    }
  });

  it('two consumers releasing at once hand every device out exactly once, between them', async () => {
    const [a, b] = [opened[0]!.store, await instance()];
    const ids = await devices(a, 120);
    const qa = new NotifyQueue(a, undefined, 30_000);
    const qb = new NotifyQueue(b, undefined, 30_000);
    await qa.enqueueAll(events(ids));
    const byA: DeviceId[] = [];
    const byB: DeviceId[] = [];
    // Small bursts close together, so both instances claim while the other holds rows.
    qa.start({ packSize: 5, intervalMs: 5, mode: 'burst' }, (evs) => byA.push(...evs.map((e) => e.deviceId)));
    qb.start({ packSize: 5, intervalMs: 5, mode: 'burst' }, (evs) => byB.push(...evs.map((e) => e.deviceId)));
    try {
      await eventually(async () => byA.length + byB.length >= ids.length, 'every device released', { timeoutMs: 30_000 });
      await eventually(async () => (await a.queue.depth()) === 0, 'the queue empty', { timeoutMs: 5000 });
    } finally {
      qa.stop();
      qb.stop();
    }
    expect([...byA, ...byB].sort()).to.deep.equal([...ids].sort());
    expect(byA.length, 'instance A released some').to.be.greaterThan(0);
    expect(byB.length, 'instance B released some').to.be.greaterThan(0);
  });

  it('an instance that queues rows wakes the consumers of the others: one that queued nothing releases them', async () => {
    const [a, b] = [opened[0]!.store, await instance()];
    const ids = await devices(a, 50);
    const qa = new NotifyQueue(a, undefined, 30_000);
    // B never looks again by itself (no poll of held rows): only A's word can make it release.
    const qb = new NotifyQueue(b, { ...realTimers, setTimeout: (fn, ms) => (ms > 0 ? null : setTimeout(fn, ms)) }, 30_000);
    const byB: DeviceId[] = [];
    qb.start({ packSize: 1000, intervalMs: 0, mode: 'spaced' }, (evs) => byB.push(...evs.map((e) => e.deviceId)));
    try {
      // B's first look (on an empty queue) is over before A queues anything.
      await new Promise((resolve) => setTimeout(resolve, 0));
      await b.transaction(async () => undefined);
      await qa.enqueueAll(events(ids));
      await eventually(async () => byB.length >= ids.length, 'B to release every device', { timeoutMs: 10_000 });
    } finally {
      qb.stop();
    }
    expect([...byB].sort()).to.deep.equal([...ids].sort());
  });

  it('holds the configured pace for the whole cluster: two instances release at the rate of one', async () => {
    const [a, b] = [opened[0]!.store, await instance()];
    const ids = await devices(a, 40);
    const qa = new NotifyQueue(a, undefined, 30_000);
    const qb = new NotifyQueue(b, undefined, 30_000);
    await qa.enqueueAll(events(ids));
    // 10 per second, spaced: one release every 100 ms for the cluster (each instance alone would release that often too).
    const pacing = { packSize: 10, intervalMs: 1000, mode: 'spaced' } as const;
    const at: Array<{ by: 'A' | 'B'; t: number }> = [];
    qa.start(pacing, (evs) => evs.forEach(() => at.push({ by: 'A', t: Date.now() })));
    qb.start(pacing, (evs) => evs.forEach(() => at.push({ by: 'B', t: Date.now() })));
    try {
      await eventually(() => at.length >= 15, '15 devices released', { timeoutMs: 20_000 });
    } finally {
      qa.stop();
      qb.stop();
    }
    // 15 releases take at least 14 gaps of 100 ms (less a little for the clocks' granularity); paced per instance, about half that.
    const span = (at[14] as { t: number }).t - (at[0] as { t: number }).t;
    expect(span, `15 releases in ${span} ms by ${at.map((r) => r.by).join('')}`).to.be.at.least(1300);
  });

  it('gives what a killed instance claimed and never released to the others once its lease ran out', async () => {
    const [a, b] = [opened[0]!.store, await instance()];
    const ids = await devices(a, 30);
    await new NotifyQueue(a).enqueueAll(events(ids));
    // Instance A claims ten rows, then dies before it acks them.
    const held = await a.queue.claim(10, Date.now(), 1500);
    expect(held).to.have.length(10);
    await kill(a);
    const released: DeviceId[] = [];
    const qb = new NotifyQueue(b, undefined, 1500);
    qb.start({ packSize: 100, intervalMs: 0, mode: 'spaced' }, (evs) => released.push(...evs.map((e) => e.deviceId)));
    try {
      await eventually(async () => released.length === 20, 'the free rows released at once', { timeoutMs: 10_000 });
      expect(released).to.not.include.members(held.map((h) => h.deviceId).slice(0, 1));
      await eventually(async () => released.length === 30, "the killed instance's rows released after the lease", { timeoutMs: 15_000 });
    } finally {
      qb.stop();
    }
    expect([...released].sort()).to.deep.equal([...ids].sort());
    expect(await b.queue.depth()).to.equal(0);
  });
});
