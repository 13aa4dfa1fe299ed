/**
 * The fleet read model's contract (device page, counts, change log, snapshots), run against SQLite
 * and PostgreSQL, each on a real database. Update states are written with plain SQL, as any writer
 * of the state table would (the tracker, the queue, a node of the user's own). Each test makes its
 * own tenant, so tests of one suite share the schema but never see each other's rows.
 */
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { newId, type DeviceId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../../server/ids';
import { packageRow } from '../support/package-row';
import { IN_PROGRESS_STATES, PENDING_STATES } from '../../server/pipeline/ota-keys';
import { SqliteDeviceProfileRepository, type DeviceProfileRepository } from '../../server/store/device-profiles';
import { SqliteDeviceRepository, type Device, type DeviceRepository } from '../../server/store/devices';
import { emptyCounts, type FleetReadModel, type StateCounts } from '../../server/store/fleet-read-model';
import { SqliteOtaPackageRepository, type OtaPackage, type OtaPackageRepository, type OtaPackageType } from '../../server/store/ota-packages';
import { openPgRepositories, type PgRepositories } from '../../server/store/postgres/pg-repositories';
import { openDatabase, type Db } from '../../server/store/sqlite/database';
import { MIGRATIONS } from '../../server/store/sqlite/migrations';
import { SqliteFleetReadModel } from '../../server/store/sqlite/fleet-read-model';
import { SqliteTenantRepository, type TenantRepository } from '../../server/store/tenants';
import { withTestDatabase } from '../support/postgres';

interface Fixture {
  fleet: FleetReadModel;
  tenants: TenantRepository;
  profiles: DeviceProfileRepository;
  devices: DeviceRepository;
  packages: OtaPackageRepository;
  /** Runs one statement with `?` placeholders. */
  run(sql: string, params: unknown[]): Promise<void>;
  /** The rows of one query with `?` placeholders. */
  all<R>(sql: string, params: unknown[]): Promise<R[]>;
  /** A connection of its own, to hold a transaction open while `run` and other connections write. */
  connect(): Promise<Connection>;
}

interface Connection {
  /** Runs one statement with `?` placeholders; waits while another connection's transaction holds what it needs. */
  run(sql: string, params?: unknown[]): Promise<void>;
  /** Whether the statement under way waits for another connection's transaction. */
  waiting(): Promise<boolean>;
  close(): Promise<void>;
}

interface StateRow {
  state?: string | null;
  ts?: number;
  error?: string | null;
  current?: [string, string];
  target?: OtaPackageId | null;
  retries?: number;
}

function fleetContract(get: () => Fixture): void {
  let f: Fixture;
  let tenantId: TenantId;
  let profileId: DeviceProfileId;
  let clock = 1_700_000_000_000;

  beforeEach(async () => {
    f = get();
    seed = 7;
    tenantId = (await f.tenants.createTenant('fleet')).id;
    profileId = await profile('Sensors');
  });

  async function profile(name: string, tenant = tenantId): Promise<DeviceProfileId> {
    const id = newId<'DEVICE_PROFILE'>();
    await f.profiles.insert({ id, tenantId: tenant, name, description: null, isDefault: false, firmwareId: null, softwareId: null, createdTime: ++clock, version: 1, extra: {} });
    return id;
  }

  async function pkg(type: OtaPackageType, title: string, version: string, tenant = tenantId, profile = profileId): Promise<OtaPackage> {
    const p = packageRow(tenant, profile, { type, title, version, createdTime: ++clock });
    await f.packages.insert(p);
    return p;
  }

  async function device(name: string, over: Partial<Device> = {}): Promise<Device> {
    const d: Device = {
      id: newId<'DEVICE'>(),
      tenantId,
      name,
      label: null,
      deviceProfileId: profileId,
      firmwareId: null,
      softwareId: null,
      accessToken: newId(),
      credentialsType: 'ACCESS_TOKEN',
      credentialsValue: null,
      credentialsId: newId<'DEVICE_CREDENTIALS'>(),
      createdTime: ++clock,
      version: 1,
      extra: {},
      ...over,
    };
    await f.devices.insert(d);
    return d;
  }

  async function state(d: Device, type: OtaPackageType, s: StateRow): Promise<void> {
    await f.run(
      `INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, error, current_title, current_version, target_package_id, retries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [d.id, d.tenantId, type, s.state ?? null, s.ts ?? 0, s.error ?? null, s.current?.[0] ?? null, s.current?.[1] ?? null, s.target ?? null, s.retries ?? 0],
    );
  }

  let seed = 7;
  /** A seeded choice: a failing run can be run again as it was. */
  const pick = <T>(xs: readonly T[]): T => xs[(seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % xs.length]!;
  const STATES = ['QUEUED', 'INITIATED', 'DOWNLOADING', 'UPDATING', 'UPDATED', 'FAILED'];

  /** The counts (per package, per profile, per state) against a GROUP BY over the tenant's firmware states and their devices. */
  async function expectCountsOfStates(): Promise<void> {
    const rows = await f.all<{ state: string | null; package: string; profile: string; on_target: number }>(
      `SELECT s.state AS state, s.target_package_id AS package, d.device_profile_id AS profile,
              CASE WHEN s.current_title = p.title AND s.current_version = p.version THEN 1 ELSE 0 END AS on_target
       FROM ota_states s JOIN devices d ON d.id = s.device_id JOIN ota_packages p ON p.id = s.target_package_id WHERE s.tenant_id = ? AND s.type = 'FIRMWARE'`,
      [tenantId],
    );
    const groups = (key: 'package' | 'profile') =>
      [...new Set(rows.map((r) => r[key]))].map((k) => {
        const rs = rows.filter((r) => r[key] === k);
        const among = (states: readonly string[]) => rs.filter((r) => r.state !== null && states.includes(r.state)).length;
        return [k, rs.length, among(PENDING_STATES), among(IN_PROGRESS_STATES), among(['UPDATED']), among(['FAILED']), rs.reduce((n, r) => n + Number(r.on_target), 0)];
      });
    for (const key of ['package', 'profile'] as const) {
      const got = (await f.fleet.counts(tenantId, key)).map((c) => [c.key, c.targeted, c.pending, c.inProgress, c.updated, c.failed, c.onTarget]);
      expect(got, `by ${key}`).to.have.deep.members(groups(key));
    }
    const byState = counts({});
    for (const r of rows) byState[r.state !== null && r.state in byState ? (r.state as keyof StateCounts) : 'OTHER']++;
    expect((await f.fleet.distribution(tenantId)).FIRMWARE).to.deep.equal(byState);
  }

  const names = (rows: ReadonlyArray<{ name: string }>): string[] => rows.map((r) => r.name);
  const page = (over: Partial<Parameters<FleetReadModel['devicePage']>[2]> = {}) => ({ pageSize: 100, page: 0, ...over });
  const counts = (over: Partial<StateCounts>): StateCounts => ({ ...emptyCounts(), ...over });

  describe('device page', () => {
    it('sorts by name without regard to case, pages, and counts every device of the tenant', async () => {
      for (const n of ['beta', 'Alpha', 'gamma', 'Delta']) await device(n);
      const first = await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page({ pageSize: 3 }));
      expect(names(first.data)).to.deep.equal(['Alpha', 'beta', 'Delta']);
      expect(first).to.deep.include({ totalElements: 4, totalPages: 2, hasNext: true });
      const second = await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page({ pageSize: 3, page: 1 }));
      expect(names(second.data)).to.deep.equal(['gamma']);
      expect(second.hasNext).to.equal(false);
      const desc = await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page({ sortOrder: 'DESC' }));
      expect(names(desc.data)).to.deep.equal(['gamma', 'Delta', 'beta', 'Alpha']);
    });

    it('shows both slots: state, error, what runs, the target and its retries; a device without states has empty slots', async () => {
      const fw = await pkg('FIRMWARE', 'thermo', '2.0');
      const sw = await pkg('SOFTWARE', 'app', '1.1');
      const a = await device('a', { label: 'lab' });
      await device('b');
      await state(a, 'FIRMWARE', { state: 'FAILED', ts: 50, error: 'bad checksum', current: ['thermo', '1.0'], target: fw.id, retries: 2 });
      await state(a, 'SOFTWARE', { state: null, target: sw.id });
      const [row, empty] = (await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page())).data;
      expect(row).to.deep.equal({
        id: a.id,
        name: 'a',
        label: 'lab',
        createdTime: a.createdTime,
        deviceProfileId: profileId,
        deviceProfileName: 'Sensors',
        credentialsType: 'ACCESS_TOKEN',
        provisioned: false,
        firmware: {
          state: 'FAILED',
          stateTs: 50,
          error: 'bad checksum',
          current: { title: 'thermo', version: '1.0' },
          target: { packageId: fw.id, title: 'thermo', version: '2.0' },
          retries: 2,
        },
        software: { state: null, stateTs: null, error: null, current: null, target: { packageId: sw.id, title: 'app', version: '1.1' }, retries: 0 },
      });
      expect(empty?.firmware).to.deep.equal({ state: null, stateTs: null, error: null, current: null, target: null, retries: 0 });
    });

    it('marks a device that provisioned itself (the server attribute provisionState), and no other', async () => {
      const born = await device('born');
      await device('made');
      await f.run('INSERT INTO attributes (device_id, scope, key, value, ts) VALUES (?, ?, ?, ?, ?)', [born.id, 'SERVER', 'provisionState', '"provisioned"', 1]);
      const rows = (await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page())).data;
      expect(rows.map((r) => [r.name, r.provisioned])).to.deep.equal([
        ['born', true],
        ['made', false],
      ]);
    });

    it('filters by state (NONE: no state of that type), by profile, by target package and by text', async () => {
      const fw = await pkg('FIRMWARE', 'thermo', '2.0');
      const other = await profile('Gateways');
      const [a, b, c] = [await device('a-1'), await device('b-2'), await device('c-1', { deviceProfileId: other })];
      await device('d-2');
      await state(a, 'FIRMWARE', { state: 'UPDATED', target: fw.id });
      await state(b, 'FIRMWARE', { state: 'FAILED', target: fw.id });
      await state(c, 'SOFTWARE', { state: 'FAILED' });
      const list = async (filter: Omit<Parameters<FleetReadModel['devicePage']>[1], 'type'>, type: OtaPackageType = 'FIRMWARE') => {
        const p = await f.fleet.devicePage(tenantId, { type, ...filter }, page());
        expect(p.totalElements, 'the total counts the filtered devices').to.equal(p.data.length);
        return names(p.data);
      };
      expect(await list({ states: ['FAILED'] })).to.deep.equal(['b-2']);
      expect(await list({ states: ['FAILED'] }, 'SOFTWARE')).to.deep.equal(['c-1']);
      expect(await list({ states: ['NONE'] })).to.deep.equal(['c-1', 'd-2']);
      expect(await list({ states: ['UPDATED', 'NONE'] })).to.deep.equal(['a-1', 'c-1', 'd-2']);
      expect(await list({ deviceProfileId: other })).to.deep.equal(['c-1']);
      expect(await list({ packageId: fw.id })).to.deep.equal(['a-1', 'b-2']);
      expect(await list({ packageId: fw.id, states: ['UPDATED'] })).to.deep.equal(['a-1']);
      expect(await list({ textSearch: '-1' })).to.deep.equal(['a-1', 'c-1']);
      expect(await list({ textSearch: 'A-' })).to.deep.equal(['a-1']);
      expect(await list({ textSearch: '%' }), 'a % is a character, not a wildcard').to.deep.equal([]);
      expect(await list({ packageId: newId() }), 'an unknown package').to.deep.equal([]);
    });

    it('sorts by state (no state first), state time, current and target version, profile name and creation time', async () => {
      const v1 = await pkg('FIRMWARE', 'thermo', '1.0');
      const v2 = await pkg('FIRMWARE', 'thermo', '2.0');
      const v3 = await pkg('FIRMWARE', 'thermo', '3.0');
      const gw = await profile('gateways');
      const [a, b, c] = [await device('a'), await device('b', { deviceProfileId: gw }), await device('c')];
      const d = await device('d');
      await state(a, 'FIRMWARE', { state: 'UPDATED', ts: 30, current: ['thermo', '1.0'], target: v2.id });
      await state(b, 'FIRMWARE', { state: 'FAILED', ts: 10, current: ['thermo', '0.9'], target: v1.id });
      await state(c, 'FIRMWARE', { state: 'QUEUED', ts: 20, current: ['thermo', '0.5'], target: v3.id });
      void d;
      const sorted = async (sortProperty: NonNullable<Parameters<FleetReadModel['devicePage']>[2]['sortProperty']>, sortOrder: 'ASC' | 'DESC' = 'ASC') =>
        names((await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page({ sortProperty, sortOrder }))).data);
      expect(await sorted('state')).to.deep.equal(['d', 'b', 'c', 'a']);
      expect(await sorted('state', 'DESC')).to.deep.equal(['a', 'c', 'b', 'd']);
      expect(await sorted('stateTs')).to.deep.equal(['d', 'b', 'c', 'a']);
      expect(await sorted('currentVersion')).to.deep.equal(['d', 'c', 'b', 'a']);
      expect(await sorted('targetVersion', 'DESC')).to.deep.equal(['c', 'a', 'b', 'd']);
      // 'gateways' before 'Sensors' without regard to case; devices of one profile in id order.
      expect((await sorted('deviceProfileName'))[0]).to.equal('b');
      expect((await sorted('deviceProfileName', 'DESC'))[3]).to.equal('b');
      expect(await sorted('createdTime', 'DESC')).to.deep.equal(['d', 'c', 'b', 'a']);
    });

    it('pages the whole fleet by state as the filtered list does: devices without a state, then by state, across page boundaries', async () => {
      const v1 = await pkg('FIRMWARE', 'thermo', '1.0');
      const devices = [];
      for (let i = 0; i < 9; i++) devices.push(await device(`d${i}`));
      const states = ['FAILED', null, 'QUEUED', 'UPDATED', 'QUEUED', 'DOWNLOADING'];
      for (const [i, st] of states.entries()) await state(devices[i]!, 'FIRMWARE', { state: st, ts: i, target: v1.id });
      await state(devices[6]!, 'SOFTWARE', { state: 'UPDATED', ts: 1 }); // another slot: no firmware state
      await device('theirs', { tenantId: (await f.tenants.createTenant('other')).id, deviceProfileId: await profile('other') });
      for (const sortOrder of ['ASC', 'DESC'] as const) {
        // The whole fleet (its own path) against the same devices through the profile filter (the joined query).
        const all = async (filter: Parameters<FleetReadModel['devicePage']>[1], pageSize: number): Promise<string[]> => {
          const out: string[] = [];
          for (let pageNo = 0; pageNo * pageSize < 12; pageNo++) {
            const got = await f.fleet.devicePage(tenantId, filter, { pageSize, page: pageNo, sortProperty: 'state', sortOrder });
            expect(got.totalElements).to.equal(9);
            out.push(...got.data.map((r) => r.id));
          }
          return out;
        };
        const joined = await all({ type: 'FIRMWARE', deviceProfileId: profileId }, 9);
        expect(joined).to.have.length(9);
        for (const pageSize of [1, 2, 4, 9]) expect(await all({ type: 'FIRMWARE' }, pageSize), `${sortOrder}, pages of ${pageSize}`).to.deep.equal(joined);
      }
    });

    it('pages the whole fleet in every sort, both ways, as the joined (filtered) list does, ties and NULLs included', async () => {
      const v1 = await pkg('FIRMWARE', 'thermo', '1.0');
      const v1b = await pkg('FIRMWARE', 'hygro', '1.0'); // the same version: one run with v1
      const v2 = await pkg('FIRMWARE', 'thermo', '2.0');
      const gone = newId<'OTA_PACKAGE'>(); // a target no package of the tenant's is (deleted)
      const softOnly = await pkg('SOFTWARE', 'app', '0.1');
      // 'gateways' and 'Gateways' sort as one name, whatever the case.
      const profiles = [profileId, await profile('gateways'), await profile('Gateways'), await profile('Zeta')];
      const devices: Device[] = [];
      for (let i = 0; i < 14; i++) devices.push(await device(`dev-${i}`, { deviceProfileId: profiles[i % profiles.length]!, createdTime: 1000 + (i % 3) }));
      const rows: Array<[number, StateRow]> = [
        [0, { state: 'FAILED', ts: 5, current: ['thermo', '0.9'], target: v1.id }],
        [1, { state: null, ts: 5, target: v2.id }],
        [2, { state: 'QUEUED', ts: 7, current: ['thermo', '1.0'], target: v1b.id }],
        [3, { state: 'UPDATED', ts: 5, current: ['thermo', '2.0'], target: v2.id }],
        [4, { state: 'QUEUED', ts: 1, target: null }],
        [5, { state: 'DOWNLOADING', ts: 9, current: ['hygro', '1.0'], target: gone }],
        [7, { state: 'QUEUED', ts: 7, current: ['thermo', '0.9'], target: v1.id }],
        [9, { state: 'FAILED', ts: 2, current: ['thermo', '1.0'], target: v2.id }],
      ];
      for (const [i, s] of rows) await state(devices[i]!, 'FIRMWARE', s);
      await state(devices[6]!, 'SOFTWARE', { state: 'UPDATED', ts: 1, target: softOnly.id }); // another slot only
      await device('dev-theirs', { tenantId: (await f.tenants.createTenant('other')).id, deviceProfileId: await profile('other') });
      for (const sortProperty of ['state', 'stateTs', 'currentVersion', 'targetVersion', 'deviceProfileName', 'name', 'createdTime'] as const) {
        for (const sortOrder of ['ASC', 'DESC'] as const) {
          const all = async (filter: Parameters<FleetReadModel['devicePage']>[1], pageSize: number): Promise<string[]> => {
            const out: string[] = [];
            for (let pageNo = 0; pageNo * pageSize < 17; pageNo++) {
              const got = await f.fleet.devicePage(tenantId, filter, { pageSize, page: pageNo, sortProperty, sortOrder });
              expect(got.totalElements).to.equal(14);
              out.push(...got.data.map((r) => r.id));
            }
            return out;
          };
          // Every device's name holds 'dev-': the text filter takes the joined query, over the same devices.
          const joined = await all({ type: 'FIRMWARE', textSearch: 'dev-' }, 14);
          expect(joined).to.have.length(14);
          for (const pageSize of [1, 3, 5, 14]) expect(await all({ type: 'FIRMWARE' }, pageSize), `${sortProperty} ${sortOrder}, pages of ${pageSize}`).to.deep.equal(joined);
        }
      }
    });

    it("never shows another tenant's devices, by page or by id", async () => {
      const mine = await device('mine');
      const otherTenant = (await f.tenants.createTenant('other')).id;
      const theirs = await device('theirs', { tenantId: otherTenant, deviceProfileId: await profile('theirs', otherTenant) });
      expect(names((await f.fleet.devicePage(tenantId, { type: 'FIRMWARE' }, page())).data)).to.deep.equal(['mine']);
      expect(names(await f.fleet.deviceRows(tenantId, [mine.id, theirs.id, newId()]))).to.deep.equal(['mine']);
      expect(await f.fleet.deviceRows(tenantId, [])).to.deep.equal([]);
    });
  });

  describe('counts', () => {
    it('counts targeted devices per state and type, per package and per profile, with coverage', async () => {
      const fw = await pkg('FIRMWARE', 'thermo', '2.0');
      const gw = await profile('Gateways');
      const [a, b, c, d] = [await device('a'), await device('b'), await device('c', { deviceProfileId: gw }), await device('d')];
      await state(a, 'FIRMWARE', { state: 'UPDATED', current: ['thermo', '2.0'], target: fw.id });
      await state(b, 'FIRMWARE', { state: 'DOWNLOADING', current: ['thermo', '1.0'], target: fw.id });
      await state(c, 'FIRMWARE', { state: 'QUEUED', target: fw.id });
      await state(d, 'FIRMWARE', { state: 'FAILED', target: null }); // not targeted any more
      expect(await f.fleet.distribution(tenantId)).to.deep.equal({ FIRMWARE: counts({ UPDATED: 1, DOWNLOADING: 1, QUEUED: 1 }), SOFTWARE: emptyCounts() });
      expect(await f.fleet.counts(tenantId, 'package')).to.deep.equal([
        { key: fw.id, type: 'FIRMWARE', title: 'thermo', version: '2.0', targeted: 3, pending: 1, inProgress: 1, updated: 1, failed: 0, onTarget: 1 },
      ]);
      const byProfile = await f.fleet.counts(tenantId, 'profile');
      expect(byProfile).to.have.deep.members([
        { key: profileId, type: 'FIRMWARE', title: 'Sensors', version: '', targeted: 2, pending: 0, inProgress: 1, updated: 1, failed: 0, onTarget: 1 },
        { key: gw, type: 'FIRMWARE', title: 'Gateways', version: '', targeted: 1, pending: 1, inProgress: 0, updated: 0, failed: 0, onTarget: 0 },
      ]);
    });

    it('follows every change: a new state, a device moved to another profile, a deleted device, an unassignment, a package renamed', async () => {
      const fw = await pkg('FIRMWARE', 'thermo', '2.0');
      const gw = await profile('Gateways');
      const [a, b, c] = [await device('a'), await device('b'), await device('c')];
      for (const d of [a, b, c]) await state(d, 'FIRMWARE', { state: 'QUEUED', target: fw.id });
      await f.run("UPDATE ota_states SET state = 'UPDATED', current_title = 'thermo', current_version = '2.0' WHERE device_id = ? AND type = 'FIRMWARE'", [a.id]);
      await f.devices.update({ ...b, deviceProfileId: gw, version: 2 });
      await f.devices.delete(tenantId, c.id);
      const summary = async () => (await f.fleet.counts(tenantId, 'profile')).map((g) => [g.title, g.targeted, g.pending, g.updated, g.onTarget]);
      expect(await summary()).to.have.deep.members([
        ['Sensors', 1, 0, 1, 1],
        ['Gateways', 1, 1, 0, 0],
      ]);
      await f.packages.update({ ...fw, version: '2.0-final' });
      expect((await f.fleet.counts(tenantId, 'package')).map((g) => [g.version, g.targeted, g.onTarget])).to.deep.equal([['2.0-final', 2, 0]]);
      await f.run("UPDATE ota_states SET target_package_id = NULL WHERE device_id = ? AND type = 'FIRMWARE'", [b.id]);
      expect(await summary()).to.deep.equal([['Sensors', 1, 0, 1, 0]]);
      expect(await f.fleet.distribution(tenantId)).to.deep.equal({ FIRMWARE: counts({ UPDATED: 1 }), SOFTWARE: emptyCounts() });
    });

    it('totals every tenant for /metrics: devices by type and state (NONE before a state) and the queue', async () => {
      const fw = await pkg('FIRMWARE', 'thermo', '2.0');
      const [a, b] = [await device('a'), await device('b')];
      await state(a, 'FIRMWARE', { state: 'UPDATED', target: fw.id });
      await state(b, 'FIRMWARE', { state: null, target: fw.id });
      await f.run('INSERT INTO notify_queue (tenant_id, device_id, type, package_id, ts) VALUES (?, ?, ?, ?, ?)', [tenantId, b.id, 'FIRMWARE', fw.id, 1]);
      const mine = (await f.fleet.stateTotals()).filter((t) => t.tenantId === tenantId);
      expect(mine).to.have.deep.members([
        { tenantId, type: 'FIRMWARE', state: 'UPDATED', devices: 1 },
        { tenantId, type: 'FIRMWARE', state: 'NONE', devices: 1 },
      ]);
      expect((await f.fleet.queueDepths()).filter((q) => q.tenantId === tenantId)).to.deep.equal([{ tenantId, devices: 1 }]);
      const ids = await f.fleet.tenantIds();
      expect(ids).to.include(tenantId);
      expect(ids).to.deep.equal([...ids].sort());
    });

    it('counts as a GROUP BY over the states would after writers change the same devices at once', async () => {
      const [p1, p2] = [await pkg('FIRMWARE', 'thermo', '2.0'), await pkg('FIRMWARE', 'thermo', '3.0')];
      const fleet: Device[] = [];
      for (let i = 0; i < 24; i++) fleet.push(await device(`d${i}`));
      for (const d of fleet) await state(d, 'FIRMWARE', { state: 'QUEUED', target: p1.id });
      const where = "WHERE device_id = ? AND type = 'FIRMWARE'";
      // Each lane one statement after the other, the lanes at once: the same rows written by several
      // connections, inserts and deletes among the updates, and readers folding the deltas meanwhile.
      const step = (d: Device): Promise<unknown> =>
        pick([
          () => f.run(`UPDATE ota_states SET state = ?, state_ts = state_ts + 1 ${where}`, [pick(STATES), d.id]),
          () => f.run(`UPDATE ota_states SET current_title = 'thermo', current_version = ? ${where}`, [pick(['1.0', '2.0', '3.0']), d.id]),
          () => f.run(`UPDATE ota_states SET target_package_id = ? ${where}`, [pick([p1.id, p2.id, null]), d.id]),
          () =>
            f.run(
              `INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, current_title, current_version, target_package_id) VALUES (?, ?, 'FIRMWARE', ?, 0, 'thermo', ?, ?)
               ON CONFLICT (device_id, type) DO UPDATE SET state = excluded.state, current_version = excluded.current_version, target_package_id = excluded.target_package_id`,
              [d.id, tenantId, pick(STATES), pick(['2.0', '3.0']), pick([p1.id, p2.id])],
            ),
          () => f.run(`DELETE FROM ota_states ${where}`, [d.id]),
          () => f.fleet.counts(tenantId, 'package'),
        ])();
      const lane = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) await step(pick(fleet));
      };
      // One lane also moves several rows per statement (one only: two could lock rows in opposite orders).
      const many = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) await f.run("UPDATE ota_states SET state = ? WHERE tenant_id = ? AND type = 'FIRMWARE' AND state = ?", [pick(STATES), tenantId, pick(STATES)]);
      };
      await Promise.all([many(40), ...Array.from({ length: 8 }, () => lane(60))]);

      await expectCountsOfStates();
    });

    it('counts a device moved to another profile while another connection writes its state, whichever goes first', async () => {
      const [p1, p2] = [await pkg('FIRMWARE', 'thermo', '2.0'), await pkg('FIRMWARE', 'thermo', '3.0')];
      const gateways = await profile('Gateways');
      const fleet: Device[] = [];
      for (let i = 0; i < 6; i++) fleet.push(await device(`d${i}`));
      // Half the devices have a state to update or delete; the others get theirs inserted.
      for (const d of fleet.slice(0, 3)) await state(d, 'FIRMWARE', { state: 'QUEUED', target: p1.id });
      const where = "WHERE device_id = ? AND type = 'FIRMWARE'";
      type Statement = [string, unknown[]];
      const writes: Array<(d: Device) => Statement> = [
        (d) => [`UPDATE ota_states SET state = ?, state_ts = state_ts + 1 ${where}`, [pick(STATES), d.id]],
        (d) => [`UPDATE ota_states SET current_title = 'thermo', current_version = ? ${where}`, [pick(['2.0', '3.0']), d.id]],
        (d) => [`UPDATE ota_states SET target_package_id = ? ${where}`, [pick([p1.id, p2.id, null]), d.id]],
        (d) => [
          `INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, current_title, current_version, target_package_id) VALUES (?, ?, 'FIRMWARE', ?, 0, 'thermo', ?, ?)
           ON CONFLICT (device_id, type) DO UPDATE SET state = excluded.state, current_version = excluded.current_version, target_package_id = excluded.target_package_id`,
          [d.id, tenantId, pick(STATES), pick(['2.0', '3.0']), pick([p1.id, p2.id])],
        ],
        (d) => [`DELETE FROM ota_states ${where}`, [d.id]],
      ];
      const inGateways = new Set<DeviceId>();
      const move = (d: Device): Statement => {
        const to = inGateways.delete(d.id) ? profileId : (inGateways.add(d.id), gateways);
        return ['UPDATE devices SET device_profile_id = ? WHERE id = ?', [to, d.id]];
      };
      const [first, second] = [await f.connect(), await f.connect()];
      try {
        for (let round = 0; round < 60; round++) {
          const d = pick(fleet);
          const [write, moved] = [pick(writes)(d), move(d)];
          const [held, other] = pick([
            [write, moved],
            [moved, write],
          ]);
          // One statement in a transaction left open, the other on another connection until it
          // is done or waits for that transaction; then the first commits.
          await first.run('BEGIN');
          await first.run(...held);
          let done = false;
          const later = second.run(...other).finally(() => (done = true));
          later.catch(() => undefined); // awaited below, once the first has committed
          while (!done && !(await second.waiting())) await new Promise((resolve) => setImmediate(resolve));
          await Promise.all([later, first.run('COMMIT')]);
        }
      } finally {
        await Promise.all([first.close(), second.close()]);
      }
      await expectCountsOfStates();
    });
  });

  describe('change log', () => {
    it('logs every write to a state, in order', async () => {
      const [a, b] = [await device('a'), await device('b')];
      const start = await f.fleet.lastChange();
      await state(a, 'FIRMWARE', { state: 'QUEUED' });
      await state(b, 'FIRMWARE', { state: 'QUEUED' });
      await f.run("UPDATE ota_states SET state = 'INITIATED' WHERE device_id = ?", [a.id]);
      await f.run('UPDATE ota_states SET retries = 3 WHERE device_id = ?', [b.id]); // not shown on the page's state: not logged
      const changes = await f.fleet.changesAfter(start, 10);
      expect(changes.map((c) => [c.tenantId, c.deviceId])).to.deep.equal([
        [tenantId, a.id],
        [tenantId, b.id],
        [tenantId, a.id],
      ]);
      expect(await f.fleet.lastChange()).to.equal(changes[2]?.seq);
      expect(await f.fleet.changesAfter(start, 2)).to.deep.equal(changes.slice(0, 2));
      // Read again: the log is shared by every instance's watcher, reading forgets nothing.
      expect(await f.fleet.changesAfter(start, 10)).to.deep.equal(changes);
    });

    it('answers the missing sequence numbers asked for that exist, after the newer ones', async () => {
      const [a, b] = [await device('a'), await device('b')];
      const start = await f.fleet.lastChange();
      await state(a, 'FIRMWARE', { state: 'QUEUED' });
      await state(b, 'FIRMWARE', { state: 'QUEUED' });
      const [first, second] = await f.fleet.changesAfter(start, 10);
      expect(await f.fleet.changesAfter(second!.seq, 10, [first!.seq, second!.seq + 1000])).to.deep.equal([first]);
      expect(await f.fleet.changesAfter(first!.seq, 10, [first!.seq])).to.deep.equal([second, first]);
    });

    it('is pruned by size, keeping the newest changes', async () => {
      const [a, b] = [await device('a'), await device('b')];
      const start = await f.fleet.lastChange();
      await state(a, 'FIRMWARE', { state: 'QUEUED' });
      await state(b, 'FIRMWARE', { state: 'QUEUED' });
      await f.run("UPDATE ota_states SET state = 'INITIATED' WHERE device_id = ?", [a.id]);
      const changes = await f.fleet.changesAfter(start, 10);
      await f.fleet.pruneChanges(2);
      expect(await f.fleet.changesAfter(start, 10)).to.deep.equal(changes.slice(1));
      await f.fleet.pruneChanges(1000);
      expect(await f.fleet.changesAfter(start, 10)).to.deep.equal(changes.slice(1));
    });
  });

  describe('snapshots', () => {
    it('keeps snapshots per tenant and type, reads the last of each bucket and the one before a time, and prunes', async () => {
      const at = (ts: number, queued: number) => f.fleet.recordSnapshot(tenantId, ts, { FIRMWARE: counts({ QUEUED: queued }), SOFTWARE: counts({ OTHER: ts }) });
      for (const [ts, q] of [
        [100, 1],
        [150, 2],
        [210, 3],
        [290, 4],
        [350, 5],
      ] as const)
        await at(ts, q);
      await at(350, 6); // the same time again replaces it
      const series = await f.fleet.snapshotSeries(tenantId, 'FIRMWARE', 100, 399, 3);
      expect(series.map((p) => [p.ts, p.counts.QUEUED])).to.deep.equal([
        [150, 2],
        [290, 4],
        [350, 6],
      ]);
      expect((await f.fleet.snapshotSeries(tenantId, 'SOFTWARE', 200, 300, 10)).map((p) => p.counts.OTHER)).to.deep.equal([210, 290]);
      expect(await f.fleet.snapshotBefore(tenantId, 'FIRMWARE', 210)).to.deep.equal({ ts: 150, counts: counts({ QUEUED: 2 }) });
      expect(await f.fleet.snapshotBefore(tenantId, 'FIRMWARE', 100)).to.equal(null);
      const otherTenant = (await f.tenants.createTenant('other')).id;
      expect(await f.fleet.snapshotSeries(otherTenant, 'FIRMWARE', 0, 1000, 10)).to.deep.equal([]);
      await f.fleet.pruneSnapshots(tenantId, 290);
      expect((await f.fleet.snapshotSeries(tenantId, 'FIRMWARE', 0, 1000, 100)).map((p) => p.ts)).to.deep.equal([290, 350]);
    });

    it('writes no snapshot for a tenant deleted after its distribution was read', async () => {
      const gone = (await f.tenants.createTenant('gone')).id;
      await f.tenants.deleteTenant(gone);
      await f.fleet.recordSnapshot(gone, 100, { FIRMWARE: counts({ QUEUED: 1 }), SOFTWARE: counts({}) });
      expect(await f.fleet.snapshotSeries(gone, 'FIRMWARE', 0, 1000, 10)).to.deep.equal([]);
      expect(await f.fleet.snapshotBefore(gone, 'FIRMWARE', 1000)).to.equal(null);
    });
  });
}

describe('fleet read model contract on SQLite', () => {
  let dir: string;
  let db: Db;
  let fixture: Fixture;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-fleet-contract-'));
    db = openDatabase(path.join(dir, 'ota.db'));
    fixture = {
      fleet: new SqliteFleetReadModel(db),
      tenants: new SqliteTenantRepository(db),
      profiles: new SqliteDeviceProfileRepository(db),
      devices: new SqliteDeviceRepository(db),
      packages: new SqliteOtaPackageRepository(db),
      run: async (sql, params) => void db.prepare(sql).run(...params),
      all: async <R>(sql: string, params: unknown[]) => db.prepare(sql).all(...params) as R[],
      connect: async () => sqliteConnection(path.join(dir, 'ota.db')),
    };
  });
  after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });
  fleetContract(() => fixture);

  it('counts the states a database held before its counts were kept (migration 6)', async () => {
    const file = path.join(dir, 'before-6.db');
    const old = openDatabase(
      file,
      MIGRATIONS.filter((m) => m.version < 6),
    );
    // The tenants table as it was before migration 9 (no profile, no details).
    const tenantId = newId<'TENANT'>();
    old.prepare('INSERT INTO tenants (id, title, created_time) VALUES (?, ?, ?)').run(tenantId, 'old', Date.now());
    const profileId = newId<'DEVICE_PROFILE'>();
    await new SqliteDeviceProfileRepository(old).insert({
      id: profileId,
      tenantId,
      name: 'old',
      description: null,
      isDefault: true,
      firmwareId: null,
      softwareId: null,
      createdTime: 1,
      version: 1,
      extra: {},
    });
    const packageId = newId<'OTA_PACKAGE'>();
    old
      .prepare("INSERT INTO ota_packages (id, tenant_id, device_profile_id, type, title, version, created_time) VALUES (?, ?, ?, 'FIRMWARE', 'fw', '2.0', 1)")
      .run(packageId, tenantId, profileId);
    for (const [i, state] of ['UPDATED', 'FAILED', 'QUEUED'].entries()) {
      const id = newId<'DEVICE'>();
      old
        .prepare('INSERT INTO devices (id, tenant_id, name, device_profile_id, access_token, credentials_id, created_time) VALUES (?, ?, ?, ?, ?, ?, 1)')
        .run(id, tenantId, `d${i}`, profileId, newId(), newId());
      old
        .prepare("INSERT INTO ota_states (device_id, tenant_id, type, state, current_title, current_version, target_package_id) VALUES (?, ?, 'FIRMWARE', ?, 'fw', ?, ?)")
        .run(id, tenantId, state, state === 'UPDATED' ? '2.0' : '1.0', packageId);
    }
    old.close();
    const db6 = openDatabase(file);
    try {
      expect(await new SqliteFleetReadModel(db6).counts(tenantId, 'package')).to.deep.equal([
        { key: packageId, type: 'FIRMWARE', title: 'fw', version: '2.0', targeted: 3, pending: 1, inProgress: 0, updated: 1, failed: 1, onTarget: 1 },
      ]);
    } finally {
      db6.close();
    }
  });
});

/**
 * Another connection to the database file. SQLite lets one connection write at a time: a write
 * while another connection's transaction holds the lock is tried again on a later turn (as
 * busy_timeout would, without blocking the event loop the holder needs to commit).
 */
function sqliteConnection(file: string): Connection {
  const own = new Database(file);
  own.pragma('busy_timeout = 0');
  own.pragma('foreign_keys = ON');
  let busy = false;
  return {
    async run(sql, params = []) {
      for (;;) {
        try {
          own.prepare(sql).run(...params);
          busy = false;
          return;
        } catch (err) {
          if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
          busy = true;
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    },
    waiting: async () => busy,
    close: async () => void own.close(),
  };
}

/** `?` placeholders numbered as PostgreSQL wants them. */
const numbered = (sql: string): string => {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
};

describe('fleet read model contract on PostgreSQL', () => {
  const database = withTestDatabase();
  let dir: string;
  let pg: PgRepositories | undefined;
  let fixture: Fixture;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-fleet-contract-pg-'));
    const repos = await openPgRepositories({ connectionString: database().url, blobCacheDir: path.join(dir, 'blobs'), poolSize: 4 });
    pg = repos;
    fixture = {
      ...repos,
      run: async (sql, params) => void (await repos.pool.query(numbered(sql), params)),
      all: async <R>(sql: string, params: unknown[]) => (await repos.pool.query(numbered(sql), params)).rows as R[],
      connect: async () => {
        const client = await repos.pool.connect();
        const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        return {
          run: async (sql, params = []) => void (await client.query(numbered(sql), params)),
          waiting: async () =>
            (await repos.pool.query<{ waiting: boolean }>("SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1", [pid])).rows[0]?.waiting === true,
          close: async () => client.release(),
        };
      },
    };
  });
  after(async () => {
    await pg?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  fleetContract(() => fixture);
});
