import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ApiHarness, expectError, ok, unique, type PackageInfo } from '../support/api-harness';

const run = promisify(execFile);

/**
 * The disk fills up during an upload: the data directory is a 4 MB tmpfs (mounting needs root,
 * as CI runs). The upload gets a clear error in ThingsBoard's error JSON, leaves nothing behind,
 * and the server keeps serving.
 */
describe('Disk full during an upload', function () {
  this.timeout(30_000);
  let mountPoint: string;
  let h: ApiHarness;

  before(async () => {
    mountPoint = await mkdtemp(path.join(tmpdir(), 'ota-full-'));
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mountPoint]);
    } catch (err) {
      throw new Error(`this test mounts a 4 MB tmpfs as the data directory and needs root (or CAP_SYS_ADMIN): ${(err as Error).message}`, { cause: err });
    }
    h = await ApiHarness.start({ dataDir: mountPoint });
  });

  after(async () => {
    await h?.close();
    // A file the closed engine let go of may still be released a moment later (the kernel says
    // EBUSY meanwhile): try again for a while, then detach the mount lazily so the folder goes.
    for (let i = 0; ; i++) {
      try {
        await run('umount', [mountPoint]);
        break;
      } catch {
        if (i === 20) {
          await run('umount', ['-l', mountPoint]).catch(() => undefined);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await rmdir(mountPoint);
  });

  it('answers 507 in ThingsBoard error JSON, keeps nothing, and keeps serving', async () => {
    const profile = await h.admin.createProfile();
    const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, title: unique('big'), version: '1' });
    const res = await h.admin.upload(pkg.id.id, randomBytes(6 * 1024 * 1024));
    expectError(res, 507, /disk is full/, 2);
    expect(await h.tmpFiles(), 'staging area').to.deep.equal([]);
    expect(await h.blobFiles(), 'stored blobs').to.deep.equal([]);
    expect(ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`)).hasData).to.equal(false);
    // Still serving: lists, and an upload that fits.
    ok(await h.admin.get('/api/otaPackages?pageSize=10&page=0'));
    const small = randomBytes(100_000);
    const stored = ok<PackageInfo>(await h.admin.upload(pkg.id.id, small));
    expect(stored.dataSize).to.equal(small.length);
    const back = await h.admin.get(`/api/otaPackage/${pkg.id.id}/download`);
    expect(back.bytes.equals(small)).to.equal(true);
  });
});
