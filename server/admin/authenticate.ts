import type { NextFunction, Request, Response } from 'express';
import type { AccountService } from './accounts';
import type { Principal } from './auth';
import { forbidden, unauthorized } from '../errors';
import type { Authority } from '../store/tenants';

/** What a tenant's data is reached with: its admins' tokens, never the system administrator's. */
export const TENANT_ADMIN_ONLY: readonly Authority[] = ['TENANT_ADMIN'];
export const SYS_ADMIN_ONLY: readonly Authority[] = ['SYS_ADMIN'];
export const ANY_AUTHORITY: readonly Authority[] = ['SYS_ADMIN', 'TENANT_ADMIN'];

/**
 * The admin principal of a request: ThingsBoard's `X-Authorization: Bearer`, or `Authorization: Bearer`.
 * An authority the route does not allow gets ThingsBoard's 403 (its `@PreAuthorize` answer).
 */
export async function bearerPrincipal(req: Request, accounts: AccountService, allowed: readonly Authority[] = TENANT_ADMIN_ONLY): Promise<Principal> {
  const header = req.get('x-authorization') ?? req.get('authorization') ?? '';
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (!match) throw unauthorized();
  const principal = await accounts.authenticate(match[1] as string);
  if (!allowed.includes(principal.authority)) throw forbidden();
  return principal;
}

/** A route's work once the request's admin principal is known. */
export type AuthedHandler = (req: Request, res: Response, who: Principal) => Promise<unknown>;

/** Wraps handlers in `bearerPrincipal`: a refused token, or the handler's error, goes to `next`. */
export const authedBy =
  (accounts: AccountService, allowed: readonly Authority[] = TENANT_ADMIN_ONLY) =>
  (h: AuthedHandler) =>
  (req: Request, res: Response, next: NextFunction) =>
    bearerPrincipal(req, accounts, allowed)
      .then((who) => h(req, res, who))
      .catch(next);
