import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AccountService } from './accounts';
import { OtaError } from '../errors';

/** Node-RED's answer to wrong credentials (oauth2orize's TokenError for the password grant). */
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'Invalid resource owner credentials' };

/**
 * Mounted in front of the embedded Node-RED of `npm start` (never in a user's own Node-RED), so that
 * (issue 10, item 8):
 * - a stranger cannot lock the admin out: Node-RED refuses a username for 10 minutes after 5
 *   attempts from anyone, then answers 500 (editor-api auth/strategies.js). Here every password is
 *   checked first, throttled by address and user like the REST login; only a right one reaches
 *   Node-RED, which then forgets that user's attempts;
 * - no page of the editor can be framed (X-Frame-Options, CSP frame-ancestors);
 * - no other origin can read the admin API: Node-RED answers every request with
 *   `Access-Control-Allow-Origin: *` (editor-api/lib/index.js); the editor itself is same-origin.
 */
export function editorGuard(accounts: AccountService): Router {
  const guard = express.Router();
  guard.use((_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Content-Security-Policy', "frame-ancestors 'none'");
    const setHeader = res.setHeader.bind(res);
    res.setHeader = ((name: string, value: number | string | readonly string[]) =>
      name.toLowerCase().startsWith('access-control-') ? res : setHeader(name, value)) as Response['setHeader'];
    next();
  });
  // Parsed here as Node-RED parses it (body-parser skips a body already read).
  const body = [express.urlencoded({ extended: true, limit: '64kb' }), express.json({ limit: '64kb' })];
  guard.post('/auth/token', ...body, (req: Request, res: Response, next: NextFunction) => {
    const { grant_type: grant, username, password } = (req.body ?? {}) as Record<string, unknown>;
    if (grant !== 'password') return next();
    if (typeof username !== 'string' || typeof password !== 'string') return void res.status(403).json(INVALID_GRANT);
    accounts.checkPassword(username, password, req.socket.remoteAddress ?? '').then(
      // Another tenant's admin has a right password but no business in the operator's flows.
      (user) => (accounts.mayUseEditor(user) ? next() : void res.status(403).json(INVALID_GRANT)),
      (err: unknown) => {
        if (err instanceof OtaError && err.status === 429) return void res.status(429).json({ error: 'too_many_requests', error_description: err.message });
        if (err instanceof OtaError && err.status === 401) return void res.status(403).json(INVALID_GRANT);
        next(err);
      },
    );
  });
  return guard;
}
