/**
 * What a client can make the LwM2M endpoint hold, each with a default and an environment variable.
 */
export interface RegistrationLimits {
  /** Registrations held at once; a Register beyond it is refused (4.03). `OTA_LWM2M_MAX_REGISTRATIONS`. */
  maxRegistrations: number;
  /** Links (Objects and Instances) in one registration payload. `OTA_LWM2M_MAX_OBJECT_LINKS`. */
  maxObjectLinks: number;
  /** Shortest and longest `lt=` accepted, in seconds. `OTA_LWM2M_MIN_LIFETIME_S`, `OTA_LWM2M_MAX_LIFETIME_S`. */
  minLifetimeS: number;
  maxLifetimeS: number;
}

export const REGISTRATION_DEFAULTS: Readonly<RegistrationLimits> = {
  maxRegistrations: 50_000,
  maxObjectLinks: 512,
  minLifetimeS: 10,
  // LwM2M 1.1 §E.2 (Server Object, Lifetime) has no upper bound; a month keeps a silent client's
  // registration from outliving any reasonable maintenance window.
  maxLifetimeS: 30 * 24 * 3600,
};

const ENV: Record<keyof RegistrationLimits, string> = {
  maxRegistrations: 'OTA_LWM2M_MAX_REGISTRATIONS',
  maxObjectLinks: 'OTA_LWM2M_MAX_OBJECT_LINKS',
  minLifetimeS: 'OTA_LWM2M_MIN_LIFETIME_S',
  maxLifetimeS: 'OTA_LWM2M_MAX_LIFETIME_S',
};

/** The defaults, overridden by the environment; a value that is not a positive integer is an error. */
export function registrationLimitsFromEnv(env: Record<string, string | undefined>): RegistrationLimits {
  const out: RegistrationLimits = { ...REGISTRATION_DEFAULTS };
  for (const key of Object.keys(ENV) as (keyof RegistrationLimits)[]) {
    const raw = env[ENV[key]];
    if (raw === undefined || raw === '') continue;
    if (!/^[1-9][0-9]*$/.test(raw)) throw new Error(`${ENV[key]} must be a positive integer, got "${raw}"`);
    out[key] = Number(raw);
  }
  if (out.minLifetimeS > out.maxLifetimeS) throw new Error(`${ENV.minLifetimeS} (${out.minLifetimeS}) is above ${ENV.maxLifetimeS} (${out.maxLifetimeS})`);
  return out;
}
