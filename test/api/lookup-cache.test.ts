/**
 * The device lookup caches (server/transports/device-lookups.ts) seen from outside: every change
 * made through the REST API shows on the next device request, with a time to live long enough that
 * only the invalidation can explain it. Runs on SQLite and on PostgreSQL.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { ApiHarness, ok, ref, unique, type DeviceBody, type DeviceCredentialsBody, type DeviceProfileBody, type PackageInfo } from '../support/api-harness';

describe('device lookup caches: each change is seen by the next request', () => {
  let h: ApiHarness;
  let profile: DeviceProfileBody;
  const bytesA = randomBytes(3000);
  const bytesB = randomBytes(2000);
  let a: PackageInfo;
  let b: PackageInfo;

  before(async () => {
    // An hour: an entry that outlived its change could only be served stale, never expire in time.
    h = await ApiHarness.start({ lookupCache: { ttlMs: 3_600_000 } });
    profile = await h.admin.createProfile();
    a = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, title: 'cache-a', version: '1' }, bytesA);
    b = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, title: 'cache-b', version: '1' }, bytesB);
  });

  after(async () => {
    await h?.close();
  });

  /** `GET /api/v1/{token}/firmware` as a device does; `chunk` of 1000 bytes, or the whole file. */
  async function download(token: string, pkg: PackageInfo, chunk?: number): Promise<{ status: number; body: Buffer }> {
    const q = `title=${pkg.title}&version=${pkg.version}${chunk === undefined ? '' : `&size=1000&chunk=${chunk}`}`;
    const res = await fetch(`${h.baseUrl}/api/v1/${token}/firmware?${q}`);
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  }

  async function device(pkg: PackageInfo | null, token = unique('cache-token')): Promise<{ device: DeviceBody; token: string }> {
    const d = await h.admin.createDevice({ name: unique('cache-dev'), deviceProfileId: profile.id, ...(pkg ? { firmwareId: pkg.id } : {}) }, token);
    return { device: d, token };
  }

  const credentialsOf = async (id: string): Promise<DeviceCredentialsBody> => ok<DeviceCredentialsBody>(await h.admin.get(`/api/device/${id}/credentials`));
  const setToken = async (id: string, token: string): Promise<void> => {
    ok(await h.admin.post('/api/device/credentials', { ...(await credentialsOf(id)), credentialsId: token }));
  };

  it('refuses the old token on the next request after a credentials change', async () => {
    const { device: d, token } = await device(a);
    expect((await download(token, a, 0)).status).to.equal(200);
    const fresh = unique('cache-new');
    await setToken(d.id.id, fresh);
    expect((await download(token, a, 0)).status).to.equal(401);
    expect((await download(fresh, a, 0)).body).to.deep.equal(bytesA.subarray(0, 1000));
  });

  it("serves a token handed to another device that device's package, never the first one's", async () => {
    const first = await device(a);
    const second = await device(b);
    expect((await download(first.token, a)).body).to.deep.equal(bytesA);
    await setToken(first.device.id.id, unique('cache-moved'));
    await setToken(second.device.id.id, first.token);
    expect((await download(first.token, a)).status, "the first device's package asked with its old token").to.equal(400);
    expect((await download(first.token, b)).body).to.deep.equal(bytesB);
  });

  it('refuses the token of a deleted device on the next request', async () => {
    const { device: d, token } = await device(a);
    expect((await download(token, a, 1)).status).to.equal(200);
    ok(await h.admin.delete(`/api/device/${d.id.id}`));
    expect((await download(token, a, 1)).status).to.equal(401);
  });

  it("serves the device's new package on the next request after a reassignment", async () => {
    const { device: d, token } = await device(a);
    expect((await download(token, a)).body).to.deep.equal(bytesA);
    ok(await h.admin.post('/api/device', { ...d, firmwareId: b.id }));
    // The old title is a mismatch now (400), the new one is served.
    expect((await download(token, a)).status).to.equal(400);
    expect((await download(token, b)).body).to.deep.equal(bytesB);
    ok(await h.admin.post('/api/device', { ...d, firmwareId: null }));
    expect((await download(token, b)).status).to.equal(404);
  });

  it("follows the profile's package for a device without its own, and a package deleted after it was unassigned", async () => {
    const own = await h.admin.createProfile();
    const c = await h.admin.createPackageWithData({ deviceProfileId: own.id.id, title: 'cache-c', version: '1' }, bytesA);
    const d = await h.admin.createDevice({ name: unique('cache-dev'), deviceProfileId: own.id });
    const token = (await credentialsOf(d.id.id)).credentialsId;
    expect((await download(token, c)).status, 'nothing assigned yet').to.equal(404);
    ok(await h.admin.post('/api/deviceProfile', { ...own, firmwareId: ref('OTA_PACKAGE', c.id.id) }));
    expect((await download(token, c)).body).to.deep.equal(bytesA);
    ok(await h.admin.post('/api/deviceProfile', { ...own, firmwareId: null }));
    expect((await download(token, c)).status).to.equal(404);
    ok(await h.admin.delete(`/api/otaPackage/${c.id.id}`));
    expect((await download(token, c)).status).to.equal(404);
  });
});
