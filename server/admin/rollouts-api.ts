import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import type { Principal } from './auth';
import { bearerPrincipal } from './authenticate';
import { errorHandler } from './admin-api';
import { parsePageLink, validateBody } from './schemas';
import type { DeviceId, DeviceProfileId, OtaPackageId } from '../ids';
import type { RolloutService, RolloutView } from '../rollouts/rollout-service';
import type { AbortRule, Gate, MaintenanceWindow, RolloutSpec, WaveSpec } from '../store/rollouts';

const uuid = { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' } as const;
const refOf = (entityType: string) => ({
  type: 'object',
  properties: { id: uuid, entityType: { const: entityType } },
  required: ['id'],
});
const percent = { type: 'number', minimum: 0, maximum: 100 } as const;
const hhmm = { type: 'string', pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' } as const;
/** Devices a `deviceIds` target may list. */
export const MAX_TARGET_DEVICES = 10_000;

const rolloutSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 255 },
    packageId: refOf('OTA_PACKAGE'),
    target: {
      oneOf: [
        {
          type: 'object',
          properties: { deviceProfileId: refOf('DEVICE_PROFILE'), nameFilter: { type: 'string', minLength: 1, maxLength: 255 } },
          required: ['deviceProfileId'],
          additionalProperties: false,
        },
        {
          type: 'object',
          properties: { deviceIds: { type: 'array', minItems: 1, maxItems: MAX_TARGET_DEVICES, items: { anyOf: [uuid, refOf('DEVICE')] } } },
          required: ['deviceIds'],
          additionalProperties: false,
        },
      ],
    },
    waves: {
      type: 'array',
      minItems: 1,
      maxItems: 100,
      items: {
        oneOf: [
          { type: 'object', properties: { percent: { type: 'number', exclusiveMinimum: 0, maximum: 100 } }, required: ['percent'], additionalProperties: false },
          { type: 'object', properties: { count: { type: 'integer', minimum: 1, maximum: 1_000_000 } }, required: ['count'], additionalProperties: false },
        ],
      },
    },
    gate: {
      type: 'object',
      properties: { minSuccessRate: percent, minFinished: { type: 'integer', minimum: 0 }, waitSeconds: { type: 'integer', minimum: 0, maximum: 30 * 86400 } },
      additionalProperties: false,
    },
    abort: {
      type: 'object',
      properties: { maxFailureRate: percent, minFinished: { type: 'integer', minimum: 0 } },
      additionalProperties: false,
    },
    window: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          properties: {
            days: { type: 'array', minItems: 1, maxItems: 7, uniqueItems: true, items: { enum: ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'] } },
            from: hhmm,
            to: hhmm,
            timeZone: { type: 'string', minLength: 1, maxLength: 64 },
          },
          required: ['days', 'from', 'to', 'timeZone'],
          additionalProperties: false,
        },
      ],
    },
    forceDowngrade: { type: 'boolean' },
  },
  required: ['name', 'packageId', 'target', 'waves'],
  additionalProperties: false,
};
const abortSchema = { type: 'object', properties: { rollback: { type: 'boolean' } }, additionalProperties: false };

interface RolloutBody {
  name: string;
  packageId: { id: string };
  target: { deviceProfileId: { id: string }; nameFilter?: string } | { deviceIds: Array<string | { id: string }> };
  waves: WaveSpec[];
  gate?: Partial<Gate>;
  abort?: Partial<AbortRule>;
  window?: MaintenanceWindow | null;
  forceDowngrade?: boolean;
}

/** Without a gate or an abort rule in the body: every device must update, nothing aborts by itself. */
const DEFAULT_GATE: Gate = { minSuccessRate: 100, minFinished: 1, waitSeconds: 0 };
const DEFAULT_ABORT: AbortRule = { maxFailureRate: 100, minFinished: 1 };

function specOf(body: RolloutBody): RolloutSpec {
  const t = body.target;
  return {
    target:
      'deviceIds' in t
        ? { deviceIds: t.deviceIds.map((d) => (typeof d === 'string' ? d : d.id).toLowerCase() as DeviceId) }
        : { deviceProfileId: t.deviceProfileId.id.toLowerCase() as DeviceProfileId, ...(t.nameFilter ? { nameFilter: t.nameFilter } : {}) },
    waves: body.waves,
    gate: { ...DEFAULT_GATE, ...body.gate },
    abort: { ...DEFAULT_ABORT, ...body.abort },
    window: body.window ?? null,
    forceDowngrade: body.forceDowngrade === true,
  };
}

/** A rollout in the API's JSON: ThingsBoard-style references, the spec as sent, waves with their counts. */
export function rolloutJson(v: RolloutView): Record<string, unknown> {
  const t = v.spec.target;
  return {
    id: { entityType: 'OTA_ROLLOUT', id: v.id },
    createdTime: v.createdTime,
    tenantId: { entityType: 'TENANT', id: v.tenantId },
    name: v.name,
    packageId: { entityType: 'OTA_PACKAGE', id: v.packageId },
    type: v.type,
    target:
      'deviceIds' in t
        ? { deviceIds: t.deviceIds }
        : { deviceProfileId: { entityType: 'DEVICE_PROFILE', id: t.deviceProfileId }, ...(t.nameFilter ? { nameFilter: t.nameFilter } : {}) },
    waves: v.spec.waves.map((spec, i) => {
      const w = v.waveViews[i];
      return {
        ...spec,
        state: w?.state ?? 'PENDING',
        devices: w?.devices ?? 0,
        updated: w?.updated ?? 0,
        failed: w?.failed ?? 0,
        inProgress: w?.inProgress ?? 0,
        pending: w?.pending ?? 0,
        skipped: w?.skipped ?? 0,
        startedTime: w?.startedTime ?? null,
      };
    }),
    gate: v.spec.gate,
    abort: v.spec.abort,
    window: v.spec.window,
    forceDowngrade: v.spec.forceDowngrade,
    state: v.state,
    reason: v.reason,
    currentWave: v.currentWave,
    startedTime: v.startedTime,
    finishedTime: v.finishedTime,
  };
}

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
  const authed = (h: (req: Request, res: Response, who: Principal) => Promise<unknown>) => (req: Request, res: Response, next: NextFunction) =>
    bearerPrincipal(req, deps.accounts)
      .then((who) => h(req, res, who))
      .catch(next);
  const out = async (res: Response, r: Parameters<RolloutService['view']>[0]) => res.json(rolloutJson(await rollouts.view(r)));

  api.post(
    '/ota/rollouts',
    authed(async (req, res, who) => {
      const body = validateBody<RolloutBody>(rolloutSchema, req.body ?? {});
      await out(res, await rollouts.create(who.tenantId, { name: body.name, packageId: body.packageId.id.toLowerCase() as OtaPackageId, spec: specOf(body) }));
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
