import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ADMIN_PASSWORD, ADMIN_USER, startServer, stopServer, type Running } from '../support/standalone';

/**
 * The `npm start` entry point, started as a user would (free ports, a temp data directory) and
 * driven over real HTTP the way a ThingsBoard admin script drives ThingsBoard.
 */
const PASSWORD = ADMIN_PASSWORD;
const USER = ADMIN_USER;
const start = startServer;
const stop = stopServer;

async function json(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`not JSON (${res.status}): ${text}`);
  }
}

describe('npm start (standalone server)', function () {
  this.timeout(60_000);
  let dataDir: string;
  let server: Running;
  let api: string;
  let headers: Record<string, string>;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-e2e-'));
    server = await start(dataDir);
    api = `${server.api}/api`;
  });

  after(async () => {
    if (server) await stop(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('logs in with the configured admin as a ThingsBoard script does', async () => {
    const res = await fetch(`${api}/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: USER, password: PASSWORD }) });
    expect(res.status).to.equal(200);
    const body = await json(res);
    expect(body.token).to.be.a('string');
    expect(body.refreshToken).to.be.a('string');
    headers = { 'X-Authorization': `Bearer ${body.token as string}` };
  });

  it('runs the admin script: create a profile, upload with a checksum, list, download, delete', async () => {
    const profileRes = await fetch(`${api}/deviceProfile`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'e2e-thermostats' }),
    });
    expect(profileRes.status).to.equal(200);
    const profile = await json(profileRes);
    const profileId = (profile.id as { id: string }).id;

    const infoRes = await fetch(`${api}/otaPackage`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'thermo-fw', version: '1.0.0', type: 'FIRMWARE', deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } }),
    });
    const info = await json(infoRes);
    expect(info.hasData).to.equal(false);
    const packageId = (info.id as { id: string }).id;

    const bytes = Buffer.alloc(300_000, 7);
    for (let i = 0; i < bytes.length; i += 997) bytes[i] = i & 0xff;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const form = new FormData();
    form.append('file', new Blob([bytes], { type: 'application/octet-stream' }), 'thermo-1.0.0.bin');
    const upRes = await fetch(`${api}/otaPackage/${packageId}?checksumAlgorithm=SHA256&checksum=${sha256}`, { method: 'POST', headers, body: form });
    expect(upRes.status).to.equal(200);
    const uploaded = await json(upRes);
    expect(uploaded).to.include({ hasData: true, checksumAlgorithm: 'SHA256', checksum: sha256, dataSize: bytes.length, fileName: 'thermo-1.0.0.bin' });

    const list = await json(await fetch(`${api}/otaPackages?pageSize=10&page=0&textSearch=thermo`, { headers }));
    expect(list.totalElements).to.equal(1);

    const download = await fetch(`${api}/otaPackage/${packageId}/download`, { headers: { ...headers, Accept: 'application/json' } });
    expect(download.status).to.equal(200);
    expect(download.headers.get('x-filename')).to.equal('thermo-1.0.0.bin');
    expect(
      createHash('sha256')
        .update(Buffer.from(await download.arrayBuffer()))
        .digest('hex'),
    ).to.equal(sha256);

    const del = await fetch(`${api}/otaPackage/${packageId}`, { method: 'DELETE', headers: { ...headers, 'Content-Type': 'application/json' } });
    expect(del.status).to.equal(200);
    expect((await fetch(`${api}/otaPackage/info/${packageId}`, { headers })).status).to.equal(404);
    const blobDirs = (await readdir(path.join(dataDir, 'blobs'))).filter((d) => d !== 'tmp');
    for (const d of blobDirs) expect(await readdir(path.join(dataDir, 'blobs', d))).to.have.length(0);
  });

  it('asks for the same admin login in the editor and deploys the default flow', async () => {
    expect((await fetch(`${server.editor}/flows`)).status).to.equal(401);
    const bad = await fetch(`${server.editor}/auth/token`, {
      method: 'POST',
      body: new URLSearchParams({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username: USER, password: 'wrong' }),
    });
    expect(bad.status).to.not.equal(200);
    const tokenRes = await fetch(`${server.editor}/auth/token`, {
      method: 'POST',
      body: new URLSearchParams({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username: USER, password: PASSWORD }),
    });
    expect(tokenRes.status).to.equal(200);
    const token = (await json(tokenRes)).access_token as string;
    const flows = (await (await fetch(`${server.editor}/flows`, { headers: { Authorization: `Bearer ${token}` } })).json()) as Array<{ type: string }>;
    const types = flows.map((n) => n.type);
    expect(types).to.include.members(['ota-server', 'ota-package-store']);
    const nodes = (await (await fetch(`${server.editor}/nodes`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } })).json()) as Array<{
      types: string[];
      enabled: boolean;
      err?: string;
    }>;
    const ours = nodes.filter((s) => s.types.some((t) => t.startsWith('ota-')));
    expect(ours.map((s) => s.types).flat()).to.include.members(['ota-server', 'ota-package-store']);
    for (const set of ours) expect(set.err, JSON.stringify(set)).to.equal(undefined);
  });

  it('shuts down cleanly on Ctrl-C and keeps its data for the next start', async () => {
    const profiles = await json(await fetch(`${api}/deviceProfiles?pageSize=50&page=0`, { headers }));
    expect(await stop(server)).to.equal(0);
    server = await start(dataDir);
    api = `${server.api}/api`;
    const login = await json(
      await fetch(`${api}/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: USER, password: PASSWORD }) }),
    );
    headers = { 'X-Authorization': `Bearer ${login.token as string}` };
    const again = await json(await fetch(`${api}/deviceProfiles?pageSize=50&page=0`, { headers }));
    expect(again.totalElements).to.equal(profiles.totalElements);
    expect(server.output()).to.not.include(PASSWORD);
  });

  it('generates and prints an admin password once when none is configured', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ota-e2e-gen-'));
    try {
      const first = await start(dir, { OTA_ADMIN_PASSWORD: '' });
      // The tenant admin's line (the system administrator's password is generated beside it).
      const match = /created admin '[^']+' with the generated password: (\S+)/.exec(first.output());
      expect(match, first.output()).to.not.equal(null);
      const generated = (match as RegExpExecArray)[1] as string;
      const ok = await fetch(`${first.api}/api/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: USER, password: generated }),
      });
      expect(ok.status).to.equal(200);
      expect(await stop(first)).to.equal(0);
      const second = await start(dir, { OTA_ADMIN_PASSWORD: '' });
      expect(second.output()).to.not.include('generated password');
      expect(await stop(second)).to.equal(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
