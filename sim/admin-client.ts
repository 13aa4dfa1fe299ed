/**
 * The admin side of a simulation, through ThingsBoard's REST API only (reference §7): log in,
 * find or create the profile, the devices and the package, assign, read the fleet metrics; and
 * the one device request a run makes itself, self-provisioning.
 */
import { randomBytes } from 'node:crypto';

export interface EntityRef {
  id: string;
  entityType?: string;
}

export interface PackageInfo {
  id: EntityRef;
  title: string;
  version: string;
  type: string;
  deviceProfileId: EntityRef | null;
  hasData: boolean;
  dataSize: number | null;
  checksumAlgorithm: string | null;
  checksum: string | null;
}

export interface ProfileInfo {
  id: EntityRef;
  name: string;
  firmwareId: EntityRef | null;
}

export interface DeviceInfo {
  id: EntityRef;
  name: string;
  deviceProfileId: EntityRef;
}

interface Page<T> {
  data: T[];
  totalElements: number;
  hasNext: boolean;
}

/** Per package and type, as the server's state tracker counts them (GET /api/ota/metrics). */
export interface PackageMetrics {
  packageId: string;
  title: string;
  version: string;
  type: string;
  targeted: number;
  pending: number;
  inProgress: number;
  updated: number;
  failed: number;
  onTarget: number;
  coverage: number;
}

export interface FleetMetrics {
  packages: PackageMetrics[];
  queue: { depth: number; paused: boolean };
  notifications: { sent: number; dropped: number };
}

export interface Endpoint {
  transport: string;
  host: string;
  port: number;
}

/** A ThingsBoard error answer, with its status and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class AdminClient {
  private constructor(
    readonly base: string,
    private readonly token: string,
  ) {}

  static async login(base: string, username: string, password: string): Promise<AdminClient> {
    const res = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }) });
    const body = await answer<{ token: string }>(res, 'POST /api/auth/login');
    return new AdminClient(base, body.token);
  }

  /** The header that authenticates a request of one's own (e.g. a benchmark's). */
  get authorization(): Record<string, string> {
    return { 'X-Authorization': `Bearer ${this.token}` };
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}/api${path}`, {
      method,
      headers: { 'X-Authorization': `Bearer ${this.token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return answer<T>(res, `${method} /api${path}`);
  }

  async findOrCreateProfile(name: string): Promise<ProfileInfo> {
    const page = await this.request<Page<ProfileInfo>>('GET', `/deviceProfiles?pageSize=100&page=0&textSearch=${encodeURIComponent(name)}`);
    return page.data.find((p) => p.name === name) ?? this.request<ProfileInfo>('POST', '/deviceProfile', { name, description: 'Created by ota-simulate' });
  }

  /** Devices of the profile whose name starts with `prefix`, by name. */
  async devicesOf(profile: ProfileInfo, prefix: string): Promise<Map<string, DeviceInfo>> {
    const found = new Map<string, DeviceInfo>();
    for (let page = 0; ; page++) {
      const p = await this.request<Page<DeviceInfo>>(
        'GET',
        `/tenant/devices?pageSize=1000&page=${page}&type=${encodeURIComponent(profile.name)}&textSearch=${encodeURIComponent(prefix)}`,
      );
      for (const d of p.data) if (d.name.startsWith(prefix)) found.set(d.name, d);
      if (!p.hasNext) return found;
    }
  }

  /** The device `name` in the profile: found by name (moved into the profile if elsewhere), else created. */
  async ensureDevice(name: string, profile: ProfileInfo, known?: DeviceInfo): Promise<DeviceInfo> {
    const ref = { entityType: 'DEVICE_PROFILE', id: profile.id.id };
    const existing =
      known ??
      (await this.request<DeviceInfo>('GET', `/tenant/devices?deviceName=${encodeURIComponent(name)}`).catch((err: unknown) =>
        err instanceof ApiError && err.status === 404 ? null : Promise.reject(err),
      ));
    if (!existing) return this.request<DeviceInfo>('POST', '/device', { name, deviceProfileId: ref });
    if (existing.deviceProfileId.id === profile.id.id) return existing;
    return this.request<DeviceInfo>('POST', `/device/${existing.id.id}`, { deviceProfileId: ref });
  }

  /** Gives a device MQTT basic credentials (`POST /api/device/credentials`), replacing its token. */
  async setBasicCredentials(device: DeviceInfo, value: { clientId: string; userName: string; password: string }): Promise<void> {
    const current = await this.request<Record<string, unknown>>('GET', `/device/${device.id.id}/credentials`);
    await this.request('POST', '/device/credentials', { ...current, credentialsType: 'MQTT_BASIC', credentialsValue: JSON.stringify(value) });
  }

  /** Gives a device its X.509 certificate as credentials (`X509_CERTIFICATE`, the PEM), replacing its token. */
  async setX509Credentials(device: DeviceInfo, pem: string): Promise<void> {
    const current = await this.request<Record<string, unknown>>('GET', `/device/${device.id.id}/credentials`);
    await this.request('POST', '/device/credentials', { ...current, credentialsType: 'X509_CERTIFICATE', credentialsValue: pem });
  }

  async accessToken(device: DeviceInfo): Promise<string> {
    return (await this.request<{ credentialsId: string }>('GET', `/device/${device.id.id}/credentials`)).credentialsId;
  }

  /** Gives the device LwM2M credentials (NoSec) with its name as the endpoint; answers the endpoint. */
  async lwm2mCredentials(device: DeviceInfo): Promise<string> {
    const endpoint = device.name;
    const credentialsValue = JSON.stringify({
      client: { endpoint, securityConfigClientMode: 'NO_SEC' },
      bootstrap: { bootstrapServer: { securityMode: 'NO_SEC' }, lwm2mServer: { securityMode: 'NO_SEC' } },
    });
    await this.request('POST', '/device/credentials', {
      deviceId: { entityType: 'DEVICE', id: device.id.id },
      credentialsType: 'LWM2M_CREDENTIALS',
      credentialsId: endpoint,
      credentialsValue,
    });
    return endpoint;
  }

  async findPackage(title: string, version: string): Promise<PackageInfo | null> {
    for (let page = 0; ; page++) {
      const p = await this.request<Page<PackageInfo>>('GET', `/otaPackages?pageSize=100&page=${page}&textSearch=${encodeURIComponent(title)}`);
      const hit = p.data.find((pkg) => pkg.title === title && pkg.version === version);
      if (hit) return hit;
      if (!p.hasNext) return null;
    }
  }

  createPackage(title: string, version: string, profile: ProfileInfo): Promise<PackageInfo> {
    return this.request<PackageInfo>('POST', '/otaPackage', {
      title,
      version,
      type: 'FIRMWARE',
      deviceProfileId: { entityType: 'DEVICE_PROFILE', id: profile.id.id },
      additionalInfo: { description: 'Uploaded by ota-simulate' },
    });
  }

  async upload(pkg: PackageInfo, bytes: Buffer, checksumAlgorithm: string): Promise<PackageInfo> {
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(bytes)], { type: 'application/octet-stream' }), `${pkg.title}-${pkg.version}.bin`);
    const res = await fetch(`${this.base}/api/otaPackage/${pkg.id.id}?checksumAlgorithm=${checksumAlgorithm}`, {
      method: 'POST',
      headers: { 'X-Authorization': `Bearer ${this.token}` },
      body: form,
    });
    return answer<PackageInfo>(res, 'POST /api/otaPackage/{id}');
  }

  /** Sets the profile's firmware: every device of it without a package of its own is queued. */
  /**
   * Lets devices create themselves in the profile (ThingsBoard's ALLOW_CREATE_NEW_DEVICES): a key
   * unique to the profile and a fresh secret, the rest of the profile data kept.
   */
  async enableProvisioning(profile: ProfileInfo): Promise<{ key: string; secret: string }> {
    const key = `ota-simulate-${profile.id.id}`;
    const secret = randomBytes(12).toString('base64url');
    const current = await this.request<{ profileData?: Record<string, unknown> | null }>('GET', `/deviceProfile/${profile.id.id}`);
    await this.request('POST', `/deviceProfile/${profile.id.id}`, {
      provisionType: 'ALLOW_CREATE_NEW_DEVICES',
      provisionDeviceKey: key,
      profileData: { ...(current.profileData ?? {}), provisionConfiguration: { type: 'ALLOW_CREATE_NEW_DEVICES', provisionDeviceSecret: secret } },
    });
    return { key, secret };
  }

  /** A device's own request (`POST /api/v1/provision`, no admin token): creates it with a generated token. */
  async provisionDevice(name: string, key: string, secret: string): Promise<void> {
    const res = await fetch(`${this.base}/api/v1/provision`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceName: name, provisionDeviceKey: key, provisionDeviceSecret: secret }),
    });
    const body = await answer<{ status?: string; errorMsg?: string }>(res, 'POST /api/v1/provision');
    if (body.status !== 'SUCCESS') throw new Error(`provisioning ${name}: ${body.status ?? res.status} ${body.errorMsg ?? ''}`.trim());
  }

  assignToProfile(profile: ProfileInfo, pkg: PackageInfo): Promise<ProfileInfo> {
    return this.request<ProfileInfo>('POST', `/deviceProfile/${profile.id.id}`, { firmwareId: { entityType: 'OTA_PACKAGE', id: pkg.id.id } });
  }

  profile(id: string): Promise<ProfileInfo> {
    return this.request<ProfileInfo>('GET', `/deviceProfile/${id}`);
  }

  package(id: string): Promise<PackageInfo> {
    return this.request<PackageInfo>('GET', `/otaPackage/info/${id}`);
  }

  /** The tenant's package signing key: `{algorithm, publicKey}` (PEM). */
  signingKey(): Promise<{ algorithm: string; publicKey: string }> {
    return this.request<{ algorithm: string; publicKey: string }>('GET', '/ota/signingKey');
  }

  metrics(): Promise<FleetMetrics> {
    return this.request<FleetMetrics>('GET', '/ota/metrics');
  }

  endpoints(): Promise<Endpoint[]> {
    return this.request<Endpoint[]>('GET', '/ota/endpoints');
  }
}

async function answer<T>(res: Response, what: string): Promise<T> {
  const text = await res.text();
  if (res.status >= 400) {
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // not ThingsBoard's error JSON: keep the text
    }
    throw new ApiError(res.status, `${what} answered ${res.status}: ${message || res.statusText}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}
