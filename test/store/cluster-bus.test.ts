/**
 * The cluster bus on PostgreSQL (LISTEN/NOTIFY) between two stores on one database, as two
 * instances have: what one publishes the other hears once, in order, however many payloads a
 * publish packs into one NOTIFY; the publisher does not hear itself.
 */
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { groupNotifications, ungroupNotifications, type NotificationGroup } from '../../server/cluster-notifications';
import { newId } from '../../server/ids';
import type { Notification } from '../../server/pipeline/notifier';
import { openStore } from '../../server/store/open-store';
import type { Store } from '../../server/store/store';
import { eventually } from '../support/eventually';
import { withTestDatabase } from '../support/postgres';

describe('several instances on one PostgreSQL: the cluster bus', function () {
  this.timeout(30_000);
  const database = withTestDatabase();
  const opened: Array<{ store: Store; dir: string }> = [];

  async function instance(): Promise<Store> {
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-bus-'));
    const store = await openStore({ dataDir: dir, databaseUrl: database().url });
    opened.push({ store, dir });
    return store;
  }

  afterEach(async () => {
    for (const o of opened.splice(0)) {
      await o.store.close();
      await rm(o.dir, { recursive: true, force: true });
    }
  });

  it('a 2,000-payload publish is heard on the other instance once each, in order, and not by the publisher', async () => {
    const a = await instance();
    const b = await instance();
    const heardB: unknown[] = [];
    const heardA: unknown[] = [];
    b.cluster.subscribe('t', (p) => heardB.push(p));
    a.cluster.subscribe('t', (p) => heardA.push(p));
    b.cluster.subscribe('other', () => heardA.push('wrong topic'));
    const payloads = Array.from({ length: 2000 }, (_, i) => ({ i, device: newId<'DEVICE'>() }));
    await a.cluster.publish('t', payloads);
    await eventually(async () => heardB.length >= payloads.length || undefined, 'every payload heard', { timeoutMs: 10_000, everyMs: 20 });
    // A straggler would arrive right behind the last one: one more publish and its arrival first.
    await a.cluster.publish('t', [{ last: true }]);
    await eventually(async () => heardB.length > payloads.length || undefined, 'the marker heard', { timeoutMs: 10_000, everyMs: 20 });
    expect(heardB).to.deep.equal([...payloads, { last: true }]);
    expect(heardA).to.deep.equal([]);
  });

  it("a batch's notifications, grouped, reach the other instance: every device exactly once, with its attributes", async () => {
    const a = await instance();
    const b = await instance();
    const delivered = new Map<string, Notification[]>();
    b.cluster.subscribe('notification', (g) => {
      for (const n of ungroupNotifications(g as NotificationGroup)) delivered.set(n.deviceId, [...(delivered.get(n.deviceId) ?? []), n]);
    });
    const tenantId = newId<'TENANT'>();
    const packageId = newId<'OTA_PACKAGE'>();
    const batch: Notification[] = Array.from({ length: 1000 }, (_, i) => ({
      tenantId,
      deviceId: newId<'DEVICE'>(),
      type: 'FIRMWARE',
      packageId,
      attributes: { fw_title: 'fw', fw_version: '1.0', fw_size: 65536, fw_checksum_algorithm: 'SHA256', fw_checksum: 'c'.repeat(64), fw_ts: 5 },
      // A few devices had keys deleted that the others never had.
      deleted: i % 100 === 0 ? ['fw_tag', 'fw_url'] : ['fw_url'],
      ts: 5,
    }));
    await a.cluster.publish('notification', groupNotifications(batch));
    await eventually(async () => delivered.size >= batch.length || undefined, 'every device heard of', { timeoutMs: 10_000, everyMs: 20 });
    for (const n of batch) expect(delivered.get(n.deviceId), n.deviceId).to.deep.equal([n]);
  });
});
