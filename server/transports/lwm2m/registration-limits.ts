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
