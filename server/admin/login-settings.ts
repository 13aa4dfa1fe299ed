import type { LoginThrottleLimits } from './login-throttle';
import type { PasswordCheckLimits } from './password-checks';

const ENV: Record<keyof (LoginThrottleLimits & PasswordCheckLimits), string> = {
  maxFailuresPerAddress: 'OTA_LOGIN_MAX_FAILURES_PER_ADDRESS',
  maxFailuresPerUser: 'OTA_LOGIN_MAX_FAILURES_PER_USER',
  windowMs: 'OTA_LOGIN_WINDOW_MS',
  maxTracked: 'OTA_LOGIN_MAX_TRACKED',
  concurrency: 'OTA_LOGIN_CONCURRENCY',
  queue: 'OTA_LOGIN_QUEUE',
};

/** The login limits set in the environment (positive integers); the rest stay at their defaults. */
export function loginLimitsFromEnv(env: NodeJS.ProcessEnv): Partial<LoginThrottleLimits & PasswordCheckLimits> {
  const out: Partial<LoginThrottleLimits & PasswordCheckLimits> = {};
  for (const key of Object.keys(ENV) as Array<keyof typeof ENV>) {
    const raw = env[ENV[key]]?.trim();
    if (!raw) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${ENV[key]} must be a positive integer, not '${raw}'`);
    out[key] = n;
  }
  return out;
}

/** `OTA_USER_ACTIVATION_TOKEN_TTL_HOURS` (ThingsBoard's userActivationTokenTtl, hours): how long an activation link works. */
export function activationTokenTtlMsFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.OTA_USER_ACTIVATION_TOKEN_TTL_HOURS?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`OTA_USER_ACTIVATION_TOKEN_TTL_HOURS must be a positive integer, not '${raw}'`);
  return n * 3600_000;
}
