#!/usr/bin/env node
/**
 * The standalone OTA server: an embedded Node-RED with this package loaded and, on first start,
 * the default flow deployed. The REST API listens on OTA_HTTP_PORT, the editor on NODE_RED_PORT,
 * data lives in OTA_DATA_DIR. Every variable is listed in the README.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import {
  acquireEngine,
  bodyDeadline,
  consoleLogger,
  createLimitedServer,
  DEFAULTS,
  editorGuard,
  engineEnvFrom,
  privateDir,
  releaseEngine,
  resolveHttps,
  type OtaEngine,
} from '../server';

const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
// examples/ is the build's copy of flows/, and ships with the package (flows/ does not).
const DEFAULT_FLOW = path.join(PACKAGE_ROOT, 'examples', 'ThingsBoard-compatible OTA server.json');

interface RedRuntime {
  init(server: http.Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  httpAdmin: express.Express;
  httpNode: express.Express;
}

/**
 * Node-RED is a peer of this package, not a dependency: installed into a user's Node-RED it must not
 * bring a second copy. The standalone command uses the Node-RED installed beside it (a clone's
 * devDependency, or `npm install -g node-red @otanr/node-red-ota`; docs/install.md).
 */
function loadNodeRed(): RedRuntime {
  try {
    return require('node-red') as RedRuntime;
  } catch (err) {
    if (!(err as Error).message.startsWith("Cannot find module 'node-red'")) throw err;
    throw new Error('Node-RED is not installed beside node-red-ota: install both, e.g. `npm install -g node-red @otanr/node-red-ota` (see docs/install.md)', { cause: err });
  }
}

function env(name: string, fallback: string): string {
  const v = process.env[name];
  return v === undefined || v.trim() === '' ? fallback : v.trim();
}

function port(name: string, fallback: number): number {
  const raw = env(name, String(fallback));
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number (0-65535), not '${raw}'`);
  return n;
}

/** On first start, the default flow becomes the user's flow file (with a tab to live on). */
async function seedFlows(flowFile: string): Promise<void> {
  if (existsSync(flowFile)) return;
  const nodes = JSON.parse(await readFile(DEFAULT_FLOW, 'utf8')) as Array<Record<string, unknown>>;
  const tabId = nodes.find((n) => typeof n.z === 'string')?.z as string;
  const tab = { id: tabId, type: 'tab', label: 'OTA server', disabled: false, info: 'ThingsBoard-compatible OTA server (deployed on first start).' };
  await writeFile(flowFile, JSON.stringify([tab, ...nodes], null, 2));
}

/** The endpoints the deployed flow declares, once each is listening (bounded wait: a flow may have none). */
async function endpointsOf(engine: OtaEngine): Promise<ReturnType<OtaEngine['listEndpoints']>> {
  let flow: Array<{ type?: string }> = [];
  try {
    flow = JSON.parse(await readFile(path.join(engine.options.dataDir, 'node-red', 'flows.json'), 'utf8')) as Array<{ type?: string }>;
  } catch {
    /* no flow file: nothing to wait for */
  }
  const expected = flow.filter((n) => n.type === 'ota-mqtt-endpoint' || n.type === 'ota-coap-endpoint' || n.type === 'ota-lwm2m-endpoint').length;
  for (let i = 0; i < 50 && engine.listEndpoints().length - 1 < expected; i++) await new Promise((r) => setTimeout(r, 100));
  return engine.listEndpoints();
}

/** `OTA_MAX_PACKAGE_SIZE_MB` in bytes; undefined when unset (the engine's default). */
function maxPackageSize(): number | undefined {
  const raw = env('OTA_MAX_PACKAGE_SIZE_MB', '');
  if (raw === '') return undefined;
  const mb = Number(raw);
  if (!Number.isFinite(mb) || mb <= 0) throw new Error(`OTA_MAX_PACKAGE_SIZE_MB must be a positive number of megabytes, not '${raw}'`);
  return Math.round(mb * 1024 * 1024);
}

async function main(): Promise<void> {
  // Every setting is read and checked before anything is created: a bad one leaves OTA_DATA_DIR untouched.
  const dataDir = path.resolve(env('OTA_DATA_DIR', './data'));
  const httpHost = env('OTA_HTTP_HOST', DEFAULTS.httpHost);
  const httpPort = port('OTA_HTTP_PORT', DEFAULTS.httpPort);
  const redHost = env('NODE_RED_HOST', '0.0.0.0');
  const redPort = port('NODE_RED_PORT', 1880);
  const maxBytes = maxPackageSize();
  const { httpLimits } = engineEnvFrom(process.env);
  // OTA_HTTPS_PORT: the same API over TLS too (server/https-options.ts).
  const https = resolveHttps((_setting, variable) => process.env[variable]?.trim() || undefined);
  const userDir = path.join(dataDir, 'node-red');
  // Node-RED keeps the flows' credentials here: owner-only, as the rest of the data directory.
  await privateDir(dataDir);
  await privateDir(userDir);

  // The engine opens first: the editor's login checks the same admin accounts, and the flow's
  // ota-server config node (same data directory) shares this engine instead of opening another.
  const engine: OtaEngine = await acquireEngine({
    dataDir,
    // Unset: SQLite in the data directory (server/store/open-store.ts decides).
    ...(process.env.OTA_DATABASE_URL ? { databaseUrl: process.env.OTA_DATABASE_URL } : {}),
    http: { port: httpPort, host: httpHost },
    https,
    ...(maxBytes ? { maxPackageSize: maxBytes } : {}),
    admin: { username: env('OTA_ADMIN_USERNAME', DEFAULTS.adminUsername), password: process.env.OTA_ADMIN_PASSWORD || undefined },
    logger: consoleLogger,
  });
  const api = engine.httpAddress as AddressInfo;

  const flowFile = path.join(userDir, 'flows.json');
  await seedFlows(flowFile);
  const RED = loadNodeRed();
  const app = express();
  app.disable('x-powered-by');
  // The same timeouts and connection cap as the OTA HTTP server (OTA_HTTP_*).
  const server = createLimitedServer(app, httpLimits);
  app.use(bodyDeadline(httpLimits.requestTimeoutMs));
  // No lock-out by strangers, no framing, no cross-origin reads (editor-guard.ts).
  app.use('/', editorGuard(engine.accounts));
  RED.init(server, {
    userDir,
    flowFile: 'flows.json',
    nodesDir: [PACKAGE_ROOT],
    // Flow credentials (the ota-server's admin password) are encrypted with a key kept in our database.
    credentialSecret: await engine.secret('node-red-credentials'),
    httpAdminRoot: '/',
    httpNodeRoot: '/red-api',
    uiHost: redHost,
    telemetry: { enabled: false },
    logging: { console: { level: env('NODE_RED_LOG_LEVEL', 'info'), metrics: false, audit: false } },
    editorTheme: { tours: false },
    // The flow's ota-server node reads these: same data directory, so it shares this engine.
    otaServerDataDir: dataDir,
    otaServerHttpPort: String(api.port),
    otaServerHttpHost: httpHost,
    // The editor asks for the same admin login as the REST API.
    adminAuth: {
      type: 'credentials',
      users: async (username: string) => {
        const user = await engine.accounts.userByEmail(username);
        return user && engine.accounts.mayUseEditor(user) ? { username, permissions: '*' } : null;
      },
      // Reached only with a password editorGuard has checked and throttled already.
      authenticate: async (username: string, password: string) => {
        const user = await engine.accounts.verifyCredentials(username, password);
        return user && engine.accounts.mayUseEditor(user) ? { username, permissions: '*' } : null;
      },
    },
  });
  app.use('/', RED.httpAdmin);
  app.use('/red-api', RED.httpNode);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(redPort, redHost, () => resolve());
  });
  // Signals are handled before anyone is told we are ready, so an early Ctrl-C also shuts down cleanly.
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log(`[ota] ${signal}: shutting down`);
    const force = setTimeout(() => process.exit(1), 20_000);
    force.unref();
    try {
      await RED.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await releaseEngine(engine);
      console.log('[ota] stopped');
      process.exit(0);
    } catch (err) {
      console.error('[ota] shutdown failed', err);
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  await RED.start();
  const red = server.address() as AddressInfo;
  const shown = (h: string) => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h);
  console.log(`[ota] OTA REST API listening on http://${shown(api.address)}:${api.port}/api`);
  const secure = engine.httpsAddress;
  if (secure) console.log(`[ota] OTA REST API listening on https://${shown(secure.address)}:${secure.port}/api (TLS)`);
  console.log(`[ota] Node-RED editor listening on http://${shown(red.address)}:${red.port}/`);
  // The flow's device endpoints (MQTT, CoAP, LwM2M) start with their config nodes: list them once they listen.
  for (const e of await endpointsOf(engine)) {
    if (e.transport === 'LWM2M') console.log(`[ota] LwM2M server listening on coap://${shown(e.host)}:${e.port} (registrations on /rd)`);
    else if (e.transport !== 'HTTP')
      console.log(`[ota] ${e.transport === 'COAP' ? 'CoAP' : e.transport} device endpoint listening on ${e.transport.toLowerCase()}://${shown(e.host)}:${e.port}`);
  }
  console.log(`[ota] data directory ${dataDir}`);
  console.log('[ota] ready');
}

main().catch((err: Error) => {
  console.error(`[ota] failed to start: ${err.message}`);
  process.exit(1);
});
