import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import type { DeviceService } from '../devices/device-service';
import { invalid } from '../errors';
import type { TelemetryPoint, TelemetryRepository } from '../store/telemetry';
import { bearerPrincipal } from './authenticate';
import { errorHandler } from './admin-api';

/**
 * ThingsBoard's telemetry read API for devices, as far as OTA states go:
 * `GET /api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=...` gives the latest values, and
 * with `startTs`/`endTs` the history (kept for the OTA keys).
 */
export function createTelemetryApi(deps: { accounts: AccountService; devices: DeviceService; telemetry: TelemetryRepository }): Router {
  const api = express.Router();
  api.get('/plugins/telemetry/DEVICE/:id/values/timeseries', (req: Request, res: Response, next: NextFunction) => {
    (async () => {
      const who = await bearerPrincipal(req, deps.accounts);
      const device = await deps.devices.get(who.tenantId, String(req.params.id));
      const keys = keyList(req.query.keys);
      // ThingsBoard answers values as strings unless useStrictDataTypes=true.
      const strict = req.query.useStrictDataTypes === 'true';
      const show = (p: TelemetryPoint) => ({ ts: p.ts, value: strict || p.value === null ? p.value : typeof p.value === 'string' ? p.value : JSON.stringify(p.value) });
      if (req.query.startTs === undefined && req.query.endTs === undefined) {
        const latest = await deps.telemetry.latest(device.id, keys);
        const out: Record<string, unknown[]> = {};
        for (const [k, p] of Object.entries(latest)) out[k] = [show(p)];
        return res.json(out);
      }
      const startTs = Number(req.query.startTs);
      const endTs = Number(req.query.endTs);
      if (!Number.isFinite(startTs) || !Number.isFinite(endTs)) throw invalid('startTs and endTs must be numbers (ms)');
      if (!keys) throw invalid("Required request parameter 'keys' for method parameter type String is not present");
      const limit = Math.min(Math.max(Number(req.query.limit ?? 100) || 100, 1), 100_000);
      const order = String(req.query.orderBy ?? 'DESC').toUpperCase() === 'ASC' ? 'ASC' : 'DESC';
      const history = await deps.telemetry.history(device.id, keys, { startTs, endTs, limit, order });
      const out: Record<string, unknown[]> = {};
      for (const [k, points] of Object.entries(history)) out[k] = points.map(show);
      res.json(out);
    })().catch(next);
  });
  api.use(errorHandler);
  return api;
}

/**
 * `keys=a,b` or `keys=a&keys=b` (Spring joins repeated parameters; issue 10, item 9); absent or
 * empty is every key. A nested object (`keys[x]=1`) is no key list: 400.
 */
function keyList(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const parts = Array.isArray(v) ? v : [v];
  if (!parts.every((p): p is string => typeof p === 'string')) throw invalid("Parameter 'keys' must be a comma-separated list of keys");
  const keys = parts
    .flatMap((p) => p.split(','))
    .map((k) => k.trim())
    .filter(Boolean);
  return keys.length ? keys : undefined;
}
