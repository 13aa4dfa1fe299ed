/**
 * The fleet simulator (sim/fleet.ts, what `ota-simulate` runs) as the benchmark's fleet: 200 HTTP
 * devices (BENCH_SIM_DEVICES) update to a 1 MB package (BENCH_SIM_MB) through a real server, the
 * `npm start` entry point (dist/bin/ota-server.js) in a child process on free ports, with the
 * queue's pacing off (TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS=0). Each device does the whole
 * ThingsBoard update: asks for its attributes, long-polls, reports DOWNLOADING, downloads the
 * package in 4 KiB chunks (the simulator's default, BENCH_SIM_CHUNK), verifies its SHA-256 and
 * reports DOWNLOADED, VERIFIED, UPDATING, UPDATED. Then the same over MQTT (BENCH_SIM_MQTT=0 skips it).
 *
 * The reference, in the same run: the same number of clients, at the simulator's concurrency,
 * with the simulator's own HTTP download code (HttpDeviceLink.download, same chunk size) fetching
 * the same bytes from a plain `http` server (server-child.ts `device-reference`: the file
 * streamed from disk, no token, no database, no state reports), each download checked as the
 * devices check theirs.
 *
 * Set up beforehand and not timed: the server's start, the profile, the package's upload and the
 * devices' creation (the simulator then finds them). Timed: `runFleet` from its login to its last
 * device, and the server's count of the package's UPDATED devices.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { AdminClient, type PackageInfo } from '../sim/admin-client';
import { type DeviceResult } from '../sim/device';
import { verify, type FirmwareInfo } from '../sim/firmware';
import { deviceName, pool, runFleet, type FleetReport } from '../sim/fleet';
import { HttpDeviceLink } from '../sim/http-device';
import { simOptions, type SimOptions, type SimTransport } from '../sim/options';
import { Cleanup, MB, positiveInt, printTable, startServerChild, stopServerChild, timed, type Benchmark } from './lib';

export const simulatedFleet: Benchmark = {
  name: 'Simulated fleet (ota-simulate) vs plain HTTP downloads',
  run,
};

const ADMIN_USER = 'tenant@thingsboard.org';
const SERVER_ENTRY = path.resolve(__dirname, '..', 'bin', 'ota-server.js');

interface OtaServer {
  child: ChildProcess;
  api: string;
}

/** `npm start` in a child on free ports, no pacing; killed at cleanup if still alive. */
export function startOtaServer(cleanup: Cleanup, dataDir: string, password: string, devices: number): Promise<OtaServer> {
  const child = spawn(process.execPath, [SERVER_ENTRY], {
    env: {
      ...process.env,
      OTA_DATA_DIR: dataDir,
      OTA_HTTP_PORT: '0',
      OTA_HTTP_HOST: '127.0.0.1',
      NODE_RED_PORT: '0',
      NODE_RED_HOST: '127.0.0.1',
      OTA_ADMIN_PASSWORD: password,
      OTA_MQTT_PORT: '0',
      OTA_MQTT_HOST: '127.0.0.1',
      OTA_COAP_PORT: '0',
      OTA_COAP_HOST: '127.0.0.1',
      OTA_LWM2M_PORT: '0',
      OTA_LWM2M_HOST: '127.0.0.1',
      NODE_RED_LOG_LEVEL: 'warn',
      TB_QUEUE_CORE_OTA_PACK_SIZE: String(Math.max(100, devices)),
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
      if (out.length > 100_000) return;
      out += chunk.toString();
      const api = /OTA REST API listening on (http:\/\/\S+)\/api/.exec(out);
      if (out.includes('[ota] ready') && api) {
        child.stdout?.off('data', onData);
        child.stderr?.off('data', onData);
        child.stdout?.resume();
        child.stderr?.resume();
        child.off('exit', onExit);
        resolve({ child, api: api[1] as string });
      }
    };
    const onExit = (code: number | null): void => reject(new Error(`ota-server exited with ${code} before it was ready:\n${out}`));
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

export async function stopOtaServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  await exited;
}

/** One row of the table. */
interface Row {
  label: string;
  devices: number;
  seconds: number;
  bytes: number;
  /** The reference's devices/s, for the ratio; null on the reference's row. */
  reference: number | null;
  note: string;
}

const cells = (r: Row): string[] => {
  const perSecond = r.devices / r.seconds;
  return [
    r.label,
    String(r.devices),
    r.seconds.toFixed(2),
    perSecond.toFixed(1),
    (r.bytes / MB / r.seconds).toFixed(1),
    r.reference === null ? '1.00 (reference)' : (perSecond / r.reference).toFixed(2),
    r.note,
  ];
};

async function run(): Promise<void> {
  const devices = positiveInt('BENCH_SIM_DEVICES', 200);
  const packageBytes = Math.round(Number(process.env.BENCH_SIM_MB || 1) * MB);
  const chunk = positiveInt('BENCH_SIM_CHUNK', 4096);
  const withMqtt = process.env.BENCH_SIM_MQTT !== '0';
  const cleanup = new Cleanup();
  try {
    const dataDir = await cleanup.tempDir('ota-bench-sim');
    const refDir = await cleanup.tempDir('ota-bench-sim-ref');
    const password = `bench-${randomBytes(6).toString('hex')}`;
    const server = await startOtaServer(cleanup, dataDir, password, devices);
    const admin = await AdminClient.login(server.api, ADMIN_USER, password);
    const bytes = randomBytes(packageBytes);
    const transports: SimTransport[] = withMqtt ? ['http', 'mqtt'] : ['http'];

    // Not timed: each transport's profile, its package (the same bytes) and its devices.
    const prepared = new Map<SimTransport, PackageInfo>();
    for (const transport of transports) {
      const profile = await admin.findOrCreateProfile(`bench-${transport}`);
      const pkg = await admin.upload(await admin.createPackage('bench-fw', `1.0.0-${transport}`, profile), bytes, 'SHA256');
      prepared.set(transport, pkg);
      await pool(
        Array.from({ length: devices }, (_, i) => deviceName(`bench-${transport}-`, i, devices)),
        16,
        (name) => admin.ensureDevice(name, profile),
      );
    }

    // The reference first: the simulator's download code against a plain file server.
    const fw: FirmwareInfo = {
      title: 'bench-fw',
      version: 'reference',
      size: bytes.length,
      checksum: createHash('sha256').update(bytes).digest('hex'),
      checksumAlgorithm: 'SHA256',
    };
    await writeFile(path.join(refDir, fw.title), bytes);
    const reference: ServerChildLike = await startServerChild(cleanup, ['device-reference', refDir]);
    const base = { api: server.api, username: ADMIN_USER, password, devices, failRate: 0, chunk, progress: 'none' as const, timeoutS: 55 };
    const concurrency = simOptions(base).concurrency;
    const ref = await timed(() =>
      pool(
        Array.from({ length: devices }, (_, i) => i),
        concurrency,
        async (i) => {
          const link = new HttpDeviceLink(`http://127.0.0.1:${reference.port}`, `token-${i}`, chunk, 0);
          // One signal per client, as the simulator gives each device (undici keeps a listener per request on it).
          const signal = new AbortController().signal;
          setMaxListeners(0, signal);
          const data = await link.download(fw, () => undefined, signal);
          if (!verify(fw, data)) throw new Error(`reference download ${i}: ${data.length} bytes, checksum mismatch`);
          return data.length;
        },
      ),
    );
    await stopServerChild(reference.child);
    const refRate = devices / ref.seconds;
    const rows: Row[] = [
      {
        label: 'plain http file server (reference)',
        devices,
        seconds: ref.seconds,
        bytes: ref.value.reduce((a, b) => a + b, 0),
        reference: null,
        note: 'download + checksum only',
      },
    ];

    for (const transport of transports) {
      const pkg = prepared.get(transport) as PackageInfo;
      const opts: SimOptions = simOptions({ ...base, transport, profile: `bench-${transport}`, packageTitle: pkg.title, packageVersion: pkg.version });
      const log: string[] = [];
      const sink = new Writable({
        write(c: Buffer, _enc, done) {
          log.push(c.toString());
          done();
        },
      });
      const { value: report, seconds } = await timed(() => runFleet(opts, sink));
      check(report, devices, pkg, log);
      rows.push({
        label: `ota-server, simulator over ${transport.toUpperCase()}`,
        devices,
        seconds,
        bytes: report.results.reduce((a: number, r: DeviceResult) => a + r.bytes, 0),
        reference: refRate,
        note: `p50 ${fmtMs(report.p50Ms)}, p95 ${fmtMs(report.p95Ms)}, ${(report.throughput / MB).toFixed(1)} MB/s while downloading`,
      });
    }
    await stopOtaServer(server.child);

    console.log(
      `${devices} devices, a ${(packageBytes / MB).toFixed(1)} MB package in ${chunk}-byte chunks, ${concurrency} devices at a time (the simulator's default); queue pacing off`,
    );
    console.log();
    printTable(['fleet, server', 'devices', 'seconds', 'devices/s', 'MB/s', 'ratio to reference (devices/s)', 'notes'], rows.map(cells));
    console.log();
    console.log('seconds: simulator rows from its login to the server counting every device UPDATED (devices, profile and package made beforehand);');
    console.log("reference: the same count of clients with the simulator's HTTP download code, same chunks, same bytes, SHA-256 checked; no token, no state reports");
  } finally {
    cleanup.run();
  }
}

type ServerChildLike = Awaited<ReturnType<typeof startServerChild>>;

const fmtMs = (ms: number | null): string => (ms === null ? 'n/a' : `${ms} ms`);

/** Every device UPDATED with every byte, and the server counted them all. */
function check(report: FleetReport, devices: number, pkg: PackageInfo, log: string[]): void {
  const bad = report.results.filter((r) => r.phase !== 'updated' || r.bytes !== pkg.dataSize);
  if (!report.ok || bad.length > 0 || report.results.length !== devices) {
    throw new Error(`simulated ${report.transport} fleet: ${bad.length} of ${report.results.length} devices did not update: ${JSON.stringify(bad.slice(0, 3))}\n${log.join('')}`);
  }
  if (report.package.id !== pkg.id.id) throw new Error(`the fleet updated to ${report.package.title} ${report.package.version}, not ${pkg.title} ${pkg.version}`);
  if (!report.server || report.server.updated !== devices) throw new Error(`the server counts ${JSON.stringify(report.server)}, not ${devices} UPDATED`);
}
