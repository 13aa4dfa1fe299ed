import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import type { Principal } from './auth';
import { ANY_AUTHORITY, bearerPrincipal, SYS_ADMIN_ONLY } from './authenticate';
import type { TenantService } from './tenant-service';
import { errorHandler } from './admin-api';
import { parsePageLink, schemas, validateBody } from './schemas';
import { tenantJson, tenantProfileJson, userJson } from './wire';
import { forbidden, invalid } from '../errors';
import { isUuid, type TenantId } from '../ids';
import type { Authority } from '../store/tenants';
import type { PageData } from '../store/sqlite/database';

export interface TenantApiDeps {
  accounts: AccountService;
  tenants: TenantService;
}

type AuthedHandler = (req: Request, res: Response, who: Principal) => Promise<unknown>;

const TENANT_SORT = ['createdTime', 'title', 'name'];
const USER_SORT = ['createdTime', 'email', 'authority'];
const PROFILE_SORT = ['createdTime', 'name', 'description', 'isDefault'];

/**
 * ThingsBoard's TenantController, TenantProfileController, UserController and user activation
 * (AuthController): the system administrator manages tenants, their profiles and admins; a tenant
 * admin manages the users of its own tenant. Paths, shapes and refusals as ThingsBoard's.
 */
export function createTenantApi(deps: TenantApiDeps): Router {
  const { accounts, tenants } = deps;
  const api = express.Router();
  api.use(express.json({ limit: '1mb', type: ['application/json', 'application/*+json'] }));

  const authed =
    (allowed: readonly Authority[], h: AuthedHandler) =>
    (req: Request, res: Response, next: NextFunction): void =>
      void bearerPrincipal(req, accounts, allowed)
        .then((who) => h(req, res, who))
        .catch(next);
  const page = <T>(p: PageData<T>, map: (t: T) => unknown) => ({ ...p, data: p.data.map(map) });

  // ---- tenants ---------------------------------------------------------------------------------
  api.post(
    '/tenant',
    authed(SYS_ADMIN_ONLY, async (req, res) => {
      const body = validateBody<Record<string, unknown>>(schemas.tenant, req.body ?? {});
      res.json(tenantJson(await tenants.save(body)));
    }),
  );
  // A tenant admin may read its own tenant (ThingsBoard: `checkTenantId(READ)`).
  // `/tenant/devices` is the OTA API's (admin-api.ts).
  api.get('/tenant/devices', (_req: Request, _res: Response, next: NextFunction) => next('router'));
  api.get(
    '/tenant/:id',
    authed(ANY_AUTHORITY, async (req, res, who) => {
      const id = idParam(req, 'id');
      if (who.authority !== 'SYS_ADMIN' && id !== who.tenantId) throw forbidden();
      res.json(tenantJson(await tenants.get(id)));
    }),
  );
  api.get(
    '/tenants',
    authed(SYS_ADMIN_ONLY, async (req, res) => res.json(page(await tenants.page(parsePageLink(req.query, TENANT_SORT)), tenantJson))),
  );
  api.delete(
    '/tenant/:id',
    authed(SYS_ADMIN_ONLY, async (req, res) => {
      const id = idParam(req, 'id');
      await tenants.delete(id);
      accounts.forgetTenant(id as TenantId);
      res.status(200).end();
    }),
  );

  // ---- tenant profiles -------------------------------------------------------------------------
  api.post(
    '/tenantProfile',
    authed(SYS_ADMIN_ONLY, async (req, res) => {
      const body = req.body as unknown;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('Invalid request body');
      res.json(tenantProfileJson(await tenants.saveProfile(body as Record<string, unknown>)));
    }),
  );
  api.get(
    '/tenantProfile/:id',
    authed(SYS_ADMIN_ONLY, async (req, res) => res.json(tenantProfileJson(await tenants.getProfile(idParam(req, 'id'))))),
  );
  api.get(
    '/tenantProfiles',
    authed(SYS_ADMIN_ONLY, async (req, res) => res.json(page(await tenants.pageProfiles(parsePageLink(req.query, PROFILE_SORT)), tenantProfileJson))),
  );
  api.get(
    '/tenantProfileInfo/default',
    authed(SYS_ADMIN_ONLY, async (_req, res) => {
      const p = await tenants.defaultProfile();
      res.json({ id: { entityType: 'TENANT_PROFILE', id: p.id }, name: p.name });
    }),
  );

  // ---- users -----------------------------------------------------------------------------------
  // `sendActivationMail` is accepted and ignored: we send no mail; the activation link is the way.
  api.post(
    '/user',
    authed(ANY_AUTHORITY, async (req, res, who) => {
      const body = validateBody<Record<string, unknown>>(schemas.user, req.body ?? {});
      res.json(userJson(await accounts.saveUser(who, body)));
    }),
  );
  api.get(
    '/user/:id/activationLink',
    authed(ANY_AUTHORITY, async (req, res, who) => {
      const link = await accounts.activationLink(who, idParam(req, 'id'), baseUrl(req));
      res.status(200).type('text/plain').send(link.value);
    }),
  );
  // ThingsBoard's UserActivationLink: the link and the milliseconds it still works.
  api.get(
    '/user/:id/activationLinkInfo',
    authed(ANY_AUTHORITY, async (req, res, who) => {
      res.json(await accounts.activationLink(who, idParam(req, 'id'), baseUrl(req)));
    }),
  );
  // Beyond ThingsBoard (which mails it): the password reset link of a user the caller manages, as text.
  api.get(
    '/user/:id/passwordResetLink',
    authed(ANY_AUTHORITY, async (req, res, who) => {
      const link = await accounts.passwordResetLink(who, idParam(req, 'id'), baseUrl(req));
      res.status(200).type('text/plain').send(link);
    }),
  );
  api.get(
    '/user/:id',
    authed(ANY_AUTHORITY, async (req, res, who) => res.json(userJson(await accounts.reachableUser(who, idParam(req, 'id'))))),
  );
  api.delete(
    '/user/:id',
    authed(ANY_AUTHORITY, async (req, res, who) => {
      await accounts.deleteUser(who, idParam(req, 'id'));
      res.status(200).end();
    }),
  );
  api.get(
    '/tenant/:tenantId/users',
    authed(SYS_ADMIN_ONLY, async (req, res) => {
      const id = idParam(req, 'tenantId');
      await tenants.get(id);
      res.json(page(await accounts.pageUsers(id as TenantId, parsePageLink(req.query, USER_SORT)), userJson));
    }),
  );
  // A tenant admin's own tenant's users (ThingsBoard's `GET /api/users`).
  api.get(
    '/users',
    authed(['TENANT_ADMIN'], async (req, res, who) => res.json(page(await accounts.pageUsers(who.tenantId, parsePageLink(req.query, USER_SORT)), userJson))),
  );
  // The activation link itself (AuthController.checkActivateToken): 303 to the create-password page,
  // 303 to `/activationLinkExpired` when expired, 409 with no body when unknown.
  api.get('/noauth/activate', (req: Request, res: Response, next: NextFunction) => {
    const token = typeof req.query.activateToken === 'string' ? req.query.activateToken : '';
    accounts.checkActivateToken(token).then((to) => (to ? res.redirect(303, to.location) : res.status(409).end()), next);
  });
  api.post('/noauth/activate', (req: Request, res: Response, next: NextFunction) => {
    let body: { activateToken: string; password: string };
    try {
      body = validateBody(schemas.activate, req.body ?? {});
    } catch (err) {
      return next(err);
    }
    accounts.activate(body.activateToken, body.password).then((tokens) => res.json(tokens), next);
  });
  // Password reset as ThingsBoard's AuthController. ThingsBoard mails the link and answers 200
  // whatever the address (it tells no one which addresses exist); we send no mail, so nothing else
  // happens: an administrator hands over `GET /api/user/{id}/passwordResetLink`.
  api.post('/noauth/resetPasswordByEmail', (_req: Request, res: Response) => void res.status(200).end());
  api.get('/noauth/resetPassword', (req: Request, res: Response, next: NextFunction) => {
    const token = typeof req.query.resetToken === 'string' ? req.query.resetToken : '';
    accounts.checkResetToken(token).then((to) => (to ? res.redirect(303, to.location) : res.status(409).end()), next);
  });
  api.post('/noauth/resetPassword', (req: Request, res: Response, next: NextFunction) => {
    let body: { resetToken: string; password: string };
    try {
      body = validateBody(schemas.resetPassword, req.body ?? {});
    } catch (err) {
      return next(err);
    }
    accounts.resetPassword(body.resetToken, body.password).then((tokens) => res.json(tokens), next);
  });
  // Errors only: a path not answered here goes on to the OTA API's routes.
  api.use(errorHandler);
  return api;
}

/** A path id as ThingsBoard's `toUUID` reads it: not a UUID is 400 "Invalid UUID string: ...". */
function idParam(req: Request, name: string): string {
  const value = String(req.params[name]);
  if (!isUuid(value)) throw invalid(`Invalid UUID string: ${value}`);
  return value;
}

/** Where the caller reached us, as the links we hand out (activation, password reset) start. */
function baseUrl(req: Request): string {
  return `${req.protocol}://${req.get('host') ?? 'localhost'}`;
}
