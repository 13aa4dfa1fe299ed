/**
 * The PostgreSQL store at fleet scale: BENCH_DEVICES devices (default 10,000) created through
 * PgDeviceRepository, then the five shared `fw_*` attributes a notification writes saved for each
 * through PgAttributeRepository; each step one device after the other (the latency of one
 * request) and with BENCH_PG_CONCURRENCY (default 8) devices in flight (a busy server).
 *
 * Beside each, on the same database, a bare `pg` loop does the minimal equivalent: one
 * parameterised INSERT per device into a copy of the table (`bench_ref_*`, made `LIKE` the real
 * one, with its foreign keys, so indexes and constraints cost the same), and one multi-row upsert per device for the
 * attributes. A ratio is our events/s over the bare loop's.
 *
 * The server comes from OTA_BENCH_DATABASE_URL (default: OTA_TEST_DATABASE_URL's, the local
 * cluster as .ci/run sets it up); a fresh database is created and dropped. Without a reachable
 * server the benchmark says so and is skipped.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { newId, type DeviceId, type DeviceProfileId, type TenantId } from '../server/ids';
import type { AttributeMap } from '../server/store/attributes';
import type { Device } from '../server/store/devices';
import { PgAttributeRepository } from '../server/store/postgres/attributes';
import { PgDeviceProfileRepository } from '../server/store/postgres/device-profiles';
import { PgDeviceRepository } from '../server/store/postgres/devices';
import { openPool } from '../server/store/postgres/pool';
import { PgTenantRepository } from '../server/store/postgres/tenants';
import { positiveInt, printTable, timed, type Benchmark } from './lib';

export const storePostgres: Benchmark = {
  name: 'PostgreSQL store',
  run,
};

const SERVER_URL = process.env.OTA_BENCH_DATABASE_URL ?? process.env.OTA_TEST_DATABASE_URL ?? 'postgres://ota_test:ota_test@127.0.0.1:5432/postgres';

interface Row {
  name: string;
  events: number;
  seconds: number;
  reference?: Row;
}

const rate = (r: Row): number => r.events / r.seconds;

/** Rounds each step and its reference alternate in. */
const ROUNDS = 5;

/** Runs `task(i)` for i in [0, n) with at most `width` in flight. */
async function inFlight(n: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, lane));
}

async function run(): Promise<void> {
  const n = positiveInt('BENCH_DEVICES', 10_000);
  const width = positiveInt('BENCH_PG_CONCURRENCY', 8);
  const name = `ota_bench_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: SERVER_URL, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (err) {
    console.log(`skipped: PostgreSQL is not reachable at OTA_BENCH_DATABASE_URL / OTA_TEST_DATABASE_URL (${(err as Error).message})`);
    return;
  }
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const pool = await openPool({ connectionString: url.toString(), max: width + 2 });
  try {
    const tenantId = (await new PgTenantRepository(pool).createTenant('bench')).id;
    const profileId = newId<'DEVICE_PROFILE'>();
    await new PgDeviceProfileRepository(pool).insert({
      id: profileId,
      tenantId,
      name: 'bench',
      description: null,
      isDefault: true,
      firmwareId: null,
      softwareId: null,
      createdTime: Date.now(),
      version: 1,
      extra: {},
    });
    // LIKE copies columns, indexes and checks but not foreign keys: those are added as the real tables have them.
    await pool.query(`
      CREATE TABLE bench_ref_devices (LIKE devices INCLUDING ALL);
      ALTER TABLE bench_ref_devices ADD FOREIGN KEY (tenant_id) REFERENCES tenants(id), ADD FOREIGN KEY (device_profile_id) REFERENCES device_profiles(id);
      CREATE TABLE bench_ref_attributes (LIKE attributes INCLUDING ALL);
      ALTER TABLE bench_ref_attributes ADD FOREIGN KEY (device_id) REFERENCES bench_ref_devices(id) ON DELETE CASCADE;
    `);
    const devices = new PgDeviceRepository(pool);
    const attributes = new PgAttributeRepository(pool);
    const ref = new Reference(pool, tenantId, profileId);
    const version = await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    console.log(`${n} devices; PostgreSQL ${version.rows[0].v}; sequential, then ${width} in flight; pool of ${width + 2}`);

    const rows: Row[] = [];
    /**
     * One step beside its reference, in ROUNDS alternating rounds (reference, ours, reference, ...)
     * so a drift in the machine's load (commits wait for the disk) hits both alike; times add up.
     */
    const pair = async (label: string, refLabel: string, width: number, refTask: (i: number) => Promise<unknown>, task: (i: number) => Promise<unknown>): Promise<void> => {
      const reference: Row = { name: refLabel, events: n, seconds: 0 };
      const ours: Row = { name: label, events: n, seconds: 0, reference };
      const per = Math.ceil(n / ROUNDS);
      for (let from = 0; from < n; from += per) {
        const count = Math.min(per, n - from);
        reference.seconds += (await timed(() => inFlight(count, width, (i) => refTask(from + i)))).seconds;
        ours.seconds += (await timed(() => inFlight(count, width, (i) => task(from + i)))).seconds;
      }
      rows.push(reference, ours);
    };
    const seqIds: DeviceId[] = [];
    const parIds: DeviceId[] = [];
    const refSeqIds: string[] = [];
    const refParIds: string[] = [];

    await pair(
      'create devices (PgDeviceRepository.insert)',
      'insert device rows (reference)',
      1,
      async (i) => (refSeqIds[i] = await ref.insertDevice(`seq-${i}`)),
      async (i) => (seqIds[i] = await insertDevice(devices, tenantId, profileId, `seq-${i}`)),
    );
    await pair(
      `create devices, ${width} in flight`,
      `insert device rows, ${width} in flight (reference)`,
      width,
      async (i) => (refParIds[i] = await ref.insertDevice(`par-${i}`)),
      async (i) => (parIds[i] = await insertDevice(devices, tenantId, profileId, `par-${i}`)),
    );
    const ts = Date.now();
    await pair(
      'save fw_* attributes (PgAttributeRepository.save)',
      'upsert 5 attributes per device (reference)',
      1,
      (i) => ref.saveAttributes(refSeqIds[i] as string, ts),
      (i) => attributes.save(seqIds[i] as DeviceId, 'SHARED', fwAttributes(), ts),
    );
    await pair(
      `save fw_* attributes, ${width} in flight`,
      `upsert 5 attributes, ${width} in flight (reference)`,
      width,
      (i) => ref.saveAttributes(refParIds[i] as string, ts),
      (i) => attributes.save(parIds[i] as DeviceId, 'SHARED', fwAttributes(), ts),
    );

    const saved = await attributes.get(seqIds[n - 1] as DeviceId, 'SHARED');
    if (saved.fw_version !== '1.0') throw new Error(`the last device's fw_version is ${JSON.stringify(saved.fw_version)}, not "1.0"`);

    console.log();
    printTable(
      ['step', 'events', 'seconds', 'events/s', 'ratio to reference'],
      rows.map((row) => [row.name, String(row.events), row.seconds.toFixed(2), rate(row).toFixed(0), row.reference ? `${(rate(row) / rate(row.reference)).toFixed(3)}×` : '—']),
    );
    console.log();
    console.log(`ratio: our events/s ÷ the bare pg loop's just above it (1.00 = as fast); ${ROUNDS} alternating rounds each, reference first`);
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

const fwAttributes = (): AttributeMap => ({
  fw_title: 'bench',
  fw_version: '1.0',
  fw_size: 65536,
  fw_checksum_algorithm: 'SHA256',
  fw_checksum: 'ab'.repeat(32),
});

async function insertDevice(devices: PgDeviceRepository, tenantId: TenantId, profileId: DeviceProfileId, name: string): Promise<DeviceId> {
  const device: Device = {
    id: newId<'DEVICE'>(),
    tenantId,
    name,
    label: null,
    deviceProfileId: profileId,
    firmwareId: null,
    softwareId: null,
    accessToken: randomBytes(15).toString('base64url'),
    credentialsId: newId<'DEVICE_CREDENTIALS'>(),
    createdTime: Date.now(),
    version: 1,
    extra: {},
  };
  await devices.insert(device);
  return device.id;
}

/** The least each step must do with `pg` alone: one parameterised statement per device. */
class Reference {
  constructor(
    private readonly pool: pg.Pool,
    private readonly tenantId: TenantId,
    private readonly profileId: DeviceProfileId,
  ) {}

  async insertDevice(name: string): Promise<string> {
    const id = randomUUID();
    await this.pool.query(
      `INSERT INTO bench_ref_devices (id, tenant_id, name, device_profile_id, access_token, credentials_id, created_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [id, this.tenantId, name, this.profileId, randomBytes(15).toString('base64url'), randomUUID(), Date.now()],
    );
    return id;
  }

  async saveAttributes(deviceId: string, ts: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO bench_ref_attributes (device_id, scope, key, value, ts) VALUES
         ($1, 'SHARED', 'fw_title', '"bench"', $2), ($1, 'SHARED', 'fw_version', '"1.0"', $2), ($1, 'SHARED', 'fw_size', '65536', $2),
         ($1, 'SHARED', 'fw_checksum_algorithm', '"SHA256"', $2), ($1, 'SHARED', 'fw_checksum', $3, $2)
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
      [deviceId, ts, JSON.stringify('ab'.repeat(32))],
    );
  }
}
