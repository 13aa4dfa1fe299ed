import path from 'node:path';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { DEFAULTS, acquireEngine, releaseEngine, resolveHttps, type EngineOptions } from '../server';
import { registerAdminRoutes } from './admin-routes';
import type { OtaServerCredentials, OtaServerNode } from './server-ref';

export type { OtaServerCredentials, OtaServerNode } from './server-ref';
import { settingPicker } from './settings';

export interface OtaServerDef extends NodeDef {
  dataDir: string;
  httpPort: string;
  httpHost: string;
  httpsPort: string;
  maxPackageSizeMb: string;
}

/**
 * Where each setting comes from, first found wins: the node's own field, then Node-RED's
 * settings.js (`otaServerDataDir`, ...), then the environment (`OTA_DATA_DIR`, ...), then the default.
 */
export function resolveOptions(def: Partial<OtaServerDef>, creds: OtaServerCredentials, settings: Record<string, unknown>, env: NodeJS.ProcessEnv): EngineOptions {
  const pick = settingPicker(settings, env);
  const userDir = typeof settings.userDir === 'string' ? settings.userDir : process.cwd();
  const port = pick(def.httpPort, 'otaServerHttpPort', 'OTA_HTTP_PORT');
  const maxMb = pick(def.maxPackageSizeMb, 'otaServerMaxPackageSizeMb', 'OTA_MAX_PACKAGE_SIZE_MB');
  const databaseUrl = pick(undefined, 'otaServerDatabaseUrl', 'OTA_DATABASE_URL');
  return {
    dataDir: path.resolve(userDir, pick(def.dataDir, 'otaServerDataDir', 'OTA_DATA_DIR') ?? 'ota-data'),
    ...(databaseUrl ? { databaseUrl } : {}),
    http: { port: port === undefined ? DEFAULTS.httpPort : Number(port), host: pick(def.httpHost, 'otaServerHttpHost', 'OTA_HTTP_HOST') ?? DEFAULTS.httpHost },
    https: resolveHttps((setting, variable) => pick(undefined, setting, variable), { port: def.httpsPort, cert: creds.tlsCert, key: creds.tlsKey }),
    ...(maxMb ? { maxPackageSize: Math.round(Number(maxMb) * 1024 * 1024) } : {}),
    admin: {
      username: pick(creds.adminUsername, 'otaServerAdminUsername', 'OTA_ADMIN_USERNAME') ?? DEFAULTS.adminUsername,
      password: pick(creds.adminPassword, 'otaServerAdminPassword', 'OTA_ADMIN_PASSWORD'),
    },
  };
}

export default function init(RED: NodeAPI): void {
  // The editor's pickers (packages, profiles, devices), once per process.
  registerAdminRoutes(RED);

  function OtaServer(this: OtaServerNode, def: OtaServerDef): void {
    RED.nodes.createNode(this, def);
    let options: EngineOptions;
    try {
      options = resolveOptions(def, this.credentials ?? {}, RED.settings as unknown as Record<string, unknown>, process.env);
    } catch (err) {
      // A setting that cannot work (an HTTPS port without its certificate): the engine does not start, and says why.
      this.error(RED._('ota-server.errors.start-failed', { error: (err as Error).message }));
      this.engine = Promise.reject(err as Error);
      this.engine.catch(() => undefined);
      this.tenantId = async () => (await this.engine).bootstrap.admin.tenantId;
      return;
    }
    const port = options.http ? options.http.port : 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) this.error(RED._('ota-server.errors.bad-port', { value: String(def.httpPort) }));
    options.logger = { info: (m) => this.log(m), warn: (m) => this.warn(m), error: (m) => this.error(m) };
    this.engine = acquireEngine(options);
    this.tenantId = async () => (await this.engine).bootstrap.admin.tenantId;
    this.engine.then(
      (engine) => {
        const a = engine.httpAddress;
        if (a) this.log(RED._('ota-server.log.listening', { address: `${a.address}:${a.port}`, dataDir: engine.options.dataDir }));
      },
      (err: Error) => this.error(RED._('ota-server.errors.start-failed', { error: err.message })),
    );
    this.on('close', (_removed: boolean, done: () => void) => {
      this.engine
        .then(releaseEngine, () => undefined)
        .then(
          () => done(),
          () => done(),
        );
    });
  }

  // The typings do not let a constructor add fields to its node; the cast says so once, here.
  RED.nodes.registerType('ota-server', OtaServer as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { adminUsername: { type: 'text' }, adminPassword: { type: 'password' }, tlsCert: { type: 'text' }, tlsKey: { type: 'password' } },
  });
}
