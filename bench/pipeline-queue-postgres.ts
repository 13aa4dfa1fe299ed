/**
 * The update pipeline at fleet scale on PostgreSQL, in this process (no HTTP): the engine opened on
 * a fresh database (`OTA_DATABASE_URL`), BENCH_DEVICES devices (default 10,000) in one profile,
 * one package assigned to the profile; the same two steps as pipeline-queue.ts (the SQLite one):
 *
 *   assignment → queued   the profile's slot set, until the queue holds one row per device
 *   release + notify      the queue started with pacing off, `Notifier.process` on every released
 *                         event, until every device is notified
 *
 * Beside each, on the same database, a bare `pg` loop does the least the step must do in
 * transactions of the engine's size, in copies of the tables (`bench_ref_*`, made `LIKE` the real
 * ones):
 *
 *   insert queue rows                   one INSERT per device, one transaction per 100 devices
 *   take queue rows + write attributes  500 rows claimed (`FOR UPDATE SKIP LOCKED`) and deleted at
 *                                       a time, then one transaction per batch deleting and
 *                                       upserting each device's shared attributes, one statement each
 *
 * Each step also shows the CPU the database's backends spent on it (read from /proc: a server on
 * this machine), which swings less than wall time when the machine is shared.
 *
 * The server: OTA_BENCH_DATABASE_URL (default OTA_TEST_DATABASE_URL's, the local cluster of .ci/run);
 * the database is created and dropped. Without a reachable server the benchmark says so and ends.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import pg from 'pg';
import { OtaEngine } from '../server/engine';
import type { DeviceId } from '../server/ids';
import { newId } from '../server/ids';
import type { AssignmentEvent } from '../server/pipeline/notify-queue';
import { packageAttributes } from '../server/pipeline/ota-keys';
import { backendCpu, benchLogger, Cleanup, createProfileWithPackage, positiveInt, printTable, queueReaches, timed, type Benchmark } from './lib';

export const pipelineQueuePostgres: Benchmark = {
  name: 'pipeline queue (PostgreSQL)',
  run,
};

const SERVER_URL = process.env.OTA_BENCH_DATABASE_URL ?? process.env.OTA_TEST_DATABASE_URL ?? 'postgres://ota_test:ota_test@127.0.0.1:5432/postgres';
const RELEASE_BATCH = 500;
const ASSIGNMENT_PAGE = 100;

async function onServer(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: SERVER_URL, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** `fn` timed, with the CPU the database's backends spent meanwhile (steadier than wall time on a busy machine). */
async function step(url: string, fn: () => Promise<unknown>): Promise<{ seconds: number; databaseMs: number }> {
  const before = await backendCpu(url);
  const { seconds } = await timed(fn);
  return { seconds, databaseMs: (await backendCpu(url, before.byPid)).spent };
}

async function run(): Promise<void> {
  const n = positiveInt('BENCH_DEVICES', 10_000);
  const name = `ota_bench_${process.pid}_${randomBytes(4).toString('hex')}`;
  try {
    await onServer(`CREATE DATABASE ${name}`);
  } catch (err) {
    console.log(`skipped: no PostgreSQL server at OTA_BENCH_DATABASE_URL (${(err as Error).message})`);
    return;
  }
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const cleanup = new Cleanup();
  let engine: OtaEngine | undefined;
  let ref: pg.Pool | undefined;
  try {
    const dir = await cleanup.tempDir('ota-bench-pipeline-pg');
    engine = await OtaEngine.open({ dataDir: dir, databaseUrl: url.toString(), http: false, admin: { password: randomBytes(12).toString('base64url') }, logger: benchLogger() });
    const tenantId = engine.bootstrap.admin.tenantId;
    const { profileId, pkg } = await createProfileWithPackage(engine, tenantId, {
      profileName: 'bench',
      title: 'bench',
      version: '1.0',
      source: Readable.from([randomBytes(64 * 1024)]),
    });
    ref = new pg.Pool({ connectionString: url.toString(), max: 2 });
    // The devices, written in bulk (not measured): the steps start from a fleet that exists.
    const ids: DeviceId[] = Array.from({ length: n }, () => newId<'DEVICE'>());
    await ref.query(
      `INSERT INTO devices (id, tenant_id, name, device_profile_id, access_token, credentials_id, created_time)
       SELECT id, $1, 'device-' || id, $2, 'token-' || id, gen_random_uuid(), 0 FROM unnest($3::uuid[]) AS id`,
      [tenantId, profileId, ids],
    );
    for (const t of ['notify_queue', 'attributes']) await ref.query(`CREATE TABLE bench_ref_${t} (LIKE ${t} INCLUDING ALL)`);
    console.log(`${n} devices, one profile, one 64 KiB package; engine and reference on one PostgreSQL database`);

    const refQueued = await step(url.toString(), async () => {
      const client = await (ref as pg.Pool).connect();
      try {
        for (let i = 0; i < n; i += ASSIGNMENT_PAGE) {
          await client.query('BEGIN');
          for (const id of ids.slice(i, i + ASSIGNMENT_PAGE)) {
            await client.query('INSERT INTO bench_ref_notify_queue (tenant_id, device_id, type, package_id, ts) VALUES ($1, $2, $3, $4, $5)', [
              tenantId,
              id,
              'FIRMWARE',
              pkg.id,
              Date.now(),
            ]);
          }
          await client.query('COMMIT');
        }
      } finally {
        client.release();
      }
    });
    const queue = engine.pipeline.queue;
    const queued = await step(url.toString(), async () => {
      const full = queueReaches(queue, n);
      await (engine as OtaEngine).pipeline.assignment.assign(tenantId, { target: { deviceProfile: profileId }, type: 'FIRMWARE', package: pkg.id });
      await full;
    });
    if ((await queue.depth()) !== n) throw new Error(`queue holds ${await queue.depth()} rows, expected ${n}`);

    const { set } = packageAttributes(pkg);
    const refNotified = await step(url.toString(), async () => {
      const client = await (ref as pg.Pool).connect();
      try {
        for (;;) {
          const { rows } = await client.query<{ device_id: string }>(
            `DELETE FROM bench_ref_notify_queue WHERE seq IN (SELECT seq FROM bench_ref_notify_queue ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING device_id`,
            [RELEASE_BATCH],
          );
          if (rows.length === 0) break;
          await client.query('BEGIN');
          for (const r of rows) {
            await client.query("DELETE FROM bench_ref_attributes WHERE device_id = $1 AND scope = 'SHARED' AND key = ANY($2::text[])", [r.device_id, ['fw_url']]);
            await client.query(
              `INSERT INTO bench_ref_attributes (device_id, scope, key, value, ts) SELECT $1, 'SHARED', k, v::jsonb, $4 FROM unnest($2::text[], $3::text[]) AS t(k, v)
               ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
              [r.device_id, Object.keys(set), Object.values(set).map((v) => JSON.stringify(v)), Date.now()],
            );
          }
          await client.query('COMMIT');
        }
      } finally {
        client.release();
      }
    });
    const notified = await step(
      url.toString(),
      () =>
        new Promise<void>((resolve, reject) => {
          let done = 0;
          const notify = (ev: AssignmentEvent) =>
            (engine as OtaEngine).pipeline.notifier.process(ev).then((outcome) => {
              if ('dropped' in outcome) throw new Error(`device ${ev.deviceId} dropped: ${outcome.dropped}`);
              if (++done === n) resolve();
            });
          queue.start({ packSize: RELEASE_BATCH, intervalMs: 0, mode: 'spaced' }, (events) => {
            for (const ev of events) notify(ev).catch(reject);
            // Straight to the notifier, as ota-rate-queue wired to ota-notify: the rows leave the queue in its commit.
            return 'notifier acks';
          });
        }),
    );
    queue.stop();
    if ((await queue.depth()) !== 0) throw new Error(`queue depth ${await queue.depth()} after notifying`);

    const rows = [
      ['insert queue rows (reference)', refQueued, null],
      ['assignment → queued', queued, refQueued],
      ['take queue rows + write attributes (reference)', refNotified, null],
      ['release + notify (pacing off)', notified, refNotified],
    ] as const;
    printTable(
      ['step', 'events', 'seconds', 'events/s', 'ratio to reference', 'PostgreSQL CPU ms'],
      rows.map(([name, s, r]) => [
        name,
        String(n),
        s.seconds.toFixed(2),
        (n / s.seconds).toFixed(0),
        r === null ? '—' : `${(r.seconds / s.seconds).toFixed(3)}×`,
        String(s.databaseMs),
      ]),
    );
    console.log("ratio: our events/s ÷ the bare pg loop's (1.00 = as fast); one run each, reference first");
    console.log("PostgreSQL CPU: user + system time of the database's backends over the step (server on this machine), steadier than wall time on a busy machine");
  } finally {
    await engine?.close();
    await ref?.end();
    cleanup.run();
    await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
