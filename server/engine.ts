import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { AccountService, type BootstrapResult } from './admin/accounts';
import { TokenService } from './admin/auth';
import { BlobStore } from './store/blob-store';
import { openDatabase, type Db } from './store/sqlite/database';
import { DeviceProfileService } from './devices/device-profile-service';
import { SqliteDeviceProfileRepository } from './store/device-profiles';
import { DeviceService } from './devices/device-service';
import { SqliteDeviceRepository } from './store/devices';
import { EngineEvents } from './events';
import { consoleLogger, type Logger } from './logger';
import type { Pipeline } from './pipeline/pipeline';
import { createAdminApi } from './admin/admin-api';
import { createDeviceApi } from './transports/http/device-api';
import { createTelemetryApi } from './admin/telemetry-api';
import { createFleetApi } from './admin/fleet-api';
import { createDashboard, type Dashboard } from './fleet/dashboard';
import { AssignmentService } from './pipeline/assignment';
import { SqliteAttributeRepository, type AttributeRepository } from './store/attributes';
import { DeviceProvisioning } from './devices/device-provisioning';
import { HttpDeviceSessions } from './transports/http/http-transport';
import { Notifier } from './pipeline/notifier';
import { NotifyQueue } from './pipeline/notify-queue';
import { realTimers, type Timers } from './timers';
import { OtaStateRepository } from './store/ota-states';
import { StateTracker } from './pipeline/state-tracker';
import { SqliteTelemetryRepository, type TelemetryRepository } from './store/telemetry';
import type { DeviceContext, EndpointInfo } from './transports/device-context';
import { OtaPackageService } from './packages/ota-package-service';
import { SqliteOtaPackageRepository } from './store/ota-packages';
import { SqliteTenantRepository } from './store/tenants';

export const DEFAULTS = {
  httpPort: 8080,
  httpHost: '0.0.0.0',
  /** ThingsBoard's documented limit for OTA packages is far lower; ours is 2 GB, configurable. */
  maxPackageSize: 2 * 1024 * 1024 * 1024,
  maxTenantStorage: 0,
  adminUsername: 'tenant@thingsboard.org',
  accessTokenTtlSeconds: 9000,
  refreshTokenTtlSeconds: 604800,
} as const;

export interface EngineOptions {
  /** Holds `ota.sqlite` and `blobs/`. */
  dataDir: string;
  /** Where the REST API (and later the device HTTP API) listens; `false` for none (tests mount `app`). */
  http?: { port: number; host?: string } | false;
  maxPackageSize?: number;
  maxTenantStorage?: number;
  admin?: { username?: string; password?: string };
  /** HS256 key for the admin JWTs; by default one is generated once and kept in the database. */
  jwtSecret?: string;
  logger?: Logger;
  /** Clock and timers for the queue and the tracker (tests inject fakes). */
  timers?: Timers;
  /** An upload whose sender sends nothing for this long is cut (default 60 s). */
  uploadIdleMs?: number;
  /** Long-poll `attributes/updates` timeouts: default when the device names none, and the cap. */
  longPoll?: { defaultMs: number; maxMs: number };
}

/**
 * The OTA engine: store, services and the HTTP listener for one data directory. Knows nothing of
 * Node-RED; the nodes and the standalone server both drive it.
 */
export class OtaEngine {
  readonly app: express.Express;
  private server: http.Server | null = null;
  private closed = false;
  /** The fleet dashboard and /metrics: its watcher stops with the engine. */
  private readonly dashboard: Dashboard;

  private constructor(
    readonly options: Readonly<EngineOptions>,
    private readonly db: Db,
    readonly events: EngineEvents,
    readonly accounts: AccountService,
    readonly packages: OtaPackageService,
    readonly profiles: DeviceProfileService,
    readonly devices: DeviceService,
    readonly bootstrap: BootstrapResult,
    readonly logger: Logger,
    readonly pipeline: Pipeline,
    deviceApi: express.Router,
    /** For device transports: repositories, blobs and the event bus (see device-context.ts). */
    readonly deviceContext: DeviceContext,
  ) {
    this.app = express();
    this.app.disable('x-powered-by');
    // The fleet dashboard (its API, live stream, page) and /metrics; it counts every route's errors, so it goes first.
    const dashboard = createDashboard({ db, accounts, devices, pipeline, events, clock: options.timers ?? realTimers, logger });
    this.dashboard = dashboard;
    this.app.use(dashboard.countResponses);
    // Device API and telemetry reads first: the admin router answers everything else under /api.
    this.app.use('/api/v1', deviceApi);
    this.app.use('/api', createTelemetryApi({ accounts, devices, telemetry: pipeline.telemetry }));
    this.app.use('/api', createFleetApi({ accounts, tracker: pipeline.tracker, queue: pipeline.queue, notifier: pipeline.notifier, endpoints: () => this.listEndpoints() }));
    this.app.use('/api', dashboard.api);
    this.app.use(dashboard.site);
    this.app.use('/api', createAdminApi({ accounts, packages, profiles, devices, ...(options.uploadIdleMs ? { uploadIdleMs: options.uploadIdleMs } : {}) }));
  }

  static async open(options: EngineOptions): Promise<OtaEngine> {
    const logger = options.logger ?? consoleLogger;
    const dataDir = path.resolve(options.dataDir);
    await mkdir(dataDir, { recursive: true });
    const db = openDatabase(path.join(dataDir, 'ota.sqlite'));
    try {
      const blobs = new BlobStore(path.join(dataDir, 'blobs'));
      await blobs.init();
      const events = new EngineEvents();
      const tenants = new SqliteTenantRepository(db);
      const profileRepo = new SqliteDeviceProfileRepository(db);
      const deviceRepo = new SqliteDeviceRepository(db);
      const packageRepo = new SqliteOtaPackageRepository(db);
      const packages = new OtaPackageService(packageRepo, profileRepo, deviceRepo, blobs, events, {
        maxPackageSize: options.maxPackageSize ?? DEFAULTS.maxPackageSize,
        maxTenantStorage: options.maxTenantStorage ?? DEFAULTS.maxTenantStorage,
      });
      const profiles = new DeviceProfileService(profileRepo, deviceRepo, packageRepo, packages, events);
      const devices = new DeviceService(deviceRepo, profiles, packages, events);
      const tokens = new TokenService(jwtSecret(db, options.jwtSecret), DEFAULTS.accessTokenTtlSeconds, DEFAULTS.refreshTokenTtlSeconds);
      const accounts = new AccountService(tenants, tokens, async (tenantId) => {
        await profiles.ensureDefault(tenantId);
      });
      const boot = await accounts.bootstrap(options.admin?.username || DEFAULTS.adminUsername, options.admin?.password || undefined);
      if (boot.generatedPassword) {
        logger.warn(`created admin '${boot.admin.email}' with the generated password: ${boot.generatedPassword}`);
        logger.warn('this password is shown once; set OTA_ADMIN_PASSWORD to choose your own');
      }
      const timers = options.timers ?? realTimers;
      const attributes = new SqliteAttributeRepository(db);
      const telemetry = new SqliteTelemetryRepository(db);
      const states = new OtaStateRepository(db);
      const queue = new NotifyQueue(db, { packages: packageRepo, telemetry, states }, timers);
      const notifier = new Notifier(db, { devices: deviceRepo, profiles: profileRepo, packages: packageRepo, attributes, telemetry, states }, timers);
      const assignment = new AssignmentService(
        db,
        { events, devices: deviceRepo, profiles: profileRepo, packages: packageRepo, attributes, queue, deviceService: devices, profileService: profiles, logger },
        timers,
      );
      const tracker = new StateTracker(db, { states, telemetry, queue }, timers);
      const httpSessions = new HttpDeviceSessions();
      const pipeline: Pipeline = { attributes, telemetry, assignment, queue, notifier, tracker, httpSessions };
      const provisioning = new DeviceProvisioning(profileRepo, devices, attributes);
      const deviceContext: DeviceContext = { devices: deviceRepo, profiles: profileRepo, packages: packageRepo, blobs, attributes, telemetry, events, logger, provisioning };
      const deviceApi = createDeviceApi({ ...deviceContext, sessions: httpSessions, ...(options.longPoll ? { longPoll: options.longPoll } : {}) });
      const reconciled = await assignment.reconcile();
      if (reconciled.queued || reconciled.cleared) logger.info(`reconciled: ${reconciled.queued} device(s) queued again, ${reconciled.cleared} cleared`);
      const engine = new OtaEngine({ ...options, dataDir }, db, events, accounts, packages, profiles, devices, boot, logger, pipeline, deviceApi, deviceContext);
      if (options.http !== false) await engine.listen(options.http?.port ?? DEFAULTS.httpPort, options.http?.host ?? DEFAULTS.httpHost);
      return engine;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private readonly endpoints = new Set<EndpointInfo>();

  /** A device endpoint started by a transport (MQTT, CoAP): listed until the returned function is called. */
  registerEndpoint(info: EndpointInfo): () => void {
    this.endpoints.add(info);
    return () => {
      this.endpoints.delete(info);
    };
  }

  /** Where devices can reach us: the HTTP device API and every registered endpoint. */
  listEndpoints(): Array<Omit<EndpointInfo, 'connections'> & { connections: number }> {
    const http = this.httpAddress;
    const out: Array<Omit<EndpointInfo, 'connections'> & { connections: number }> = [];
    if (http) out.push({ transport: 'HTTP', host: http.address, port: http.port, connections: this.pipeline.httpSessions.waiting });
    for (const e of this.endpoints) out.push({ transport: e.transport, host: e.host, port: e.port, ...(e.tls ? { tls: true } : {}), connections: e.connections() });
    return out;
  }

  /** A random secret kept with this data directory, made on first use (e.g. Node-RED's credential key). */
  secret(name: string): string {
    return storedSecret(this.db, `secret:${name}`).toString('hex');
  }

  /** Where the HTTP API listens, once listening. */
  get httpAddress(): AddressInfo | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : null;
  }

  private async listen(port: number, host: string): Promise<void> {
    const server = http.createServer(this.app);
    // A 2 GB upload over a slow link takes longer than Node's default 5-minute request timeout.
    server.requestTimeout = 0;
    server.headersTimeout = 60_000;
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  /** Stops listening, ends open connections, closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.pipeline.queue.stop();
    this.pipeline.tracker.stop();
    this.dashboard.close();
    // A profile's fan-out may still be paging through its devices: let it finish on an open database.
    await this.pipeline.assignment.idle();
    this.events.removeAllListeners();
    this.db.close();
  }
}

function jwtSecret(db: Db, configured: string | undefined): Buffer {
  return configured ? Buffer.from(configured, 'utf8') : storedSecret(db, 'jwt_secret');
}

/** A random secret made once per data directory and kept in the database. */
function storedSecret(db: Db, key: string): Buffer {
  const row = db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
  if (row) return Buffer.from(row.value, 'base64');
  const secret = randomBytes(32);
  db.prepare('INSERT INTO settings (key, value) VALUES (?, ?)').run(key, secret.toString('base64'));
  return secret;
}
