import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { makePki, type TestPki } from '../support/certificates';
import { eventually } from '../support/eventually';
import { ADMIN_PASSWORD, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

const run = promisify(execFile);

interface Ref {
  id: { id: string };
}

/** One request with Node's https client, trusting `ca`: status and body. */
function httpsRequest(url: string, ca: Buffer, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: opts.method ?? 'GET', ca, headers: opts.headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * The REST API and the device HTTP API over TLS (`OTA_HTTPS_PORT`, the certificate and key files
 * of `OTA_HTTPS_TLS_*_FILE`), beside the plain HTTP port, as `npm start` runs them: curl and
 * Node's https client, checking the server certificate against the test CA.
 */
describe('HTTPS for the REST and device HTTP API (npm start)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let pki: TestPki;
  let ca: Buffer;
  let base: string;
  const firmware = randomBytes(20_000);

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-https-'));
    await mkdir(path.join(dataDir, 'pki'));
    pki = await makePki(path.join(dataDir, 'pki'), []);
    ca = await readFile(pki.caFile);
    server = await startServer(dataDir, {
      TB_QUEUE_CORE_OTA_PACK_SIZE: '10',
      TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100',
      OTA_HTTPS_PORT: '0',
      OTA_HTTPS_TLS_CERT_FILE: pki.serverCertFile,
      OTA_HTTPS_TLS_KEY_FILE: pki.serverKeyFile,
    });
    admin = await adminClient(server.api);
    const endpoint = await admin.endpoint('HTTP', (e) => e.tls === true);
    base = `https://127.0.0.1:${endpoint.port}`;
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('logs in and lists packages with curl over TLS, the server certificate checked', async () => {
    const login = await run('curl', [
      '-sS',
      '--fail',
      '--cacert',
      pki.caFile,
      '-H',
      'Content-Type: application/json',
      '-d',
      JSON.stringify({ username: 'tenant@thingsboard.org', password: ADMIN_PASSWORD }),
      `${base}/api/auth/login`,
    ]);
    const { token } = JSON.parse(login.stdout) as { token: string };
    expect(token).to.be.a('string');
    const list = await run('curl', ['-sS', '--fail', '--cacert', pki.caFile, '-H', `X-Authorization: Bearer ${token}`, `${base}/api/otaPackages?pageSize=10&page=0`]);
    expect(JSON.parse(list.stdout)).to.have.property('data');
  });

  it('refuses a client that does not trust the certificate (curl exit 60), and speaks no plain HTTP on the TLS port', async () => {
    const untrusted = await run('curl', ['-sS', `${base}/api/noauth/oauth2Clients`]).then(
      () => null,
      (e: { code?: number }) => e.code,
    );
    expect(untrusted).to.equal(60);
    const plain = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `${base.replace('https:', 'http:')}/api/auth/login`]).then(
      (r) => r.stdout,
      (e: { stdout?: string }) => e.stdout,
    );
    expect(plain).to.not.equal('200');
  });

  it("serves a device's telemetry, attributes and firmware over TLS with Node's https client", async () => {
    const profile = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'https-fleet' })).id.id;
    const device = await admin.request<Ref>('POST', '/device', { name: 'https-1', deviceProfileId: { id: profile, entityType: 'DEVICE_PROFILE' } });
    const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${device.id.id}/credentials`)).credentialsId;
    const info = await admin.firmware(profile, 'tls-fw', '1.0', firmware);
    await admin.request('POST', `/deviceProfile/${profile}`, { firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });

    const posted = await httpsRequest(`${base}/api/v1/${token}/telemetry`, ca, {
      method: 'POST',
      body: JSON.stringify({ fw_state: 'DOWNLOADING' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(posted.status).to.equal(200);
    const shared = await eventually(async () => {
      const r = await httpsRequest(`${base}/api/v1/${token}/attributes?sharedKeys=fw_title,fw_version`, ca);
      return (JSON.parse(r.body.toString()) as { shared?: Record<string, unknown> }).shared;
    }, 'the fw_* attributes over HTTPS');
    expect(shared).to.deep.equal({ fw_title: 'tls-fw', fw_version: '1.0' });
    const fw = await httpsRequest(`${base}/api/v1/${token}/firmware?title=tls-fw&version=1.0`, ca);
    expect(fw.status).to.equal(200);
    expect(fw.body.equals(firmware)).to.equal(true);
    // The plain port serves the same device, as before.
    const plain = await fetch(`${server.api}/api/v1/${token}/attributes?sharedKeys=fw_title`);
    expect(await plain.json()).to.deep.equal({ shared: { fw_title: 'tls-fw' } });
  });
});
