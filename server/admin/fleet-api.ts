import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import type { Notifier } from '../pipeline/notifier';
import type { NotifyQueue } from '../pipeline/notify-queue';
import type { StateTracker } from '../pipeline/state-tracker';
import { ANY_AUTHORITY, bearerPrincipal } from './authenticate';
import type { TenantId } from '../ids';
import { errorHandler } from './admin-api';

/**
 * Beyond ThingsBoard: the fleet's update metrics for scripts and the dashboard,
 * `GET /api/ota/metrics` (per package and per profile: pending, in progress, updated, failed, coverage;
 * the queue's depth; notifications sent and stale events dropped since start).
 */
export function createFleetApi(deps: {
  accounts: AccountService;
  tracker: StateTracker;
  queue: NotifyQueue;
  notifier: Notifier;
  endpoints: (tenantId?: TenantId) => unknown[];
}): Router {
  const api = express.Router();
  api.get('/ota/metrics', (req: Request, res: Response, next: NextFunction) => {
    bearerPrincipal(req, deps.accounts)
      .then(async (who) =>
        res.json({
          ...(await deps.tracker.metrics(who.tenantId)),
          queue: { depth: await deps.queue.depth(who.tenantId), paused: deps.queue.paused },
          notifications: ((s) => ({ sent: s.notified, dropped: s.dropped }))(deps.notifier.statsFor(who.tenantId)),
        }),
      )
      .catch(next);
  });
  // Where devices connect: the HTTP device API and the MQTT/CoAP/LwM2M endpoints the flow started.
  // The connection counts are the caller's tenant's; the system administrator's are every tenant's.
  api.get('/ota/endpoints', (req: Request, res: Response, next: NextFunction) => {
    bearerPrincipal(req, deps.accounts, ANY_AUTHORITY)
      .then((who) => res.json(deps.endpoints(who.authority === 'SYS_ADMIN' ? undefined : who.tenantId)))
      .catch(next);
  });
  api.use(errorHandler);
  return api;
}
