/**
 * The update pipeline at fleet scale, in this process (no HTTP): BENCH_DEVICES devices (default
 * 10,000) in one profile, one package assigned to the profile, and each step timed on its own:
 *
 *   create devices        `DeviceService.save` per device, as `POST /api/device` does
 *   assignment → queued   the profile's slot set, until the queue holds one row per device (with
 *                         no `assignment` listener the engine enqueues directly)
 *   release + notify      the queue started with pacing off, `Notifier.process` on every released
 *                         event, until every device is notified
 *
 * Beside each, on the same database file, a bare better-sqlite3 loop does the least the step must
 * do, in transactions of the same size as the engine's, in tables made with the same schema
 * (`bench_ref_*`, so the engine's own rows are not touched), with statements prepared once and run
 * once per row:
 *
 *   insert device rows                one INSERT per device, each its own transaction (the REST
 *                                     API saves one device per request)
 *   queue rows + target telemetry     per device what ThingsBoard writes on enqueue (reference
 *                                     §2, §1.3): the queue row, and the time series `target_fw_title`,
 *                                     `target_fw_version`, `target_fw_tag`, `target_fw_ts` and
 *                                     `fw_state` = QUEUED, latest value and history (ThingsBoard
 *                                     keeps both: ts_kv_latest and ts_kv); one transaction per 100
 *                                     devices (the page of a profile's devices the engine queues at once)
 *   take queue rows + INITIATED + attributes  SELECT and DELETE queue rows 500 at a time (the queue's
 *                                     unpaced batch), then one transaction per batch writing
 *                                     `fw_state` = INITIATED (latest and history) and deleting and
 *                                     upserting the shared attributes, as ThingsBoard's consumer does
 *
 * What the engine writes beyond that is its own cost in the ratio: the update state per device
 * (with the triggers that keep the dashboard's counts and change log), the target it was queued and
 * notified for (what keeps a device from being notified twice and what reconciliation compares),
 * the queue's lease and hand-over, its lookups and its JavaScript.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { OtaEngine } from '../server/engine';
import type { DeviceId, DeviceProfileId, TenantId } from '../server/ids';
import type { AssignmentEvent } from '../server/pipeline/notify-queue';
import { packageAttributes } from '../server/pipeline/ota-keys';
import type { OtaPackage } from '../server/store/ota-packages';
import { benchLogger, Cleanup, createProfileWithPackage, formatBytes, measured, positiveInt, printTable, queueReaches, type Benchmark } from './lib';

export const pipelineQueue: Benchmark = {
  name: 'pipeline queue',
  run,
};

/** The queue's release size with pacing off (`UNPACED_BATCH` in server/pipeline/notify-queue.ts). */
const RELEASE_BATCH = 500;
/** The devices of a profile queued per transaction (`PAGE` in server/pipeline/assignment.ts). */
const ASSIGNMENT_PAGE = 100;

/** One row of the table. */
class Step {
  seconds = NaN;
  /** CPU time of this process over the step (user + system), steadier than wall time on a busy machine. */
  cpuMs = NaN;
  peak: number | null = null;

  constructor(
    readonly name: string,
    readonly events: number,
    /** The row this one is compared against; none for a reference. */
    readonly reference: Step | null = null,
  ) {}

  record(m: { seconds: number; peak: number | null; cpuMs: number }): void {
    this.seconds = m.seconds;
    this.cpuMs = m.cpuMs;
    this.peak = m.peak;
  }

  get rate(): number {
    return this.events / this.seconds;
  }

  cells(): string[] {
    return [
      this.name,
      String(this.events),
      this.seconds.toFixed(2),
      this.rate.toFixed(0),
      this.reference ? `${(this.rate / this.reference.rate).toFixed(3)}× ${this.reference.name.replace(' (reference)', '')}` : '—',
      this.cpuMs.toFixed(0),
      this.reference ? `${(this.reference.cpuMs / this.cpuMs).toFixed(3)}×` : '—',
      formatBytes(this.peak),
    ];
  }
}

async function run(): Promise<void> {
  const n = positiveInt('BENCH_DEVICES', 10_000);
  const refDevices = new Step('insert device rows (reference)', n);
  const devices = new Step('create devices (DeviceService.save)', n, refDevices);
  const refQueued = new Step('queue rows + target telemetry (reference)', n);
  const queued = new Step('assignment → queued', n, refQueued);
  const refNotified = new Step('take queue rows + INITIATED + attributes (reference)', n);
  const notified = new Step('release + notify (pacing off)', n, refNotified);

  const cleanup = new Cleanup();
  try {
    const dir = await cleanup.tempDir('ota-bench-pipeline');
    // An error logged in the background (a failed assignment) ends the benchmark instead of hanging it.
    let failed: (err: Error) => void = () => undefined;
    const failure = new Promise<never>((_, reject) => (failed = reject));
    failure.catch(() => undefined);
    const engine = await OtaEngine.open({
      dataDir: dir,
      http: false,
      admin: { password: randomBytes(12).toString('base64url') },
      logger: benchLogger((m) => failed(new Error(`engine: ${m}`))),
    });
    cleanup.add(() => void engine.close()); // with `http: false`, close() finishes synchronously
    const tenantId = engine.bootstrap.admin.tenantId;
    const { profileId, pkg } = await createProfileWithPackage(engine, tenantId, {
      profileName: 'bench',
      title: 'bench',
      version: '1.0',
      source: Readable.from([randomBytes(64 * 1024)]),
    });
    const ref = new Reference(path.join(dir, 'ota.sqlite'), tenantId, profileId, pkg);
    cleanup.add(() => ref.close());
    console.log(`${n} devices, one profile, one 64 KiB package; engine and reference on ${path.join(dir, 'ota.sqlite')}`);

    refDevices.record(await withCpu(async () => ref.insertDevices(n)));
    const ids: DeviceId[] = [];
    devices.record(
      await withCpu(async () => {
        for (let i = 0; i < n; i++) ids.push((await engine.devices.save(tenantId, { name: `device-${i}`, deviceProfileId: { id: profileId } })).id);
        await yieldToLoop(); // the assignment service's deviceSaved handlers (nothing to assign yet)
      }),
    );

    refQueued.record(await withCpu(async () => ref.enqueue(ids)));
    const queue = engine.pipeline.queue;
    queued.record(
      await withCpu(async () => {
        const full = queueReaches(queue, n);
        await engine.pipeline.assignment.assign(tenantId, { target: { deviceProfile: profileId }, type: 'FIRMWARE', package: pkg.id });
        await Promise.race([full, failure]);
      }),
    );
    if ((await queue.depth()) !== n) throw new Error(`queue holds ${await queue.depth()} rows, expected ${n}`);

    refNotified.record(await withCpu(async () => ref.takeAndNotify(n)));
    notified.record(
      await withCpu(async () => {
        const all = new Promise<void>((resolve, reject) => {
          let done = 0;
          const notify = (ev: AssignmentEvent) =>
            engine.pipeline.notifier.process(ev).then((outcome) => {
              if ('dropped' in outcome) throw new Error(`device ${ev.deviceId} dropped: ${outcome.dropped}`);
              if (++done === n) resolve();
            });
          queue.start({ packSize: RELEASE_BATCH, intervalMs: 0, mode: 'spaced' }, (events) => {
            for (const ev of events) notify(ev).catch(reject);
            // Straight to the notifier, as ota-rate-queue wired to ota-notify: the rows leave the queue in its commit.
            return 'notifier acks';
          });
        });
        await Promise.race([all, failure]);
        queue.stop();
      }),
    );
    if ((await queue.depth()) !== 0 || engine.pipeline.notifier.stats.notified !== n) {
      throw new Error(`after notifying: queue depth ${await queue.depth()}, ${engine.pipeline.notifier.stats.notified} notified; expected 0 and ${n}`);
    }
    const sample = await engine.pipeline.attributes.get(ids[n - 1] as DeviceId, 'SHARED');
    if (sample.fw_version !== pkg.version) throw new Error(`the last device's shared fw_version is ${JSON.stringify(sample.fw_version)}, not ${pkg.version}`);

    const steps = [refDevices, devices, refQueued, queued, refNotified, notified];
    console.log();
    printTable(
      ['step', 'events', 'seconds', 'events/s', 'ratio to reference', 'CPU ms', 'CPU ratio', 'peak RSS (process)'],
      steps.map((s) => s.cells()),
    );
    console.log();
    console.log("ratio: our events/s ÷ the reference's (1.00 = as fast, below 1 = slower); one run each, reference first");
    console.log("CPU ms: this process's user + system time over the step; CPU ratio: the reference's CPU ÷ ours (wall time swings on a busy machine, CPU less)");
    console.log('peak RSS: this process (engine and references run in it), reset before each step where Linux allows');
    console.log(`process peak RSS over all steps: ${formatBytes(Math.max(...steps.map((s) => s.peak ?? 0)) || null)}`);
  } finally {
    cleanup.run();
  }
}

/** `measured` in this process, with the CPU time it took. */
async function withCpu<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number; peak: number | null; cpuMs: number }> {
  const before = process.cpuUsage();
  const m = await measured('self', fn);
  const used = process.cpuUsage(before);
  return { ...m, cpuMs: (used.user + used.system) / 1000 };
}

/**
 * The least each step must do, with better-sqlite3 alone: its own connection to the engine's
 * database, the engine's pragmas, statements prepared once, tables copied from the engine's schema.
 */
class Reference {
  private readonly db: Database.Database;

  constructor(
    file: string,
    private readonly tenantId: TenantId,
    private readonly profileId: DeviceProfileId,
    private readonly pkg: OtaPackage,
  ) {
    this.db = new Database(file);
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    for (const table of ['devices', 'notify_queue', 'attributes', 'telemetry_latest', 'telemetry_history']) this.copyTable(table);
  }

  insertDevices(n: number): void {
    const insert = this.db.prepare(
      `INSERT INTO bench_ref_devices (id, tenant_id, name, label, device_profile_id, firmware_id, software_id, access_token, credentials_id, created_time, version, extra)
       VALUES (?, ?, ?, NULL, ?, NULL, NULL, ?, ?, ?, 1, '{}')`,
    );
    for (let i = 0; i < n; i++) insert.run(randomUUID(), this.tenantId, `device-${i}`, this.profileId, randomUUID(), randomUUID(), Date.now());
  }

  enqueue(deviceIds: readonly DeviceId[]): void {
    const insert = this.db.prepare('INSERT OR REPLACE INTO bench_ref_notify_queue (tenant_id, device_id, type, package_id, ts) VALUES (?, ?, ?, ?, ?)');
    const telemetry = this.telemetryWriter();
    const enqueue = this.db.transaction((page: readonly DeviceId[]) => {
      const ts = Date.now();
      const values: Array<[string, string]> = [
        ['target_fw_title', JSON.stringify(this.pkg.title)],
        ['target_fw_version', JSON.stringify(this.pkg.version)],
        ...(this.pkg.tag ? [['target_fw_tag', JSON.stringify(this.pkg.tag)] as [string, string]] : []),
        ['target_fw_ts', JSON.stringify(ts)],
        ['fw_state', JSON.stringify('QUEUED')],
      ];
      for (const id of page) {
        insert.run(this.tenantId, id, 'FIRMWARE', this.pkg.id, ts);
        for (const [key, json] of values) telemetry(id, key, ts, json);
      }
    });
    for (let i = 0; i < deviceIds.length; i += ASSIGNMENT_PAGE) enqueue(deviceIds.slice(i, i + ASSIGNMENT_PAGE));
  }

  takeAndNotify(n: number): void {
    const select = this.db.prepare('SELECT * FROM bench_ref_notify_queue ORDER BY seq LIMIT ?');
    const del = this.db.prepare('DELETE FROM bench_ref_notify_queue WHERE seq = ?');
    const take = this.db.transaction(() => {
      const rows = select.all(RELEASE_BATCH) as Array<{ seq: number; device_id: string }>;
      for (const r of rows) del.run(r.seq);
      return rows;
    });
    const { set, remove } = packageAttributes(this.pkg);
    const values = Object.entries(set).map(([key, value]) => [key, JSON.stringify(value)] as const);
    const delAttr = this.db.prepare("DELETE FROM bench_ref_attributes WHERE device_id = ? AND scope = 'SHARED' AND key = ?");
    const upsert = this.db.prepare(
      `INSERT INTO bench_ref_attributes (device_id, scope, key, value, ts) VALUES (?, 'SHARED', ?, ?, ?)
       ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, ts = excluded.ts`,
    );
    const telemetry = this.telemetryWriter();
    const initiated = JSON.stringify('INITIATED');
    const notify = this.db.transaction((rows: ReadonlyArray<{ device_id: string }>, ts: number) => {
      for (const r of rows) {
        telemetry(r.device_id, 'fw_state', ts, initiated);
        for (const key of remove) delAttr.run(r.device_id, key);
        for (const [key, json] of values) upsert.run(r.device_id, key, json, ts);
      }
    });
    let done = 0;
    for (let rows = take(); rows.length > 0; rows = take()) {
      notify(rows, Date.now());
      done += rows.length;
    }
    if (done !== n) throw new Error(`reference took ${done} queue rows, expected ${n}`);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** One time-series value: the latest (an upsert that never goes back in time) and its history row. */
  private telemetryWriter(): (deviceId: string, key: string, ts: number, json: string) => void {
    const latest = this.db.prepare(
      `INSERT INTO bench_ref_telemetry_latest (device_id, key, ts, value) VALUES (?, ?, ?, ?)
       ON CONFLICT (device_id, key) DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= bench_ref_telemetry_latest.ts`,
    );
    const history = this.db.prepare('INSERT INTO bench_ref_telemetry_history (device_id, key, ts, value) VALUES (?, ?, ?, ?)');
    return (deviceId, key, ts, json) => {
      latest.run(deviceId, key, ts, json);
      history.run(deviceId, key, ts, json);
    };
  }

  /**
   * `bench_ref_<table>` with the table's exact definition and indexes (same constraints, same foreign
   * keys); not its triggers, which keep the engine's read models: they are the engine's cost.
   */
  private copyTable(table: string): void {
    const rows = this.db
      .prepare("SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type = 'index'")
      .all(table) as Array<{ type: string; sql: string }>;
    for (const { type, sql } of rows) {
      const copy =
        type === 'table'
          ? sql.replace(/^CREATE TABLE (\w+)/, 'CREATE TABLE bench_ref_$1')
          : sql.replace(/^CREATE (UNIQUE )?INDEX (\w+) ON (\w+)/, 'CREATE $1INDEX bench_ref_$2 ON bench_ref_$3');
      if (copy === sql) throw new Error(`cannot copy the schema of ${table}: ${sql}`);
      this.db.exec(copy);
    }
  }
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
