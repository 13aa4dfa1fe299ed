/**
 * The path a user runs, end to end: `npm start` (dist/bin/ota-server.js in a child process, a temp
 * data directory, free ports), BENCH_E2E_DEVICES (default 10,000) devices created through the REST
 * API, each connected over MQTT and subscribed to `v1/devices/me/attributes`, a package uploaded,
 * then one REST call assigning it to their profile with pacing off. Timed from that call until the
 * last device holds its `fw_*` attributes.
 *
 * Beside it, in the same run: mosquitto delivering one publish of the same size to as many
 * subscribers (the floor for "tell 10,000 connected devices something").
 *
 * The clients speak raw mqtt-packet (bench/mqtt-wire.ts), so 10,000 of them stay cheap; they run
 * in this process, the server and mosquitto each in their own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { AdminClient, type ProfileInfo } from '../sim/admin-client';
import { Cleanup, cpuMs, positiveInt, printTable, secondsSince, type Benchmark } from './lib';
import { WireClient } from './mqtt-wire';

export const endToEnd: Benchmark = {
  name: 'end to end (npm start, REST assignment to MQTT devices)',
  run,
};

const ENTRY = path.resolve(__dirname, '..', 'bin', 'ota-server.js');
/** BENCH_CPU_PROFILE=<dir>: the server's CPU profile of the fan-out alone is written there (bench/cpu-profile.ts). */
const PROFILE_PRELOAD = path.resolve(__dirname, 'cpu-profile.js');
const ADMIN = 'tenant@thingsboard.org';
const token = (i: number): string => `e2e-bench-${i}`;

async function run(): Promise<void> {
  const n = positiveInt('BENCH_E2E_DEVICES', 10_000);
  const cleanup = new Cleanup();
  try {
    const dir = await cleanup.tempDir('ota-bench-e2e');
    const password = randomBytes(12).toString('base64url');
    const server = await startServer(cleanup, path.join(dir, 'data'), password);
    const admin = await AdminClient.login(server.api, ADMIN, password);
    const mqtt = (await admin.endpoints()).find((e) => e.transport === 'MQTT');
    if (!mqtt) throw new Error('npm start lists no MQTT endpoint');

    const profile = await admin.findOrCreateProfile('e2e-bench');
    let started = process.hrtime.bigint();
    await inBatches(n, 50, (i) => createDevice(server.api, admin, profile, i));
    console.log(`${n} devices created through POST /api/device in ${secondsSince(started).toFixed(1)} s`);
    const pkg = await admin.upload(await admin.createPackage('e2e-fw', '1.0', profile), randomBytes(64 * 1024), 'SHA256');

    // Ours: every device connected and subscribed, then one REST call.
    const ours = await subscribers(n, mqtt.port, true, (payload) => payload.includes('"fw_title"'));
    const profiling = Boolean(process.env.BENCH_CPU_PROFILE);
    if (profiling) server.child.kill('SIGUSR2');
    const serverCpu = cpuMs(server.child.pid as number);
    started = process.hrtime.bigint();
    await admin.assignToProfile(profile, pkg);
    const restMs = secondsSince(started) * 1000;
    await ours.all;
    const oursMs = secondsSince(started) * 1000;
    const oursCpu = spent(serverCpu, cpuMs(server.child.pid as number));
    if (profiling) await writeProfile(server.child);
    ours.close();

    // Reference: mosquitto, one publish of a notification's size to as many subscribers.
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
    const ref = await subscribers(n, broker.port, false, () => true);
    const publisher = await WireClient.connect(broker.port, { clientId: 'e2e-publisher' });
    const brokerCpu = cpuMs(broker.pid);
    started = process.hrtime.bigint();
    publisher.publish('v1/devices/me/attributes', payload, 1);
    await ref.all;
    const refMs = secondsSince(started) * 1000;
    const refCpu = spent(brokerCpu, cpuMs(broker.pid));
    publisher.destroy();
    ref.close();

    console.log();
    printTable(
      ['measurement', 'ms', 'devices/s', 'ratio (reference ÷ ours)', 'server CPU ms'],
      [
        [`REST assignment → ${n} MQTT devices hold fw_* (npm start, pacing off)`, oursMs.toFixed(0), (n / (oursMs / 1000)).toFixed(0), (refMs / oursMs).toFixed(2), oursCpu],
        [`mosquitto: 1 publish → ${n} subscribers (reference)`, refMs.toFixed(0), (n / (refMs / 1000)).toFixed(0), '—', refCpu],
      ],
    );
    console.log();
    console.log(`the REST call itself answered in ${restMs.toFixed(0)} ms; the devices are notified after it, through the flow (assign → rate queue → notify → ota-mqtt)`);
    console.log('QoS 1 subscriptions, raw mqtt-packet clients in the benchmark process; the server and mosquitto each in their own process');
    console.log('server CPU: user + system time of the server (or mosquitto) process over the same span, steadier than wall time on a busy machine');
  } finally {
    cleanup.run();
  }
}

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
async function subscribers(n: number, port: number, asDevices: boolean, wanted: (payload: string) => boolean): Promise<{ all: Promise<void>; close(): void }> {
  const clients: WireClient[] = [];
  let received = 0;
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  await inBatches(n, 200, async (i) => {
    const c = await WireClient.connect(port, { clientId: `e2e-${i}`, ...(asDevices ? { username: token(i) } : {}) });
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

/** `npm start` on free ports, pacing off; resolves once it says it is ready. */
function startServer(cleanup: Cleanup, dataDir: string, password: string): Promise<{ child: ChildProcess; api: string }> {
  const preload = process.env.BENCH_CPU_PROFILE ? ['-r', PROFILE_PRELOAD] : [];
  const child = spawn(process.execPath, [...preload, ENTRY], {
    env: {
      ...process.env,
      OTA_DATA_DIR: dataDir,
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
