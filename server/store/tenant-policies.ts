import type { TenantId } from '../ids';

/** What a tenant requires of its OTA packages and assignments. */
export interface TenantPolicy {
  /** Assigning a package without a signature is refused (issue 14, "Signed packages"). */
  requireSignedPackages: boolean;
}

export const DEFAULT_POLICY: TenantPolicy = { requireSignedPackages: false };

export interface TenantPolicyRepository {
  /** The tenant's policy, or the default one when it never saved any. */
  get(tenantId: TenantId): Promise<TenantPolicy>;
  save(tenantId: TenantId, policy: TenantPolicy): Promise<void>;
}
