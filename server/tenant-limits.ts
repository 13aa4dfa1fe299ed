import type { TenantId } from './ids';

/**
 * The limits of ThingsBoard's tenant profile we enforce (DefaultTenantProfileConfiguration), 0 =
 * unlimited as there: how many devices a tenant may have, and how many bytes its OTA packages may
 * hold together.
 */
export interface TenantLimits {
  maxDevices: number;
  maxOtaPackagesInBytes: number;
}

/** The limits that apply to a tenant now (its tenant profile's). */
export type TenantLimitsOf = (tenantId: TenantId) => Promise<TenantLimits>;

export const UNLIMITED: TenantLimits = { maxDevices: 0, maxOtaPackagesInBytes: 0 };

/**
 * The limits the default tenant profile is created with: `OTA_TENANT_MAX_DEVICES` and
 * `OTA_TENANT_MAX_OTA_PACKAGES_BYTES` (0 or unset = unlimited).
 */
export function defaultTenantLimitsFromEnv(env: NodeJS.ProcessEnv): TenantLimits {
  const read = (name: string): number => {
    const raw = env[name]?.trim();
    if (!raw) return 0;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a whole number >= 0 (0 = unlimited), not '${raw}'`);
    return n;
  };
  return { maxDevices: read('OTA_TENANT_MAX_DEVICES'), maxOtaPackagesInBytes: read('OTA_TENANT_MAX_OTA_PACKAGES_BYTES') };
}
