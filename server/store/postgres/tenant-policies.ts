import { isUuid, type TenantId } from '../../ids';
import { DEFAULT_POLICY, type TenantPolicy, type TenantPolicyRepository } from '../tenant-policies';
import type { Sql } from './pool';

export class PgTenantPolicyRepository implements TenantPolicyRepository {
  constructor(private readonly sql: Sql) {}

  async get(tenantId: TenantId): Promise<TenantPolicy> {
    if (!isUuid(tenantId)) return { ...DEFAULT_POLICY };
    const r = (await this.sql.query<{ require_signed_packages: boolean }>('SELECT require_signed_packages FROM tenant_policies WHERE tenant_id = $1', [tenantId])).rows[0];
    return r ? { requireSignedPackages: r.require_signed_packages } : { ...DEFAULT_POLICY };
  }

  async save(tenantId: TenantId, policy: TenantPolicy): Promise<void> {
    await this.sql.query(
      `INSERT INTO tenant_policies (tenant_id, require_signed_packages) VALUES ($1, $2)
       ON CONFLICT (tenant_id) DO UPDATE SET require_signed_packages = $2`,
      [tenantId, policy.requireSignedPackages],
    );
  }
}
