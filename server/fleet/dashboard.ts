import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import type { AccountService } from '../admin/accounts';
import type { DeviceService } from '../devices/device-service';
import type { Pipeline } from '../pipeline/pipeline';
import type { Logger } from '../logger';
import type { EngineEvents } from '../events';
import { FleetView } from './fleet-view';
import { backgroundTimers, FleetWatcher, WATCH_DEFAULTS, type LiveMetrics } from './fleet-watch';
import { isUuid, type TenantId } from '../ids';
import type { Timers } from '../timers';
import type { Store } from '../store/store';
import { OtaPrometheus } from './prometheus';
import { createDashboardApi } from './dashboard-api';
import type { DownloadProgress } from './download-progress';
import type { RolloutService } from '../rollouts/rollout-service';
import { LiveProgress, liveProgressSettingsFromEnv, type LiveProgressSettings } from './live-progress';
import { LiveStreams, liveStreamSettingsFromEnv, type LiveStreamSettings } from './live-streams';
import { numberFromEnv } from './env-number';
import { authedBy } from '../admin/authenticate';
import { errorHandler } from '../admin/admin-api';
import { invalid, notFound } from '../errors';

/** What the dashboard needs from the engine. */
export interface DashboardDeps {
  store: Store;
  /** Bytes served per device (issue 14), shown in the device list and pushed live to the streams following them. */
  downloads?: Pick<DownloadProgress, 'ofDevices' | 'current' | 'onProgress'>;
  accounts: AccountService;
  devices: DeviceService;
  pipeline: Pick<Pipeline, 'tracker' | 'queue' | 'notifier' | 'telemetry'>;
  events: EngineEvents;
  /** The engine's clock (tests inject a fake one); timestamps only, the dashboard's own timers are real. */
  clock: Pick<Timers, 'now'>;
  logger: Logger;
  /** Rollouts (issue 14): listed with their waves, and counted in /metrics. */
  rollouts?: RolloutService;
}

export interface DashboardSettings {
  /** When set, `GET /metrics` wants `Authorization: Bearer <token>`; when not, it answers local scrapers only. */
  metricsToken: string | null;
  /** A snapshot of the state distribution for the chart at most this often while anything changes (ms). */
  snapshotMs: number;
  /** Snapshots are kept this long (ms). */
  retentionMs: number;
  /** The shared change log of update states keeps this many changes (every instance's live view reads it). */
  changeLogMax: number;
  /** Live download progress: how often a stream hears of a device, and how many devices it follows at most. */
  progress: LiveProgressSettings;
  /** Live streams: how many a user holds at once, and what one keeps for a client that does not read. */
  streams: LiveStreamSettings;
  /** Where the page's files are (default: the package's `dashboard/` folder). */
  dashboardDir?: string;
}

/**
 * `OTA_METRICS_TOKEN`, `OTA_DASHBOARD_SNAPSHOT_S` (default 5), `OTA_DASHBOARD_RETENTION_H` (default 48), `OTA_FLEET_CHANGE_LOG_MAX` (default 100,000),
 * the live progress (live-progress.ts) and the live streams (live-streams.ts); a value out of range is refused.
 */
export function dashboardSettingsFromEnv(env: NodeJS.ProcessEnv): DashboardSettings {
  return {
    metricsToken: env.OTA_METRICS_TOKEN?.trim() || null,
    snapshotMs: Math.round(
      numberFromEnv(env, 'OTA_DASHBOARD_SNAPSHOT_S', { min: 0.01, max: 86_400, fallback: WATCH_DEFAULTS.snapshotMs / 1000, unit: 'seconds', whole: false }) * 1000,
    ),
    retentionMs: Math.round(
      numberFromEnv(env, 'OTA_DASHBOARD_RETENTION_H', { min: 0.01, max: 87_600, fallback: WATCH_DEFAULTS.retentionMs / 3600_000, unit: 'hours', whole: false }) * 3600_000,
    ),
    // Fewer than 1,000 would drop changes a watcher polling every 500 ms has yet to read.
    changeLogMax: numberFromEnv(env, 'OTA_FLEET_CHANGE_LOG_MAX', { min: 1000, max: 1e9, fallback: WATCH_DEFAULTS.changeLogMax, unit: 'changes' }),
    progress: liveProgressSettingsFromEnv(env),
    streams: liveStreamSettingsFromEnv(env),
  };
}

export interface Dashboard {
  /** Mount at `/api`, before the admin API (which answers 404 for what it does not know). */
  api: Router;
  /** Mount at `/`: the page under `/dashboard/` and `GET /metrics`. */
  site: Router;
  /** Mount first: counts error responses of every route for `/metrics`. */
  countResponses: RequestHandler;
  prometheus: OtaPrometheus;
  watcher: FleetWatcher;
  /** Stops the watcher and the event hooks (they also stop by themselves once the database closes). */
  close(): void;
}

/** The package's `dashboard/` folder: from `dist/server/http/` three levels up. */
export const DASHBOARD_DIR = path.resolve(__dirname, '..', '..', '..', 'dashboard');

/** Nothing the page loads comes from anywhere but here. */
const PAGE_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};

/**
 * The fleet dashboard on the OTA HTTP port: its JSON API and live stream under `/api/ota/`, the page
 * under `/dashboard/`, and `GET /metrics` for Prometheus.
 */
export function createDashboard(deps: DashboardDeps, settings: DashboardSettings): Dashboard {
  const { pipeline } = deps;
  const { states, fleet } = deps.store;
  const view = new FleetView(fleet, pipeline.telemetry);
  const metrics = async (tenantId: TenantId): Promise<LiveMetrics> => {
    const stats = pipeline.notifier.statsFor(tenantId);
    return {
      ...(await pipeline.tracker.metrics(tenantId)),
      queue: { depth: await pipeline.queue.depth(tenantId), paused: pipeline.queue.paused },
      notifications: { sent: stats.notified, dropped: stats.dropped },
      distribution: await view.distribution(tenantId),
    };
  };
  const progress = deps.downloads ? new LiveProgress(deps.downloads, settings.progress, deps.logger, backgroundTimers) : undefined;
  const watcher = new FleetWatcher(
    {
      fleet,
      view,
      metrics,
      events: deps.events,
      queue: pipeline.queue,
      notifierStats: (t) => pipeline.notifier.statsFor(t),
      clock: deps.clock,
      logger: deps.logger,
      ...(progress ? { progress } : {}),
    },
    { ...WATCH_DEFAULTS, snapshotMs: settings.snapshotMs, retentionMs: settings.retentionMs, changeLogMax: settings.changeLogMax },
  );
  watcher.start();
  const streams = new LiveStreams(settings.streams);
  const prometheus = new OtaPrometheus({
    fleet,
    queue: pipeline.queue,
    notifier: pipeline.notifier,
    events: deps.events,
    liveStreams: () => ({ open: watcher.watching, ...streams.backlog() }),
    rollouts: deps.store.rollouts,
  });

  const api = express.Router();
  api.use(followRoute(deps.accounts, watcher, settings.progress.maxDevices));
  api.use(
    createDashboardApi({
      accounts: deps.accounts,
      devices: deps.devices,
      states,
      queue: pipeline.queue,
      events: deps.events,
      view,
      fleet,
      watcher,
      streams,
      clock: deps.clock,
      ...(deps.downloads ? { downloads: deps.downloads } : {}),
      ...(deps.rollouts ? { rollouts: { service: deps.rollouts, packages: deps.store.packages } } : {}),
    }),
  );

  const site = express.Router();
  site.get('/metrics', (req: Request, res: Response, next: NextFunction) => {
    const refusal = metricsRefusal(req, settings.metricsToken);
    if (refusal) {
      if (refusal.status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
      return void res.status(refusal.status).type('text/plain').send(`${refusal.message}\n`);
    }
    prometheus
      .exposition()
      .then((text) => {
        res.status(200).setHeader('Content-Type', prometheus.contentType);
        res.end(text);
      })
      .catch(next);
  });

  const dir = settings.dashboardDir ?? DASHBOARD_DIR;
  if (!existsSync(path.join(dir, 'index.html'))) deps.logger.warn(`dashboard: no page at ${dir}; /dashboard/ answers 404`);
  // `/dashboard` without its slash would resolve the page's relative links against `/`.
  site.get('/dashboard', (req: Request, res: Response, next: NextFunction) => {
    const [pathname, search] = splitUrl(req.originalUrl);
    if (pathname !== '/dashboard') return next();
    res.redirect(301, `/dashboard/${search}`);
  });
  site.use(
    '/dashboard',
    express.static(dir, {
      index: 'index.html',
      redirect: false,
      dotfiles: 'ignore',
      setHeaders: (res) => {
        for (const [k, v] of Object.entries(PAGE_HEADERS)) res.setHeader(k, v);
      },
    }),
  );
  site.use('/dashboard', (_req: Request, res: Response) => void res.status(404).type('text/plain').send('Not found\n'));

  const countResponses: RequestHandler = (req, res, next) => {
    res.on('finish', () => prometheus.countResponse(req.originalUrl, res.statusCode));
    next();
  };

  return {
    api,
    site,
    countResponses,
    prometheus,
    watcher,
    close: () => {
      watcher.close();
      prometheus.close();
    },
  };
}

/**
 * `POST /api/ota/events/follow` `{stream, devices}`: the devices whose download progress the
 * live stream `stream` (named by its `ready` event) hears from now on, in place of those before:
 * the page sends the rows it shows whenever they change.
 */
function followRoute(accounts: AccountService, watcher: FleetWatcher, maxDevices: number): Router {
  const router = express.Router();
  const usage = 'Invalid request body: expected {"stream": "<id from the ready event>", "devices": ["<device id>", ...]}';
  router.post(
    '/ota/events/follow',
    // A device id and its JSON quotes and comma, per device followed.
    express.json({ limit: 40 * maxDevices + 1024, type: () => true }),
    authedBy(accounts)(async (req, res, who) => {
      const { stream, devices } = (req.body ?? {}) as { stream?: unknown; devices?: unknown };
      if (typeof stream !== 'string' || !Array.isArray(devices)) throw invalid(usage);
      const bad = devices.find((d) => typeof d !== 'string' || !isUuid(d));
      if (bad !== undefined) throw invalid(`Invalid request body: devices must be device ids, not ${JSON.stringify(bad)}`);
      if (devices.length > maxDevices) throw invalid(`A live stream follows at most ${maxDevices} devices (OTA_DASHBOARD_PROGRESS_MAX_DEVICES), not ${devices.length}`);
      if (!watcher.follow(who.tenantId, stream, devices as string[])) throw notFound(`No live stream '${stream}': open /api/ota/events first`);
      res.json({ stream, following: new Set(devices).size });
    }),
  );
  router.use(errorHandler);
  return router;
}

function splitUrl(url: string): [string, string] {
  const i = url.indexOf('?');
  return i < 0 ? [url, ''] : [url.slice(0, i), url.slice(i)];
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * `/metrics` is open to a scraper with the configured token, or, with no token configured, to a
 * scraper on this machine that is not a proxy forwarding someone else's request.
 */
function metricsRefusal(req: Request, token: string | null): { status: number; message: string } | null {
  if (token) {
    const match = /^Bearer\s+(\S+)$/i.exec((req.get('authorization') ?? '').trim());
    // Compared as digests, so neither the length nor the content leaks through timing.
    if (match && timingSafeEqual(sha256(match[1] as string), sha256(token))) return null;
    return { status: 401, message: 'Authentication required: send Authorization: Bearer <OTA_METRICS_TOKEN>' };
  }
  const from = req.socket.remoteAddress ?? '';
  const local = from === '::1' || from.startsWith('127.') || from.startsWith('::ffff:127.');
  const forwarded = req.get('forwarded') !== undefined || req.get('x-forwarded-for') !== undefined;
  if (local && !forwarded) return null;
  return { status: 403, message: 'Metrics are served to local scrapers only; set OTA_METRICS_TOKEN to scrape from another host' };
}
