/**
 * The dashboard's reads at fleet scale: BENCH_FLEET_DEVICES devices (default 50,000) of one tenant,
 * in two profiles, every one targeted by a firmware package and in some update state, on SQLite and
 * on PostgreSQL. Timed through the store's read model: the device page (the first page in every sort
 * it offers, both ways; a deep page; filtered to FAILED) and the counts behind `GET /api/ota/metrics`
 * (per package and per profile). BENCH_FLEET_ONLY picks the cases whose name holds it. Beside each, on the same database, the bare reference: the least SQL
 * that answers the same question, on the bare driver (the page's ids alone; the metrics' GROUP BY
 * over every targeted device, as the read model ran it before it kept counters).
 *
 * Medians of BENCH_FLEET_ROUNDS (default 30) rounds, each query alternating with its reference, and
 * the longest the event loop stalled while the read model's queries ran (better-sqlite3 blocks it
 * for the whole query; pg does not).
 *
 * PostgreSQL: OTA_BENCH_DATABASE_URL (default OTA_TEST_DATABASE_URL's server); a fresh database is
 * created and dropped. Without a reachable server that half is skipped, saying so.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';
import { newId, type TenantId } from '../server/ids';
import type { DeviceListSort, FleetReadModel } from '../server/store/fleet-read-model';
import { openPgRepositories } from '../server/store/postgres/pg-repositories';
import { openDatabase } from '../server/store/sqlite/database';
import { SqliteFleetReadModel } from '../server/store/sqlite/fleet-read-model';
import { positiveInt, printTable, type Benchmark } from './lib';

export const fleetRead: Benchmark = { name: 'Fleet read models (dashboard device page, /api/ota/metrics)', run };

const SERVER_URL = process.env.OTA_BENCH_DATABASE_URL ?? process.env.OTA_TEST_DATABASE_URL ?? 'postgres://ota_test:ota_test@127.0.0.1:5432/postgres';
const STATES = ['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED', 'UPDATED', 'UPDATED', 'FAILED'];

/** One database under test: the read model, a bare query runner, and the fleet's ids. */
interface Subject {
  name: string;
  fleet: FleetReadModel;
  /** Runs SQL with `?` placeholders on the bare driver and answers its rows. */
  bare(sql: string, params: unknown[]): Promise<unknown[]>;
  tenantId: TenantId;
  close(): Promise<void>;
}

interface Case {
  name: string;
  ours: (s: Subject) => Promise<unknown>;
  reference: (s: Subject) => Promise<unknown>;
}

/** What the device page sorts by (DeviceListSort), and the bare query that lists the same first 20 ids. */
const SORTS: ReadonlyArray<{ sort: DeviceListSort; reference: (dir: 'ASC' | 'DESC') => string }> = [
  { sort: 'name', reference: (dir) => `SELECT id FROM devices WHERE tenant_id = ? ORDER BY lower(name) ${dir}, id ${dir} LIMIT 20` },
  { sort: 'createdTime', reference: (dir) => `SELECT id FROM devices WHERE tenant_id = ? ORDER BY created_time ${dir}, id ${dir} LIMIT 20` },
  {
    sort: 'deviceProfileName',
    reference: (dir) => `SELECT d.id FROM devices d JOIN device_profiles p ON p.id = d.device_profile_id WHERE d.tenant_id = ? ORDER BY lower(p.name) ${dir}, d.id ${dir} LIMIT 20`,
  },
  // The slot sorts: every device has a firmware state here, so the state table alone answers.
  { sort: 'state', reference: (dir) => `SELECT device_id FROM ota_states WHERE tenant_id = ? AND type = 'FIRMWARE' ORDER BY state ${dir}, device_id ${dir} LIMIT 20` },
  { sort: 'stateTs', reference: (dir) => `SELECT device_id FROM ota_states WHERE tenant_id = ? AND type = 'FIRMWARE' ORDER BY state_ts ${dir}, device_id ${dir} LIMIT 20` },
  {
    sort: 'currentVersion',
    reference: (dir) => `SELECT device_id FROM ota_states WHERE tenant_id = ? AND type = 'FIRMWARE' ORDER BY current_version ${dir}, device_id ${dir} LIMIT 20`,
  },
  {
    sort: 'targetVersion',
    reference: (dir) =>
      `SELECT s.device_id FROM ota_states s JOIN ota_packages p ON p.id = s.target_package_id WHERE s.tenant_id = ? AND s.type = 'FIRMWARE' ORDER BY p.version ${dir}, s.device_id ${dir} LIMIT 20`,
  },
];

const ALL_CASES: readonly Case[] = [
  // Every sort the device page offers, both ways: the first page, as the dashboard opens it.
  ...SORTS.flatMap(({ sort, reference }) =>
    (['ASC', 'DESC'] as const).map((dir): Case => ({
      name: `device page: first 20 by ${sort} ${dir}`,
      ours: (s) => s.fleet.devicePage(s.tenantId, { type: 'FIRMWARE' }, { pageSize: 20, page: 0, sortProperty: sort, sortOrder: dir }),
      reference: (s) => s.bare(reference(dir), [s.tenantId]),
    })),
  ),
  {
    name: 'device page: page 1,000 of 20 by name',
    ours: (s) => s.fleet.devicePage(s.tenantId, { type: 'FIRMWARE' }, { pageSize: 20, page: 1000 }),
    reference: (s) => s.bare('SELECT id FROM devices WHERE tenant_id = ? ORDER BY lower(name), id LIMIT 20 OFFSET 20000', [s.tenantId]),
  },
  {
    name: 'device page: FAILED, newest first',
    ours: (s) => s.fleet.devicePage(s.tenantId, { type: 'FIRMWARE', states: ['FAILED'] }, { pageSize: 20, page: 0, sortProperty: 'stateTs', sortOrder: 'DESC' }),
    reference: (s) => s.bare("SELECT device_id FROM ota_states WHERE tenant_id = ? AND type = 'FIRMWARE' AND state = 'FAILED' ORDER BY state_ts DESC LIMIT 20", [s.tenantId]),
  },
  {
    name: 'metrics: counts per package and per profile',
    ours: (s) => Promise.all([s.fleet.counts(s.tenantId, 'package'), s.fleet.counts(s.tenantId, 'profile')]),
    reference: (s) =>
      Promise.all(
        ['s.target_package_id', 'd.device_profile_id'].map((key) =>
          s.bare(
            `SELECT ${key} AS key, s.type, count(*) AS targeted, sum(CASE WHEN s.state = 'UPDATED' THEN 1 ELSE 0 END) AS updated,
               sum(CASE WHEN s.current_title = p.title AND s.current_version = p.version THEN 1 ELSE 0 END) AS on_target
             FROM ota_states s JOIN ota_packages p ON p.id = s.target_package_id JOIN devices d ON d.id = s.device_id
             WHERE s.tenant_id = ? AND s.target_package_id IS NOT NULL GROUP BY ${key}, s.type`,
            [s.tenantId],
          ),
        ),
      ),
  },
];

/** BENCH_FLEET_ONLY: the cases whose name holds it (e.g. `by state`); unset, all of them. */
const CASES: readonly Case[] = process.env.BENCH_FLEET_ONLY ? ALL_CASES.filter((c) => c.name.includes(process.env.BENCH_FLEET_ONLY as string)) : ALL_CASES;

/** The fleet, as rows both databases take: tenants, two profiles, a package, devices, their states. */
function fleetRows(n: number): { tenantId: string; profiles: string[]; packageId: string; devices: unknown[][]; states: unknown[][] } {
  const tenantId = newId();
  const profiles = [newId(), newId()];
  const packageId = newId();
  const devices: unknown[][] = [];
  const states: unknown[][] = [];
  for (let i = 0; i < n; i++) {
    const id = newId();
    devices.push([id, tenantId, `device-${String(i).padStart(6, '0')}`, profiles[i % 2], `token-${id}`, newId(), i]);
    const state = STATES[i % STATES.length] as string;
    states.push([id, tenantId, state, i, state === 'UPDATED' ? '2.0' : '1.0', packageId]);
  }
  return { tenantId, profiles, packageId, devices, states };
}

const SCHEMA_ROWS = {
  tenant: 'INSERT INTO tenants (id, title, created_time) VALUES (?, ?, 0)',
  profile: 'INSERT INTO device_profiles (id, tenant_id, name, created_time) VALUES (?, ?, ?, 0)',
  package:
    "INSERT INTO ota_packages (id, tenant_id, device_profile_id, type, title, version, url, created_time) VALUES (?, ?, ?, 'FIRMWARE', 'fw', '2.0', 'https://example.invalid/fw', 0)",
  device: 'INSERT INTO devices (id, tenant_id, name, device_profile_id, access_token, credentials_id, created_time) VALUES (?, ?, ?, ?, ?, ?, ?)',
  state: "INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, current_title, current_version, target_package_id) VALUES (?, ?, 'FIRMWARE', ?, ?, 'fw', ?, ?)",
};

async function sqliteSubject(n: number, dir: string): Promise<Subject> {
  const db = openDatabase(path.join(dir, 'ota.sqlite'));
  const f = fleetRows(n);
  db.transaction(() => {
    db.prepare(SCHEMA_ROWS.tenant).run(f.tenantId, 'bench');
    f.profiles.forEach((p, i) => db.prepare(SCHEMA_ROWS.profile).run(p, f.tenantId, `profile ${i}`));
    db.prepare(SCHEMA_ROWS.package).run(f.packageId, f.tenantId, f.profiles[0]);
    const device = db.prepare(SCHEMA_ROWS.device);
    for (const d of f.devices) device.run(...d);
    const state = db.prepare(SCHEMA_ROWS.state);
    for (const s of f.states) state.run(...s);
  })();
  db.exec('DELETE FROM ota_state_changes');
  return {
    name: 'SQLite',
    fleet: new SqliteFleetReadModel(db),
    bare: async (sql, params) => db.prepare(sql).all(...params),
    tenantId: f.tenantId as TenantId,
    close: async () => {
      db.close();
    },
  };
}

async function postgresSubject(n: number, dir: string): Promise<Subject | null> {
  const admin = new pg.Client({ connectionString: SERVER_URL, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (err) {
    console.log(`PostgreSQL skipped: not reachable at OTA_BENCH_DATABASE_URL / OTA_TEST_DATABASE_URL (${(err as Error).message})`);
    return null;
  }
  const name = `ota_bench_${process.pid}_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const repos = await openPgRepositories({ connectionString: url.toString(), blobCacheDir: path.join(dir, 'pg-blobs'), poolSize: 4 });
  const numbered = (sql: string): string => {
    let i = 0;
    return sql.replace(/\?/g, () => `$${++i}`);
  };
  const f = fleetRows(n);
  const client = await repos.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(numbered(SCHEMA_ROWS.tenant), [f.tenantId, 'bench']);
    for (const [i, p] of f.profiles.entries()) await client.query(numbered(SCHEMA_ROWS.profile), [p, f.tenantId, `profile ${i}`]);
    await client.query(numbered(SCHEMA_ROWS.package), [f.packageId, f.tenantId, f.profiles[0]]);
    // Many rows per statement: seeding is not what is measured.
    const many = async (sql: string, rows: unknown[][]): Promise<void> => {
      const [head, tuple] = sql.split(' VALUES ') as [string, string];
      for (let i = 0; i < rows.length; i += 1000) {
        const part = rows.slice(i, i + 1000);
        await client.query(numbered(`${head} VALUES ${part.map(() => tuple).join(', ')}`), part.flat());
      }
    };
    await many(SCHEMA_ROWS.device, f.devices);
    await many(SCHEMA_ROWS.state, f.states);
    await client.query('DELETE FROM ota_state_changes');
    await client.query('COMMIT');
    // As autovacuum leaves a table at rest: statistics and the visibility map that index-only scans use.
    await client.query('VACUUM ANALYZE');
  } finally {
    client.release();
  }
  return {
    name: 'PostgreSQL',
    fleet: repos.fleet,
    bare: async (sql, params) => (await repos.pool.query(numbered(sql), params)).rows,
    tenantId: f.tenantId as TenantId,
    close: async () => {
      await repos.close();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

async function ms(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function measure(s: Subject, rounds: number): Promise<string[][]> {
  const rows: string[][] = [];
  for (const c of CASES) {
    await c.ours(s); // warm: statements compiled, pages cached
    await c.reference(s);
    const ours: number[] = [];
    const reference: number[] = [];
    for (let i = 0; i < rounds; i++) {
      reference.push(await ms(() => c.reference(s)));
      ours.push(await ms(() => c.ours(s)));
    }
    // Our reads alone, one after the other, while the loop's delay is watched.
    // The monitor samples on a timer: the loop is given back to it before, between and after reads.
    const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 3));
    const stall = monitorEventLoopDelay({ resolution: 1 });
    stall.enable();
    await pause();
    for (let i = 0; i < Math.min(rounds, 10); i++) {
      await c.ours(s);
      await pause();
    }
    stall.disable();
    const m = median(ours);
    const r = median(reference);
    rows.push([s.name, c.name, m.toFixed(2), r.toFixed(2), `${(r / m).toFixed(2)}×`, (stall.max / 1e6).toFixed(1)]);
  }
  return rows;
}

async function run(): Promise<void> {
  const n = positiveInt('BENCH_FLEET_DEVICES', 50_000);
  const rounds = positiveInt('BENCH_FLEET_ROUNDS', 30);
  const dir = await mkdtemp(path.join(tmpdir(), 'ota-bench-fleet-'));
  const rows: string[][] = [];
  try {
    for (const open of [sqliteSubject, postgresSubject]) {
      const s = await open(n, dir);
      if (!s) continue;
      try {
        rows.push(...(await measure(s, rounds)));
      } finally {
        await s.close();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  console.log(`${n} devices of one tenant, all targeted; medians of ${rounds} rounds`);
  console.log();
  printTable(['database', 'read', 'ours ms (median)', 'bare reference ms (median)', 'ratio (reference ÷ ours)', 'longest event-loop stall ms'], rows);
  console.log();
  console.log('ratio: 1.00× = as fast as the bare query; the stall is the longest the event loop waited while our reads ran');
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
