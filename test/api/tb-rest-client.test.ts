import { expect } from 'chai';
import http from 'node:http';
import { ApiHarness, SYSADMIN_PASSWORD, SYSADMIN_USER } from '../support/api-harness';

/**
 * ThingsBoard's official Python REST client (tb-rest-client, RestClientCE): `login`, `save_tenant`,
 * `get_tenant_by_id`, `get_tenants`, `save_user(send_activation_mail=False)`, `get_activation_link`,
 * `activate_user`, `get_tenant_admins`, `delete_tenant`, sent byte for byte as the client sends
 * them (its swagger ApiClient: headers, `json.dumps` bodies, query values such as `False`; recorded
 * from the client against this server), and the answers checked against what its models require:
 * a Tenant's title, the `entityType` of each id, a User's email and authority among the allowed
 * values, JwtPair, PageData. The client itself runs against the server as a manual check (README).
 */
const SWAGGER_HEADERS = { 'accept-encoding': 'identity', 'user-agent': 'Swagger-Codegen/1.0.0/python' };
const AUTHORITIES = ['SYS_ADMIN', 'TENANT_ADMIN', 'CUSTOMER_USER', 'REFRESH_TOKEN', 'PRE_VERIFICATION_TOKEN'];

/** Python's `json.dumps` of a dict: `", "` and `": "` separators, keys in insertion order. */
const pyJson = (v: unknown): string =>
  Array.isArray(v)
    ? `[${v.map(pyJson).join(', ')}]`
    : v !== null && typeof v === 'object'
      ? `{${Object.entries(v)
          .map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x)}`)
          .join(', ')}}`
      : JSON.stringify(v);

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

describe("ThingsBoard's Python REST client's requests (tb-rest-client)", () => {
  let h: ApiHarness;
  let token: string;

  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h?.close());

  function send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: h.port,
          method,
          path,
          headers: { host: `127.0.0.1:${h.port}`, ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
  /** A call of the client's generated controllers (`api_client.call_api`). */
  const swagger = (method: string, path: string, opts: { body?: unknown; accept?: string; auth?: boolean } = {}): Promise<Answer> =>
    send(
      method,
      path,
      {
        ...SWAGGER_HEADERS,
        accept: opts.accept ?? 'application/json',
        'content-type': 'application/json',
        ...(opts.auth === false ? {} : { 'x-authorization': `Bearer ${token}` }),
      },
      opts.body === undefined ? undefined : pyJson(opts.body),
    );
  const json = (a: Answer): Record<string, unknown> => {
    expect(a.status, a.text).to.equal(200);
    expect(a.contentType).to.match(/^application\/json/);
    return JSON.parse(a.text) as Record<string, unknown>;
  };

  // What the client's models refuse (their setters raise ValueError), checked on an answer.
  const entityId = (v: unknown, type: string, nullable = false): void => {
    if (nullable && v === null) return;
    expect(v).to.be.an('object');
    expect((v as { entityType: unknown }).entityType).to.equal(type);
    expect((v as { id: unknown }).id).to.be.a('string');
  };
  const tenantModel = (t: Record<string, unknown>): void => {
    expect(t.title, 'Tenant.title must not be None').to.be.a('string');
    entityId(t.id, 'TENANT');
    entityId(t.tenantProfileId, 'TENANT_PROFILE', true);
    expect(t.createdTime).to.be.a('number');
  };
  const userModel = (u: Record<string, unknown>): void => {
    expect(u.email, 'User.email must not be None').to.be.a('string');
    expect(AUTHORITIES).to.include(u.authority);
    entityId(u.id, 'USER');
    entityId(u.tenantId, 'TENANT');
    entityId(u.customerId, 'CUSTOMER');
  };
  const jwtPairModel = (p: Record<string, unknown>): void => {
    expect(p.token).to.be.a('string');
    expect(p.refreshToken).to.be.a('string');
    if (p.scope !== null && p.scope !== undefined) expect(AUTHORITIES).to.include(p.scope);
  };
  const pageModel = (p: Record<string, unknown>, item: (x: Record<string, unknown>) => void): void => {
    expect(p.data).to.be.an('array');
    expect(p.totalPages).to.be.a('number');
    expect(p.totalElements).to.be.a('number');
    expect(p.hasNext).to.be.a('boolean');
    for (const x of p.data as Array<Record<string, unknown>>) item(x);
  };

  it('serializes bodies as Python does (the helper)', () => {
    expect(pyJson({ a: 'x', b: { c: 1, d: [true] } })).to.equal('{"a": "x", "b": {"c": 1, "d": [true]}}');
  });

  it('works through save_tenant, save_user, get_activation_link, activate_user, get_tenant_admins and delete_tenant', async () => {
    // RestClientBase.login: `requests.post(url, json={...})`.
    const login = await send(
      'POST',
      '/api/auth/login',
      { 'user-agent': 'python-requests/2.28.1', 'accept-encoding': 'gzip, deflate', accept: '*/*', connection: 'keep-alive', 'content-type': 'application/json' },
      pyJson({ username: SYSADMIN_USER, password: SYSADMIN_PASSWORD }),
    );
    const pair = json(login);
    jwtPairModel(pair);
    token = pair.token as string;
    // __save_token decodes the token without verifying it and reads `exp`.
    const claims = JSON.parse(Buffer.from((token.split('.')[1] as string).replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString()) as { exp: unknown };
    expect(claims.exp).to.be.a('number');

    const tenant = json(await swagger('POST', '/api/tenant', { body: { country: 'NL', email: 'ops@example.org', title: 'Python tenant' } }));
    tenantModel(tenant);
    const tenantId = (tenant.id as { id: string }).id;
    tenantModel(json(await swagger('GET', `/api/tenant/${tenantId}`)));
    pageModel(json(await swagger('GET', '/api/tenants?pageSize=10&page=0')), tenantModel);

    const user = json(
      await swagger('POST', '/api/user?sendActivationMail=False', {
        body: { tenantId: { id: tenantId, entityType: 'TENANT' }, email: 'py-admin@example.org', authority: 'TENANT_ADMIN', firstName: 'Py' },
      }),
    );
    userModel(user);
    expect(user.firstName).to.equal('Py');
    const userId = (user.id as { id: string }).id;

    // response_type 'str' with Accept text/plain: the body is the link itself, not a JSON string.
    const link = await swagger('GET', `/api/user/${userId}/activationLink`, { accept: 'text/plain' });
    expect(link.status).to.equal(200);
    expect(link.contentType).to.match(/^text\/plain/);
    expect(() => JSON.parse(link.text)).to.throw();
    const activateToken = /activateToken=([A-Za-z0-9_-]+)$/.exec(link.text)?.[1] as string;
    expect(activateToken).to.be.a('string');

    // AuthController.activate_user: no X-Authorization (auth_settings = []).
    const activated = json(await swagger('POST', '/api/noauth/activate?sendActivationMail=False', { auth: false, body: { activateToken, password: 'py-admin-pw-1' } }));
    jwtPairModel(activated);

    pageModel(json(await swagger('GET', `/api/tenant/${tenantId}/users?pageSize=10&page=0`)), userModel);

    // The activated admin logs in as the client does and reads its user.
    const adminLogin = json(
      await send(
        'POST',
        '/api/auth/login',
        { 'user-agent': 'python-requests/2.28.1', accept: '*/*', 'content-type': 'application/json' },
        pyJson({ username: 'py-admin@example.org', password: 'py-admin-pw-1' }),
      ),
    );
    jwtPairModel(adminLogin);

    // delete_tenant sends `{}` as its body.
    const deleted = await swagger('DELETE', `/api/tenant/${tenantId}`, { body: {} });
    expect(deleted.status, deleted.text).to.equal(200);
    expect((await swagger('GET', `/api/tenant/${tenantId}`)).status).to.equal(404);
  });
});
