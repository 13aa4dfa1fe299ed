/**
 * The path a user runs, end to end: `npm start` (dist/bin/ota-server.js in a child process, a temp
 * data directory, free ports), BENCH_E2E_DEVICES (default 10,000) devices created through the REST
 * API, each connected over MQTT and subscribed to `v1/devices/me/attributes`, a package uploaded,
 * then one REST call assigning it to their profile with pacing off. Timed from that call until the
 * last device holds its `fw_*` attributes.
 *
 * One row per store (BENCH_E2E_STORES, default `sqlite,postgres,postgres2`):
 *   sqlite     one instance on SQLite in its data directory (the default of `npm start`)
 *   postgres   one instance on PostgreSQL
 *   postgres2  two instances (`npm start` twice, each its own data directory) on the same database,
 *              the devices split half and half over their MQTT ports, the REST call to the first:
 *              a device on the second hears of its update over the cluster bus
 * PostgreSQL: a fresh database per row on BENCH_E2E_DATABASE_URL's server (default
 * OTA_BENCH_DATABASE_URL's, else OTA_TEST_DATABASE_URL's, else the local test cluster), dropped after
 * it; no server reachable and the PostgreSQL rows say so.
 *
 * Beside them, in the same run: mosquitto delivering one publish of the same size to as many
 * subscribers (the floor for "tell 10,000 connected devices something").
 *
 * The clients speak raw mqtt-packet (bench/mqtt-wire.ts), so 10,000 of them stay cheap; they run
 * in this process, the servers and mosquitto each in their own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { AdminClient, type ProfileInfo } from '../sim/admin-client';
import { redactedUrl } from '../server/store/redacted-url';
import { backendCpu, Cleanup, cpuMs, positiveInt, printTable, secondsSince, type Benchmark } from './lib';
import { WireClient } from './mqtt-wire';

export const endToEnd: Benchmark = {
  name: 'end to end (npm start, REST assignment to MQTT devices)',
  run,
};

const ENTRY = path.resolve(__dirname, '..', 'bin', 'ota-server.js');
/** BENCH_CPU_PROFILE=<dir>: each server's CPU profile of the fan-out alone is written there (bench/cpu-profile.ts). */
const PROFILE_PRELOAD = path.resolve(__dirname, 'cpu-profile.js');
const ADMIN = 'tenant@thingsboard.org';
const token = (i: number): string => `e2e-bench-${i}`;
const DATABASE_SERVER =
  process.env.BENCH_E2E_DATABASE_URL || process.env.OTA_BENCH_DATABASE_URL || process.env.OTA_TEST_DATABASE_URL || 'postgres://ota_test:ota_test@127.0.0.1:5432/postgres';

const STORES = {
  sqlite: { instances: 1, postgres: false, label: 'SQLite, 1 instance' },
  postgres: { instances: 1, postgres: true, label: 'PostgreSQL, 1 instance' },
  postgres2: { instances: 2, postgres: true, label: 'PostgreSQL, 2 instances' },
} as const;
type StoreName = keyof typeof STORES;

/** BENCH_E2E_STORES: the rows to run, comma-separated, in that order. */
function storesFromEnv(): StoreName[] {
  const raw = process.env.BENCH_E2E_STORES?.trim() || 'sqlite,postgres,postgres2';
  const names = raw.split(',').map((s) => s.trim());
  for (const name of names) if (!(name in STORES)) throw new Error(`BENCH_E2E_STORES: unknown '${name}' (known: ${Object.keys(STORES).join(', ')})`);
  return names as StoreName[];
}

async function run(): Promise<void> {
  const n = positiveInt('BENCH_E2E_DEVICES', 10_000);
  const stores = storesFromEnv();
  const cleanup = new Cleanup();
  try {
    const dir = await cleanup.tempDir('ota-bench-e2e');
    const rows: string[][] = [];
    const notes: string[] = [];
    for (const store of stores) {
      const spec = STORES[store];
      let db: Database | null = null;
      if (spec.postgres) {
        try {
          db = await createDatabase();
        } catch (err) {
          rows.push([`${spec.label}: skipped, no PostgreSQL at ${redactedUrl(DATABASE_SERVER)} (${(err as Error).message})`, '—', '—', '—', '—', '—']);
          continue;
        }
      }
      try {
        const ours = await measure(cleanup, path.join(dir, store), spec, n, db?.url ?? null);
        rows.push([`${spec.label}: REST assignment → ${n} MQTT devices hold fw_*`, ours.ms.toFixed(0), (n / (ours.ms / 1000)).toFixed(0), '', ours.serverCpu, ours.databaseCpu]);
        notes.push(`${spec.label}: the REST call itself answered in ${ours.restMs.toFixed(0)} ms`);
      } finally {
        await db?.drop();
      }
    }

    const ref = await mosquittoFanOut(cleanup, dir, n);
    for (const row of rows) if (row[1] !== '—') row[3] = (ref.ms / Number(row[1])).toFixed(2);
    rows.push([`mosquitto: 1 publish → ${n} subscribers (reference)`, ref.ms.toFixed(0), (n / (ref.ms / 1000)).toFixed(0), '—', ref.cpu, '—']);

    console.log();
    printTable(['measurement (npm start, pacing off)', 'ms', 'devices/s', 'ratio (reference ÷ ours)', 'server CPU ms', 'PostgreSQL CPU ms'], rows);
    console.log();
    for (const note of notes) console.log(note);
    console.log('the devices are notified after the REST call, through the flow (assign → rate queue → notify → ota-mqtt)');
    console.log('two instances: the devices split half and half over their MQTT ports, the REST call to the first');
    console.log('QoS 1 subscriptions, raw mqtt-packet clients in the benchmark process; the servers and mosquitto each in their own process');
    console.log('server CPU: user + system time of the server processes (both instances summed) or mosquitto over the same span, steadier than wall time on a busy machine');
    console.log("PostgreSQL CPU: the same for the database's backends serving the run's database");
  } finally {
    cleanup.run();
  }
}

interface Measured {
  ms: number;
  restMs: number;
  serverCpu: string;
  databaseCpu: string;
}

/** One row: the instances started, the fleet made and connected, the assignment timed; the instances stopped after. */
async function measure(cleanup: Cleanup, dir: string, spec: (typeof STORES)[StoreName], n: number, databaseUrl: string | null): Promise<Measured> {
  const password = randomBytes(12).toString('base64url');
  const servers: Array<{ child: ChildProcess; api: string }> = [];
  try {
    // One after the other: the first creates the schema and the admin, the next finds them.
    for (let k = 0; k < spec.instances; k++) servers.push(await startServer(cleanup, path.join(dir, `data-${k}`), password, databaseUrl));
    const admins = await Promise.all(servers.map((s) => AdminClient.login(s.api, ADMIN, password)));
    const admin = admins[0] as AdminClient;
    const ports = await Promise.all(
      admins.map(async (a) => {
        const mqtt = (await a.endpoints()).find((e) => e.transport === 'MQTT');
        if (!mqtt) throw new Error('npm start lists no MQTT endpoint');
        return mqtt.port;
      }),
    );

    const profile = await admin.findOrCreateProfile('e2e-bench');
    let started = process.hrtime.bigint();
    await inBatches(n, 50, (i) => createDevice(admin.base, admin, profile, i));
    console.log(`${spec.label}: ${n} devices created through POST /api/device in ${secondsSince(started).toFixed(1)} s`);
    const pkg = await admin.upload(await admin.createPackage('e2e-fw', '1.0', profile), randomBytes(64 * 1024), 'SHA256');

    // Every device connected (to the instances in turn) and subscribed, then one REST call.
    const ours = await subscribers(
      n,
      (i) => ports[i % ports.length] as number,
      true,
      (payload) => payload.includes('"fw_title"'),
    );
    const profiling = Boolean(process.env.BENCH_CPU_PROFILE);
    if (profiling) for (const s of servers) s.child.kill('SIGUSR2');
    const pids = servers.map((s) => s.child.pid as number);
    const serverCpu = pids.map((pid) => cpuMs(pid));
    const backends = databaseUrl ? await backendCpu(databaseUrl) : null;
    const statements = databaseUrl && process.env.BENCH_E2E_STATEMENTS ? await StatementStats.reset(databaseUrl) : null;
    started = process.hrtime.bigint();
    await admin.assignToProfile(profile, pkg);
    const restMs = secondsSince(started) * 1000;
    await ours.all;
    const ms = secondsSince(started) * 1000;
    const cpuAfter = pids.map((pid) => cpuMs(pid));
    const databaseCpu = backends && databaseUrl ? String((await backendCpu(databaseUrl, backends.byPid)).spent) : 'n/a';
    if (profiling) for (const s of servers) await writeProfile(s.child);
    if (statements) await statements.print(spec.label);
    ours.close();
    return { ms, restMs, serverCpu: sum(serverCpu, cpuAfter), databaseCpu };
  } finally {
    await Promise.all(servers.map((s) => stopServer(s.child)));
  }
}

/** mosquitto, one publish of a notification's size to `n` subscribers. */
async function mosquittoFanOut(cleanup: Cleanup, dir: string, n: number): Promise<{ ms: number; cpu: string }> {
  const broker = await startMosquitto(cleanup, dir);
  const payload = Buffer.from(
    JSON.stringify({
      fw_title: 'e2e-fw',
      fw_version: '1.0',
      fw_tag: 'e2e-fw 1.0',
      fw_size: 65536,
      fw_checksum_algorithm: 'SHA256',
      fw_checksum: 'x'.repeat(64),
      fw_ts: Date.now(),
    }),
  );
  const ref = await subscribers(
    n,
    () => broker.port,
    false,
    () => true,
  );
  const publisher = await WireClient.connect(broker.port, { clientId: 'e2e-publisher' });
  const brokerCpu = cpuMs(broker.pid);
  const started = process.hrtime.bigint();
  publisher.publish('v1/devices/me/attributes', payload, 1);
  await ref.all;
  const ms = secondsSince(started) * 1000;
  const cpu = spent(brokerCpu, cpuMs(broker.pid));
  publisher.destroy();
  ref.close();
  return { ms, cpu };
}

interface Database {
  url: string;
  drop(): Promise<void>;
}

/** A fresh database on DATABASE_SERVER, for one row. */
async function createDatabase(): Promise<Database> {
  const name = `ota_bench_e2e_${process.pid}_${randomBytes(4).toString('hex')}`;
  await onDatabaseServer(`CREATE DATABASE ${name}`);
  const url = new URL(DATABASE_SERVER);
  url.pathname = `/${name}`;
  // FORCE: a server killed mid-run may leave connections behind.
  return { url: url.toString(), drop: () => onDatabaseServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function onDatabaseServer(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: DATABASE_SERVER, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/**
 * BENCH_E2E_STATEMENTS=1: the fan-out's statements by total time, from pg_stat_statements, when the
 * database server loads it (shared_preload_libraries) and our role may reset it (a superuser of a
 * server of one's own: never required of the test cluster).
 */
class StatementStats {
  private constructor(private readonly url: string) {}

  static async reset(url: string): Promise<StatementStats | null> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await c.query('SELECT pg_stat_statements_reset()');
      return new StatementStats(url);
    } catch (err) {
      console.log(`BENCH_E2E_STATEMENTS: pg_stat_statements not usable here (${(err as Error).message})`);
      return null;
    } finally {
      await c.end();
    }
  }

  async print(label: string): Promise<void> {
    const c = new pg.Client({ connectionString: this.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ calls: number; ms: number; rows: number; query: string }>(
        `SELECT calls, round(total_exec_time)::int AS ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 20`,
      );
      console.log(`${label}: the fan-out's statements by total execution time (pg_stat_statements)`);
      printTable(
        ['calls', 'ms', 'rows', 'statement'],
        rows.map((r) => [String(r.calls), String(r.ms), String(r.rows), r.query]),
      );
    } finally {
      await c.end();
    }
  }
}

const sum = (before: Array<number | null>, after: Array<number | null>): string =>
  before.some((b) => b === null) || after.some((a) => a === null) ? 'n/a' : String(after.reduce<number>((s, a, k) => s + (a as number) - (before[k] as number), 0));

async function createDevice(api: string, admin: AdminClient, profile: ProfileInfo, i: number): Promise<void> {
  // `?accessToken=` as ThingsBoard's POST /api/device takes it: the device's MQTT username.
  const res = await fetch(`${api}/api/device?accessToken=${token(i)}`, {
    method: 'POST',
    headers: { ...admin.authorization, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: `e2e-${i}`, deviceProfileId: { entityType: 'DEVICE_PROFILE', id: profile.id.id } }),
  });
  if (res.status !== 200) throw new Error(`POST /api/device: ${res.status} ${await res.text()}`);
}

/** `n` clients subscribed to the attributes topic; `all` resolves when each got a matching message. */
async function subscribers(n: number, portOf: (i: number) => number, asDevices: boolean, wanted: (payload: string) => boolean): Promise<{ all: Promise<void>; close(): void }> {
  const clients: WireClient[] = [];
  let received = 0;
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  await inBatches(n, 200, async (i) => {
    const c = await WireClient.connect(portOf(i), { clientId: `e2e-${i}`, ...(asDevices ? { username: token(i) } : {}) });
    let got = false;
    c.onMessage = (_topic, payload) => {
      if (got || !wanted(payload.toString())) return;
      got = true;
      if (++received === n) done();
    };
    clients.push(c);
    await c.subscribe('v1/devices/me/attributes', 1);
  });
  return { all, close: () => clients.forEach((c) => c.destroy()) };
}

async function inBatches(n: number, size: number, fn: (i: number) => Promise<void>): Promise<void> {
  for (let from = 0; from < n; from += size) await Promise.all(Array.from({ length: Math.min(size, n - from) }, (_, k) => fn(from + k)));
}

/** `npm start` on free ports, pacing off, on SQLite or `databaseUrl`; resolves once it says it is ready. */
function startServer(cleanup: Cleanup, dataDir: string, password: string, databaseUrl: string | null): Promise<{ child: ChildProcess; api: string }> {
  const preload = process.env.BENCH_CPU_PROFILE ? ['-r', PROFILE_PRELOAD] : [];
  const child = spawn(process.execPath, [...preload, ENTRY], {
    env: {
      ...process.env,
      OTA_DATA_DIR: dataDir,
      // Empty: SQLite in the data directory, whatever the benchmark's own environment says.
      OTA_DATABASE_URL: databaseUrl ?? '',
      OTA_HTTP_PORT: '0',
      OTA_HTTP_HOST: '127.0.0.1',
      NODE_RED_PORT: '0',
      NODE_RED_HOST: '127.0.0.1',
      OTA_MQTT_PORT: '0',
      OTA_MQTT_HOST: '127.0.0.1',
      OTA_COAP_PORT: '0',
      OTA_COAP_HOST: '127.0.0.1',
      OTA_LWM2M_PORT: '0',
      OTA_LWM2M_HOST: '127.0.0.1',
      OTA_ADMIN_PASSWORD: password,
      NODE_RED_LOG_LEVEL: 'warn',
      // Pacing off: every queued device released at once.
      TB_QUEUE_CORE_OTA_PACK_SIZE: '1000000',
      TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup.add(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const api = /OTA REST API listening on (http:\/\/\S+)\/api/.exec(out);
      if (out.includes('[ota] ready') && api) resolve({ child, api: api[1] as string });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`npm start exited with ${code} before it was ready:\n${out}`)));
  });
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s; resolves once it is gone. */
function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Stops the child's CPU profile; resolves once it says where it wrote it. */
function writeProfile(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      const line = /\[bench\] CPU profile[^\n]*/.exec(chunk.toString());
      if (!line) return;
      console.log(line[0]);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.kill('SIGUSR2');
  });
}

/** CPU ms between two readings, as a table cell. */
const spent = (before: number | null, after: number | null): string => (before === null || after === null ? 'n/a' : String(after - before));

/** mosquitto on a free port with TCP_NODELAY; resolves once it accepts connections. */
async function startMosquitto(cleanup: Cleanup, dir: string): Promise<{ port: number; pid: number }> {
  const port = await new Promise<number>((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.once('error', reject);
  });
  const conf = path.join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'set_tcp_nodelay true', 'persistence false', 'max_queued_messages 100000', 'log_dest stderr', 'log_type error', ''].join(
      '\n',
    ),
  );
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  cleanup.add(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return { port, pid: child.pid as number };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('mosquitto did not start listening');
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
