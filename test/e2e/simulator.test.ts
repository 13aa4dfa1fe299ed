import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { makePki, type TestPki } from '../support/certificates';
import { ADMIN_PASSWORD, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

/** The compiled simulator, as `npm run simulate` runs it. */
const SIMULATOR = path.resolve(__dirname, '..', '..', 'bin', 'ota-simulate.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the simulator to its end, as a child process with a pipe (not a terminal) for its output. */
function simulate(args: string[], timeoutMs = 90_000): Promise<Run> {
  // The OTA_* variables of whoever runs the tests must not choose the server or the password.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTA_')));
  const child = spawn(process.execPath, [SIMULATOR, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the simulator did not end within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The value of a row of the summary table, e.g. `| updated   |   27 |` -> "27". */
function row(stdout: string, label: string): string | undefined {
  const line = stdout.split('\n').find((l) => new RegExp(`^\\| ${label} +\\|`).test(l));
  return line?.split('|')[2]?.trim();
}

interface PackageMetrics {
  packageId: string;
  title: string;
  version: string;
  targeted: number;
  pending: number;
  inProgress: number;
  updated: number;
  failed: number;
  coverage: number;
}

describe('ota-simulate (fleet simulator) against npm start', function () {
  this.timeout(120_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  const base = (): string[] => ['--api', server.api, '--password', ADMIN_PASSWORD];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-sim-'));
    // Fast pacing: 10 devices per 100 ms instead of ThingsBoard's 100 per minute.
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  const packageMetrics = async (title: string, version?: string): Promise<PackageMetrics> => {
    const metrics = await admin.request<{ packages: PackageMetrics[]; queue: { depth: number } }>('GET', '/ota/metrics');
    const found = metrics.packages.filter((p) => p.title === title && (version === undefined || p.version === version));
    expect(found, JSON.stringify(metrics.packages)).to.have.length(1);
    return found[0] as PackageMetrics;
  };

  it('updates 30 HTTP devices, 3 failing on purpose, and exits 0 with a summary the server agrees with', async () => {
    const run = await simulate([...base(), '--devices', '30', '--transport', 'http', '--fail-rate', '0.1', '--package-mb', '0.25', '--chunk', '4096']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);

    expect(row(run.stdout, 'devices')).to.equal('30');
    expect(row(run.stdout, 'updated')).to.equal('27');
    expect(row(run.stdout, 'failed')).to.equal('3 (3 on purpose)');
    expect(row(run.stdout, 'unfinished')).to.equal('0');
    // 30 downloads of 256 kB, each byte counted once.
    expect(row(run.stdout, 'bytes')).to.match(/\(7864320\)$/);
    expect(row(run.stdout, 'throughput')).to.match(/^\d+\.\d\d MB\/s$/);
    expect(row(run.stdout, 'p50 time to update')).to.match(/^\d+(\.\d)? m?s$/);
    expect(row(run.stdout, 'p95 time to update')).to.match(/^\d+(\.\d)? m?s$/);
    expect(row(run.stdout, 'elapsed')).to.match(/ m?s$/);
    expect(row(run.stdout, 'server: updated / failed')).to.equal('27 / 3');
    expect(row(run.stdout, 'server: coverage')).to.equal('90.0 %');
    expect(run.stdout).to.include('result: OK');
    // Not a terminal: plain progress lines, no cursor movements.
    expect(run.stdout).to.match(/^\[sim\] .*updated \d+\/30/m);
    // eslint-disable-next-line no-control-regex -- ESC is the character looked for (ANSI cursor codes)
    expect(run.stdout).to.not.match(/\r|\x1b\[/);

    const pkg = await packageMetrics('sim-firmware');
    expect(pkg).to.include({ targeted: 30, pending: 0, inProgress: 0, updated: 27, failed: 3, coverage: 0.9 });
    const fleet = await admin.request<{ data: Array<{ name: string }>; totalElements: number }>('GET', '/tenant/devices?pageSize=100&page=0&type=sim-fleet');
    expect(fleet.totalElements).to.equal(30);
    expect(fleet.data.map((d) => d.name).sort()).to.deep.equal(Array.from({ length: 30 }, (_, i) => `sim-fleet-${String(i + 1).padStart(4, '0')}`));
  });

  it('rolls a named package out to the same fleet on a second run, reusing its devices', async () => {
    const run = await simulate([
      ...base(),
      '--devices',
      '30',
      '--fail-rate',
      '0',
      '--package-title',
      'thermo-fw',
      '--package-version',
      '2.0.0',
      '--package-mb',
      '0.1',
      '--checksum',
      'CRC32',
      '--chunk',
      '0',
    ]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    expect(run.stdout).to.include("profile 'sim-fleet': 30 devices (0 created)");
    expect(row(run.stdout, 'updated')).to.equal('30');
    expect(await packageMetrics('thermo-fw', '2.0.0')).to.include({ targeted: 30, updated: 30, failed: 0, coverage: 1 });
    const info = await admin.request<{ data: Array<{ checksumAlgorithm: string }> }>('GET', '/otaPackages?pageSize=10&page=0&textSearch=thermo-fw');
    expect(info.data[0]?.checksumAlgorithm).to.equal('CRC32');
  });

  for (const transport of ['mqtt', 'coap', 'lwm2m']) {
    it(`updates 10 ${transport.toUpperCase()} devices through the endpoint the server lists`, async () => {
      const profile = `${transport}-fleet`;
      const run = await simulate([...base(), '--devices', '10', '--transport', transport, '--fail-rate', '0.1', '--profile', profile, '--package-mb', '0.1', '--chunk', '1024']);
      expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);
      expect(run.stdout).to.match(new RegExp(`${transport.toUpperCase()} devices connect to 127\\.0\\.0\\.1:\\d+`));
      expect(row(run.stdout, 'updated')).to.equal('9');
      expect(row(run.stdout, 'failed')).to.equal('1 (1 on purpose)');
      expect(row(run.stdout, 'server: updated / failed')).to.equal('9 / 1');
    });
  }

  it('updates 10 MQTT devices that connect with basic credentials (--credentials basic)', async () => {
    const run = await simulate([
      ...base(),
      '--devices',
      '10',
      '--transport',
      'mqtt',
      '--credentials',
      'basic',
      '--mqtt-version',
      '5',
      '--fail-rate',
      '0',
      '--profile',
      'basic-fleet',
      '--package-mb',
      '0.05',
      '--chunk',
      '2048',
    ]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    expect(row(run.stdout, 'updated')).to.equal('10');
    const device = await admin.request<{ id: { id: string } }>('GET', '/tenant/devices?deviceName=basic-fleet-0001');
    expect((await admin.request<{ credentialsType: string }>('GET', `/device/${device.id.id}/credentials`)).credentialsType).to.equal('MQTT_BASIC');
  });

  it('has new devices provision themselves (--provision), then updates them', async () => {
    const run = await simulate([...base(), '--devices', '5', '--provision', '--fail-rate', '0', '--profile', 'provisioned-fleet', '--package-mb', '0.05']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    expect(run.stdout).to.include('5 devices provisioned themselves (POST /api/v1/provision)');
    expect(row(run.stdout, 'updated')).to.equal('5');
  });

  it('exits 1 and names the devices still busy when the run times out', async () => {
    const run = await simulate([
      ...base(),
      '--devices',
      '3',
      '--profile',
      'slow-fleet',
      '--fail-rate',
      '0',
      '--package-mb',
      '2',
      '--chunk',
      '1024',
      '--pace',
      '100',
      '--timeout',
      '2',
    ]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(1);
    expect(row(run.stdout, 'unfinished')).to.equal('3');
    expect(run.stdout).to.match(/^ {2}slow-fleet-0001: unfinished, /m);
    expect(run.stdout).to.include('result: NOT OK');
  });

  it('exits 2 with the reason when it cannot log in, and on a bad option', async () => {
    const denied = await simulate(['--api', server.api, '--password', 'wrong-password', '--devices', '1']);
    expect(denied.code).to.equal(2);
    expect(denied.stderr).to.match(/^ota-simulate: could not log in: POST \/api\/auth\/login answered 401/);
    const bad = await simulate(['--api', server.api, '--password', 'x', '--transport', 'zigbee']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include("--transport must be http, mqtt, coap or lwm2m, not 'zigbee'");
    const nothing = await simulate([...base(), '--devices', '2', '--profile', 'no-firmware', '--no-assign']);
    expect(nothing.code).to.equal(2);
    expect(nothing.stderr).to.include("could not prepare the package: profile 'no-firmware' has no firmware assigned: run without --no-assign");
    const created = await admin.request<{ totalElements: number }>('GET', '/tenant/devices?pageSize=10&page=0&type=no-firmware');
    expect(created.totalElements, 'no device created for nothing').to.equal(0);
  });
});

describe('ota-simulate with X.509 devices against npm start with MQTT over TLS', function () {
  this.timeout(120_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let pki: TestPki;
  const names = ['x509-fleet-0001', 'x509-fleet-0002', 'x509-fleet-0003'];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-sim-x509-'));
    await mkdir(path.join(dataDir, 'pki'));
    pki = await makePki(path.join(dataDir, 'pki'), names);
    server = await startServer(dataDir, {
      TB_QUEUE_CORE_OTA_PACK_SIZE: '10',
      TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100',
      OTA_MQTT_TLS_CERT_FILE: pki.serverCertFile,
      OTA_MQTT_TLS_KEY_FILE: pki.serverKeyFile,
      OTA_MQTT_TLS_CA_FILE: pki.caFile,
    });
    admin = await adminClient(server.api);
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('updates 3 MQTT devices that present their certificates (--credentials x509), the server certificate checked', async () => {
    const args = ['--api', server.api, '--password', ADMIN_PASSWORD, '--devices', '3', '--transport', 'mqtt', '--credentials', 'x509', '--cert-dir', pki.dir];
    const run = await simulate([...args, '--server-ca', pki.caFile, '--fail-rate', '0', '--profile', 'x509-fleet', '--package-mb', '0.05', '--chunk', '2048']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    expect(row(run.stdout, 'updated')).to.equal('3');
    const device = await admin.request<{ id: { id: string } }>('GET', '/tenant/devices?deviceName=x509-fleet-0002');
    expect((await admin.request<{ credentialsType: string }>('GET', `/device/${device.id.id}/credentials`)).credentialsType).to.equal('X509_CERTIFICATE');
  });

  it('exits 2 naming the file when a device has no certificate', async () => {
    const run = await simulate([
      '--api',
      server.api,
      '--password',
      ADMIN_PASSWORD,
      '--devices',
      '4',
      '--transport',
      'mqtt',
      '--credentials',
      'x509',
      '--cert-dir',
      pki.dir,
      '--profile',
      'x509-fleet',
    ]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.include('x509-fleet-0004.pem');
  });
});
