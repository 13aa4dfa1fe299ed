import express, { type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import { authedBy } from './authenticate';
import { errorHandler } from './admin-api';
import { parsePageLink, validateBody } from './schemas';
import type { RolloutService } from '../rollouts/rollout-service';
import { abortSchema, rolloutInputOf, rolloutJson } from '../rollouts/rollout-json';

/**
 * Beyond ThingsBoard (issue 14, "Rollouts"): `POST /api/ota/rollouts` creates a DRAFT;
 * `POST /api/ota/rollouts/{id}/start|pause|resume|cancel`, `/abort` `{"rollback": bool}`;
 * `GET /api/ota/rollouts/{id}`, `GET /api/ota/rollouts?pageSize&page`. Tenant-scoped; errors in
 * ThingsBoard's JSON.
 */
export function createRolloutsApi(deps: { accounts: AccountService; rollouts: RolloutService }): Router {
  const api = express.Router();
  const { rollouts } = deps;
  api.use('/ota/rollouts', express.json({ limit: '1mb' }));
  const authed = authedBy(deps.accounts);
  const out = async (res: Response, r: Parameters<RolloutService['view']>[0]) => res.json(rolloutJson(await rollouts.view(r)));

  api.post(
    '/ota/rollouts',
    authed(async (req, res, who) => {
      await out(res, await rollouts.create(who.tenantId, rolloutInputOf(req.body)));
    }),
  );
  api.get(
    '/ota/rollouts',
    authed(async (req, res, who) => {
      const p = await rollouts.page(who.tenantId, parsePageLink(req.query, ['createdTime', 'name', 'state']));
      const data = [];
      for (const r of p.data) data.push(rolloutJson(await rollouts.view(r)));
      res.json({ ...p, data });
    }),
  );
  api.get(
    '/ota/rollouts/:id',
    authed(async (req, res, who) => out(res, await rollouts.get(who.tenantId, String(req.params.id)))),
  );
  for (const command of ['start', 'pause', 'resume', 'cancel'] as const) {
    api.post(
      `/ota/rollouts/:id/${command}`,
      authed(async (req, res, who) => out(res, await rollouts[command](who.tenantId, String(req.params.id)))),
    );
  }
  api.post(
    '/ota/rollouts/:id/abort',
    authed(async (req, res, who) => {
      const body = validateBody<{ rollback?: boolean }>(abortSchema, req.body ?? {});
      await out(res, await rollouts.abort(who.tenantId, String(req.params.id), body.rollback === true));
    }),
  );
  api.use('/ota/rollouts', errorHandler);
  return api;
}
