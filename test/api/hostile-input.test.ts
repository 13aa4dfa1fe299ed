import { expect } from 'chai';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiHarness, expectError, filePart, ok, unique, type PackageInfo } from '../support/api-harness';
import { eventually } from '../support/eventually';
import { onPostgres } from '../support/test-store';

/** Inputs found by probing the REST API as an attacker would (issue 10, items 6, 7 and 9). */
describe('Hostile input to the REST API', () => {
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h.close());

  describe('huge page numbers (item 6)', () => {
    const huge = '9223372036854775807';
    it('answers 400 in ThingsBoard error JSON on every paged list, not a 500', async () => {
      const profile = await h.admin.createProfile();
      for (const list of ['/api/otaPackages', '/api/deviceProfiles', '/api/tenant/devices', `/api/otaPackages/${profile.id.id}/FIRMWARE`]) {
        expectError(await h.admin.get(`${list}?pageSize=10&page=${huge}`), 400, /For input string/, 31);
        expectError(await h.admin.get(`${list}?pageSize=${huge}&page=0`), 400, /For input string/, 31);
        expectError(await h.admin.get(`${list}?pageSize=10&page=2147483648`), 400, /For input string/, 31);
      }
    });

    it('still serves the largest Java int as a page: an empty one', async () => {
      const page = ok<{ data: unknown[] }>(await h.admin.get('/api/otaPackages?pageSize=10000&page=2147483647'));
      expect(page.data).to.deep.equal([]);
    });
  });

  describe('a body that does not inflate (found by fuzzing)', () => {
    it('answers 400 in ThingsBoard error JSON, not a 500', async () => {
      for (const encoding of ['gzip', 'deflate']) {
        const res = await h.admin.request('POST', '/api/deviceProfile', {
          headers: { 'Content-Type': 'application/json', 'Content-Encoding': encoding },
          body: Buffer.from('{"name":"x"}'),
        });
        expectError(res, 400, /^Invalid request body/, 31);
      }
    });
  });

  describe("a Range the dashboard's files cannot serve (found by fuzzing)", () => {
    it('answers 416 in ThingsBoard error JSON', async () => {
      expectError(await h.anonymous().get('/dashboard/', { Range: 'bytes=99999999-' }), 416, undefined, 31);
    });
  });

  describe('a multipart body cut inside a part (found by fuzzing)', () => {
    it('answers 400 and throws nothing, whichever part is cut', async () => {
      const uncaught: Error[] = [];
      const onUncaught = (err: Error): void => void uncaught.push(err);
      process.on('uncaughtException', onUncaught);
      try {
        const profile = await h.admin.createProfile();
        const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, title: unique('cut'), version: '1' });
        for (const name of ['other', 'file']) {
          const body = Buffer.from(`--B\r\nContent-Disposition: form-data; name="${name}"; filename="a.bin"\r\n\r\n${'x'.repeat(5000)}`);
          const res = await h.admin.request('POST', `/api/otaPackage/${pkg.id.id}`, { headers: { 'Content-Type': 'multipart/form-data; boundary=B' }, body });
          expectError(res, 400, undefined, 31);
        }
        await new Promise((resolve) => setImmediate(resolve));
        expect(uncaught.map((e) => e.message)).to.deep.equal([]);
        // The answer goes out as the failure is known; the staged file is removed right after.
        await eventually(async () => (await h.tmpFiles()).length === 0, 'the staging area to be empty');
      } finally {
        process.off('uncaughtException', onUncaught);
      }
    });
  });

  describe('a second file part (item 9)', () => {
    it('answers 400 and stores nothing', async () => {
      const profile = await h.admin.createProfile();
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, title: unique('two'), version: '1' });
      const res = await h.admin.postMultipart(`/api/otaPackage/${pkg.id.id}`, [filePart(Buffer.alloc(100, 1)), filePart(Buffer.alloc(200, 2))]);
      expectError(res, 400, "Only one 'file' part is allowed", 31);
      expect(ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`)).hasData).to.equal(false);
      expect(await h.tmpFiles()).to.deep.equal([]);
      expect(await h.blobFiles()).to.deep.equal([]);
    });
  });

  describe('file permissions (item 7)', () => {
    it('keeps the data directory to its owner (0700) and the database 0600', async () => {
      expect((await stat(h.dataDir)).mode & 0o777).to.equal(0o700);
      // On PostgreSQL the data directory holds the package cache only: no database file in it.
      for (const f of onPostgres() ? [] : ['ota.sqlite', 'ota.sqlite-wal', 'ota.sqlite-shm']) expect((await stat(path.join(h.dataDir, f))).mode & 0o777, f).to.equal(0o600);
    });

    it('narrows a data directory an older version left readable by everyone', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ota-perms-'));
      try {
        const first = await ApiHarness.start({ dataDir: dir });
        await first.close();
        await chmod(dir, 0o755);
        const files = onPostgres() ? [] : ['ota.sqlite', 'ota.sqlite-wal'];
        for (const f of files) {
          await writeFile(path.join(dir, f), '', { flag: 'a' });
          await chmod(path.join(dir, f), 0o644);
        }
        const second = await ApiHarness.start({ dataDir: dir });
        try {
          expect((await stat(dir)).mode & 0o777).to.equal(0o700);
          for (const f of files) expect((await stat(path.join(dir, f))).mode & 0o777, f).to.equal(0o600);
        } finally {
          await second.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
