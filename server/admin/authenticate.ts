import type { Request } from 'express';
import type { AccountService } from './accounts';
import type { Principal } from './auth';
import { unauthorized } from '../errors';

/** The admin principal of a request: ThingsBoard's `X-Authorization: Bearer`, or `Authorization: Bearer`. */
export async function bearerPrincipal(req: Request, accounts: AccountService): Promise<Principal> {
  const header = req.get('x-authorization') ?? req.get('authorization') ?? '';
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (!match) throw unauthorized();
  return accounts.authenticate(match[1] as string);
}
