import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ADMIN_USER, ApiClient, ApiHarness, expectError, ok, type TokenPairBody, type UserBody } from '../support/api-harness';

/** Logout, a password change and a password reset revoke a user's tokens (issue 10, item 3). */
describe('Token revocation', () => {
  let h: ApiHarness;
  beforeEach(async () => {
    h = await ApiHarness.start();
  });
  afterEach(async () => h.close());

  const pairOf = async (password = h.password): Promise<TokenPairBody> => ok<TokenPairBody>(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password }));

  it('refuses the access and refresh tokens of a session after its logout (401, errorCode 11)', async () => {
    const pair = await pairOf();
    const session = new ApiClient(h.baseUrl, pair.token);
    ok<UserBody>(await session.get('/api/auth/user'));
    expect((await session.post('/api/auth/logout', {})).status).to.equal(200);
    expectError(await session.get('/api/auth/user'), 401, 'Token is outdated', 11);
    expectError(await h.anonymous().post('/api/auth/token', { refreshToken: pair.refreshToken }), 401, 'Token is outdated', 11);
  });

  it('lets the user log in again after a logout', async () => {
    await h.admin.post('/api/auth/logout', {});
    const again = new ApiClient(h.baseUrl, (await pairOf()).token);
    expect(ok<UserBody>(await again.get('/api/auth/user')).email).to.equal(ADMIN_USER);
  });

  it('changes the password: the old one and every older token stop working, the answered pair works', async () => {
    const older = await pairOf();
    const res = await h.admin.post('/api/auth/changePassword', { currentPassword: h.password, newPassword: 'a new password 123' });
    const fresh = ok<TokenPairBody>(res);
    expect(ok<UserBody>(await new ApiClient(h.baseUrl, fresh.token).get('/api/auth/user')).email).to.equal(ADMIN_USER);
    expectError(await new ApiClient(h.baseUrl, older.token).get('/api/auth/user'), 401, 'Token is outdated', 11);
    expectError(await h.admin.get('/api/auth/user'), 401, 'Token is outdated', 11);
    expectError(await h.anonymous().post('/api/auth/token', { refreshToken: older.refreshToken }), 401, 'Token is outdated', 11);
    expectError(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: h.password }), 401, 'Invalid username or password', 10);
    await pairOf('a new password 123');
  });

  it('refuses a password change with a wrong current password, changing nothing', async () => {
    expectError(await h.admin.post('/api/auth/changePassword', { currentPassword: 'wrong', newPassword: 'whatever 123' }), 400, "Current password doesn't match!", 31);
    ok<UserBody>(await h.admin.get('/api/auth/user'));
    await pairOf();
  });

  it('refuses a token whose header names another algorithm, even with a valid HS256 signature', async () => {
    const [, body, mac] = (h.admin.token as string).split('.') as [string, string, string];
    for (const alg of ['none', 'HS512', 'RS256']) {
      const head = Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url');
      expect((await new ApiClient(h.baseUrl, `${head}.${body}.${mac}`).get('/api/auth/user')).status, alg).to.equal(401);
    }
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${body}.`;
    expectError(await new ApiClient(h.baseUrl, none).get('/api/auth/user'), 401, undefined, 10);
  });

  it('does not accept a forged generation: the claim is under the signature', async () => {
    const [head, body] = (h.admin.token as string).split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    const forgedBody = Buffer.from(JSON.stringify({ ...claims, gen: 99 })).toString('base64url');
    const mac = createHmac('sha256', 'not the key').update(`${head}.${forgedBody}`).digest('base64url');
    expectError(await new ApiClient(h.baseUrl, `${head}.${forgedBody}.${mac}`).get('/api/auth/user'), 401, 'Token has expired', 11);
  });
});

describe('Token revocation across a restart', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-revoke-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('refuses every token issued before a restart with a new OTA_ADMIN_PASSWORD', async () => {
    const first = await ApiHarness.start({ dataDir: dir, password: 'first password' });
    const pair = ok<TokenPairBody>(await first.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: 'first password' }));
    await first.close();
    const second = await ApiHarness.start({ dataDir: dir, password: 'second password' });
    try {
      expectError(await new ApiClient(second.baseUrl, pair.token).get('/api/auth/user'), 401, 'Token is outdated', 11);
      expectError(await second.anonymous().post('/api/auth/token', { refreshToken: pair.refreshToken }), 401, 'Token is outdated', 11);
    } finally {
      await second.close();
    }
  });
});
