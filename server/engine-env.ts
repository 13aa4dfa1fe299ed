import { loginLimitsFromEnv, userTokenTtlsFromEnv } from './admin/login-settings';
import { dashboardSettingsFromEnv, type DashboardSettings } from './fleet/dashboard';
import { downloadFlushMsFromEnv, maxTrackedDownloadsFromEnv } from './fleet/download-progress';
import { httpLimitsFromEnv, type HttpServerLimits } from './http-server-limits';
import { queueLeaseFromEnv } from './pipeline/notify-queue';
import { rolloutTickFromEnv } from './rollouts/rollout-driver';
import { poolSizeFromEnv } from './store/postgres/pool';
import { defaultTenantLimitsFromEnv, type TenantLimits } from './tenant-limits';
import { lookupCacheLimitsFromEnv, type LookupCacheLimits } from './transports/device-lookups';
import { httpPageCacheBytesFromEnv } from './transports/http/device-api';
import { readAheadBytesFromEnv } from './transports/mqtt/chunk-read-ahead';

/** What the engine takes from `OTA_*` variables, each parsed by its own part. */
export interface EngineEnv {
  httpLimits: HttpServerLimits;
  maxTrackedDownloads: number;
  downloadFlushMs: number;
  login: ReturnType<typeof loginLimitsFromEnv>;
  userTokenTtls: ReturnType<typeof userTokenTtlsFromEnv>;
  tenantLimits: TenantLimits;
  queueLeaseMs: number;
  lookupCache: LookupCacheLimits;
  httpPageCacheBytes: number;
  rolloutTickMs: number;
  dashboard: DashboardSettings;
}

/**
 * Every `OTA_*` variable the engine and its transports read, in one list, parsed before the store
 * is opened: a bad value stops start-up with a message naming it, before any file or account is
 * created. Each parser stays beside what it configures.
 */
export function engineEnvFrom(env: NodeJS.ProcessEnv): EngineEnv {
  // Checked only: the MQTT endpoint and the PostgreSQL pool read these again when they start.
  readAheadBytesFromEnv(env);
  poolSizeFromEnv(env);
  return {
    httpLimits: httpLimitsFromEnv(env),
    maxTrackedDownloads: maxTrackedDownloadsFromEnv(env),
    downloadFlushMs: downloadFlushMsFromEnv(env),
    login: loginLimitsFromEnv(env),
    userTokenTtls: userTokenTtlsFromEnv(env),
    tenantLimits: defaultTenantLimitsFromEnv(env),
    queueLeaseMs: queueLeaseFromEnv(env),
    lookupCache: lookupCacheLimitsFromEnv(env),
    httpPageCacheBytes: httpPageCacheBytesFromEnv(env),
    rolloutTickMs: rolloutTickFromEnv(env),
    dashboard: dashboardSettingsFromEnv(env),
  };
}
