import { randomBytes } from 'node:crypto';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from '../admin/accounts';
import type { Principal } from '../admin/auth';
import type { DeviceService } from '../devices/device-service';
import { invalid, unauthorized } from '../errors';
import type { EngineEvents } from '../events';
import type { FleetReadModel } from '../store/fleet-read-model';
import { DEVICE_LIST_SORT, STATE_FILTERS, type DeviceFilter, type DeviceListSort, type DeviceRow, type FleetView, type SlotInfo, type StateFilter } from './fleet-view';
import type { DownloadProgress } from './download-progress';
import type { FleetWatcher } from './fleet-watch';
import type { LiveStreams } from './live-streams';
import type { OtaPackageId, TenantId } from '../ids';
import type { NotifyQueue } from '../pipeline/notify-queue';
import type { Timers } from '../timers';
import { keyPrefix } from '../pipeline/ota-keys';
import { OTA_PACKAGE_TYPES, type OtaPackageRepository, type OtaPackageType } from '../store/ota-packages';
import type { OtaStateRepository } from '../store/ota-states';
import { errorHandler } from '../admin/admin-api';
import { uuid } from '../admin/schemas';
import { authedBy, bearerPrincipal } from '../admin/authenticate';
import type { RolloutService } from '../rollouts/rollout-service';
import { rolloutPanel } from './rollout-panel';

export interface DashboardApiDeps {
  accounts: AccountService;
  devices: DeviceService;
  states: OtaStateRepository;
  queue: NotifyQueue;
  events: EngineEvents;
  view: FleetView;
  /** The snapshots behind the chart. */
  fleet: FleetReadModel;
  watcher: FleetWatcher;
  /** The open live streams: capped per user, each with its backlog bounded. */
  streams: LiveStreams;
  clock: Pick<Timers, 'now'>;
  /** Live streams end after this long (ms); the page reconnects with a new ticket, so a revoked login does not linger. */
  maxStreamMs?: number;
  /** Comment lines that keep proxies from closing an idle stream (ms). */
  heartbeatMs?: number;
  /** Bytes served per device (issue 14): each slot of a row gains `served` for its target package. */
  downloads?: Pick<DownloadProgress, 'ofDevices'>;
  /** Rollouts (issue 14): the Rollouts panel. */
  rollouts?: { service: RolloutService; packages: Pick<OtaPackageRepository, 'findById'> };
}

/** A ticket opens one live stream within this time. */
const TICKET_TTL_MS = 60_000;
const MAX_TICKETS = 10_000;

const ajv = new Ajv({ allErrors: false, coerceTypes: false });
const digits = (max: number) => ({ type: 'string', pattern: `^[0-9]{1,${max}}$` }) as const;
const typeParam = { enum: OTA_PACKAGE_TYPES } as const;
const listQuery = ajv.compile({
  type: 'object',
  properties: {
    pageSize: digits(4),
    page: digits(9),
    type: typeParam,
    state: { type: 'string', pattern: `^(${STATE_FILTERS.join('|')})(,(${STATE_FILTERS.join('|')}))*$` },
    deviceProfileId: uuid,
    packageId: uuid,
    textSearch: { type: 'string', maxLength: 255 },
    sortProperty: { enum: DEVICE_LIST_SORT },
    sortOrder: { enum: ['ASC', 'DESC', 'asc', 'desc'] },
  },
});
const historyQuery = ajv.compile({ type: 'object', properties: { type: { enum: [...OTA_PACKAGE_TYPES, 'ALL'] }, limit: digits(5) } });
const distributionQuery = ajv.compile({ type: 'object', properties: { type: typeParam, startTs: digits(15), endTs: digits(15), points: digits(4) } });
const retryBody = ajv.compile({ type: 'object', properties: { type: typeParam } });
const idParam = ajv.compile(uuid);

function check(validate: ValidateFunction, value: unknown, what: 'parameter' | 'body'): void {
  if (validate(value)) return;
  const e = validate.errors?.[0] as ErrorObject | undefined;
  const name = e?.instancePath ? e.instancePath.slice(1) : ((e?.params as { additionalProperty?: string } | undefined)?.additionalProperty ?? '');
  const allowed = (e?.params as { allowedValues?: unknown[] } | undefined)?.allowedValues;
  const detail = allowed ? `must be one of ${allowed.join(', ')}` : (e?.message ?? 'is invalid');
  throw invalid(what === 'body' ? `Invalid request body: ${name ? `${name} ` : ''}${detail}` : `Invalid request parameter '${name}': ${detail}`);
}

/** The first value of each query parameter (a repeated one counts once). */
function query(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query)) {
    const first = Array.isArray(v) ? v[0] : v;
    if (typeof first === 'string' && first !== '') out[k] = first;
  }
  return out;
}

/**
 * Beyond ThingsBoard: what the fleet dashboard reads and does, under `/api/ota/` and behind the
 * same login (bearer token) as the rest of the API; every query is scoped by the caller's tenant.
 * The live stream takes a short-lived, single-use ticket instead, since EventSource sends no headers.
 */
export function createDashboardApi(deps: DashboardApiDeps): Router {
  /** Rows with the download progress of each slot's target package, when bytes of it were served. */
  const withServed = async (tenantId: TenantId, rows: DeviceRow[]): Promise<unknown[]> => {
    if (!deps.downloads || !rows.length) return rows;
    const progress = await deps.downloads.ofDevices(
      tenantId,
      rows.map((r) => r.id),
    );
    return rows.map((row) => {
      const served = (slot: SlotInfo, type: OtaPackageType) => {
        const p = progress.get(`${row.id}:${type}`);
        // Only when bytes of the target were served: rows keep their shape otherwise.
        return p && slot.target && p.packageId === slot.target.packageId ? { ...slot, served: { bytes: p.servedBytes, size: p.size, percent: p.percent } } : slot;
      };
      return { ...row, firmware: served(row.firmware, 'FIRMWARE'), software: served(row.software, 'SOFTWARE') };
    });
  };
  const pageWithServed = async <P extends { data: DeviceRow[] }>(tenantId: TenantId, page: P) => ({ ...page, data: await withServed(tenantId, page.data) });
  const { view } = deps;
  const api = express.Router();
  const tickets = new Map<string, { who: Principal; expires: number }>();
  const maxStreamMs = deps.maxStreamMs ?? 30 * 60_000;
  const heartbeatMs = deps.heartbeatMs ?? 15_000;

  const authed = authedBy(deps.accounts);

  const deviceId = (req: Request): string => {
    const id = String(req.params.id);
    if (!idParam(id)) throw invalid(`Invalid UUID string: ${id}`);
    return id;
  };

  function listFilter(q: Record<string, string>): { filter: DeviceFilter; link: { pageSize: number; page: number; sortProperty?: DeviceListSort; sortOrder?: 'ASC' | 'DESC' } } {
    check(listQuery, q, 'parameter');
    const filter: DeviceFilter = { type: (q.type as OtaPackageType | undefined) ?? 'FIRMWARE' };
    if (q.state) filter.states = [...new Set(q.state.split(','))] as StateFilter[];
    if (q.deviceProfileId) filter.deviceProfileId = q.deviceProfileId;
    if (q.packageId) filter.packageId = q.packageId;
    if (q.textSearch) filter.textSearch = q.textSearch;
    const pageSize = q.pageSize === undefined ? 20 : Number(q.pageSize);
    if (pageSize < 1 || pageSize > 1000) throw invalid('Page size should be between 1 and 1000!');
    return {
      filter,
      link: {
        pageSize,
        page: q.page === undefined ? 0 : Number(q.page),
        ...(q.sortProperty ? { sortProperty: q.sortProperty as DeviceListSort } : {}),
        ...(q.sortOrder ? { sortOrder: q.sortOrder.toUpperCase() as 'ASC' | 'DESC' } : {}),
      },
    };
  }

  // The device list with both slots: `?type&state&deviceProfileId&packageId&textSearch&sortProperty&sortOrder&pageSize&page`.
  api.get(
    '/ota/devices',
    authed(async (req, res, who) => {
      const { filter, link } = listFilter(query(req));
      res.json(await pageWithServed(who.tenantId, await view.page(who.tenantId, filter, link)));
    }),
  );

  // The Rollouts panel: the newest rollouts with their package, waves, progress and why one stopped.
  api.get(
    '/ota/dashboard/rollouts',
    authed(async (_req, res, who) => {
      const r = deps.rollouts;
      res.json({ data: r ? await rolloutPanel(r.service, r.packages, who.tenantId) : [] });
    }),
  );

  // The failed devices, most recent failure first (the same filters, minus `state`).
  api.get(
    '/ota/failures',
    authed(async (req, res, who) => {
      const q = query(req);
      delete q.state;
      const { filter, link } = listFilter({ sortProperty: 'stateTs', sortOrder: 'DESC', ...q });
      res.json(await pageWithServed(who.tenantId, await view.page(who.tenantId, { ...filter, states: ['FAILED'] }, link)));
    }),
  );

  api.get(
    '/ota/devices/:id',
    authed(async (req, res, who) => {
      const device = await deps.devices.get(who.tenantId, deviceId(req));
      const row = await view.row(who.tenantId, device.id);
      res.json(row ? (await withServed(who.tenantId, [row]))[0] : row);
    }),
  );

  // A device's timeline: `?type=FIRMWARE|SOFTWARE|ALL&limit` (points per key, newest kept).
  api.get(
    '/ota/devices/:id/history',
    authed(async (req, res, who) => {
      const q = query(req);
      check(historyQuery, q, 'parameter');
      const device = await deps.devices.get(who.tenantId, deviceId(req));
      const types = q.type === undefined || q.type === 'ALL' ? OTA_PACKAGE_TYPES : [q.type as OtaPackageType];
      const limit = Math.min(Math.max(Number(q.limit ?? 200), 1), 10_000);
      const events = await view.timeline(device.id, types, limit, Number.MAX_SAFE_INTEGER);
      res.json({ deviceId: device.id, name: device.name, events });
    }),
  );

  // Queue a failed device again for its current target, at the queue's pace.
  api.post(
    '/ota/devices/:id/retry',
    express.json({ limit: '16kb', type: () => true }),
    authed(async (req, res, who) => {
      const body: unknown = req.body ?? {};
      check(retryBody, body, 'body');
      const type = (body as { type?: OtaPackageType }).type ?? 'FIRMWARE';
      const device = await deps.devices.get(who.tenantId, deviceId(req));
      const what = type === 'FIRMWARE' ? 'firmware' : 'software';
      const state = await deps.states.get(device.id, type);
      if (!state?.targetPackageId) throw invalid(`Device '${device.name}' has no ${what} to retry: no package is assigned to it`);
      if (state.state !== 'FAILED')
        throw invalid(`Device '${device.name}' is not FAILED (${keyPrefix(type)}_state is ${state.state ?? 'not set'}); only a failed update can be retried`);
      // After the failure even when the device's clock runs ahead of ours: an older QUEUED would not show.
      const ts = Math.max(deps.clock.now(), state.stateTs + 1);
      const packageId = state.targetPackageId as OtaPackageId;
      if (!(await deps.queue.enqueue({ tenantId: who.tenantId, deviceId: device.id, type, packageId, ts }))) {
        throw invalid(`The ${what} package of device '${device.name}' no longer exists`);
      }
      deps.events.emit('stateChange', { tenantId: who.tenantId, deviceId: device.id, type, from: 'FAILED', to: 'QUEUED', error: null, ts, reason: 'retry' });
      res.json({ deviceId: device.id, type, packageId, state: 'QUEUED', ts });
    }),
  );

  // The state distribution over time for the chart: `?type&startTs&endTs&points`, ending with now.
  api.get(
    '/ota/distribution',
    authed(async (req, res, who) => {
      const q = query(req);
      check(distributionQuery, q, 'parameter');
      const type = (q.type as OtaPackageType | undefined) ?? 'FIRMWARE';
      const now = deps.clock.now();
      const endTs = q.endTs === undefined ? now : Number(q.endTs);
      const startTs = q.startTs === undefined ? endTs - 3600_000 : Number(q.startTs);
      if (startTs > endTs) throw invalid('startTs must not be after endTs');
      const points = Math.min(Math.max(Number(q.points ?? 240), 2), 2000);
      const series = await deps.fleet.snapshotSeries(who.tenantId, type, startTs, endTs, points - 2);
      const first = await deps.fleet.snapshotBefore(who.tenantId, type, startTs);
      // The chart starts with the state held at its start, and ends with the state now.
      if (first && (series[0]?.ts ?? Infinity) > startTs) series.unshift({ ts: startTs, counts: first.counts });
      if (endTs >= now) series.push({ ts: now, counts: (await view.distribution(who.tenantId))[type] });
      res.json({ type, startTs, endTs, points: series });
    }),
  );

  // A ticket for the live stream: EventSource cannot send the bearer header.
  api.post(
    '/ota/events/ticket',
    authed(async (_req, res, who) => {
      const now = Date.now();
      for (const [k, t] of tickets) if (t.expires <= now) tickets.delete(k);
      if (tickets.size >= MAX_TICKETS) throw invalid('Too many live stream tickets waiting; try again in a minute');
      let waiting = 0;
      for (const t of tickets.values()) if (t.who.userId === who.userId) waiting += 1;
      deps.streams.checkRoom(who.userId, waiting);
      const ticket = randomBytes(24).toString('base64url');
      tickets.set(ticket, { who, expires: now + TICKET_TTL_MS });
      res.json({ ticket, expiresInMs: TICKET_TTL_MS });
    }),
  );

  // Server-sent events: `devices` (changed rows), `metrics` (cards and chart) and `progress` (downloads of the devices the stream follows) for the caller's tenant.
  api.get('/ota/events', (req: Request, res: Response, next: NextFunction) => {
    (async () => {
      let who: Principal;
      const ticket = typeof req.query.ticket === 'string' ? req.query.ticket : undefined;
      if (ticket !== undefined) {
        const t = tickets.get(ticket);
        tickets.delete(ticket); // single use
        if (!t || t.expires <= Date.now()) throw unauthorized('Invalid or expired live stream ticket');
        who = t.who;
        await deps.accounts.user(who.userId); // the user must still exist
      } else {
        who = await bearerPrincipal(req, deps.accounts);
      }
      // Refused (429) before the headers go out: a user's streams are capped.
      const outbox = deps.streams.open(who.userId, res);
      res.status(200);
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      res.setHeader('Connection', 'keep-alive');
      res.setHeader('X-Accel-Buffering', 'no');
      res.flushHeaders();
      req.socket.setNoDelay(true);
      const send = outbox.send.bind(outbox);
      const live = deps.watcher.subscribe(who.tenantId, send, () => res.end());
      const heartbeat = setInterval(() => outbox.comment('keep-alive'), heartbeatMs).unref();
      const expiry = setTimeout(() => res.end(), maxStreamMs).unref();
      let ended = false;
      const end = (): void => {
        if (ended) return;
        ended = true;
        live.close();
        deps.streams.close(who.userId, outbox);
        clearInterval(heartbeat);
        clearTimeout(expiry);
      };
      res.on('close', end);
      // A client gone while its ticket was checked closed before anyone listened: its stream is let go at once.
      if (res.destroyed) end();
      send({ event: 'ready', data: { ts: deps.clock.now(), stream: live.stream } });
      send({ event: 'metrics', data: await deps.watcher.current(who.tenantId) });
    })().catch(next);
  });

  api.use(errorHandler);
  return api;
}
