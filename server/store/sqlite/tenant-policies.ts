import type { Db } from './database';
import type { TenantId } from '../../ids';
import { DEFAULT_POLICY, type TenantPolicy, type TenantPolicyRepository } from '../tenant-policies';

export class SqliteTenantPolicyRepository implements TenantPolicyRepository {
  constructor(private readonly db: Db) {}

  async get(tenantId: TenantId): Promise<TenantPolicy> {
    const r = this.db.prepare('SELECT require_signed_packages FROM tenant_policies WHERE tenant_id = ?').get(tenantId) as { require_signed_packages: number } | undefined;
    return r ? { requireSignedPackages: r.require_signed_packages === 1 } : { ...DEFAULT_POLICY };
  }

  async save(tenantId: TenantId, policy: TenantPolicy): Promise<void> {
    this.db.prepare('INSERT OR REPLACE INTO tenant_policies (tenant_id, require_signed_packages) VALUES (?, ?)').run(tenantId, policy.requireSignedPackages ? 1 : 0);
  }
}
