/**
 * The state tracker on each store when one device's reports are handled at once, as Node-RED hands
 * a node its messages (it does not wait for one to be handled before giving the next). On a pool of
 * PostgreSQL connections their writes could land in any order: an UPDATED device was once recorded
 * with the version it ran before (coverage 0.80 where 0.85 was right, pipeline-http on PostgreSQL).
 */
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { newId, type DeviceId, type TenantId } from '../../server/ids';
import { deviceRow } from '../support/device-row';
import { packageRow } from '../support/package-row';
import { NotifyQueue } from '../../server/pipeline/notify-queue';
import { StateTracker } from '../../server/pipeline/state-tracker';
import type { UplinkEvent } from '../../server/pipeline/uplink';
import { openStore } from '../../server/store/open-store';
import type { Store } from '../../server/store/store';
import { realTimers } from '../../server/timers';
import { emptyTestDatabase, withTestDatabase } from '../support/postgres';

function trackerOrder(open: (dir: string) => Promise<Store>): void {
  let dir: string;
  let store: Store;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-tracker-order-'));
    store = await open(dir);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** `n` devices of a profile whose firmware `thermo` 2.0 they are all queued for. */
  async function fleet(n: number): Promise<{ tenantId: TenantId; ids: DeviceId[] }> {
    const tenantId = (await store.tenants.createTenant('order')).id;
    const profileId = newId<'DEVICE_PROFILE'>();
    const base = { tenantId, createdTime: 1, version: 1 };
    await store.profiles.insert({ ...base, id: profileId, name: 'thermostats', description: null, isDefault: true, firmwareId: null, softwareId: null, extra: {} });
    const packageId = newId<'OTA_PACKAGE'>();
    await store.packages.insert(packageRow(tenantId, profileId, { id: packageId, title: 'thermo', version: '2.0' }));
    const ids: DeviceId[] = [];
    for (let i = 0; i < n; i++) {
      const d = deviceRow(tenantId, profileId, { name: `thermo-${i}` });
      await store.devices.insert(d);
      ids.push(d.id);
    }
    await store.states.setQueuedAll(ids.map((deviceId) => ({ deviceId, tenantId, type: 'FIRMWARE', packageId, ts: 1 })));
    return { tenantId, ids };
  }

  it("records each device's reports in the order they came, those of one millisecond too, each state with its version", async () => {
    const { tenantId, ids } = await fleet(40);
    const tracker = new StateTracker(store, { queue: new NotifyQueue(store, realTimers, 30_000) }, realTimers);
    // The HTTP device of the end-to-end tests: every report carries what it runs, the last one the new version.
    const reports = [
      ['DOWNLOADING', 'v0'],
      ['DOWNLOADED', 'v0'],
      ['VERIFIED', 'v0'],
      ['UPDATING', 'v0'],
      ['UPDATED', '2.0'],
    ] as const;
    const ts = Date.now();
    const uplink = (deviceId: DeviceId, state: string, version: string): UplinkEvent => ({
      tenantId,
      deviceId,
      deviceName: deviceId,
      transport: 'MQTT',
      ts,
      kind: 'telemetry',
      entries: [{ ts, values: { current_fw_title: version === 'v0' ? 'Initial' : 'thermo', current_fw_version: version, fw_state: state } }],
    });
    const changes = await Promise.all(ids.flatMap((id) => reports.map(([state, version]) => tracker.handleUplink(uplink(id, state, version)))));
    for (const id of ids) expect(await store.states.get(id, 'FIRMWARE'), id).to.include({ state: 'UPDATED', currentTitle: 'thermo', currentVersion: '2.0' });
    expect(
      changes
        .flat()
        .filter((c) => c.deviceId === ids[0])
        .map((c) => [c.from, c.to]),
    ).to.deep.equal([
      ['QUEUED', 'DOWNLOADING'],
      ['DOWNLOADING', 'DOWNLOADED'],
      ['DOWNLOADED', 'VERIFIED'],
      ['VERIFIED', 'UPDATING'],
      ['UPDATING', 'UPDATED'],
    ]);
    expect((await store.fleet.counts(tenantId, 'package')).map((c) => [c.targeted, c.updated, c.onTarget])).to.deep.equal([[40, 40, 40]]);
  });
}

describe('state tracker, reports handled at once: SQLite', () => {
  trackerOrder((dir) => openStore({ dataDir: dir }));
});

describe('state tracker, reports handled at once: PostgreSQL', () => {
  const database = withTestDatabase();
  trackerOrder(async (dir) => {
    await emptyTestDatabase(database().url);
    return openStore({ dataDir: dir, databaseUrl: database().url });
  });
});
