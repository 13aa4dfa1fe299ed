import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OtaEngine } from '../../server/engine';
import { databaseUrlFor } from '../support/test-store';
import { ADMIN_PASSWORD, ADMIN_USER, ApiClient, ApiHarness, expectError, ok, quietLogger, type TokenPairBody, type UserBody } from '../support/api-harness';

/** An HS256 JWT shaped like ours, signed with `key`. */
function signJwt(claims: Record<string, unknown>, key: string): string {
  const head = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const mac = createHmac('sha256', Buffer.from(key, 'utf8')).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${mac}`;
}

const claimsOf = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>;

describe('admin API: authentication', () => {
  const JWT_KEY = 'the-test-signing-key-0123456789abcdef';
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start({ jwtSecret: JWT_KEY });
  });
  after(async () => h?.close());

  describe('POST /api/auth/login', () => {
    it('answers the right password with a token pair', async () => {
      const pair = ok<TokenPairBody>(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: ADMIN_PASSWORD }));
      expect(pair.token)
        .to.be.a('string')
        .and.match(/^[\w-]+\.[\w-]+\.[\w-]+$/);
      expect(pair.refreshToken)
        .to.be.a('string')
        .and.match(/^[\w-]+\.[\w-]+\.[\w-]+$/);
      expect(pair.token).to.not.equal(pair.refreshToken);
    });

    it('answers with scope null, as ThingsBoard does without two-factor authentication', async () => {
      const res = await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: ADMIN_PASSWORD });
      const pair = ok<TokenPairBody>(res);
      expect(Object.keys(pair).sort()).to.deep.equal(['refreshToken', 'scope', 'token']);
      expect(pair.scope).to.equal(null);
    });

    it('puts ThingsBoard claims in the access token', async () => {
      const pair = ok<TokenPairBody>(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: ADMIN_PASSWORD }));
      const claims = claimsOf(pair.token);
      expect(claims.sub).to.equal(ADMIN_USER);
      expect(claims.scopes).to.deep.equal(['TENANT_ADMIN']);
      expect(claims.userId).to.be.a('string');
      expect(claims.tenantId).to.be.a('string');
      expect(claims.exp).to.be.a('number');
    });

    it('answers a wrong password with 401, errorCode 10 and "Invalid username or password"', async () => {
      const res = await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: 'wrong password' });
      expectError(res, 401, 'Invalid username or password', 10);
    });

    it('answers an unknown user exactly like a wrong password', async () => {
      const res = await h.anonymous().post('/api/auth/login', { username: 'nobody@example.org', password: ADMIN_PASSWORD });
      expectError(res, 401, 'Invalid username or password', 10);
    });

    it('answers a login without a password with 401 "Authentication failed"', async () => {
      const res = await h.anonymous().post('/api/auth/login', { username: ADMIN_USER });
      expectError(res, 401, 'Authentication failed', 10);
    });
  });

  describe('access tokens', () => {
    it('answers a request without a token with 401 "Authentication failed"', async () => {
      expectError(await h.anonymous().get('/api/otaPackages?pageSize=10&page=0'), 401, 'Authentication failed', 10);
    });

    it('answers a header without the Bearer scheme with 401 "Authentication failed"', async () => {
      const res = await h.anonymous().get('/api/auth/user', { 'X-Authorization': h.admin.token as string });
      expectError(res, 401, 'Authentication failed', 10);
    });

    it('accepts the token in X-Authorization: Bearer', async () => {
      const user = ok<UserBody>(await h.admin.withHeader('X-Authorization').get('/api/auth/user'));
      expect(user.email).to.equal(ADMIN_USER);
    });

    it('accepts the token in Authorization: Bearer', async () => {
      const user = ok<UserBody>(await h.admin.withHeader('Authorization').get('/api/auth/user'));
      expect(user.email).to.equal(ADMIN_USER);
    });

    it('refuses a token signed with another key with 401 and errorCode 11', async () => {
      const claims = claimsOf(h.admin.token as string);
      const forged = signJwt(claims, 'some-other-key-entirely');
      expectError(await new ApiClient(h.baseUrl, forged).get('/api/auth/user'), 401, 'Token has expired', 11);
    });

    it('refuses an expired token with 401 "Token has expired" and errorCode 11', async () => {
      const now = Math.floor(Date.now() / 1000);
      const expired = signJwt({ ...claimsOf(h.admin.token as string), iat: now - 100, exp: now - 10 }, JWT_KEY);
      expectError(await new ApiClient(h.baseUrl, expired).get('/api/auth/user'), 401, 'Token has expired', 11);
    });

    it('accepts a token it signed itself with the configured key (the forgery test above is meaningful)', async () => {
      const now = Math.floor(Date.now() / 1000);
      const fresh = signJwt({ ...claimsOf(h.admin.token as string), iat: now, exp: now + 60 }, JWT_KEY);
      ok<UserBody>(await new ApiClient(h.baseUrl, fresh).get('/api/auth/user'));
    });

    it('answers a malformed token with 401 and errorCode 10', async () => {
      expectError(await new ApiClient(h.baseUrl, 'not-a-jwt').get('/api/auth/user'), 401, undefined, 10);
    });

    it('refuses a refresh token used as an access token with 401', async () => {
      const pair = ok<TokenPairBody>(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: ADMIN_PASSWORD }));
      expectError(await new ApiClient(h.baseUrl, pair.refreshToken).get('/api/auth/user'), 401, undefined, 10);
    });
  });

  describe('POST /api/auth/token', () => {
    it('exchanges a refresh token for a new pair whose access token works', async () => {
      const pair = ok<TokenPairBody>(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: ADMIN_PASSWORD }));
      const renewed = ok<TokenPairBody>(await h.anonymous().post('/api/auth/token', { refreshToken: pair.refreshToken }));
      expect(renewed.token).to.be.a('string');
      expect(renewed.refreshToken).to.be.a('string');
      const user = ok<UserBody>(await new ApiClient(h.baseUrl, renewed.token).get('/api/auth/user'));
      expect(user.email).to.equal(ADMIN_USER);
    });

    it('refuses an access token offered as a refresh token with 401', async () => {
      expectError(await h.anonymous().post('/api/auth/token', { refreshToken: h.admin.token }), 401, undefined, 10);
    });

    it('answers a request without a refresh token with 401 "Authentication failed"', async () => {
      expectError(await h.anonymous().post('/api/auth/token', {}), 401, 'Authentication failed', 10);
    });
  });

  describe('GET /api/auth/user', () => {
    it('returns the logged-in tenant admin', async () => {
      const user = ok<UserBody>(await h.admin.get('/api/auth/user'));
      expect(user.email).to.equal(ADMIN_USER);
      expect(user.authority).to.equal('TENANT_ADMIN');
      expect(user.id.entityType).to.equal('USER');
      expect(user.tenantId.entityType).to.equal('TENANT');
      expect(user.id.id).to.equal(claimsOf(h.admin.token as string).userId);
    });
  });

  describe('error JSON', () => {
    it("answers an unknown /api path with 404 and ThingsBoard's error JSON", async () => {
      expectError(await h.admin.get('/api/noSuchThing'), 404, undefined, 32);
    });

    it("answers a malformed JSON body with 400 and ThingsBoard's error JSON", async () => {
      const res = await h.admin.request('POST', '/api/deviceProfile', { body: Buffer.from('{"name": '), headers: { 'Content-Type': 'application/json' } });
      expectError(res, 400, undefined, 31);
    });

    it("answers a body of the wrong shape with 400 and ThingsBoard's error JSON", async () => {
      expectError(await h.admin.post('/api/deviceProfile', { name: 42 }), 400, undefined, 31);
      expectError(await h.admin.post('/api/device', ['not', 'an', 'object']), 400, undefined, 31);
    });
  });

  describe('password storage', () => {
    it('stores the admin password hashed, never in plaintext', async () => {
      const rows = await h.rows('users');
      expect(rows).to.have.length.greaterThan(0);
      for (const row of rows) {
        for (const value of Object.values(row)) {
          expect(String(value)).to.not.include(ADMIN_PASSWORD);
        }
      }
      const admin = rows.find((r) => r.email === ADMIN_USER) as Record<string, unknown>;
      expect(String(admin.password_hash)).to.match(/^scrypt\$/);
    });
  });
});

describe('admin API: first start and restart', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-boot-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('keeps working after a restart with the configured password', async () => {
    const first = await ApiHarness.start({ dataDir: dir });
    const profileId = (await first.admin.createProfile('survives-restart')).id.id;
    await first.close();
    const second = await ApiHarness.start({ dataDir: dir });
    try {
      expect(second.engine.bootstrap.generatedPassword).to.equal(null);
      const again = ok<{ id: { id: string } }>(await second.admin.get(`/api/deviceProfile/${profileId}`));
      expect(again.id.id).to.equal(profileId);
    } finally {
      await second.close();
    }
  });

  it('accepts a token issued before a restart (the signing key is kept)', async () => {
    const first = await ApiHarness.start({ dataDir: dir });
    const token = first.admin.token as string;
    await first.close();
    const second = await ApiHarness.start({ dataDir: dir });
    try {
      const user = ok<UserBody>(await new ApiClient(second.baseUrl, token).get('/api/auth/user'));
      expect(user.email).to.equal(ADMIN_USER);
    } finally {
      await second.close();
    }
  });

  it('follows a changed configured password on restart', async () => {
    const first = await ApiHarness.start({ dataDir: dir, password: 'first password' });
    await first.close();
    const second = await ApiHarness.start({ dataDir: dir, password: 'second password' });
    try {
      expectError(await second.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: 'first password' }), 401, 'Invalid username or password', 10);
    } finally {
      await second.close();
    }
  });

  it('generates a password when none is configured, and login works with it', async () => {
    const h = await ApiHarness.start({ dataDir: dir, password: null });
    try {
      const generated = h.engine.bootstrap.generatedPassword;
      expect(generated).to.be.a('string').with.length.greaterThan(11);
      const pair = ok<TokenPairBody>(await h.anonymous().post('/api/auth/login', { username: ADMIN_USER, password: generated }));
      expect(pair.token).to.be.a('string');
    } finally {
      await h.close();
    }
  });

  it('keeps the generated password over a restart without one, generating nothing new', async () => {
    const first = await ApiHarness.start({ dataDir: dir, password: null });
    const generated = first.engine.bootstrap.generatedPassword as string;
    await first.close();
    const databaseUrl = await databaseUrlFor(dir);
    const engine = await OtaEngine.open({ dataDir: dir, ...(databaseUrl ? { databaseUrl } : {}), http: { port: 0, host: '127.0.0.1' }, logger: quietLogger });
    try {
      expect(engine.bootstrap.generatedPassword).to.equal(null);
      const port = (engine.httpAddress as { port: number }).port;
      const pair = ok<TokenPairBody>(await new ApiClient(`http://127.0.0.1:${port}`, null).post('/api/auth/login', { username: ADMIN_USER, password: generated }));
      expect(pair.token).to.be.a('string');
    } finally {
      await engine.close();
    }
  });
});
