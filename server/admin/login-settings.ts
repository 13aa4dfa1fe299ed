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

/**
 * `OTA_USER_ACTIVATION_TOKEN_TTL_HOURS` and `OTA_USER_PASSWORD_RESET_TOKEN_TTL_HOURS` (ThingsBoard's
 * userActivationTokenTtl and passwordResetTokenTtl, hours): how long those links work.
 */
export function userTokenTtlsFromEnv(env: NodeJS.ProcessEnv): { activationTokenTtlMs?: number; passwordResetTokenTtlMs?: number } {
  const hours = (name: string): number | undefined => {
    const raw = env[name]?.trim();
    if (!raw) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not '${raw}'`);
    return n * 3600_000;
  };
  const activation = hours('OTA_USER_ACTIVATION_TOKEN_TTL_HOURS');
  const reset = hours('OTA_USER_PASSWORD_RESET_TOKEN_TTL_HOURS');
  return { ...(activation ? { activationTokenTtlMs: activation } : {}), ...(reset ? { passwordResetTokenTtlMs: reset } : {}) };
}
