import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { AccountService } from './accounts';
import type { Principal } from './auth';
import { ANY_AUTHORITY, bearerPrincipal, TENANT_ADMIN_ONLY } from './authenticate';
import type { Authority } from '../store/tenants';
import { parseChecksumAlgorithm, type ChecksumAlgorithm } from '../packages/checksum';
import type { PageData } from '../store/sqlite/database';
import type { DeviceProfileService, DeviceProfileInput } from '../devices/device-profile-service';
import type { DeviceInput, DeviceService } from '../devices/device-service';
import type { CredentialsInput } from '../devices/device-credentials';
import type { Device } from '../store/devices';
import { ErrorCode, invalid, isStorageFull, OtaError, storageFull, tooLarge, unauthorized } from '../errors';
import { isUuid, type DeviceProfileId } from '../ids';
import type { PackageInfoInput, OtaPackageService, UploadMeta } from '../packages/ota-package-service';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../store/ota-packages';
import { receiveUpload } from './multipart';
import { parsePageLink, schemas, validateBody } from './schemas';
import { deviceCredentialsJson, deviceJson, deviceProfileJson, packageInfoJson, userJson } from './wire';

export interface AdminApiDeps {
  accounts: AccountService;
  packages: OtaPackageService;
  profiles: DeviceProfileService;
  devices: DeviceService;
  /** Cut an upload whose sender goes quiet this long (ms). */
  uploadIdleMs?: number;
}

type Handler = (req: Request, res: Response) => Promise<unknown>;
type AuthedHandler = (req: Request, res: Response, who: Principal) => Promise<unknown>;

const PACKAGE_SORT = ['createdTime', 'type', 'title', 'version', 'tag', 'url', 'fileName', 'dataSize', 'checksum'];
const PROFILE_SORT = ['createdTime', 'name', 'type', 'transportType', 'description', 'isDefault'];
const DEVICE_SORT = ['createdTime', 'name', 'deviceProfileName', 'label', 'type', 'customerTitle'];
/** Multipart framing around the file: what a request may carry beyond the package limit. */
const MULTIPART_OVERHEAD = 1024 * 1024;

/**
 * ThingsBoard's admin REST API, as far as OTA needs it (reference §7): login, device profiles,
 * devices and OTA packages, with ThingsBoard's paths, shapes, status codes and error JSON.
 */
export function createAdminApi(deps: AdminApiDeps): Router {
  const { accounts, packages, profiles, devices } = deps;
  const api = express.Router();
  // ThingsBoard's clients send `Content-Type: application/json` with `{}` even on GET and DELETE.
  api.use(express.json({ limit: '1mb', type: ['application/json', 'application/*+json'] }));

  const open = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);
  // A tenant's data is reached by its admins only; the system administrator gets ThingsBoard's 403.
  const authed =
    (h: AuthedHandler, allowed: readonly Authority[] = TENANT_ADMIN_ONLY) =>
    (req: Request, res: Response, next: NextFunction) =>
      bearerPrincipal(req, accounts, allowed)
        .then((who) => h(req, res, who))
        .catch(next);

  const page = <T>(p: PageData<T>, map: (t: T) => unknown) => ({ ...p, data: p.data.map(map) });
  const devicePage = async (p: PageData<Device>) => {
    const names = new Map<string, string>();
    for (const d of p.data) if (!names.has(d.deviceProfileId)) names.set(d.deviceProfileId, (await devices.profileOf(d)).name);
    return page(p, (d) => deviceJson(d, names.get(d.deviceProfileId) ?? ''));
  };
  const deviceOut = async (d: Device) => deviceJson(d, (await devices.profileOf(d)).name);

  // ---- auth ----------------------------------------------------------------------------------
  api.post(
    '/auth/login',
    open(async (req, res) => {
      let body: { username: string; password: string };
      try {
        body = validateBody(schemas.login, req.body);
      } catch {
        throw unauthorized(); // ThingsBoard: a blank username or password is just "Authentication failed"
      }
      res.json(await accounts.login(body.username, body.password, clientAddress(req)));
    }),
  );
  api.post(
    '/auth/token',
    open(async (req, res) => {
      let body: { refreshToken: string };
      try {
        body = validateBody(schemas.refresh, req.body);
      } catch {
        throw unauthorized();
      }
      res.json(await accounts.refresh(body.refreshToken));
    }),
  );
  api.get(
    '/auth/user',
    authed(async (_req, res, who) => res.json(userJson(await accounts.user(who.userId))), ANY_AUTHORITY),
  );
  // Logout revokes every token of the user (ThingsBoard's TokenOutdatingService; issue 10, item 3).
  api.post(
    '/auth/logout',
    authed(async (_req, res, who) => {
      await accounts.logout(who.userId);
      res.status(200).end();
    }, ANY_AUTHORITY),
  );
  api.post(
    '/auth/changePassword',
    authed(async (req, res, who) => {
      const body = validateBody<{ currentPassword: string; newPassword: string }>(schemas.changePassword, req.body ?? {});
      res.json(await accounts.changePassword(who.userId, body.currentPassword, body.newPassword));
    }, ANY_AUTHORITY),
  );

  // ---- OTA packages ----------------------------------------------------------------------------
  api.post(
    '/otaPackage',
    authed(async (req, res, who) => {
      if (req.is('multipart/form-data')) return createWithData(req, res, who);
      const body = validateBody<Record<string, unknown>>(schemas.packageInfo, req.body ?? {});
      const pkg = await packages.saveInfo(who.tenantId, toPackageInput(body));
      res.json(packageInfoJson(pkg));
    }),
  );

  api.post(
    '/otaPackage/:id',
    authed(async (req, res, who) => {
      const hint = algorithmParam(req.query.checksumAlgorithm);
      if (!req.is('multipart/form-data')) throw invalid('Current request is not a multipart request');
      checkDeclaredSize(req);
      await packages.checkUploadable(who.tenantId, idParam(req));
      const upload = await receiveUpload(req, { algorithmHint: hint, stage: (s, a) => packages.stage(s, a), discard: (s) => packages.discard(s) }, deps.uploadIdleMs);
      if (!upload.file) throw invalid("Required request part 'file' is not present");
      let meta: UploadMeta;
      try {
        meta = {
          fileName: upload.file.fileName,
          contentType: upload.file.contentType,
          checksumAlgorithm: hint ?? algorithmParam(upload.fields.checksumAlgorithm),
          checksum: stringParam(req.query.checksum) ?? (upload.fields.checksum || null),
          signature: stringParam(req.query.signature) ?? (upload.fields.signature || null),
        };
      } catch (err) {
        await packages.discard(upload.file.staged); // e.g. an unknown algorithm named after the file
        throw err;
      }
      const pkg = await packages.attachData(who.tenantId, idParam(req), upload.file.staged, meta);
      res.json(packageInfoJson(pkg));
    }),
  );

  async function createWithData(req: Request, res: Response, who: Principal): Promise<void> {
    checkDeclaredSize(req);
    const hint = algorithmParam(req.query.checksumAlgorithm);
    const upload = await receiveUpload(req, { algorithmHint: hint, stage: (s, a) => packages.stage(s, a), discard: (s) => packages.discard(s) }, deps.uploadIdleMs);
    const f = upload.fields;
    const discard = async () => upload.file && (await packages.discard(upload.file.staged));
    try {
      if (!upload.file) throw invalid("Required request part 'file' is not present");
      const type = f.type?.toUpperCase();
      if (type !== undefined && !OTA_PACKAGE_TYPES.includes(type as OtaPackageType)) throw invalid(`Invalid OTA package type: ${f.type}`);
      const profileId = parseProfileField(f.deviceProfileId);
      const input: PackageInfoInput = {
        deviceProfileId: profileId,
        type: (type ?? null) as OtaPackageType | null,
        title: f.title ?? null,
        version: f.version ?? null,
        tag: f.tag || null,
        additionalInfo: f.description ? { description: f.description } : null,
      };
      const meta = {
        fileName: upload.file.fileName,
        contentType: upload.file.contentType,
        checksumAlgorithm: hint ?? algorithmParam(f.checksumAlgorithm),
        checksum: stringParam(req.query.checksum) ?? (f.checksum || null),
        signature: stringParam(req.query.signature) ?? (f.signature || null),
      };
      const pkg = await packages.createWithData(who.tenantId, input, upload.file.staged, meta);
      res.json(packageInfoJson(pkg));
    } catch (err) {
      await discard();
      throw err;
    }
  }

  function checkDeclaredSize(req: Request): void {
    const declared = Number(req.get('content-length') ?? NaN);
    if (declared > packages.limits.maxPackageSize + MULTIPART_OVERHEAD) throw tooLarge(packages.limits.maxPackageSize);
  }

  api.get(
    '/otaPackage/info/:id',
    authed(async (req, res, who) => res.json(packageInfoJson(await packages.get(who.tenantId, idParam(req), 'generic')))),
  );

  api.get(
    '/otaPackage/:id/download',
    authed(async (req, res, who) => {
      const pkg = await packages.get(who.tenantId, idParam(req));
      if (pkg.url || pkg.blobSha256 === null) {
        res.status(400).end(); // ThingsBoard: `ResponseEntity.badRequest().build()`, an empty body
        return;
      }
      // Always the bytes, whatever `Accept` says (ThingsBoard's REST clients send application/json).
      const fileName = pkg.fileName ?? `${pkg.title}-${pkg.version}`;
      res.status(200);
      res.setHeader('Content-Type', pkg.contentType || 'application/octet-stream');
      res.setHeader('Content-Length', String(pkg.dataSize ?? 0));
      res.setHeader('Content-Disposition', `attachment;filename=${headerSafe(fileName)}`);
      res.setHeader('x-filename', headerSafe(fileName));
      await pipeline(packages.openData(pkg), res);
    }),
  );

  api.get(
    '/otaPackage/:id',
    authed(async (req, res, who) => {
      const pkg = await packages.get(who.tenantId, idParam(req));
      const info = JSON.stringify(packageInfoJson(pkg));
      res.status(200).type('application/json');
      if (pkg.blobSha256 === null) {
        res.end(`${info.slice(0, -1)},"data":null}`);
        return;
      }
      // Base64 of a package up to 2 GB, streamed: never the whole package in memory.
      res.write(`${info.slice(0, -1)},"data":"`);
      await pipeline(packages.openData(pkg), base64Encoder(), res, { end: false });
      res.end('"}');
    }),
  );

  api.get(
    '/otaPackages/:deviceProfileId/:type',
    authed(async (req, res, who) => {
      const type = param(req, 'type');
      if (!OTA_PACKAGE_TYPES.includes(type as OtaPackageType)) {
        throw invalid(`No enum constant org.thingsboard.server.common.data.ota.OtaPackageType.${type}`);
      }
      const profileId = idParam(req, 'deviceProfileId');
      const link = parsePageLink(req.query, PACKAGE_SORT);
      const result = await packages.pageForProfile(who.tenantId, profileId as DeviceProfileId, type as OtaPackageType, link);
      res.json(page(result, packageInfoJson));
    }),
  );

  api.get(
    '/otaPackages',
    authed(async (req, res, who) => res.json(page(await packages.page(who.tenantId, parsePageLink(req.query, PACKAGE_SORT)), packageInfoJson))),
  );

  api.delete(
    '/otaPackage/:id',
    authed(async (req, res, who) => {
      await packages.delete(who.tenantId, idParam(req));
      res.status(200).end();
    }),
  );

  // ---- device profiles -------------------------------------------------------------------------
  api.post(
    '/deviceProfile',
    authed(async (req, res, who) => {
      const body = validateBody<DeviceProfileInput>(schemas.deviceProfile, req.body ?? {});
      res.json(deviceProfileJson(await profiles.save(who.tenantId, body, { forceDowngrade: forceDowngrade(req) })));
    }),
  );
  api.post(
    '/deviceProfile/:id/default',
    authed(async (req, res, who) => res.json(deviceProfileJson(await profiles.setDefault(who.tenantId, idParam(req))))),
  );
  api.post(
    '/deviceProfile/:id',
    authed(async (req, res, who) => {
      const body = validateBody<DeviceProfileInput>(schemas.deviceProfile, req.body ?? {});
      res.json(deviceProfileJson(await profiles.save(who.tenantId, body, { mergeInto: idParam(req), forceDowngrade: forceDowngrade(req) })));
    }),
  );
  api.get(
    '/deviceProfile/:id',
    authed(async (req, res, who) => res.json(deviceProfileJson(await profiles.get(who.tenantId, idParam(req))))),
  );
  api.get(
    '/deviceProfiles',
    authed(async (req, res, who) => res.json(page(await profiles.page(who.tenantId, parsePageLink(req.query, PROFILE_SORT)), deviceProfileJson))),
  );
  api.delete(
    '/deviceProfile/:id',
    authed(async (req, res, who) => {
      await profiles.delete(who.tenantId, idParam(req));
      res.status(200).end();
    }),
  );

  // ---- devices ---------------------------------------------------------------------------------
  api.post(
    '/device/credentials',
    authed(async (req, res, who) => {
      const body = validateBody<CredentialsInput & { deviceId: { id: string } }>(schemas.deviceCredentials, req.body ?? {});
      res.json(deviceCredentialsJson(await devices.updateCredentials(who.tenantId, body.deviceId.id, body)));
    }),
  );
  api.post(
    '/device-with-credentials',
    authed(async (req, res, who) => {
      const body = validateBody<{ device: DeviceInput; credentials: CredentialsInput }>(schemas.deviceWithCredentials, req.body ?? {});
      const device = validateBody<DeviceInput>(schemas.device, body.device);
      res.json(await deviceOut(await devices.saveWithCredentials(who.tenantId, device, validateBody<CredentialsInput>(schemas.credentials, body.credentials))));
    }),
  );
  api.post(
    '/device',
    authed(async (req, res, who) => {
      const body = validateBody<DeviceInput>(schemas.device, req.body ?? {});
      const accessToken = stringParam(req.query.accessToken) ?? undefined;
      res.json(await deviceOut(await devices.save(who.tenantId, body, { accessToken, forceDowngrade: forceDowngrade(req) })));
    }),
  );
  api.post(
    '/device/:id',
    authed(async (req, res, who) => {
      const body = validateBody<DeviceInput>(schemas.device, req.body ?? {});
      res.json(await deviceOut(await devices.save(who.tenantId, body, { mergeInto: idParam(req), forceDowngrade: forceDowngrade(req) })));
    }),
  );
  api.get(
    '/device/:id/credentials',
    authed(async (req, res, who) => res.json(deviceCredentialsJson(await devices.get(who.tenantId, idParam(req))))),
  );
  api.get(
    '/device/:id',
    authed(async (req, res, who) => res.json(await deviceOut(await devices.get(who.tenantId, idParam(req))))),
  );
  api.get(
    '/tenant/devices',
    authed(async (req, res, who) => {
      // `?deviceName=` returns the one device of that name, as ThingsBoard does.
      const byName = stringParam(req.query.deviceName);
      if (byName !== null) {
        const d = await devices.findByName(who.tenantId, byName);
        if (!d) throw new OtaError(404, "Requested item wasn't found!", 32);
        return res.json(await deviceOut(d));
      }
      const link = parsePageLink(req.query, DEVICE_SORT);
      const type = stringParam(req.query.type);
      let deviceProfileId: DeviceProfileId | undefined;
      if (type) {
        const profile = await profiles.findByName(who.tenantId, type);
        if (!profile) return res.json({ data: [], totalPages: 0, totalElements: 0, hasNext: false });
        deviceProfileId = profile.id;
      }
      res.json(await devicePage(await devices.page(who.tenantId, link, { deviceProfileId })));
    }),
  );
  api.delete(
    '/device/:id',
    authed(async (req, res, who) => {
      await devices.delete(who.tenantId, idParam(req));
      res.status(200).end();
    }),
  );

  api.use((_req: Request, _res: Response, next: NextFunction) => next(new OtaError(404, 'Not found', 32)));
  api.use(errorHandler);
  return api;
}

/** Every failure as ThingsBoard's error JSON; an upload cut short closes the connection. */
export function errorHandler(err: unknown, req: Request, res: Response, _next: NextFunction): void {
  let error: OtaError;
  if (err instanceof OtaError) error = err;
  else if (isBodyParserError(err)) error = err.type === 'entity.too.large' ? new OtaError(413, 'Request body is too large', 31) : invalid('Invalid request body: malformed JSON');
  // A body that fails to inflate (`Content-Encoding: gzip` over bytes that are not) is the client's fault.
  // A client's fault a library found: a body that does not inflate (400), a Range the dashboard's
  // static files cannot serve (416).
  else if (isClientHttpError(err)) error = new OtaError(err.status, err.status === 400 ? `Invalid request body: ${err.message}` : err.message, ErrorCode.BAD_REQUEST_PARAMS);
  else if (isStorageFull(err)) error = storageFull();
  else error = new OtaError(500, 'Internal server error', 2);
  if (error.status >= 500) console.error('[ota] request failed', req.method, req.originalUrl, error.status === 507 ? (err as Error).message : err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // A body we did not read (an early 4xx on an upload) must not be parsed as the next request.
  if (!req.complete) res.setHeader('Connection', 'close');
  // A handler may have set another type before it failed (static files: text/html).
  res.type('application/json').status(error.status).json(error.toJSON());
}

/** An error a library marked as the client's (http-errors' `expose` with a 4xx status). */
function isClientHttpError(err: unknown): err is { message: string; status: number } {
  if (typeof err !== 'object' || err === null) return false;
  const { status, expose } = err as { status?: unknown; expose?: unknown };
  return expose === true && typeof status === 'number' && status >= 400 && status < 500;
}

function isBodyParserError(err: unknown): err is { type: string } {
  return typeof err === 'object' && err !== null && typeof (err as { type?: unknown }).type === 'string' && 'statusCode' in err;
}

/** The peer's address, for login throttling: the socket's, never a header a client can set. */
function clientAddress(req: Request): string {
  return req.socket.remoteAddress ?? '';
}

function param(req: Request, name: string): string {
  return String(req.params[name]);
}

/** A path id as ThingsBoard's `toUUID` reads it: not a UUID is 400 "Invalid UUID string: ...". */
function idParam(req: Request, name = 'id'): string {
  const value = param(req, name);
  if (!isUuid(value)) throw invalid(`Invalid UUID string: ${value}`);
  return value;
}

/** `?forceDowngrade=true` on a profile or device save (issue 14, downgrade protection). */
const forceDowngrade = (req: Request): boolean => req.query.forceDowngrade === 'true';

function stringParam(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/** ThingsBoard: `ChecksumAlgorithm.valueOf(name.toUpperCase())`; absent is null (SHA256 is used). */
function algorithmParam(v: unknown): ChecksumAlgorithm | null {
  const name = stringParam(v);
  if (name === null) return null;
  const alg = parseChecksumAlgorithm(name);
  if (!alg) throw invalid(`No enum constant org.thingsboard.server.common.data.ota.ChecksumAlgorithm.${name.toUpperCase()}`);
  return alg;
}

/** A profile id as a multipart field: the bare UUID, or the `{"id": ...}` JSON a script may send. */
function parseProfileField(v: string | undefined): string | null {
  if (!v) return null;
  if (isUuid(v)) return v;
  try {
    const parsed = JSON.parse(v) as { id?: unknown };
    if (isUuid(parsed.id)) return parsed.id;
  } catch {
    /* fall through */
  }
  throw invalid(`Invalid UUID string: ${v}`);
}

function headerSafe(name: string): string {
  return name.replace(/[^\x20-\x7e]|["\\]/g, '_');
}

function base64Encoder(): Transform {
  let carry = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      const whole = data.length - (data.length % 3);
      carry = Buffer.from(data.subarray(whole));
      cb(null, data.subarray(0, whole).toString('base64'));
    },
    flush(cb) {
      cb(null, carry.toString('base64'));
    },
  });
}

type Ref = { id: string } | null | undefined;

function toPackageInput(b: Record<string, unknown>): PackageInfoInput {
  const id = (b.id as Ref)?.id;
  return {
    ...(id ? { id } : {}),
    deviceProfileId: (b.deviceProfileId as Ref)?.id ?? null,
    type: (b.type as OtaPackageType | null | undefined) ?? null,
    title: (b.title as string | null | undefined) ?? null,
    version: (b.version as string | null | undefined) ?? null,
    tag: (b.tag as string | null | undefined) ?? null,
    url: (b.url as string | null | undefined) ?? null,
    usesUrl: (b.usesUrl as boolean | null | undefined) ?? undefined,
    fileName: (b.fileName as string | null | undefined) ?? null,
    contentType: (b.contentType as string | null | undefined) ?? null,
    checksumAlgorithm: (b.checksumAlgorithm as ChecksumAlgorithm | null | undefined) ?? null,
    checksum: (b.checksum as string | null | undefined) ?? null,
    dataSize: (b.dataSize as number | null | undefined) ?? null,
    additionalInfo: (b.additionalInfo as Record<string, unknown> | null | undefined) ?? null,
    externalId: (b.externalId as Ref)?.id ?? null,
  };
}
