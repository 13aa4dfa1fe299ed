import { formatPath, Lwm2mPathError, parsePath } from './paths';

/** fwUpdateStrategy (reference §6): 1 = write the package to /5/0/0, 2 = write a URI to /5/0/1, 3 = Object 19. */
export type FirmwareStrategy = 1 | 2 | 3;
/** swUpdateStrategy: 1 = write the package to /9/0/2, 2 = write a URI to /9/0/3. */
export type SoftwareStrategy = 1 | 2;

/** What an LWM2M device profile says about OTA, with ThingsBoard's defaults filled in. */
export interface Lwm2mProfileSettings {
  fwUpdateStrategy: FirmwareStrategy;
  swUpdateStrategy: SoftwareStrategy;
  /** Base URL the pull URI is built on: `<fwUpdateResource>/tbfw/<packageId>`. */
  fwUpdateResource: string;
  swUpdateResource: string;
  /** `observeAttr.observe`, as plain paths ("/3/0/9"; ThingsBoard writes "/3_1.2/0/9"). */
  observe: string[];
}

/** ThingsBoard's UI defaults for a new LwM2M profile (binary strategies; its own CoAP URL as the resource). */
export const LWM2M_PROFILE_DEFAULTS: Readonly<Lwm2mProfileSettings> = {
  fwUpdateStrategy: 1,
  swUpdateStrategy: 1,
  fwUpdateResource: 'coap://localhost:5685',
  swUpdateResource: 'coap://localhost:5685',
  observe: [],
};

export class ProfileSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProfileSettingsError';
  }
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);

/** Whether a profile (its stored ThingsBoard fields) is an LwM2M profile. */
export const isLwm2mProfile = (extra: Json): boolean => extra.transportType === 'LWM2M';

/**
 * The OTA settings of a device profile's `profileData.transportConfiguration.clientLwM2mSettings`
 * and `observeAttr.observe`, ThingsBoard's defaults for what is absent. `resource` replaces the
 * default resource URL (the endpoint knows the address devices reach it at). A present but wrong
 * value is a ProfileSettingsError saying which.
 */
export function lwm2mProfileSettings(extra: Json, resource: string = LWM2M_PROFILE_DEFAULTS.fwUpdateResource): Lwm2mProfileSettings {
  const transport = obj(obj(extra.profileData)?.transportConfiguration) ?? {};
  const client = obj(transport.clientLwM2mSettings) ?? {};
  const fwUpdateStrategy = strategy(client.fwUpdateStrategy, 'fwUpdateStrategy', [1, 2, 3], LWM2M_PROFILE_DEFAULTS.fwUpdateStrategy) as FirmwareStrategy;
  const swUpdateStrategy = strategy(client.swUpdateStrategy, 'swUpdateStrategy', [1, 2], LWM2M_PROFILE_DEFAULTS.swUpdateStrategy) as SoftwareStrategy;
  return {
    fwUpdateStrategy,
    swUpdateStrategy,
    fwUpdateResource: url(client.fwUpdateResource, 'fwUpdateResource') ?? resource,
    swUpdateResource: url(client.swUpdateResource, 'swUpdateResource') ?? resource,
    observe: observePaths(obj(transport.observeAttr)?.observe),
  };
}

function strategy(v: unknown, name: string, allowed: number[], fallback: number): number {
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !allowed.includes(n)) throw new ProfileSettingsError(`clientLwM2mSettings.${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return n;
}

function url(v: unknown, name: string): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string' || !/^(coaps?|https?):\/\/[^\s/]+/.test(v))
    throw new ProfileSettingsError(`clientLwM2mSettings.${name} must be a coap://, coaps://, http:// or https:// URL, got ${JSON.stringify(v)}`);
  return v.replace(/\/+$/, '');
}

function observePaths(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProfileSettingsError('observeAttr.observe must be a list of paths');
  return v.map((p) => {
    if (typeof p !== 'string') throw new ProfileSettingsError(`observeAttr.observe holds ${JSON.stringify(p)}, not a path`);
    // ThingsBoard versions the Object id: "/5_1.0/0/3".
    const plain = p.replace(/^\/([0-9]+)_[0-9]+\.[0-9]+(?=\/|$)/, '/$1');
    try {
      return formatPath(parsePath(plain));
    } catch (err) {
      if (err instanceof Lwm2mPathError) throw new ProfileSettingsError(`observeAttr.observe: ${err.message}`);
      throw err;
    }
  });
}
