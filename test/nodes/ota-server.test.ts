import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import otaServer, { resolveOptions, type OtaServerNode } from '../../nodes/ota-server';
import type { OtaEngine } from '../../server';
import { editorFile, hasMessage, helpSections, helper, logged, registerCatalogs, translated, type FlowNode } from './flow-helper';

/** The error `f` fails with, or null when it succeeds. */
async function failure(f: () => unknown): Promise<Error | null> {
  try {
    await f();
    return null;
  } catch (err) {
    return err as Error;
  }
}

describe('ota-server node', function () {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ota-server-node-'));
    await helper.startServer();
    await registerCatalogs('ota-server');
  });

  afterEach(async () => {
    await helper.unload();
    await helper.stopServer();
    await rm(dataDir, { recursive: true, force: true });
  });

  const serverDef = (fields: Record<string, string> = {}): FlowNode => ({
    id: 'srv',
    type: 'ota-server',
    name: 'ota',
    dataDir,
    httpPort: '0',
    httpHost: '127.0.0.1',
    ...fields,
  });
  const load = (fields?: Record<string, string>, credentials: Record<string, string> = { adminPassword: 'secret-pw' }): Promise<void> =>
    helper.load(translated(otaServer), [serverDef(fields)], { srv: credentials });
  const serverNode = (): OtaServerNode => helper.getNode('srv') as unknown as OtaServerNode;
  const tenantOf = (engine: OtaEngine) => engine.bootstrap.admin.tenantId;

  it('opens the engine on its data directory, listening on the configured host', async () => {
    await load();
    const engine = await serverNode().engine;
    expect(engine.options.dataDir).to.equal(dataDir);
    expect(engine.httpAddress?.address).to.equal('127.0.0.1');
    expect(engine.httpAddress?.port).to.be.a('number').above(0);
    expect(logged(serverNode(), 'log')).to.include(`ThingsBoard REST API listening on 127.0.0.1:${engine.httpAddress?.port}, data in ${dataDir}`);
  });

  it("serves ThingsBoard's login to the admin user and password of its credentials", async () => {
    await load({}, { adminUsername: 'ops@example.com', adminPassword: 'secret-pw' });
    const engine = await serverNode().engine;
    const login = (password: string): Promise<Response> =>
      fetch(`http://127.0.0.1:${engine.httpAddress?.port}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'ops@example.com', password }),
      });

    const ok = await login('secret-pw');
    expect(ok.status).to.equal(200);
    expect(((await ok.json()) as { token?: unknown }).token).to.be.a('string');
    expect((await login('wrong')).status).to.equal(401);
  });

  it('acts for the tenant of its admin user', async () => {
    await load();
    const engine = await serverNode().engine;
    const admin = await engine.accounts.userByEmail('tenant@thingsboard.org');
    expect(await serverNode().tenantId()).to.equal(admin?.tenantId);
  });

  it('releases its port and database when the flow stops, so the same data directory opens again', async () => {
    await load();
    const first = await serverNode().engine;
    const port = first.httpAddress?.port;
    const profile = await first.profiles.ensureDefault(tenantOf(first));
    await first.packages.saveInfo(tenantOf(first), { deviceProfileId: profile.id, type: 'FIRMWARE', title: 'fw', version: '1.0' });

    await helper.unload();
    expect(first.httpAddress).to.equal(null);
    expect((await failure(() => first.packages.count(tenantOf(first))))?.message).to.match(/database connection is not open/);

    // The very same port: a socket still bound from the first flow would make this fail.
    await load({ httpPort: String(port) });
    const second = await serverNode().engine;
    expect(second).to.not.equal(first);
    expect(second.httpAddress?.port).to.equal(port);
    expect(await second.packages.count(tenantOf(second))).to.equal(1);
  });

  it('logs a bad port and leaves the engine unopened', async () => {
    await load({ httpPort: 'eighty' });
    const err = await failure(() => serverNode().engine);
    expect(err).to.be.instanceOf(Error);
    const errors = logged(serverNode(), 'error');
    expect(errors).to.include('Invalid HTTP port: eighty (use 0-65535, 0 for any free port)');
    expect(errors).to.include(`The OTA engine did not start: ${err?.message}`);
  });
});

describe('ota-server settings', function () {
  const settings = { userDir: '/srv/node-red', otaServerDataDir: 'from-settings', otaServerHttpPort: 1881 };
  const env = { OTA_DATA_DIR: '/from/env', OTA_HTTP_PORT: '1882', OTA_HTTP_HOST: '10.0.0.1', OTA_ADMIN_USERNAME: 'env@example.com', OTA_ADMIN_PASSWORD: 'env-pw' };

  it("prefers the node's field to settings.js, and settings.js to the environment", () => {
    const own = resolveOptions({ dataDir: '/own', httpPort: '1880', httpHost: '127.0.0.1' }, { adminUsername: 'own@example.com', adminPassword: 'own-pw' }, settings, env);
    expect(own.dataDir).to.equal('/own');
    expect(own.http).to.deep.equal({ port: 1880, host: '127.0.0.1' });
    expect(own.admin).to.deep.equal({ username: 'own@example.com', password: 'own-pw' });

    const fallback = resolveOptions({ dataDir: '', httpPort: ' ' }, {}, settings, env);
    expect(fallback.dataDir).to.equal(path.resolve('/srv/node-red', 'from-settings'));
    expect(fallback.http).to.deep.equal({ port: 1881, host: '10.0.0.1' });
    expect(fallback.admin).to.deep.equal({ username: 'env@example.com', password: 'env-pw' });
  });

  it('defaults to <userDir>/ota-data, 0.0.0.0:8080, tenant@thingsboard.org and no password', () => {
    const options = resolveOptions({}, {}, { userDir: '/srv/node-red' }, {});
    expect(options.dataDir).to.equal(path.resolve('/srv/node-red', 'ota-data'));
    expect(options.http).to.deep.equal({ port: 8080, host: '0.0.0.0' });
    expect(options.admin).to.deep.equal({ username: 'tenant@thingsboard.org', password: undefined });
    expect(options).to.not.have.property('maxPackageSize');
  });

  it('adds an HTTPS port only when one is set, its PEM from the node, else the HTTPS files, else the MQTT ones', async () => {
    expect(resolveOptions({}, {}, {}, {}).https).to.equal(null);
    const own = resolveOptions({ httpsPort: '8443' }, { tlsCert: 'CERT', tlsKey: 'KEY' }, {}, {});
    expect(own.https).to.deep.equal({ port: 8443, cert: 'CERT', key: 'KEY' });
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-https-settings-'));
    try {
      await writeFile(path.join(dir, 'm.pem'), 'MQTT CERT');
      await writeFile(path.join(dir, 'm.key'), 'MQTT KEY');
      await writeFile(path.join(dir, 'h.pem'), 'HTTPS CERT');
      const env = {
        OTA_HTTPS_PORT: '0',
        OTA_HTTPS_HOST: '127.0.0.1',
        OTA_HTTPS_TLS_CERT_FILE: path.join(dir, 'h.pem'),
        OTA_MQTT_TLS_CERT_FILE: path.join(dir, 'm.pem'),
        OTA_MQTT_TLS_KEY_FILE: path.join(dir, 'm.key'),
      };
      expect(resolveOptions({}, {}, {}, env).https).to.deep.equal({ port: 0, host: '127.0.0.1', cert: 'HTTPS CERT', key: 'MQTT KEY' });
      expect(() => resolveOptions({}, {}, {}, { OTA_HTTPS_PORT: '8443' })).to.throw(
        'HTTPS needs a certificate and its private key: set OTA_HTTPS_TLS_CERT_FILE and OTA_HTTPS_TLS_KEY_FILE',
      );
      expect(() => resolveOptions({}, {}, {}, { ...env, OTA_HTTPS_TLS_CERT_FILE: path.join(dir, 'missing.pem') })).to.throw(/^Cannot read OTA_HTTPS_TLS_CERT_FILE .*missing\.pem/);
      expect(() => resolveOptions({ httpsPort: '99999' }, {}, {}, env)).to.throw('Invalid HTTPS port: 99999');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads the package size limit in megabytes', () => {
    expect(resolveOptions({ maxPackageSizeMb: '1.5' }, {}, {}, {}).maxPackageSize).to.equal(1.5 * 1024 * 1024);
    expect(resolveOptions({}, {}, { otaServerMaxPackageSizeMb: 4 }, {}).maxPackageSize).to.equal(4 * 1024 * 1024);
    expect(resolveOptions({}, {}, {}, { OTA_MAX_PACKAGE_SIZE_MB: '8' }).maxPackageSize).to.equal(8 * 1024 * 1024);
  });
});

describe('ota-server editor', function () {
  const { html, keys } = editorFile('ota-server');

  before(() => helper.startServer().then(() => registerCatalogs('ota-server')));
  after(() => helper.stopServer());

  it('has a dialog input for every field and credential', () => {
    for (const field of ['name', 'dataDir', 'httpPort', 'httpHost', 'maxPackageSizeMb', 'adminUsername']) {
      expect(html).to.match(new RegExp(`<input type="text" id="node-config-input-${field}"`));
    }
    expect(html).to.match(/<input type="password" id="node-config-input-adminPassword"/);
    expect(html).to.match(/adminUsername: \{ type: "text" \},\s*adminPassword: \{ type: "password" \}/);
  });

  it('names only messages its catalog defines', () => {
    expect(keys).to.have.length.above(10);
    expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
  });

  it('documents itself in the sections of the help style guide', () => {
    expect(helpSections(html, 'ota-server')).to.deep.equal(['Inputs', 'Outputs', 'Details', 'References']);
    expect(html).to.not.match(/<(b|i|strong)>/);
  });
});
