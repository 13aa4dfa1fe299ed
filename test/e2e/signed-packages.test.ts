import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ADMIN_PASSWORD, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

const SIMULATOR = path.resolve(__dirname, '..', '..', 'bin', 'ota-simulate.js');

function simulate(args: string[], timeoutMs = 90_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
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

/** Every file under `dir` named `name`. */
async function findFiles(dir: string, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await findFiles(full, name)));
    else if (entry.name === name) out.push(full);
  }
  return out;
}

interface PackageMetrics {
  title: string;
  updated: number;
  failed: number;
}

describe('signed packages with the simulator (--verify-signature) against npm start', function () {
  this.timeout(120_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  const base = (): string[] => ['--api', server.api, '--password', ADMIN_PASSWORD, '--verify-signature', '--fail-rate', '0', '--progress', 'none'];
  const metricsOf = async (title: string): Promise<PackageMetrics> => {
    const metrics = await admin.request<{ packages: PackageMetrics[] }>('GET', '/ota/metrics');
    const found = metrics.packages.find((p) => p.title === title);
    expect(found, JSON.stringify(metrics.packages)).to.not.equal(undefined);
    return found as PackageMetrics;
  };

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-signed-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('updates devices that check the signature of the package they downloaded', async () => {
    const run = await simulate([...base(), '--devices', '5', '--profile', 'signed-fleet', '--package-title', 'signed-fw', '--package-version', '1.0.0', '--package-mb', '0.05']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    expect(await metricsOf('signed-fw')).to.include({ updated: 5, failed: 0 });
  });

  it('has devices report FAILED when the package bytes were changed on disk after the upload', async () => {
    const profile = await admin.request<{ id: { id: string } }>('POST', '/deviceProfile', { name: 'tampered-fleet' });
    const bytes = randomBytes(20_000);
    const uploaded = await admin.firmware(profile.id.id, 'tampered-fw', '1.0.0', bytes);
    expect(uploaded.signatureAlgorithm).to.equal('ED25519');

    // Flip one byte of the stored file, keeping its size: what a disk fault or an intruder does.
    const [stored, ...more] = await findFiles(dataDir, createHash('sha256').update(bytes).digest('hex'));
    expect(more, 'one stored copy').to.deep.equal([]);
    const changed = await readFile(stored as string);
    changed[1000] = (changed[1000] as number) ^ 0x01;
    await writeFile(stored as string, changed);

    const run = await simulate([...base(), '--devices', '3', '--profile', 'tampered-fleet', '--package-title', 'tampered-fw', '--package-version', '1.0.0', '--chunk', '0']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(1);
    expect(run.stdout).to.match(/^ {2}tampered-fleet-0001: failed, Signature verification failed!/m);
    expect(await metricsOf('tampered-fw')).to.include({ updated: 0, failed: 3 });
  });
});
