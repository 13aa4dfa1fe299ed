import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checksumOf } from '../../server/packages/checksum';
import { OtaEngine } from '../../server/engine';
import { NULL_UUID } from '../../server/ids';
import { realTimers } from '../../server/timers';
import {
  ADMIN_USER,
  ApiClient,
  ApiHarness,
  blobPathOf,
  expectError,
  ok,
  SYSADMIN_USER,
  unique,
  type ApiTenant,
  type EntityRef,
  type PageData,
  type UserBody,
} from '../support/api-harness';
import { eventually } from '../support/eventually';

const FORBIDDEN = "You don't have permission to perform this operation!";

interface TenantBody {
  id: EntityRef;
  title: string;
  name: string;
  tenantProfileId: EntityRef;
  country: string | null;
  email: string | null;
  additionalInfo: unknown;
  [k: string]: unknown;
}

interface TenantProfileBody {
  id: EntityRef;
  name: string;
  default: boolean;
  profileData: { configuration: Record<string, unknown> };
}

describe('admin API: tenants and users (ThingsBoard sysadmin)', () => {
  let h: ApiHarness;
  let sys: ApiClient;

  before(async () => {
    h = await ApiHarness.start();
    sys = await h.sysadmin();
  });
  after(async () => h?.close());

  describe('the system administrator', () => {
    it('logs in as SYS_ADMIN of the system tenant', async () => {
      const me = ok<UserBody>(await sys.get('/api/auth/user'));
      expect(me.email).to.equal(SYSADMIN_USER);
      expect(me.authority).to.equal('SYS_ADMIN');
      expect(me.tenantId.id).to.equal(NULL_UUID);
    });

    it("is refused every tenant's OTA data with ThingsBoard's 403", async () => {
      for (const p of ['/api/otaPackages?pageSize=10&page=0', '/api/deviceProfiles?pageSize=10&page=0', '/api/tenant/devices?pageSize=10&page=0', '/api/ota/metrics']) {
        expectError(await sys.get(p), 403, FORBIDDEN, 20);
      }
      expectError(await sys.post('/api/otaPackage', { title: 'x', version: '1', type: 'FIRMWARE' }), 403, FORBIDDEN, 20);
      expectError(await sys.post('/api/device', { name: unique('d') }), 403, FORBIDDEN, 20);
    });

    it('gets a generated password printed once when none is configured, never a fixed one', async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'ota-sysadmin-'));
      const warnings: string[] = [];
      const logger = { info: () => undefined, warn: (m: string) => void warnings.push(m), error: () => undefined };
      const saved = process.env.OTA_SYSADMIN_PASSWORD;
      delete process.env.OTA_SYSADMIN_PASSWORD;
      try {
        const first = await OtaEngine.open({ dataDir, http: false, logger, admin: { password: 'tenant admin pw' } });
        await first.close();
        const printed = warnings.find((w) => w.includes(`system administrator '${SYSADMIN_USER}'`));
        expect(printed, warnings.join('\n')).to.be.a('string');
        const password = /generated password: (\S+)/.exec(printed as string)?.[1] as string;
        expect(password).to.have.length.greaterThan(10);
        warnings.length = 0;
        const second = await OtaEngine.open({ dataDir, http: false, logger, admin: { password: 'tenant admin pw' } });
        try {
          expect(warnings.join('\n')).to.not.include('system administrator');
          expect(await second.accounts.verifyCredentials(SYSADMIN_USER, password)).to.not.equal(null);
        } finally {
          await second.close();
        }
      } finally {
        if (saved !== undefined) process.env.OTA_SYSADMIN_PASSWORD = saved;
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });

  describe('tenants', () => {
    it("creates a tenant with POST /api/tenant in ThingsBoard's shape, with the default tenant profile", async () => {
      const t = ok<TenantBody>(await sys.post('/api/tenant', { title: 'Acme', country: 'NL', email: 'ops@acme.example', additionalInfo: { description: 'x' } }));
      expect(t.id.entityType).to.equal('TENANT');
      expect(t).to.include({ title: 'Acme', name: 'Acme', country: 'NL', email: 'ops@acme.example' });
      expect(t.additionalInfo).to.deep.equal({ description: 'x' });
      const profile = ok<{ id: EntityRef; name: string }>(await sys.get('/api/tenantProfileInfo/default'));
      expect(t.tenantProfileId).to.deep.equal({ entityType: 'TENANT_PROFILE', id: profile.id.id });
      expect(ok<TenantBody>(await sys.get(`/api/tenant/${t.id.id}`))).to.deep.equal(t);
    });

    it('updates a tenant posted with its id', async () => {
      const t = ok<TenantBody>(await sys.post('/api/tenant', { title: unique('t') }));
      const saved = ok<TenantBody>(await sys.post('/api/tenant', { ...t, title: 'Renamed', city: 'Delft' }));
      expect(saved.id.id).to.equal(t.id.id);
      expect(ok<TenantBody>(await sys.get(`/api/tenant/${t.id.id}`))).to.include({ title: 'Renamed', city: 'Delft' });
    });

    it('lists tenants as page data, never the system tenant', async () => {
      const title = unique('listed');
      ok(await sys.post('/api/tenant', { title }));
      const page = ok<PageData<TenantBody>>(await sys.get(`/api/tenants?pageSize=100&page=0&textSearch=${title}`));
      expect(page.data.map((t) => t.title)).to.deep.equal([title]);
      const all = ok<PageData<TenantBody>>(await sys.get('/api/tenants?pageSize=1000&page=0'));
      expect(all.data.map((t) => t.id.id)).to.not.include(NULL_UUID);
      expect(all.totalElements).to.equal(all.data.length);
    });

    it("answers ThingsBoard's validation errors", async () => {
      expectError(await sys.post('/api/tenant', {}), 400, 'Tenant title should be specified!', 31);
      expectError(await sys.get(`/api/tenant/${NULL_UUID}`), 404, `Tenant with id [${NULL_UUID}] is not found`, 32);
      expectError(await sys.get('/api/tenant/not-a-uuid'), 400, 'Invalid UUID string: not-a-uuid', 31);
    });

    it('is managed by the sysadmin only: a tenant admin gets 403, and reads its own tenant only', async () => {
      const admin = h.admin;
      const own = ok<UserBody>(await admin.get('/api/auth/user')).tenantId.id;
      expectError(await admin.get('/api/tenants?pageSize=10&page=0'), 403, FORBIDDEN, 20);
      expectError(await admin.post('/api/tenant', { title: 'mine' }), 403, FORBIDDEN, 20);
      expectError(await admin.delete(`/api/tenant/${own}`), 403, FORBIDDEN, 20);
      expectError(await admin.get('/api/tenantProfiles?pageSize=10&page=0'), 403, FORBIDDEN, 20);
      expect(ok<TenantBody>(await admin.get(`/api/tenant/${own}`)).id.id).to.equal(own);
      const other = ok<TenantBody>(await sys.post('/api/tenant', { title: unique('other') }));
      expectError(await admin.get(`/api/tenant/${other.id.id}`), 403, FORBIDDEN, 20);
      expectError(await h.anonymous().get('/api/tenants?pageSize=10&page=0'), 401);
    });
  });

  describe('users and activation', () => {
    let tenantId: string;
    before(async () => {
      tenantId = ok<TenantBody>(await sys.post('/api/tenant', { title: unique('users') })).id.id;
    });

    const createAdmin = async (by: ApiClient, body: Record<string, unknown> = {}): Promise<UserBody> =>
      ok<UserBody>(
        await by.post('/api/user?sendActivationMail=false', {
          email: `${unique('u')}@example.org`,
          authority: 'TENANT_ADMIN',
          tenantId: { entityType: 'TENANT', id: tenantId },
          ...body,
        }),
      );
    const activationToken = async (by: ApiClient, userId: string): Promise<string> => {
      const link = await by.get(`/api/user/${userId}/activationLink`);
      expect(link.status, link.text).to.equal(200);
      expect(link.headers.get('content-type')).to.match(/^text\/plain/);
      expect(link.text).to.match(new RegExp(`^${h.baseUrl}/api/noauth/activate\\?activateToken=`));
      return new URL(link.text).searchParams.get('activateToken') as string;
    };

    it('creates a tenant admin without a password: no login until activated, then the activation answers tokens', async () => {
      const user = await createAdmin(sys, { firstName: 'Ada', lastName: 'L' });
      expect(user).to.include({ authority: 'TENANT_ADMIN', firstName: 'Ada', lastName: 'L' });
      expect(user.tenantId.id).to.equal(tenantId);
      expectError(await h.anonymous().post('/api/auth/login', { username: user.email, password: '' }), 401);
      const token = await activationToken(sys, user.id.id);
      const pair = ok<{ token: string; refreshToken: string }>(await h.anonymous().post('/api/noauth/activate', { activateToken: token, password: 'first password' }));
      expect(pair.token).to.be.a('string');
      const me = ok<UserBody>(await new ApiClient(h.baseUrl, pair.token).get('/api/auth/user'));
      expect(me.email).to.equal(user.email);
      ok(await (await h.login(user.email, 'first password')).get('/api/tenant/devices?pageSize=10&page=0'));
      // The token works once; the link is gone once active.
      expectError(
        await h.anonymous().post('/api/noauth/activate', { activateToken: token, password: 'second password' }),
        400,
        `Unable to find user credentials by activateToken [${token}]`,
        31,
      );
      expectError(await sys.get(`/api/user/${user.id.id}/activationLink`), 400, 'User is already activated!', 31);
    });

    it("applies ThingsBoard's password policy and user validation", async () => {
      const user = await createAdmin(sys);
      const token = await activationToken(sys, user.id.id);
      expectError(await h.anonymous().post('/api/noauth/activate', { activateToken: token, password: '123' }), 400, 'Password must be 6 or more characters in length.', 31);
      expectError(
        await sys.post('/api/user', { email: user.email, authority: 'TENANT_ADMIN', tenantId: { id: tenantId } }),
        400,
        `User with email '${user.email}' already present in database!`,
        31,
      );
      expectError(await sys.post('/api/user', { authority: 'TENANT_ADMIN', tenantId: { id: tenantId } }), 400, 'User email should be specified!', 31);
      expectError(await sys.post('/api/user', { email: 'x@example.org', tenantId: { id: tenantId } }), 400, "User authority isn't defined!", 31);
      expectError(await sys.post('/api/user', { email: 'x@example.org', authority: 'TENANT_ADMIN' }), 400, 'Tenant administrator should be assigned to tenant!', 31);
      expectError(
        await sys.post('/api/user', { email: 'x@example.org', authority: 'TENANT_ADMIN', tenantId: { id: '00000000-0000-4000-8000-000000000000' } }),
        400,
        'User is referencing to non-existent tenant!',
        31,
      );
    });

    it('lets a tenant admin create users of its own tenant only, whatever tenantId it sends', async () => {
      const t: ApiTenant = await h.apiTenant();
      const made = ok<UserBody>(
        await t.admin.post('/api/user?sendActivationMail=false', { email: `${unique('mate')}@example.org`, authority: 'TENANT_ADMIN', tenantId: { id: tenantId } }),
      );
      expect(made.tenantId.id).to.equal(t.tenantId);
      expectError(await t.admin.post('/api/user', { email: `${unique('s')}@example.org`, authority: 'SYS_ADMIN' }), 403, FORBIDDEN, 20);
      const users = ok<PageData<UserBody>>(await t.admin.get('/api/users?pageSize=10&page=0'));
      expect(users.data.map((u) => u.email).sort()).to.deep.equal([t.email, made.email].sort());
      // Another tenant's user is out of reach.
      const stranger = await createAdmin(sys);
      expectError(await t.admin.get(`/api/user/${stranger.id.id}`), 403, FORBIDDEN, 20);
      expectError(await t.admin.get(`/api/user/${stranger.id.id}/activationLink`), 403, FORBIDDEN, 20);
      expectError(await t.admin.delete(`/api/user/${stranger.id.id}`), 403, FORBIDDEN, 20);
      expectError(await t.admin.post('/api/user', { ...stranger, firstName: 'hijacked' }), 403, FORBIDDEN, 20);
      expectError(await t.admin.get(`/api/tenant/${tenantId}/users?pageSize=10&page=0`), 403, FORBIDDEN, 20);
    });

    it("lists a tenant's users for the sysadmin with GET /api/tenant/{tenantId}/users", async () => {
      const a = await createAdmin(sys);
      const page = ok<PageData<UserBody>>(await sys.get(`/api/tenant/${tenantId}/users?pageSize=100&page=0`));
      expect(page.data.map((u) => u.email)).to.include(a.email);
      expect(page.data.every((u) => u.tenantId.id === tenantId)).to.equal(true);
    });

    it('deletes a user, whose tokens stop working, but never the last tenant admin nor the sysadmin himself', async () => {
      const t = await h.apiTenant();
      const mate = ok<UserBody>(await t.admin.post('/api/user', { email: `${unique('mate')}@example.org`, authority: 'TENANT_ADMIN' }));
      const token = await activationToken(t.admin, mate.id.id);
      const pair = ok<{ token: string }>(await h.anonymous().post('/api/noauth/activate', { activateToken: token, password: 'mate password' }));
      const mateClient = new ApiClient(h.baseUrl, pair.token);
      ok(await mateClient.get('/api/auth/user'));
      ok(await t.admin.delete(`/api/user/${mate.id.id}`));
      expectError(await mateClient.get('/api/auth/user'), 401);
      const self = ok<UserBody>(await t.admin.get('/api/auth/user'));
      expectError(await sys.delete(`/api/user/${self.id.id}`), 400, 'At least one tenant administrator must remain!', 31);
      const me = ok<UserBody>(await sys.get('/api/auth/user'));
      expectError(await sys.delete(`/api/user/${me.id.id}`), 403, 'Sysadmin is not allowed to delete himself', 20);
    });

    it('changes passwords and logs out as before, for the sysadmin and a new admin alike', async () => {
      const t = await h.apiTenant();
      const res = ok<{ token: string }>(await t.admin.post('/api/auth/changePassword', { currentPassword: t.password, newPassword: 'a new password' }));
      expectError(await t.admin.get('/api/auth/user'), 401);
      const fresh = await h.login(t.email, 'a new password');
      expect(res.token).to.be.a('string');
      ok(await fresh.post('/api/auth/logout', {}));
      expectError(await fresh.get('/api/auth/user'), 401);
      const sys2 = await h.sysadmin();
      ok(await sys2.post('/api/auth/logout', {}));
      expectError(await sys2.get('/api/auth/user'), 401);
      // Logout revoked every sysadmin token, the suite's too.
      sys = await h.sysadmin();
    });
  });

  describe('tenant profiles and limits', () => {
    it("serves the default profile and saves new ones in ThingsBoard's shape", async () => {
      const info = ok<{ id: EntityRef; name: string }>(await sys.get('/api/tenantProfileInfo/default'));
      const def = ok<TenantProfileBody>(await sys.get(`/api/tenantProfile/${info.id.id}`));
      expect(def).to.include({ name: 'Default', default: true });
      expect(def.profileData.configuration).to.include({ type: 'DEFAULT', maxDevices: 0, maxOtaPackagesInBytes: 0 });
      const saved = ok<TenantProfileBody>(await sys.post('/api/tenantProfile', { name: unique('small'), profileData: { configuration: { type: 'DEFAULT', maxDevices: 2 } } }));
      expect(saved.default).to.equal(false);
      const page = ok<PageData<TenantProfileBody>>(await sys.get('/api/tenantProfiles?pageSize=100&page=0'));
      expect(page.data.map((p) => p.id.id)).to.include.members([def.id.id, saved.id.id]);
      expectError(
        await sys.post('/api/tenantProfile', { name: saved.name, profileData: { configuration: { type: 'DEFAULT' } } }),
        400,
        'Tenant profile with such name already exists!',
        31,
      );
      expectError(await sys.post('/api/tenantProfile', { name: unique('bad'), profileData: { configuration: { maxDevices: -1 } } }), 400, /maxDevices/, 31);
    });

    it("refuses a device past the profile's maxDevices with ThingsBoard's 403", async () => {
      const profile = ok<TenantProfileBody>(
        await sys.post('/api/tenantProfile', { name: unique('two-devices'), profileData: { configuration: { type: 'DEFAULT', maxDevices: 2 } } }),
      );
      const t = await h.apiTenant(unique('limited'), { tenantProfileId: profile.id });
      await t.admin.createDevice({ name: unique('d') });
      await t.admin.createDevice({ name: unique('d') });
      const res = await t.admin.post('/api/device', { name: unique('d') });
      expect(res.status).to.equal(403);
      expect(res.body).to.deep.include({ status: 403, message: 'Devices limit reached', errorCode: 41, entityType: 'DEVICE', limit: 2 });
      const page = ok<PageData<unknown>>(await t.admin.get('/api/tenant/devices?pageSize=10&page=0'));
      expect(page.totalElements).to.equal(2);
      // Raising the limit on the profile applies at once.
      ok(await sys.post('/api/tenantProfile', { ...profile, profileData: { configuration: { type: 'DEFAULT', maxDevices: 3 } } }));
      await t.admin.createDevice({ name: unique('d') });
    });

    it("refuses a package past the profile's maxOtaPackagesInBytes with ThingsBoard's message, storing nothing", async () => {
      const profile = ok<TenantProfileBody>(
        await sys.post('/api/tenantProfile', { name: unique('1k'), profileData: { configuration: { type: 'DEFAULT', maxOtaPackagesInBytes: 1024 } } }),
      );
      const t = await h.apiTenant(unique('bytes'), { tenantProfileId: profile.id });
      const p = await t.admin.defaultProfile();
      await t.admin.createPackageWithData({ deviceProfileId: p.id.id }, randomBytes(1000));
      const info = await t.admin.createPackage({ deviceProfileId: p.id.id });
      const bytes = randomBytes(100);
      expectError(await t.admin.upload(info.id.id, bytes, { checksumAlgorithm: 'SHA256' }), 400, 'Ota packages total size exceeds the maximum of 1 KB', 31);
      expect(await h.blobFiles()).to.not.include(blobPathOf(checksumOf('SHA256', bytes)));
    });
  });

  describe('deleting a tenant', () => {
    it("deletes everything it owns, keeps bytes another tenant holds, and ends its devices' sessions", async () => {
      const t = await h.apiTenant();
      const other = await h.apiTenant();
      const shared = randomBytes(700);
      const own = randomBytes(600);
      const profile = await t.admin.createProfile(unique('p'));
      const sharedPkg = await t.admin.createPackageWithData({ deviceProfileId: profile.id.id }, shared);
      await t.admin.createPackageWithData({ deviceProfileId: profile.id.id }, own);
      const otherProfile = await other.admin.defaultProfile();
      const otherPkg = await other.admin.createPackageWithData({ deviceProfileId: otherProfile.id.id }, shared);
      const token = unique('tok');
      await t.admin.createDevice({ name: unique('d'), deviceProfileId: profile.id, firmwareId: sharedPkg.id }, token);
      const queued = await eventually(async () => (await h.countRows('ota_states', 'tenant_id', t.tenantId)) > 0, 'the device queued');
      expect(queued).to.equal(true);
      // A device session: an HTTP long poll for attribute updates.
      const poll = fetch(`${h.baseUrl}/api/v1/${token}/attributes/updates?timeout=60000`).then((r) => r.status);

      ok(await sys.delete(`/api/tenant/${t.tenantId}`));

      expect(await poll).to.be.a('number'); // ended, not left hanging for a minute
      expectError(await sys.get(`/api/tenant/${t.tenantId}`), 404);
      expectError(await t.admin.get('/api/auth/user'), 401);
      expectError(await h.anonymous().post('/api/auth/login', { username: t.email, password: t.password }), 401);
      expect((await fetch(`${h.baseUrl}/api/v1/${token}/attributes`)).status).to.not.equal(200);
      for (const table of ['devices', 'device_profiles', 'ota_packages', 'users', 'ota_states', 'notify_queue', 'ota_state_snapshots']) {
        expect(await h.countRows(table, 'tenant_id', t.tenantId), table).to.equal(0);
      }
      expect(await h.countRows('tenants', 'id', t.tenantId)).to.equal(0);
      const has = async (bytes: Buffer): Promise<boolean> => {
        const sha = checksumOf('SHA256', bytes);
        return h.databaseUrl ? (await h.countRows('package_blobs', 'sha256', sha)) > 0 : (await h.blobFiles()).includes(blobPathOf(sha));
      };
      expect(await has(own), 'its own bytes').to.equal(false);
      expect(await has(shared), 'bytes another tenant holds').to.equal(true);
      const download = await other.admin.get(`/api/otaPackage/${otherPkg.id.id}/download`);
      expect(download.bytes.equals(shared)).to.equal(true);
      // The other tenant and the first admin are untouched.
      ok(await other.admin.get('/api/auth/user'));
      ok(await h.admin.get('/api/auth/user'));
      expect(ok<UserBody>(await h.admin.get('/api/auth/user')).email).to.equal(ADMIN_USER);
    });

    it('deletes a tenant of more devices than a page, ending every one (deviceDeleted once each)', async () => {
      const t = await h.apiTenant();
      const n = 2_345; // three pages of 1,000
      for (let i = 0; i < n; i += 100) {
        await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => h.engine.devices.save(t.tenantId as never, { name: `d-${i + j}` })));
      }
      expect(await h.countRows('devices', 'tenant_id', t.tenantId)).to.equal(n);
      const ended = new Map<string, number>();
      const onDeleted = ({ device }: { device: { id: string; tenantId: string } }): void => {
        if (device.tenantId === t.tenantId) ended.set(device.id, (ended.get(device.id) ?? 0) + 1);
      };
      h.engine.events.on('deviceDeleted', onDeleted);
      try {
        ok(await sys.delete(`/api/tenant/${t.tenantId}`));
      } finally {
        h.engine.events.off('deviceDeleted', onDeleted);
      }
      expect(ended.size).to.equal(n);
      expect([...ended.values()].every((c) => c === 1)).to.equal(true);
      expect(await h.countRows('devices', 'tenant_id', t.tenantId)).to.equal(0);
      expect(await h.countRows('tenants', 'id', t.tenantId)).to.equal(0);
    });

    it("is the sysadmin's only, and answers 404 for an unknown tenant", async () => {
      const t = await h.apiTenant();
      expectError(await t.admin.delete(`/api/tenant/${t.tenantId}`), 403, FORBIDDEN, 20);
      expectError(await sys.delete('/api/tenant/00000000-0000-4000-8000-000000000000'), 404);
      expectError(await sys.delete(`/api/tenant/${NULL_UUID}`), 404);
    });
  });
});

describe("admin API: activation links expire as ThingsBoard's (userActivationTokenTtl)", () => {
  const HOUR = 3600_000;
  let skew = 0;
  let h: ApiHarness;
  let sys: ApiClient;
  let tenantId: string;

  before(async () => {
    h = await ApiHarness.start({ timers: { ...realTimers, now: () => Date.now() + skew } });
    sys = await h.sysadmin();
    tenantId = ok<TenantBody>(await sys.post('/api/tenant', { title: unique('ttl') })).id.id;
  });
  after(async () => h?.close());
  afterEach(() => {
    skew = 0;
  });

  const newUser = async (): Promise<UserBody> =>
    ok<UserBody>(await sys.post('/api/user?sendActivationMail=false', { email: `${unique('u')}@example.org`, authority: 'TENANT_ADMIN', tenantId: { id: tenantId } }));
  // A login at the moved clock each time: an access token lives 2.5 h.
  const linkInfo = async (userId: string): Promise<{ value: string; ttlMs: number }> => ok(await (await h.sysadmin()).get(`/api/user/${userId}/activationLinkInfo`));
  const tokenOf = (link: string): string => new URL(link).searchParams.get('activateToken') as string;
  /** The activation link as a browser follows it, without following the redirect. */
  const check = async (token: string): Promise<{ status: number; location: string | null; text: string }> => {
    const res = await fetch(`${h.baseUrl}/api/noauth/activate?activateToken=${encodeURIComponent(token)}`, { redirect: 'manual' });
    return { status: res.status, location: res.headers.get('location'), text: await res.text() };
  };

  it("sends a live link on to the login page's create-password route, and answers 409 to an unknown token", async () => {
    const user = await newUser();
    const info = await linkInfo(user.id.id);
    expect(info.ttlMs).to.be.within(24 * HOUR - 60_000, 24 * HOUR);
    const token = tokenOf(info.value);
    expect(await check(token)).to.deep.include({ status: 303, location: `/login/createPassword?activateToken=${token}` });
    expect(await check('no-such-token')).to.deep.include({ status: 409, location: null, text: '' });
    expect((await check('')).status).to.equal(409);
  });

  it('refuses an expired token (303 to /activationLinkExpired, 400 "Activation token expired"), and a new link works', async () => {
    const user = await newUser();
    const first = tokenOf((await linkInfo(user.id.id)).value);
    skew = 24 * HOUR + 1000;
    expect(await check(first)).to.deep.include({ status: 303, location: '/activationLinkExpired' });
    expectError(await h.anonymous().post('/api/noauth/activate', { activateToken: first, password: 'expired pw' }), 400, 'Activation token expired', 31);
    // Nothing changed: no login with that password.
    expectError(await h.anonymous().post('/api/auth/login', { username: user.email, password: 'expired pw' }), 401);
    // Asking for the link again makes a new one, with the full TTL.
    const renewed = await linkInfo(user.id.id);
    expect(tokenOf(renewed.value)).to.not.equal(first);
    expect(renewed.ttlMs).to.be.within(24 * HOUR - 60_000, 24 * HOUR);
    expect((await check(first)).status).to.equal(409);
    ok(await h.anonymous().post('/api/noauth/activate', { activateToken: tokenOf(renewed.value), password: 'renewed pw' }));
    ok(await (await h.login(user.email, 'renewed pw')).get('/api/auth/user'));
  });

  it('keeps a link with more than 15 minutes left and renews one with less, as ThingsBoard', async () => {
    const user = await newUser();
    const first = await linkInfo(user.id.id);
    skew = 24 * HOUR - 30 * 60_000;
    const kept = await linkInfo(user.id.id);
    expect(kept.value).to.equal(first.value);
    expect(kept.ttlMs).to.be.within(29 * 60_000, 30 * 60_000);
    skew = 24 * HOUR - 10 * 60_000;
    const renewed = await linkInfo(user.id.id);
    expect(renewed.value).to.not.equal(first.value);
    expect(renewed.ttlMs).to.be.within(24 * HOUR - 60_000, 24 * HOUR);
    // The plain link (text) renews the same way and answers the current one.
    const plain = await (await h.sysadmin()).get(`/api/user/${user.id.id}/activationLink`);
    expect(plain.text).to.equal(renewed.value);
  });
});

describe("admin API: password reset as ThingsBoard's (no mail: an administrator hands over the link)", () => {
  const HOUR = 3600_000;
  let skew = 0;
  let h: ApiHarness;
  let t: ApiTenant;

  before(async () => {
    h = await ApiHarness.start({ timers: { ...realTimers, now: () => Date.now() + skew } });
    t = await h.apiTenant();
  });
  after(async () => h?.close());
  afterEach(() => {
    skew = 0;
  });

  const follow = async (link: string): Promise<{ status: number; location: string | null }> => {
    const res = await fetch(link, { redirect: 'manual' });
    await res.arrayBuffer();
    return { status: res.status, location: res.headers.get('location') };
  };
  const resetLink = async (by: ApiClient, userId: string): Promise<string> => {
    const r = await by.get(`/api/user/${userId}/passwordResetLink`);
    expect(r.status, r.text).to.equal(200);
    expect(r.text).to.match(new RegExp(`^${h.baseUrl}/api/noauth/resetPassword\\?resetToken=`));
    return r.text;
  };
  const tokenOf = (link: string): string => new URL(link).searchParams.get('resetToken') as string;

  it('answers resetPasswordByEmail 200 whatever the address, and changes nothing', async () => {
    expect((await h.anonymous().post('/api/noauth/resetPasswordByEmail', { email: t.email })).status).to.equal(200);
    expect((await h.anonymous().post('/api/noauth/resetPasswordByEmail', { email: 'nobody@example.org' })).status).to.equal(200);
    ok(await (await h.login(t.email, t.password)).get('/api/auth/user'));
  });

  it("resets with the link a tenant admin gets for its own tenant's user, revoking the user's tokens; the token works once", async () => {
    const mate = ok<UserBody>(await t.admin.post('/api/user', { email: `${unique('mate')}@example.org`, authority: 'TENANT_ADMIN' }));
    const act = new URL((await t.admin.get(`/api/user/${mate.id.id}/activationLink`)).text).searchParams.get('activateToken') as string;
    ok(await h.anonymous().post('/api/noauth/activate', { activateToken: act, password: 'mate password' }));
    const before = await h.login(mate.email, 'mate password');
    const link = await resetLink(t.admin, mate.id.id);
    const token = tokenOf(link);
    expect(await follow(link)).to.deep.equal({ status: 303, location: `/login/resetPassword?resetToken=${token}` });
    expectError(await h.anonymous().post('/api/noauth/resetPassword', { resetToken: token, password: '12' }), 400, 'Password must be 6 or more characters in length.', 31);
    const pair = ok<{ token: string; refreshToken: string }>(await h.anonymous().post('/api/noauth/resetPassword', { resetToken: token, password: 'new mate password' }));
    ok(await new ApiClient(h.baseUrl, pair.token).get('/api/auth/user'));
    expectError(await before.get('/api/auth/user'), 401);
    expectError(await h.anonymous().post('/api/auth/login', { username: mate.email, password: 'mate password' }), 401);
    ok(await (await h.login(mate.email, 'new mate password')).get('/api/auth/user'));
    expectError(await h.anonymous().post('/api/noauth/resetPassword', { resetToken: token, password: 'again password' }), 400, 'Invalid reset token!', 31);
    expect((await follow(link)).status).to.equal(409);
  });

  it("expires after 24 h as ThingsBoard's passwordResetTokenTtl, and is refused across tenants", async () => {
    const me = ok<UserBody>(await t.admin.get('/api/auth/user'));
    const link = await resetLink(await h.sysadmin(), me.id.id);
    skew = 24 * HOUR + 1000;
    expect(await follow(link)).to.deep.equal({ status: 303, location: '/passwordResetLinkExpired' });
    expectError(await h.anonymous().post('/api/noauth/resetPassword', { resetToken: tokenOf(link), password: 'late password' }), 400, 'Password reset token expired', 31);
    skew = 0;
    ok(await (await h.login(t.email, t.password)).get('/api/auth/user'));
    const other = await h.apiTenant();
    expectError(await other.admin.get(`/api/user/${me.id.id}/passwordResetLink`), 403, FORBIDDEN, 20);
  });
});
