import express, { type Router } from 'express';
import type { AccountService } from './accounts';
import { authedBy } from './authenticate';
import { errorHandler } from './admin-api';
import { validateBody } from './schemas';
import type { PackageSigning } from '../packages/package-signing';
import type { TenantPolicy, TenantPolicyRepository } from '../store/tenant-policies';

const signingKeySchema = {
  type: 'object',
  properties: { privateKey: { type: 'string', minLength: 1 }, publicKey: { type: 'string', minLength: 1 } },
  oneOf: [{ required: ['privateKey'] }, { required: ['publicKey'] }],
};
const policySchema = {
  type: 'object',
  properties: { requireSignedPackages: { type: 'boolean' } },
  required: ['requireSignedPackages'],
  additionalProperties: false,
};

/**
 * Beyond ThingsBoard (issue 14, "Signed packages"): the tenant's package signing key and policy.
 * `GET /api/ota/signingKey` -> `{algorithm, publicKey}` (generated on first need; the private key
 * never leaves the server); `POST /api/ota/signingKey` `{"privateKey": PEM}` or `{"publicKey": PEM}`
 * imports one; `GET|POST /api/ota/policy` `{"requireSignedPackages": boolean}`.
 */
export function createSigningApi(deps: { accounts: AccountService; signing: PackageSigning; policies: TenantPolicyRepository }): Router {
  const api = express.Router();
  api.use('/ota', express.json({ limit: '64kb' }));
  const authed = authedBy(deps.accounts);

  api.get(
    '/ota/signingKey',
    authed(async (_req, res, who) => res.json(await deps.signing.publicKeyOf(who.tenantId))),
  );
  api.post(
    '/ota/signingKey',
    authed(async (req, res, who) => {
      const body = validateBody<{ privateKey?: string; publicKey?: string }>(signingKeySchema, req.body ?? {});
      res.json(await deps.signing.importKey(who.tenantId, (body.privateKey ?? body.publicKey) as string));
    }),
  );
  api.get(
    '/ota/policy',
    authed(async (_req, res, who) => res.json(await deps.policies.get(who.tenantId))),
  );
  api.post(
    '/ota/policy',
    authed(async (req, res, who) => {
      const policy = validateBody<TenantPolicy>(policySchema, req.body ?? {});
      await deps.policies.save(who.tenantId, { requireSignedPackages: policy.requireSignedPackages });
      res.json(await deps.policies.get(who.tenantId));
    }),
  );
  api.use('/ota', errorHandler);
  return api;
}
