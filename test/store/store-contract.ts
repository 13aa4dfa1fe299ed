import { expect } from 'chai';
import { newId, type DeviceId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../../server/ids';
import { deviceRow } from '../support/device-row';
import { packageRow } from '../support/package-row';
import type { AssignmentEvent } from '../../server/store/notify-queue-repository';
import type { OtaPackage } from '../../server/store/ota-packages';
import type { Rollout, RolloutId } from '../../server/store/rollouts';
import type { Store } from '../../server/store/store';

/** A store to test, and how to end it (close it, remove what it made). */
export interface OpenedStore {
  store: Store;
  dispose(): Promise<void>;
}

/**
 * What every store implementation must do, whatever database is under it. Call it once per
 * implementation: `describeStoreContract('PostgreSQL', openPostgresStore)`.
 */
export function describeStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  describe(`store contract: ${name}`, function () {
    let opened: OpenedStore;
    let store: Store;
    let tenantId: TenantId;
    let profileId: DeviceProfileId;
    let pkg: OtaPackage;

    beforeEach(async () => {
      opened = await open();
      store = opened.store;
      tenantId = (await store.tenants.createTenant('contract')).id;
      profileId = newId<'DEVICE_PROFILE'>();
      await store.profiles.insert({
        id: profileId,
        tenantId,
        name: 'default',
        description: null,
        isDefault: true,
        firmwareId: null,
        softwareId: null,
        createdTime: 1,
        version: 1,
        extra: {},
      });
      pkg = packageRow(tenantId, profileId);
      await store.packages.insert(pkg);
    });
    afterEach(() => opened.dispose());

    async function devices(n: number, tenant = tenantId, profile = profileId): Promise<DeviceId[]> {
      const ids: DeviceId[] = [];
      for (let i = 0; i < n; i++) {
        const d = deviceRow(tenant, profile, { createdTime: i });
        await store.devices.insert(d);
        ids.push(d.id);
      }
      return ids;
    }
    const event = (deviceId: DeviceId, ts: number, packageId: OtaPackageId | null = pkg.id): AssignmentEvent => ({ tenantId, deviceId, type: 'FIRMWARE', packageId, ts });

    describe('notify queue', () => {
      it('claims in the order queued, up to the limit', async () => {
        const ids = await devices(5);
        await store.queue.put(ids.map((id, i) => event(id, 100 + i)));
        const claimed = await store.queue.claim(3, 1000, 30_000);
        expect(claimed.map((c) => c.deviceId)).to.deep.equal(ids.slice(0, 3));
        expect(claimed[0]).to.include({ tenantId, type: 'FIRMWARE', packageId: pkg.id, ts: 100 });
      });

      it('does not hand a claimed row to a second claim while its lease runs', async () => {
        const ids = await devices(4);
        await store.queue.put(ids.map((id) => event(id, 1)));
        const first = await store.queue.claim(2, 1000, 30_000);
        const second = await store.queue.claim(10, 1001, 30_000);
        expect(second.map((c) => c.deviceId)).to.deep.equal(ids.slice(2));
        expect(first.map((c) => c.deviceId)).to.deep.equal(ids.slice(0, 2));
      });

      it('hands a claimed row to another claim once its lease ran out (a consumer died)', async () => {
        const [id] = await devices(1);
        await store.queue.put([event(id!, 1)]);
        expect(await store.queue.claim(1, 1000, 500)).to.have.length(1);
        expect(await store.queue.claim(1, 1500, 500), 'at the end of the lease it is still held').to.have.length(0);
        expect((await store.queue.claim(1, 1501, 500)).map((c) => c.deviceId)).to.deep.equal([id]);
      });

      it('removes acked rows and gives released rows back in their place', async () => {
        const ids = await devices(3);
        await store.queue.put(ids.map((id) => event(id, 1)));
        const claimed = await store.queue.claim(3, 1000, 30_000);
        await store.queue.ack(claimed.slice(0, 1));
        await store.queue.release(claimed.slice(1));
        expect(await store.queue.depth()).to.equal(2);
        expect((await store.queue.claim(10, 1001, 30_000)).map((c) => c.deviceId)).to.deep.equal(ids.slice(1));
      });

      it('keeps a newer event that replaced a claimed one when the old claim is acked', async () => {
        const [id] = await devices(1);
        await store.queue.put([event(id!, 1)]);
        const [old] = await store.queue.claim(1, 1000, 30_000);
        await store.queue.put([event(id!, 2)]);
        await store.queue.ack([old!]);
        const again = await store.queue.claim(1, 1001, 30_000);
        expect(again.map((c) => c.ts)).to.deep.equal([2]);
      });

      it('holds one row per device and type: a newer event replaces the queued one', async () => {
        const [id] = await devices(1);
        await store.queue.put([event(id!, 1)]);
        await store.queue.put([event(id!, 2)]);
        expect(await store.queue.depth()).to.equal(1);
        expect((await store.queue.claim(5, 1000, 1)).map((c) => c.ts)).to.deep.equal([2]);
      });

      it('counts the depth per tenant and removes a device row on request', async () => {
        const ids = await devices(2);
        const other = (await store.tenants.createTenant('other')).id;
        const otherProfile = newId<'DEVICE_PROFILE'>();
        await store.profiles.insert({
          id: otherProfile,
          tenantId: other,
          name: 'default',
          description: null,
          isDefault: true,
          firmwareId: null,
          softwareId: null,
          createdTime: 1,
          version: 1,
          extra: {},
        });
        const [theirs] = await devices(1, other, otherProfile);
        await store.queue.put([...ids.map((id) => event(id, 1)), { tenantId: other, deviceId: theirs!, type: 'FIRMWARE', packageId: null, ts: 1 }]);
        expect([await store.queue.depth(), await store.queue.depth(tenantId), await store.queue.depth(other)]).to.deep.equal([3, 2, 1]);
        await store.queue.remove(ids[0]!, 'FIRMWARE');
        await store.queue.remove(ids[1]!, 'SOFTWARE');
        expect(await store.queue.depth(tenantId)).to.equal(1);
      });
    });

    describe('unit of work', () => {
      it('commits every repository written in the transaction together', async () => {
        const [id] = await devices(1);
        const answer = await store.transaction(async (tx) => {
          await tx.queue.put([event(id!, 5)]);
          await tx.states.setState(id!, tenantId, 'FIRMWARE', 'QUEUED', 5, null);
          await tx.targets.put([{ deviceId: id!, type: 'FIRMWARE', packageId: pkg.id, ts: 5, notified: false }]);
          await tx.attributes.save(id!, 'SHARED', { fw_title: 'fw' }, 5);
          return 'done';
        });
        expect(answer).to.equal('done');
        expect(await store.queue.depth()).to.equal(1);
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ state: 'QUEUED', stateTs: 5 });
        expect(await store.targets.get(id!, 'FIRMWARE')).to.deep.include({ packageId: pkg.id, ts: 5, notified: false });
        expect(await store.attributes.get(id!, 'SHARED')).to.deep.equal({ fw_title: 'fw' });
      });

      it('rolls every write back when the work throws, and passes the error on', async () => {
        const [id] = await devices(1);
        const failed = await store
          .transaction(async (tx) => {
            await tx.queue.put([event(id!, 5)]);
            await tx.states.setState(id!, tenantId, 'FIRMWARE', 'QUEUED', 5, null);
            await tx.telemetry.save(id!, [{ ts: 5, values: { fw_state: 'QUEUED' } }]);
            throw new Error('no');
          })
          .then(
            () => null,
            (err: Error) => err.message,
          );
        expect(failed).to.equal('no');
        expect(await store.queue.depth()).to.equal(0);
        expect(await store.states.get(id!, 'FIRMWARE')).to.equal(null);
        expect(await store.telemetry.latest(id!)).to.deep.equal({});
      });

      for (const lane of [undefined, 'enqueue'] as const) {
        it(`runs transactions started together one after the other, each whole (lane ${lane ?? 'main, the default'})`, async () => {
          const ids = await devices(2);
          const order: string[] = [];
          await Promise.all(
            ids.map((id, i) =>
              store.transaction(async (tx) => {
                order.push(`begin ${i}`);
                await tx.queue.put([event(id, i)]);
                await tx.states.setState(id, tenantId, 'FIRMWARE', 'QUEUED', i, null);
                order.push(`end ${i}`);
              }, lane),
            ),
          );
          expect(order).to.deep.equal(['begin 0', 'end 0', 'begin 1', 'end 1']);
          expect(await store.queue.depth()).to.equal(2);
        });
      }

      it('goes on after a failed transaction', async () => {
        const [id] = await devices(1);
        await store.transaction(async () => Promise.reject(new Error('first fails'))).catch(() => undefined);
        await store.transaction(async (tx) => tx.queue.put([event(id!, 1)]));
        expect(await store.queue.depth()).to.equal(1);
      });
    });

    describe('update states', () => {
      it('applies a state only if it is not older than the recorded one', async () => {
        const [id] = await devices(1);
        expect(await store.states.setState(id!, tenantId, 'FIRMWARE', 'DOWNLOADING', 20, null)).to.equal(true);
        expect(await store.states.setState(id!, tenantId, 'FIRMWARE', 'INITIATED', 10, null)).to.equal(false);
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ state: 'DOWNLOADING', stateTs: 20 });
      });

      it('keeps the retry count for the same target and resets it for a new one', async () => {
        const [id] = await devices(1);
        await store.states.setTarget(id!, tenantId, 'FIRMWARE', pkg.id);
        expect(await store.states.incrementRetries(id!, 'FIRMWARE')).to.equal(1);
        await store.states.setTarget(id!, tenantId, 'FIRMWARE', pkg.id);
        expect((await store.states.get(id!, 'FIRMWARE'))?.retries).to.equal(1);
        await store.states.setTarget(id!, tenantId, 'FIRMWARE', newId<'OTA_PACKAGE'>());
        expect((await store.states.get(id!, 'FIRMWARE'))?.retries).to.equal(0);
        await store.states.clearTarget(id!, 'FIRMWARE');
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ targetPackageId: null, retries: 0 });
      });

      it('queues in one write: the new target resets the retries, QUEUED only over an older state', async () => {
        const [id] = await devices(1);
        await store.states.setTarget(id!, tenantId, 'FIRMWARE', pkg.id);
        await store.states.incrementRetries(id!, 'FIRMWARE');
        await store.states.setState(id!, tenantId, 'FIRMWARE', 'FAILED', 10, 'boom');
        await store.states.setQueued(id!, tenantId, 'FIRMWARE', pkg.id, 11);
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ state: 'QUEUED', stateTs: 11, error: null, retries: 1, targetPackageId: pkg.id });
        const other = newId<'OTA_PACKAGE'>();
        await store.states.setState(id!, tenantId, 'FIRMWARE', 'DOWNLOADING', 30, null);
        await store.states.setQueued(id!, tenantId, 'FIRMWARE', other, 20);
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ state: 'DOWNLOADING', stateTs: 30, retries: 0, targetPackageId: other });
        const [fresh] = await devices(1);
        await store.states.setQueued(fresh!, tenantId, 'FIRMWARE', pkg.id, 5);
        expect(await store.states.get(fresh!, 'FIRMWARE')).to.include({ state: 'QUEUED', stateTs: 5, retries: 0, targetPackageId: pkg.id });
      });

      it('lists targeted devices stuck in INITIATED..UPDATING since before a time, oldest first', async () => {
        const ids = await devices(4);
        const states = ['DOWNLOADING', 'INITIATED', 'UPDATED', 'QUEUED'] as const;
        for (const [i, id] of ids.entries()) {
          await store.states.setTarget(id, tenantId, 'FIRMWARE', pkg.id);
          await store.states.setState(id, tenantId, 'FIRMWARE', states[i]!, 10 - i, null);
        }
        expect((await store.states.stuck(100, 10)).map((s) => s.deviceId)).to.deep.equal([ids[1], ids[0]]);
        expect(await store.states.stuck(9, 10), 'not before the time').to.have.length(0);
      });

      it('writes a state and the version reported with it at once: a late report changes neither', async () => {
        const [id] = await devices(1);
        await store.states.setTarget(id!, tenantId, 'FIRMWARE', pkg.id);
        expect(await store.states.setState(id!, tenantId, 'FIRMWARE', 'UPDATED', 20, null, { title: 'fw', version: '1.0' })).to.equal(true);
        expect(await store.states.setState(id!, tenantId, 'FIRMWARE', 'UPDATING', 10, null, { title: 'fw', version: '0.9' })).to.equal(false);
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ state: 'UPDATED', stateTs: 20, currentTitle: 'fw', currentVersion: '1.0' });
        expect((await store.fleet.counts(tenantId, 'package')).map((c) => [c.updated, c.onTarget])).to.deep.equal([[1, 1]]);
        // A null title or version leaves the recorded one, as setCurrent does.
        expect(await store.states.setState(id!, tenantId, 'FIRMWARE', 'FAILED', 30, 'boom', { title: null, version: '1.1' })).to.equal(true);
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ state: 'FAILED', currentTitle: 'fw', currentVersion: '1.1' });
        const [fresh] = await devices(1);
        await store.states.setState(fresh!, tenantId, 'FIRMWARE', 'UPDATED', 5, null, { title: 'fw', version: '1.0' });
        expect(await store.states.get(fresh!, 'FIRMWARE')).to.include({ state: 'UPDATED', currentTitle: 'fw', currentVersion: '1.0' });
      });

      it('records the current title and version a device reports', async () => {
        const [id] = await devices(1);
        await store.states.setCurrent(id!, tenantId, 'FIRMWARE', 'fw', null);
        await store.states.setCurrent(id!, tenantId, 'FIRMWARE', null, '1.0');
        expect(await store.states.get(id!, 'FIRMWARE')).to.include({ currentTitle: 'fw', currentVersion: '1.0' });
      });
    });

    describe('batch writes (a batch of devices in one statement per table)', () => {
      it("finds a tenant's devices and targets by id, leaving out unknown ids and other tenants' devices", async () => {
        const ids = await devices(3);
        const otherTenant = (await store.tenants.createTenant('other')).id;
        const found = await store.devices.findByIds(tenantId, [ids[0]!, ids[2]!, ids[0]!, newId<'DEVICE'>()]);
        expect(found.map((d) => d.id).sort()).to.deep.equal([ids[0]!, ids[2]!].sort());
        expect(await store.devices.findByIds(otherTenant, ids)).to.deep.equal([]);
        await store.targets.put([
          { deviceId: ids[0]!, type: 'FIRMWARE', packageId: pkg.id, ts: 1, notified: true },
          { deviceId: ids[0]!, type: 'SOFTWARE', packageId: null, ts: 2, notified: false },
          { deviceId: ids[1]!, type: 'FIRMWARE', packageId: pkg.id, ts: 3, notified: false },
        ]);
        const targets = await store.targets.getAll([ids[0]!, ids[2]!]);
        expect(targets.map((t) => `${t.type}/${t.ts}/${t.notified}`).sort()).to.deep.equal(['FIRMWARE/1/true', 'SOFTWARE/2/false']);
      });

      it('saves telemetry, attributes and states of several devices as one at a time would, a device twice included', async () => {
        const [a, b] = await devices(2);
        await store.attributes.save(a!, 'SHARED', { fw_url: 'x', fw_size: 1 }, 1);
        await store.attributes.save(b!, 'SHARED', { fw_url: 'y' }, 1);
        await store.transaction(async (tx) => {
          await tx.telemetry.saveAll([
            { deviceId: a!, entries: [{ ts: 10, values: { fw_state: 'INITIATED' } }] },
            { deviceId: b!, entries: [{ ts: 10, values: { fw_state: 'INITIATED' } }] },
            { deviceId: a!, entries: [{ ts: 9, values: { fw_state: 'QUEUED' } }] },
          ]);
          // The first entry asking for a key gets it, as sequential deletes would answer.
          expect(
            await tx.attributes.deleteAll([
              { deviceId: a!, scope: 'SHARED', keys: ['fw_url', 'fw_size', 'fw_url'] },
              { deviceId: b!, scope: 'SHARED', keys: ['fw_url', 'fw_size'] },
              { deviceId: a!, scope: 'SHARED', keys: ['fw_url'] },
            ]),
          ).to.deep.equal([['fw_url', 'fw_size'], ['fw_url'], []]);
          await tx.attributes.saveAll([
            { deviceId: a!, scope: 'SHARED', values: { fw_version: '1.0', fw_title: 'fw' }, ts: 10 },
            { deviceId: b!, scope: 'SHARED', values: { fw_version: '1.0' }, ts: 10 },
            { deviceId: a!, scope: 'SHARED', values: { fw_version: '2.0' }, ts: 11 },
          ]);
          await tx.states.setStates([
            { deviceId: a!, tenantId, type: 'FIRMWARE', state: 'INITIATED', ts: 10, error: null },
            { deviceId: b!, tenantId, type: 'FIRMWARE', state: 'DOWNLOADING', ts: 10, error: null },
            { deviceId: a!, tenantId, type: 'FIRMWARE', state: 'QUEUED', ts: 9, error: null },
          ]);
        });
        expect((await store.telemetry.latest(a!, ['fw_state'])).fw_state).to.deep.equal({ ts: 10, value: 'INITIATED' });
        expect(
          Object.values(await store.telemetry.history(a!, ['fw_state'], { startTs: 0, endTs: 100, limit: 10, order: 'ASC' }))
            .flat()
            .map((p) => p.value),
        ).to.deep.equal(['QUEUED', 'INITIATED']);
        expect(await store.attributes.get(a!, 'SHARED')).to.deep.equal({ fw_title: 'fw', fw_version: '2.0' });
        expect(await store.attributes.get(b!, 'SHARED')).to.deep.equal({ fw_version: '1.0' });
        expect(await store.states.get(a!, 'FIRMWARE')).to.include({ state: 'INITIATED', stateTs: 10 });
        expect(await store.states.get(b!, 'FIRMWARE')).to.include({ state: 'DOWNLOADING', stateTs: 10 });
      });

      it('saves a map object shared by several devices as one at a time would, a device and its map again included', async () => {
        const [a, b] = await devices(2);
        const first = { fw_title: 'fw', fw_version: '1.0' };
        const second = { fw_version: '2.0', fw_tag: 'fw 2.0' };
        const initiated = { fw_state: 'INITIATED', note: 1 };
        const queued = { fw_state: 'QUEUED' };
        await store.transaction(async (tx) => {
          await tx.attributes.saveAll([
            { deviceId: a!, scope: 'SHARED', values: first, ts: 10 },
            { deviceId: b!, scope: 'SHARED', values: first, ts: 10 },
            { deviceId: a!, scope: 'SHARED', values: second, ts: 11 },
            { deviceId: a!, scope: 'SHARED', values: first, ts: 12 },
          ]);
          await tx.telemetry.saveAll([
            { deviceId: a!, entries: [{ ts: 10, values: initiated }] },
            { deviceId: b!, entries: [{ ts: 10, values: initiated }] },
            { deviceId: a!, entries: [{ ts: 10, values: queued }] },
            { deviceId: a!, entries: [{ ts: 10, values: initiated }] },
          ]);
        });
        expect(await store.attributes.get(a!, 'SHARED')).to.deep.equal({ fw_tag: 'fw 2.0', fw_title: 'fw', fw_version: '1.0' });
        expect(await store.attributes.get(b!, 'SHARED')).to.deep.equal({ fw_title: 'fw', fw_version: '1.0' });
        expect(await store.telemetry.latest(a!)).to.deep.equal({ fw_state: { ts: 10, value: 'INITIATED' }, note: { ts: 10, value: 1 } });
        const history = await store.telemetry.history(a!, ['fw_state', 'note'], { startTs: 0, endTs: 100, limit: 10, order: 'ASC' });
        expect(Object.keys(history)).to.deep.equal(['fw_state']);
        expect(history.fw_state!.map((p) => p.value)).to.deep.equal(['INITIATED', 'QUEUED', 'INITIATED']);
        expect(await store.telemetry.latest(b!)).to.deep.equal({ fw_state: { ts: 10, value: 'INITIATED' }, note: { ts: 10, value: 1 } });
      });

      it('gives each device of a batch its own rows when devices share values, and values differ by key, time or scope only', async () => {
        const [a, b, c] = await devices(3);
        const shared = { target_fw_title: 'fw', target_fw_version: '1.0', fw_state: 'QUEUED' };
        await store.telemetry.saveAll([
          { deviceId: a!, entries: [{ ts: 5, values: shared }] },
          { deviceId: b!, entries: [{ ts: 5, values: { ...shared, fw_state: 'fw' } }] },
          { deviceId: c!, entries: [{ ts: 6, values: shared }] },
          { deviceId: a!, entries: [{ ts: 7, values: { fw_state: 'INITIATED' } }] },
        ]);
        const range = { startTs: 0, endTs: 100, limit: 10, order: 'ASC' } as const;
        const latest = async (d: DeviceId) =>
          Object.entries(await store.telemetry.latest(d))
            .map(([k, p]) => `${k}=${String(p.value)}@${p.ts}`)
            .sort();
        expect(await latest(a!)).to.deep.equal(['fw_state=INITIATED@7', 'target_fw_title=fw@5', 'target_fw_version=1.0@5']);
        expect(await latest(b!)).to.deep.equal(['fw_state=fw@5', 'target_fw_title=fw@5', 'target_fw_version=1.0@5']);
        expect(await latest(c!)).to.deep.equal(['fw_state=QUEUED@6', 'target_fw_title=fw@6', 'target_fw_version=1.0@6']);
        expect(await store.telemetry.history(a!, ['fw_state'], range)).to.deep.equal({
          fw_state: [
            { ts: 5, value: 'QUEUED' },
            { ts: 7, value: 'INITIATED' },
          ],
        });
        await store.attributes.saveAll([
          { deviceId: a!, scope: 'SHARED', values: { fw_title: 'fw', fw_size: 1 }, ts: 5 },
          { deviceId: b!, scope: 'SHARED', values: { fw_title: 'fw', fw_size: 1 }, ts: 5 },
          { deviceId: c!, scope: 'SERVER', values: { fw_title: 'fw', fw_size: 1 }, ts: 6 },
        ]);
        for (const d of [a!, b!]) expect(await store.attributes.get(d, 'SHARED')).to.deep.equal({ fw_title: 'fw', fw_size: 1 });
        expect(await store.attributes.get(c!, 'SHARED')).to.deep.equal({});
        expect(await store.attributes.get(c!, 'SERVER')).to.deep.equal({ fw_title: 'fw', fw_size: 1 });
      });

      it('queues several devices as setQueued one at a time would, a device twice included', async () => {
        const [a, b] = await devices(2);
        const other = newId<'OTA_PACKAGE'>();
        await store.states.setTarget(a!, tenantId, 'FIRMWARE', pkg.id);
        await store.states.incrementRetries(a!, 'FIRMWARE');
        await store.states.setState(b!, tenantId, 'FIRMWARE', 'DOWNLOADING', 30, null);
        await store.states.setQueuedAll([
          { deviceId: a!, tenantId, type: 'FIRMWARE', packageId: pkg.id, ts: 11 },
          { deviceId: b!, tenantId, type: 'FIRMWARE', packageId: pkg.id, ts: 20 },
          { deviceId: a!, tenantId, type: 'FIRMWARE', packageId: other, ts: 12 },
        ]);
        expect(await store.states.get(a!, 'FIRMWARE')).to.include({ state: 'QUEUED', stateTs: 12, retries: 0, targetPackageId: other });
        expect(await store.states.get(b!, 'FIRMWARE')).to.include({ state: 'DOWNLOADING', stateTs: 30, retries: 0, targetPackageId: pkg.id });
      });
    });

    describe('targets and read models', () => {
      it('finds devices whose effective package differs from their last target, over every tenant', async () => {
        const [onTarget, drifted] = await devices(2);
        const profile = await store.profiles.findById(tenantId, profileId);
        await store.profiles.update({ ...profile!, firmwareId: pkg.id, version: profile!.version + 1 });
        await store.targets.put([{ deviceId: onTarget!, type: 'FIRMWARE', packageId: pkg.id, ts: 1, notified: true }]);
        const found = await store.targets.drifted('FIRMWARE');
        expect(found).to.deep.equal([{ tenantId, deviceId: drifted, effective: pkg.id, target: null, ts: null }]);
        expect(await store.targets.drifted('SOFTWARE')).to.deep.equal([]);
      });

      it('counts targeted devices per package and per profile, scoped by tenant', async () => {
        const ids = await devices(3);
        for (const [i, id] of ids.entries()) {
          await store.states.setTarget(id, tenantId, 'FIRMWARE', pkg.id);
          await store.states.setState(id, tenantId, 'FIRMWARE', (['QUEUED', 'DOWNLOADING', 'UPDATED'] as const)[i]!, 1, null);
        }
        await store.states.setCurrent(ids[2]!, tenantId, 'FIRMWARE', 'fw', '1.0');
        const counts = { targeted: 3, pending: 1, inProgress: 1, updated: 1, failed: 0, onTarget: 1 };
        expect(await store.fleet.counts(tenantId, 'package')).to.deep.equal([{ key: pkg.id, type: 'FIRMWARE', title: 'fw', version: '1.0', ...counts }]);
        expect(await store.fleet.counts(tenantId, 'profile')).to.deep.equal([{ key: profileId, type: 'FIRMWARE', title: 'default', version: '', ...counts }]);
        expect(await store.fleet.counts((await store.tenants.createTenant('other')).id, 'package')).to.deep.equal([]);
      });

      it("forgets a deleted device's queue row and target; another device keeps its own", async () => {
        const [gone, kept] = await devices(2);
        await store.queue.put([event(gone!, 1), event(kept!, 1)]);
        await store.targets.put([gone!, kept!].map((deviceId) => ({ deviceId, type: 'FIRMWARE' as const, packageId: pkg.id, ts: 1, notified: false })));
        await store.devices.delete(tenantId, gone!);
        expect((await store.queue.claim(10, 2, 1000)).map((c) => c.deviceId)).to.deep.equal([kept]);
        expect((await store.targets.getAll([gone!, kept!])).map((t) => t.deviceId)).to.deep.equal([kept]);
      });

      it('keeps the first value of a setting: a second putIfAbsent answers it', async () => {
        expect(await store.settings.get('k')).to.equal(null);
        expect(await store.settings.putIfAbsent('k', 'one')).to.equal('one');
        expect(await store.settings.putIfAbsent('k', 'two')).to.equal('one');
      });
    });

    describe('signing keys, policies and reported versions (issue 14)', () => {
      const key = (tenant: TenantId, publicKey: string, privateKey: string | null = null) => ({
        tenantId: tenant,
        algorithm: 'ED25519' as const,
        publicKey,
        privateKey,
        createdTime: 5,
      });

      it("keeps a tenant's first key: a second insertIfAbsent answers it, replace swaps it", async () => {
        expect(await store.signingKeys.find(tenantId)).to.equal(null);
        expect(await store.signingKeys.insertIfAbsent(key(tenantId, 'pub-1', 'priv-1'))).to.deep.equal(key(tenantId, 'pub-1', 'priv-1'));
        expect(await store.signingKeys.insertIfAbsent(key(tenantId, 'pub-2', 'priv-2'))).to.deep.equal(key(tenantId, 'pub-1', 'priv-1'));
        await store.signingKeys.replace(key(tenantId, 'pub-3'));
        expect(await store.signingKeys.find(tenantId)).to.deep.equal(key(tenantId, 'pub-3'));
        expect(await store.signingKeys.find((await store.tenants.createTenant('other')).id)).to.equal(null);
      });

      it("answers the default policy until one is saved, and only the tenant's own", async () => {
        expect(await store.policies.get(tenantId)).to.deep.equal({ requireSignedPackages: false });
        await store.policies.save(tenantId, { requireSignedPackages: true });
        expect(await store.policies.get(tenantId)).to.deep.equal({ requireSignedPackages: true });
        await store.policies.save(tenantId, { requireSignedPackages: false });
        expect(await store.policies.get(tenantId)).to.deep.equal({ requireSignedPackages: false });
        await store.policies.save(tenantId, { requireSignedPackages: true });
        expect(await store.policies.get((await store.tenants.createTenant('other')).id)).to.deep.equal({ requireSignedPackages: false });
      });

      it("lists the versions reported by a profile's devices that follow it, by name, and one device's", async () => {
        const [follows, ownPackage, silent] = await devices(3);
        const own = await store.devices.findById(tenantId, ownPackage!);
        await store.devices.update({ ...own!, firmwareId: pkg.id, version: own!.version + 1 });
        await store.states.setCurrent(follows!, tenantId, 'FIRMWARE', 'fw', '2.0');
        await store.states.setCurrent(ownPackage!, tenantId, 'FIRMWARE', 'fw', '3.0');
        await store.states.setCurrent(silent!, tenantId, 'SOFTWARE', 'sw', '1.0');
        expect(await store.reportedVersions.followingProfile(tenantId, profileId, 'FIRMWARE')).to.deep.equal([{ deviceId: follows, name: `d-${follows}`, version: '2.0' }]);
        expect(await store.reportedVersions.followingProfile(tenantId, profileId, 'SOFTWARE')).to.deep.equal([{ deviceId: silent, name: `d-${silent}`, version: '1.0' }]);
        expect(await store.reportedVersions.ofDevice(tenantId, ownPackage!, 'FIRMWARE')).to.deep.equal({ deviceId: ownPackage, name: `d-${ownPackage}`, version: '3.0' });
        expect(await store.reportedVersions.ofDevice(tenantId, silent!, 'FIRMWARE')).to.equal(null);
        const other = (await store.tenants.createTenant('other')).id;
        expect(await store.reportedVersions.followingProfile(other, profileId, 'FIRMWARE')).to.deep.equal([]);
        expect(await store.reportedVersions.ofDevice(other, ownPackage!, 'FIRMWARE')).to.equal(null);
      });

      it('lists the profiles with a package assigned, for the metrics of profiles without devices', async () => {
        expect(await store.profiles.listAssigned(tenantId)).to.deep.equal([]);
        const profile = await store.profiles.findById(tenantId, profileId);
        await store.profiles.update({ ...profile!, firmwareId: pkg.id, version: profile!.version + 1 });
        expect((await store.profiles.listAssigned(tenantId)).map((p) => [p.id, p.firmwareId, p.softwareId])).to.deep.equal([[profileId, pkg.id, null]]);
        expect(await store.profiles.listAssigned((await store.tenants.createTenant('other')).id)).to.deep.equal([]);
      });
    });

    describe('rollouts (issue 14)', () => {
      const rolloutOf = (over: Partial<Rollout> = {}): Rollout => ({
        id: newId() as string as RolloutId,
        tenantId,
        name: 'r',
        packageId: pkg.id,
        type: 'FIRMWARE',
        spec: {
          target: { deviceProfileId: profileId },
          waves: [{ percent: 50 }, { count: 3 }],
          gate: { minSuccessRate: 90, minFinished: 1, waitSeconds: 0 },
          abort: { maxFailureRate: 30, minFinished: 5 },
          window: { days: ['MON'], from: '22:00', to: '04:00', timeZone: 'Europe/Berlin' },
          forceDowngrade: false,
        },
        state: 'DRAFT',
        reason: null,
        currentWave: 0,
        waves: [],
        createdTime: 1,
        startedTime: null,
        finishedTime: null,
        version: 1,
        ...over,
      });

      it('keeps a rollout with its spec, scoped by tenant, and pages them', async () => {
        const r = rolloutOf();
        await store.rollouts.insert(r);
        expect(await store.rollouts.findById(tenantId, r.id)).to.deep.equal(r);
        const other = (await store.tenants.createTenant('other')).id;
        expect(await store.rollouts.findById(other, r.id)).to.equal(null);
        expect((await store.rollouts.page(tenantId, { pageSize: 10, page: 0 })).data.map((x) => x.id)).to.deep.equal([r.id]);
        expect((await store.rollouts.page(other, { pageSize: 10, page: 0 })).totalElements).to.equal(0);
      });

      it('saves over the version it read only: a second save of the same version is refused', async () => {
        const r = rolloutOf();
        await store.rollouts.insert(r);
        const running: Rollout = { ...r, state: 'RUNNING', waves: [{ state: 'RUNNING', startedTime: 5, gatePassedTime: null }], version: 2 };
        expect(await store.rollouts.update(running)).to.equal(true);
        expect(await store.rollouts.update({ ...r, state: 'CANCELLED', version: 2 })).to.equal(false);
        expect(await store.rollouts.findById(tenantId, r.id)).to.deep.equal(running);
      });

      it('leases a running rollout to one owner until the lease runs out or is released', async () => {
        const running = rolloutOf({ state: 'RUNNING' });
        await store.rollouts.insert(running);
        await store.rollouts.insert(rolloutOf({ state: 'PAUSED' }));
        expect((await store.rollouts.claim('a', 1000, 500, 10)).map((x) => x.id)).to.deep.equal([running.id]);
        expect(await store.rollouts.claim('b', 1200, 500, 10)).to.deep.equal([]);
        expect((await store.rollouts.claim('a', 1300, 500, 10)).map((x) => x.id)).to.deep.equal([running.id]);
        expect((await store.rollouts.claim('b', 1801, 500, 10)).map((x) => x.id)).to.deep.equal([running.id]);
        await store.rollouts.release('b');
        expect((await store.rollouts.claim('a', 1802, 500, 10)).map((x) => x.id)).to.deep.equal([running.id]);
      });

      it("lists a rollout's devices in wave order with their update state and target", async () => {
        const r = rolloutOf({ state: 'RUNNING' });
        await store.rollouts.insert(r);
        const [a, b] = await devices(2);
        await store.rollouts.putDevices([
          { rolloutId: r.id, deviceId: b!, wave: 1, position: 1, status: 'PENDING', previousPackageId: null },
          { rolloutId: r.id, deviceId: a!, wave: 0, position: 0, status: 'ASSIGNED', previousPackageId: null },
        ]);
        await store.states.setQueued(a!, tenantId, 'FIRMWARE', pkg.id, 10);
        await store.targets.put([{ deviceId: a!, type: 'FIRMWARE', packageId: pkg.id, ts: 10, notified: true }]);
        const listed = await store.rollouts.devices(r.id, 'FIRMWARE');
        expect(listed.map((d) => [d.deviceId, d.wave, d.status, d.state, d.statePackageId, d.targetPackageId, d.notified])).to.deep.equal([
          [a, 0, 'ASSIGNED', 'QUEUED', pkg.id, pkg.id, true],
          [b, 1, 'PENDING', null, null, null, false],
        ]);
        await store.rollouts.putDevices([{ rolloutId: r.id, deviceId: b!, wave: 1, position: 1, status: 'UPDATED', previousPackageId: pkg.id }]);
        expect((await store.rollouts.devices(r.id, 'FIRMWARE'))[1]).to.include({ status: 'UPDATED', previousPackageId: pkg.id, position: 1 });
        expect(await store.rollouts.counts()).to.deep.include({ tenantId, state: 'RUNNING', rollouts: 1 });
      });

      it('takes a device twice in one batch as one write after the other would', async () => {
        const r = rolloutOf({ state: 'RUNNING' });
        await store.rollouts.insert(r);
        const [a, b] = await devices(2);
        const row = (deviceId: DeviceId, over: Partial<Parameters<Store['rollouts']['putDevices']>[0][number]>) => ({
          rolloutId: r.id,
          deviceId,
          wave: 0,
          position: 0,
          status: 'PENDING' as const,
          previousPackageId: null,
          ...over,
        });
        await store.rollouts.putDevices([row(b!, { position: 1 })]);
        await store.rollouts.putDevices([
          row(a!, { position: 0 }),
          row(b!, { wave: 1, position: 7, status: 'ASSIGNED' }),
          row(a!, { wave: 2, position: 5, status: 'FAILED', previousPackageId: pkg.id }),
          row(b!, { wave: 3, position: 9, status: 'UPDATED' }),
        ]);
        const listed = await store.rollouts.devices(r.id, 'FIRMWARE');
        expect(listed.map((d) => [d.deviceId, d.wave, d.position, d.status, d.previousPackageId])).to.have.deep.members([
          [a, 2, 0, 'FAILED', pkg.id],
          [b, 3, 1, 'UPDATED', null],
        ]);
      });
    });
  });
}
