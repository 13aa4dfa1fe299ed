import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { AccountService, type BootstrapResult } from './admin/accounts';
import { TenantService } from './admin/tenant-service';
import { createTenantApi } from './admin/tenant-api';
import type { TenantLimits, TenantLimitsOf } from './tenant-limits';
import { TokenService } from './admin/auth';
import { openStore } from './store/open-store';
import type { Store } from './store/store';
import type { TenantId } from './ids';
import { databaseFileIn, privateDir, privateFile } from './store/private-files';
import { DeviceProfileService } from './devices/device-profile-service';
import { DeviceService } from './devices/device-service';
import { EngineEvents } from './events';
import { consoleLogger, type Logger } from './logger';
import type { Pipeline } from './pipeline/pipeline';
import { createAdminApi, errorHandler } from './admin/admin-api';
import { createDeviceApi, type DeviceApi, HTTP_PAGE_SIZE } from './transports/http/device-api';
import { PackagePages } from './transports/package-pages';
import type { BlobReader } from './store/blob-reader';
import { createTelemetryApi } from './admin/telemetry-api';
import { createFleetApi } from './admin/fleet-api';
import { createDashboard, type Dashboard } from './fleet/dashboard';
import { AssignmentService } from './pipeline/assignment';
import { DeviceProvisioning } from './devices/device-provisioning';
import { HttpDeviceSessions } from './transports/http/http-transport';
import { Notifier, type Notification } from './pipeline/notifier';
import { NotifyQueue } from './pipeline/notify-queue';
import { realTimers, type Timers } from './timers';
import { StateTracker } from './pipeline/state-tracker';
import type { DeviceContext, EndpointInfo } from './transports/device-context';
import { DeviceLookups, type LookupCacheLimits } from './transports/device-lookups';
import { OtaPackageService } from './packages/ota-package-service';
import { bodyDeadline, createLimitedServer, isPackageUpload, type HttpServerLimits, type TlsIdentity } from './http-server-limits';
import { LOGIN_THROTTLE_DEFAULTS, LoginThrottle, type LoginThrottleLimits } from './admin/login-throttle';
import { PASSWORD_CHECK_DEFAULTS, PasswordChecks, type PasswordCheckLimits } from './admin/password-checks';
import { engineEnvFrom, type EngineEnv } from './engine-env';

/** The cluster bus topic of notifications decided by one instance for every other. */
const NOTIFICATION_TOPIC = 'notification';
import { createSigningApi } from './admin/signing-api';
import { createDownloadProgressApi } from './admin/download-progress-api';
import { DownloadProgress } from './fleet/download-progress';
import { PackageSigning } from './packages/package-signing';
import { DowngradeGuard } from './packages/downgrade-guard';
import { RolloutService } from './rollouts/rollout-service';
import { RolloutDevices } from './rollouts/rollout-devices';
import { RolloutDriver } from './rollouts/rollout-driver';
import { createRolloutsApi } from './admin/rollouts-api';
import { relayRevocations } from './devices/device-revocations';
import { groupNotifications, ungroupNotifications, type NotificationGroup } from './cluster-notifications';
import { relayDeviceChanges } from './devices/device-changes';

export const DEFAULTS = {
  httpPort: 8080,
  httpHost: '0.0.0.0',
  /** ThingsBoard's documented limit for OTA packages is far lower; ours is 2 GB, configurable. */
  maxPackageSize: 2 * 1024 * 1024 * 1024,
  maxTenantStorage: 0,
  adminUsername: 'tenant@thingsboard.org',
  /** ThingsBoard's system administrator (OTA_SYSADMIN_USERNAME). */
  sysadminUsername: 'sysadmin@thingsboard.org',
  accessTokenTtlSeconds: 9000,
  refreshTokenTtlSeconds: 604800,
} as const;

export interface EngineOptions {
  /** Holds `ota.sqlite` (unless `databaseUrl` names another database) and `blobs/`. */
  dataDir: string;
  /** `OTA_DATABASE_URL`: unset = SQLite in `dataDir`. */
  databaseUrl?: string;
  /** Where the REST API (and later the device HTTP API) listens; `false` for none (tests mount `app`). */
  http?: { port: number; host?: string } | false;
  /**
   * The same REST and device HTTP API over TLS on a port of its own (`OTA_HTTPS_PORT`), beside
   * the plain one. Unset: none.
   */
  https?: { port: number; host?: string; cert: string | Buffer; key: string | Buffer } | null;
  maxPackageSize?: number;
  maxTenantStorage?: number;
  admin?: { username?: string; password?: string };
  /** The system administrator; by default `OTA_SYSADMIN_USERNAME` / `OTA_SYSADMIN_PASSWORD` (generated and printed once if unset). */
  sysadmin?: { username?: string; password?: string };
  /** The default tenant profile's limits when it is first made; by default `OTA_TENANT_MAX_*` (tenant-limits.ts). */
  tenantLimits?: Partial<TenantLimits>;
  /** HS256 key for the admin JWTs; by default one is generated once and kept in the database. */
  jwtSecret?: string;
  logger?: Logger;
  /** Clock and timers for the queue and the tracker (tests inject fakes). */
  timers?: Timers;
  /** An upload whose sender sends nothing for this long is cut (default 60 s). */
  uploadIdleMs?: number;
  /** How long the queue rows this instance claims stay its own (default: `OTA_QUEUE_LEASE_MS`, else 30 s). */
  queueLeaseMs?: number;
  /** Devices whose served bytes wait in memory for the next write at most (default OTA_DOWNLOAD_PROGRESS_MAX_DEVICES, else 100,000). */
  maxTrackedDownloads?: number;
  /** How long served bytes wait before they are written to the store (default OTA_DOWNLOAD_PROGRESS_FLUSH_MS, else 1000). */
  downloadFlushMs?: number;
  /** Long-poll `attributes/updates` timeouts: default when the device names none, and the cap. */
  longPoll?: { defaultMs: number; maxMs: number };
  /** Timeouts and the connection cap of the HTTP server; by default from `OTA_HTTP_*` (http-server-limits.ts). */
  httpLimits?: Partial<HttpServerLimits>;
  /** Login throttling and scrypt concurrency; by default from `OTA_LOGIN_*` (login-settings.ts). */
  login?: Partial<LoginThrottleLimits & PasswordCheckLimits>;
  /** The device lookup caches of the download paths; by default from `OTA_LOOKUP_CACHE_*` (device-lookups.ts). */
  lookupCache?: Partial<LookupCacheLimits>;
  /** How often running rollouts move on (default `OTA_ROLLOUT_TICK_MS`, else 1 s); `false`: never by themselves (tests step `rolloutDriver.tick()`). */
  rolloutTickMs?: number | false;
}

/**
 * The OTA engine: store, services and the HTTP listener for one data directory. Knows nothing of
 * Node-RED; the nodes and the standalone server both drive it.
 */
export class OtaEngine {
  readonly app: express.Express;
  readonly httpLimits: HttpServerLimits;
  private server: http.Server | null = null;
  private httpsServer: http.Server | null = null;
  private closed = false;
  /** The fleet dashboard and /metrics: its watcher stops with the engine. */
  private readonly dashboard: Dashboard;
  /** Bytes served per device and package, from every transport's download events. */
  readonly downloads: DownloadProgress;

  private constructor(
    readonly options: Readonly<EngineOptions>,
    private readonly store: Store,
    readonly events: EngineEvents,
    readonly accounts: AccountService,
    readonly tenants: TenantService,
    readonly packages: OtaPackageService,
    readonly profiles: DeviceProfileService,
    readonly devices: DeviceService,
    readonly bootstrap: BootstrapResult,
    readonly logger: Logger,
    readonly pipeline: Pipeline,
    /** The HTTP device API and the chunk reader it holds package files open with. */
    deviceApi: DeviceApi & { reader: BlobReader },
    /** For device transports: repositories, blobs and the event bus (see device-context.ts). */
    readonly deviceContext: DeviceContext,
    /** Rollouts in waves (issue 14): the commands, and the driver that moves running ones on. */
    readonly rollouts: RolloutService,
    readonly rolloutDriver: RolloutDriver,
    env: EngineEnv,
  ) {
    this.unhearNotifications = store.cluster.subscribe(NOTIFICATION_TOPIC, (heard) => {
      // A group of a batch's devices; a lone notification from an instance before the grouping.
      if (heard && typeof heard === 'object' && 'deviceIds' in heard) for (const n of ungroupNotifications(heard as NotificationGroup)) this.deliverHere(n);
      else this.deliverHere(heard as Notification);
    });
    this.unrelayRevocations = relayRevocations(events, store.cluster, logger);
    this.unrelayChanges = relayDeviceChanges(events, store.cluster, logger);
    this.app = express();
    this.app.disable('x-powered-by');
    this.httpLimits = { ...env.httpLimits, ...options.httpLimits };
    this.app.use(bodyDeadline(this.httpLimits.requestTimeoutMs, isPackageUpload));
    // The fleet dashboard (its API, live stream, page) and /metrics; it counts every route's errors, so it goes first.
    this.downloads = new DownloadProgress(
      events,
      store,
      { maxPending: options.maxTrackedDownloads ?? env.maxTrackedDownloads, flushMs: options.downloadFlushMs ?? env.downloadFlushMs },
      logger,
    );
    const dashboard = createDashboard(
      { store, accounts, devices, pipeline, events, clock: options.timers ?? realTimers, logger, downloads: this.downloads, rollouts },
      env.dashboard,
    );
    this.dashboard = dashboard;
    this.downloads.register(dashboard.prometheus.registry);
    this.app.use(dashboard.countResponses);
    // Device API and telemetry reads first: the admin router answers everything else under /api.
    this.app.use('/api/v1', deviceApi.router);
    this.deviceReader = deviceApi.reader;
    this.answerDownload = (req, res) => deviceApi.answerDownload(req, res, (path, status) => dashboard.prometheus.countResponse(path, status));
    this.app.use('/api', createTelemetryApi({ accounts, devices, telemetry: pipeline.telemetry }));
    this.app.use(
      '/api',
      createFleetApi({ accounts, tracker: pipeline.tracker, queue: pipeline.queue, notifier: pipeline.notifier, endpoints: (tenantId) => this.listEndpoints(tenantId) }),
    );
    this.app.use('/api', dashboard.api);
    this.app.use(dashboard.site);
    this.app.use('/api', createDownloadProgressApi({ accounts, devices, progress: this.downloads }));
    this.app.use('/api', createRolloutsApi({ accounts, rollouts }));
    this.app.use('/api', createSigningApi({ accounts, signing: packages.signing, policies: store.policies }));
    this.app.use('/api', createTenantApi({ accounts, tenants }));
    this.app.use('/api', createAdminApi({ accounts, packages, profiles, devices, ...(options.uploadIdleMs ? { uploadIdleMs: options.uploadIdleMs } : {}) }));
    // Whatever a route outside /api lets through (the dashboard's static files: a bad Range) is
    // answered in ThingsBoard's error JSON, not by Express's default handler with a stack in the log.
    this.app.use(errorHandler);
  }

  static async open(options: EngineOptions): Promise<OtaEngine> {
    // Before anything is created: a bad variable leaves the data directory as it was.
    const env = engineEnvFrom(process.env);
    const logger = options.logger ?? consoleLogger;
    const dataDir = path.resolve(options.dataDir);
    await privateDir(dataDir);
    // The embedded database holds secrets: owner-only before SQLite creates it with the umask.
    if (!options.databaseUrl?.trim()) await privateFile(databaseFileIn(dataDir));
    const store = await openStore({ dataDir, databaseUrl: options.databaseUrl, logger });
    let engine: OtaEngine | undefined;
    try {
      const blobs = store.blobs;
      const events = new EngineEvents();
      const { tenants, profiles: profileRepo, devices: deviceRepo, packages: packageRepo, attributes, telemetry } = store;
      // Tenants and their profiles' limits; a new tenant gets its default device profile.
      const tenantService = new TenantService(tenants, deviceRepo, packageRepo, blobs, events, async (tenantId) => {
        await profiles.ensureDefault(tenantId);
      });
      const limitsOf: TenantLimitsOf = (tenantId) => tenantService.limitsOf(tenantId);
      const packages = new OtaPackageService(
        packageRepo,
        profileRepo,
        deviceRepo,
        blobs,
        events,
        {
          maxPackageSize: options.maxPackageSize ?? DEFAULTS.maxPackageSize,
          maxTenantStorage: options.maxTenantStorage ?? DEFAULTS.maxTenantStorage,
        },
        new PackageSigning(store.signingKeys),
        store.policies,
        new DowngradeGuard(packageRepo, store.reportedVersions),
        limitsOf,
      );
      const profiles = new DeviceProfileService(profileRepo, deviceRepo, packageRepo, packages, events);
      const devices = new DeviceService(deviceRepo, profiles, packages, events, limitsOf);
      const clock = (): number => (options.timers ?? realTimers).now();
      const tokens = new TokenService(await jwtSecret(store, options.jwtSecret), DEFAULTS.accessTokenTtlSeconds, DEFAULTS.refreshTokenTtlSeconds, clock);
      const login = { ...LOGIN_THROTTLE_DEFAULTS, ...PASSWORD_CHECK_DEFAULTS, ...env.login, ...options.login };
      const accounts = new AccountService(
        tenants,
        tokens,
        async (tenantId) => {
          await profiles.ensureDefault(tenantId);
        },
        {
          throttle: new LoginThrottle(login, clock),
          passwords: new PasswordChecks(login),
          now: clock,
          ...env.userTokenTtls,
        },
      );
      await tenantService.ensureDefaultProfile({ ...env.tenantLimits, ...options.tenantLimits });
      const sysadmin = await accounts.bootstrapSysadmin(
        options.sysadmin?.username || process.env.OTA_SYSADMIN_USERNAME?.trim() || DEFAULTS.sysadminUsername,
        options.sysadmin?.password || process.env.OTA_SYSADMIN_PASSWORD || undefined,
      );
      if (sysadmin.generatedPassword) {
        logger.warn(`created system administrator '${sysadmin.admin.email}' with the generated password: ${sysadmin.generatedPassword}`);
        logger.warn('this password is shown once; set OTA_SYSADMIN_PASSWORD to choose your own');
      }
      const boot = await accounts.bootstrap(options.admin?.username || DEFAULTS.adminUsername, options.admin?.password || undefined);
      if (boot.generatedPassword) {
        logger.warn(`created admin '${boot.admin.email}' with the generated password: ${boot.generatedPassword}`);
        logger.warn('this password is shown once; set OTA_ADMIN_PASSWORD to choose your own');
      }
      const timers = options.timers ?? realTimers;
      const queue = new NotifyQueue(store, timers, options.queueLeaseMs ?? env.queueLeaseMs);
      const notifier = new Notifier(store, timers);
      const assignment = new AssignmentService(
        store,
        { events, devices: deviceRepo, profiles: profileRepo, packages: packageRepo, queue, deviceService: devices, profileService: profiles, logger },
        timers,
      );
      const tracker = new StateTracker(store, { queue }, timers);
      const httpSessions = new HttpDeviceSessions();
      const pipeline: Pipeline = { attributes, telemetry, assignment, queue, notifier, tracker, httpSessions };
      const provisioning = new DeviceProvisioning(profileRepo, devices, attributes);
      const lookups = new DeviceLookups(
        { devices: deviceRepo, profiles: profileRepo, packages: packageRepo, events, bus: store.cluster, logger, now: clock },
        { ...env.lookupCache, ...options.lookupCache },
      );
      const deviceContext: DeviceContext = {
        devices: deviceRepo,
        profiles: profileRepo,
        packages: packageRepo,
        blobs,
        attributes,
        telemetry,
        events,
        logger,
        provisioning,
        lookups,
      };
      const httpReader = blobs.reader();
      const pages = new PackagePages(httpReader, env.httpPageCacheBytes, HTTP_PAGE_SIZE);
      const deviceApi = createDeviceApi({ ...deviceContext, sessions: httpSessions, reader: httpReader, pages, ...(options.longPoll ? { longPoll: options.longPoll } : {}) });
      // Several instances: a notification decided here also goes to the others, for a device whose
      // session (MQTT, CoAP, an HTTP long poll) is there; each delivers it to its own sessions only.
      // A batch's notifications travel grouped: a few bus messages per batch, not one per device.
      // Alone on the store (SQLite), nobody is told: not even grouped (78 ms of a 10,000-device fan-out).
      if (store.cluster.reachesOthers) {
        notifier.watch(
          (sent) => void store.cluster.publish(NOTIFICATION_TOPIC, groupNotifications(sent)).catch((err: Error) => logger.warn(`cannot tell the other instances: ${err.message}`)),
        );
      }
      const reconciled = await assignment.reconcile();
      if (reconciled.queued || reconciled.cleared) logger.info(`reconciled: ${reconciled.queued} device(s) queued again, ${reconciled.cleared} cleared`);
      const rollouts = new RolloutService(store, { packages, devices: new RolloutDevices(store, devices), logger }, timers);
      const tick = options.rolloutTickMs ?? env.rolloutTickMs;
      const rolloutDriver = new RolloutDriver(store, rollouts, timers, logger, tick === false ? undefined : tick);
      engine = new OtaEngine(
        { ...options, dataDir },
        store,
        events,
        accounts,
        tenantService,
        packages,
        profiles,
        devices,
        boot,
        logger,
        pipeline,
        { ...deviceApi, reader: httpReader },
        deviceContext,
        rollouts,
        rolloutDriver,
        env,
      );
      if (options.http !== false) await engine.listen(options.http?.port ?? DEFAULTS.httpPort, options.http?.host ?? DEFAULTS.httpHost);
      if (options.https) await engine.listen(options.https.port, options.https.host ?? (options.http ? options.http.host : undefined) ?? DEFAULTS.httpHost, options.https);
      // A rollout running when the last instance stopped goes on from where it stood (once nothing can fail any more).
      if (tick !== false) rolloutDriver.start();
      return engine;
    } catch (err) {
      // A made engine has started work of its own (the dashboard's watcher polls every few seconds
      // for good): a port already taken must not leave it running.
      await (engine ? engine.close() : store.close());
      throw err;
    }
  }

  private readonly endpoints = new Set<EndpointInfo>();
  private readonly deviceReader: BlobReader;
  private readonly answerDownload: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  private readonly unhearNotifications: () => void;
  private readonly unrelayRevocations: () => void;
  private readonly unrelayChanges: () => void;

  /** A notification another instance decided: to this instance's sessions of the device, if any. */
  private deliverHere(n: Notification): void {
    this.pipeline.httpSessions.deliver(n);
    for (const e of this.endpoints) e.deliver?.(n);
  }

  /** A device endpoint started by a transport (MQTT, CoAP): listed until the returned function is called. */
  registerEndpoint(info: EndpointInfo): () => void {
    this.endpoints.add(info);
    return () => {
      this.endpoints.delete(info);
    };
  }

  /**
   * Where devices can reach us: the HTTP device API and every registered endpoint, with the devices
   * connected to each: `tenantId`'s only when given (a tenant admin sees no other tenant's figures),
   * every tenant's otherwise (the system administrator).
   */
  listEndpoints(tenantId?: TenantId): Array<Omit<EndpointInfo, 'connections'> & { connections: number }> {
    const http = this.httpAddress;
    const out: Array<Omit<EndpointInfo, 'connections'> & { connections: number }> = [];
    const polls = (): number => (tenantId === undefined ? this.pipeline.httpSessions.waiting : this.pipeline.httpSessions.waitingOf(tenantId));
    if (http) out.push({ transport: 'HTTP', host: http.address, port: http.port, connections: polls() });
    const https = this.httpsAddress;
    if (https) out.push({ transport: 'HTTP', host: https.address, port: https.port, tls: true, connections: polls() });
    for (const e of this.endpoints) out.push({ transport: e.transport, host: e.host, port: e.port, ...(e.tls ? { tls: true } : {}), connections: e.connections(tenantId) });
    return out;
  }

  /** A random secret kept with this data directory, made on first use (e.g. Node-RED's credential key). */
  async secret(name: string): Promise<string> {
    return (await storedSecret(this.store, `secret:${name}`)).toString('hex');
  }

  /** Where the HTTP API listens, once listening. */
  get httpAddress(): AddressInfo | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : null;
  }

  /** Where the HTTPS API listens, when it was asked for. */
  get httpsAddress(): AddressInfo | null {
    const a = this.httpsServer?.address();
    return a && typeof a === 'object' ? a : null;
  }

  private async listen(port: number, host: string, tls?: TlsIdentity): Promise<void> {
    // A 2 GB upload over a slow link takes longer than any request timeout: uploads are excepted
    // from the body deadline and cut when idle instead (multipart.ts).
    // Device downloads are answered before Express (device-api.ts); the rest is Express's.
    const server = createLimitedServer((req, res) => void (this.answerDownload(req, res) || this.app(req, res)), this.httpLimits, tls);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (tls) this.httpsServer = server;
    else this.server = server;
  }

  /** Stops listening, ends open connections, closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const server of [this.server, this.httpsServer]) {
      if (!server) continue;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.unhearNotifications();
    await this.rolloutDriver.stop();
    this.unrelayRevocations();
    this.unrelayChanges();
    this.deviceContext.lookups.close();
    this.pipeline.queue.stop();
    this.pipeline.tracker.stop();
    this.dashboard.close();
    await this.downloads.close();
    // A profile's fan-out may still be paging through its devices: let it finish on an open database.
    await this.pipeline.assignment.idle();
    this.events.removeAllListeners();
    await this.deviceReader.close();
    await this.store.close();
  }
}

function jwtSecret(store: Store, configured: string | undefined): Promise<Buffer> {
  return configured ? Promise.resolve(Buffer.from(configured, 'utf8')) : storedSecret(store, 'jwt_secret');
}

/** A random secret made once per data directory and kept in the store. */
async function storedSecret(store: Store, key: string): Promise<Buffer> {
  return Buffer.from(await store.settings.putIfAbsent(key, randomBytes(32).toString('base64')), 'base64');
}
