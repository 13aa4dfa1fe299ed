import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import { bearerPrincipal } from './authenticate';
import { errorHandler } from './admin-api';
import type { DeviceService } from '../devices/device-service';
import type { DownloadProgress } from '../fleet/download-progress';
import type { DeviceId } from '../ids';

/**
 * Beyond ThingsBoard (issue 14): `GET /api/ota/device/{deviceId}/downloadProgress` ->
 * `{"FIRMWARE": {packageId, servedBytes, size, percent, ts} | null, "SOFTWARE": ... }`, the bytes of
 * the device's current package the server sent it, a resumed range counted once.
 */
export function createDownloadProgressApi(deps: { accounts: AccountService; devices: DeviceService; progress: DownloadProgress }): Router {
  const api = express.Router();
  api.get('/ota/device/:deviceId/downloadProgress', (req: Request, res: Response, next: NextFunction) => {
    bearerPrincipal(req, deps.accounts)
      .then(async (who) => {
        const device = await deps.devices.get(who.tenantId, String(req.params.deviceId));
        const served = await deps.progress.ofDevices(who.tenantId, [device.id as DeviceId]);
        res.json({ FIRMWARE: served.get(`${device.id}:FIRMWARE`) ?? null, SOFTWARE: served.get(`${device.id}:SOFTWARE`) ?? null });
      })
      .catch(next);
  });
  api.use('/ota/device', errorHandler);
  return api;
}
