import { createReadStream } from 'node:fs';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { DeviceId, OtaPackageId, TenantId } from '../../ids';
import type { DeviceRevocation, EngineEventMap } from '../../events';
import type { Notification } from '../../pipeline/notifier';
import { effectivePackageId } from '../../pipeline/notifier';
import { keyPrefix } from '../../pipeline/ota-keys';
import type { UplinkEvent } from '../../pipeline/uplink';
import { BlobReader } from '../../store/blob-reader';
import type { DeviceProfile } from '../../store/device-profiles';
import type { Device } from '../../store/devices';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../../store/ota-packages';
import type { TelemetryValue } from '../../store/telemetry';
import { realTimers, type Timers } from '../../timers';
import { CoapEndpoint, ENDPOINT_DEFAULTS } from '../coap/endpoint';
import { Code, reply, type CoapRequest, type Reply } from '../coap/messages';
import { PackagePages } from '../package-pages';
import type { DeviceContext } from '../device-context';
import { CoapDeviceClient } from './coap-device-client';
import type { OpaqueSource } from './device-client';
import { Lwm2mDeviceOta, type OtaUplink } from './device-ota';
import { PackageResource } from './package-resource';
import { lwm2mProfileSettings, LWM2M_PROFILE_DEFAULTS, type Lwm2mProfileSettings } from './profile-settings';
import { REGISTRATION_DEFAULTS, type RegistrationLimits } from './registration-limits';
import { credentialsChanged } from '../../devices/device-revocations';
import { followDeviceSnapshots, type SnapshotFollower } from '../device-snapshots';
import { RegistrationError, Registrations, type Registration, type RemovalReason } from './registrations';
import type { OtaTarget } from './update-decision';

export interface Lwm2mOptions extends Partial<RegistrationLimits> {
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Address to bind; an IPv6 address binds a udp6 socket. */
  host?: string;
  /**
   * Base URL devices pull packages from (`<url>/tbfw/<packageId>`) when their profile names none
   * (`fwUpdateResource`); default `coap://<bind address>:<port>`, 127.0.0.1 for a wildcard bind.
   */
  resourceUrl?: string;
  /** Largest package pushed (Write /5/0/0, held in memory while it is sent). `OTA_LWM2M_MAX_PUSH_BYTES`. */
  maxPushBytes?: number;
  /** How long a request to a device waits for its response once acknowledged. */
  requestTimeoutMs?: number;
  /** Transmission parameters of our confirmable requests [RFC 7252 §4.8]. */
  ackTimeoutMs?: number;
  maxRetransmit?: number;
}

export const LWM2M_DEFAULTS = {
  ...REGISTRATION_DEFAULTS,
  /** ThingsBoard's LWM2M_BIND_PORT (reference §6). */
  port: 5685,
  host: '0.0.0.0',
  /** Sixteen pushes of this size at once hold 128 MB; larger packages are pulled (strategy 2). */
  maxPushBytes: 8 * 1024 * 1024,
  /** MAX_TRANSMIT_WAIT [RFC 7252 §4.8.2]. */
  requestTimeoutMs: 93_000,
  ackTimeoutMs: ENDPOINT_DEFAULTS.ackTimeoutMs,
  maxRetransmit: ENDPOINT_DEFAULTS.maxRetransmit,
} as const;

/** A registration began or ended. */
export interface RegistrationEvent {
  event: 'registered' | 'updated' | RemovalReason;
  endpoint: string;
  deviceId: DeviceId;
  tenantId: TenantId;
  deviceName: string;
  registrationId: string;
  lwm2m: string;
  lifetimeS: number;
  ts: number;
}

export interface Lwm2mTransportEvents {
  /** fw_state/sw_state telemetry and download progress (also emitted on the engine's events). */
  uplink: [UplinkEvent];
  registration: [RegistrationEvent];
  /** An update state of a device changed (with ThingsBoard's transportLog line). */
  state: [OtaUplink & { tenantId: TenantId; deviceName: string }];
}

interface Known {
  device: Device;
  ota: Lwm2mDeviceOta;
  registrationId: string | null;
  client: CoapDeviceClient | null;
  /** Telemetry of this device is saved in order: DOWNLOADING before DOWNLOADED. */
  writes: Promise<void>;
  /**
   * Settles once the registration's reads and observations are done: a notification waits for it,
   * so that the update starts knowing the device's Delivery Method and current State.
   */
  ready: Promise<void>;
}

/**
 * The LwM2M server (reference §6) on the CoAP core: the Registration interface (LwM2M Core V1.1
 * §6.2) on `/rd`, the per-device OTA state machine (device-ota.ts) driven over the CoAP client
 * role, and the `tbfw`/`tbsw` resources devices pull packages from. States reach the pipeline as
 * `fw_state`/`sw_state` telemetry, as a device on another transport reports them.
 */
export class Lwm2mTransport extends EventEmitter<Lwm2mTransportEvents> {
  private readonly options: Required<Omit<Lwm2mOptions, 'resourceUrl'>> & { resourceUrl: string | undefined };
  private readonly endpoint: CoapEndpoint;
  private readonly registrations: Registrations;
  private readonly reader: BlobReader;
  private readonly pages: PackagePages;
  private readonly packages: PackageResource;
  /** Devices seen registering, by id: their OTA state outlives a registration (a reboot to apply). */
  private readonly known = new Map<DeviceId, Known>();
  private readonly byRegistration = new Map<string, DeviceId>();
  private unwatch: (() => void) | null = null;
  private follower: SnapshotFollower | null = null;
  private started = false;
  private stopping: Promise<void> | null = null;

  constructor(
    private readonly ctx: DeviceContext,
    options: Lwm2mOptions,
    private readonly timers: Timers = realTimers,
  ) {
    super();
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Lwm2mOptions;
    this.options = { ...LWM2M_DEFAULTS, resourceUrl: undefined, ...given };
    const { port, minLifetimeS, maxLifetimeS } = this.options;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`LwM2M port must be 0-65535, not ${port}`);
    if (!(minLifetimeS >= 1 && minLifetimeS <= maxLifetimeS)) throw new RangeError(`LwM2M lifetime bounds must satisfy 1 <= min (${minLifetimeS}) <= max (${maxLifetimeS})`);
    this.endpoint = new CoapEndpoint(
      { port, host: this.options.host, ackTimeoutMs: this.options.ackTimeoutMs, maxRetransmit: this.options.maxRetransmit, responseTimeoutMs: this.options.requestTimeoutMs },
      (req) => this.serve(req),
      timers,
      (m) => ctx.logger.warn(m),
    );
    this.registrations = new Registrations(this.options, timers, { removed: (r, reason) => this.onRemoved(r, reason) });
    this.reader = new BlobReader((sha) => ctx.blobs.pathOf(sha));
    this.pages = new PackagePages(this.reader, 16 * 1024 * 1024);
    this.packages = new PackageResource({ packages: ctx.packages, pages: this.pages, blockSize: 1024 });
  }

  async start(): Promise<AddressInfo> {
    if (this.started) throw new Error('an LwM2M transport starts once; make a new one to listen again');
    this.started = true;
    const address = await this.endpoint.start();
    const revoked = (deviceId: DeviceId, reason: DeviceRevocation['reason']): void =>
      this.forgetDevice(deviceId, reason === 'device-deleted' ? 'device deleted' : 'credentials changed');
    const unobserve = this.ctx.events.observe((name, ...args) => {
      if (name === 'deviceDeleted') revoked((args[0] as EngineEventMap['deviceDeleted'][0]).device.id, 'device-deleted');
      else if (name === 'deviceSaved') {
        const { before, after } = args[0] as EngineEventMap['deviceSaved'][0];
        if (before && credentialsChanged(before, after)) revoked(after.id, 'credentials-changed');
      } else if (name === 'deviceRevoked') {
        const { deviceId, reason } = args[0] as EngineEventMap['deviceRevoked'][0];
        revoked(deviceId, reason);
      } else if (name === 'packageSaved' || name === 'packageDeleted') this.pages.clear();
    });
    // A device saved here or on another instance: its name and profile as the next update reads them.
    // The profile's LwM2M settings are read when the device registers, as ThingsBoard does.
    const follower = (this.follower = followDeviceSnapshots(
      this.ctx,
      {
        holds: (deviceId) => this.known.has(deviceId),
        holdsProfile: () => false,
        deviceChanged: (device) => {
          const k = this.known.get(device.id);
          if (k && k.device.tenantId === device.tenantId) k.device = device;
        },
        profileChanged: () => undefined,
        revoked,
      },
      'LwM2M endpoint',
    ));
    this.unwatch = () => {
      unobserve();
      follower.stop();
    };
    return address;
  }

  stop(): Promise<void> {
    if (!this.started) return Promise.resolve();
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.unwatch?.();
    this.unwatch = null;
    this.registrations.clear();
    for (const k of this.known.values()) {
      k.client?.close();
      k.client = null;
      k.registrationId = null;
    }
    await this.endpoint.stop();
    await Promise.allSettled([...this.known.values()].map((k) => k.writes));
    this.pages.clear();
    await this.reader.close();
  }

  get address(): AddressInfo | null {
    return this.endpoint.address;
  }

  /** Devices registered right now. */
  get registered(): number {
    return this.registrations.size;
  }

  /** One tenant's devices registered now (a tenant admin's view of `GET /api/ota/endpoints`). */
  registeredOf(tenantId: TenantId): number {
    let n = 0;
    for (const id of this.byRegistration.values()) if (this.known.get(id)?.device.tenantId === tenantId) n += 1;
    return n;
  }

  /** The registration of an endpoint name, while registered. */
  registrationOf(endpoint: string): Registration | undefined {
    return this.registrations.findByEndpoint(endpoint);
  }

  /**
   * A notification from the pipeline: a registered device starts the update at once; one known but
   * not registered now starts when it registers again. Answers whether the device is registered.
   */
  deliver(n: Pick<Notification, 'deviceId' | 'tenantId' | 'type' | 'packageId' | 'attributes'>): boolean {
    const k = this.known.get(n.deviceId);
    if (!k || k.device.tenantId !== n.tenantId) return false;
    const target = targetOf(n.type, n.packageId, n.attributes);
    if (target) this.packages.allow(target.packageId, k.device.tenantId);
    void k.ready.then(() => k.ota.setTarget(n.type, target, { notified: true }));
    return k.registrationId !== null;
  }

  /** Entries in each bounded table (tests, /metrics). */
  get load(): { registrations: number; devices: number; exchanges: number; retransmitting: number; uploadBytes: number } {
    const l = this.endpoint.load;
    return { registrations: this.registrations.size, devices: this.known.size, exchanges: l.exchanges, retransmitting: l.retransmitting, uploadBytes: l.uploadBytes };
  }

  // ---- requests --------------------------------------------------------------------------------

  private async serve(req: CoapRequest): Promise<Reply> {
    if (PackageResource.handles(req)) return this.packages.serve(req, (b) => this.pulled(req, b));
    if (req.path[0] !== 'rd' || req.path.length > 2) return reply(Code.NOT_FOUND);
    const queries = req.options.filter((o) => o.name === 'Uri-Query').map((o) => o.value.toString('utf8'));
    try {
      if (req.path.length === 1) {
        if (req.code !== '0.02') return reply(Code.METHOD_NOT_ALLOWED);
        return await this.register(req, queries);
      }
      const id = req.path[1] as string;
      if (req.code === '0.02') return this.update(req, id, queries);
      if (req.code === '0.04') return this.deregister(id);
      return reply(Code.METHOD_NOT_ALLOWED);
    } catch (err) {
      if (err instanceof RegistrationError) {
        this.ctx.logger.info(`lwm2m ${req.peer.address}:${req.peer.port}: ${err.message}`);
        return reply(err.code, Buffer.from(err.message), 0);
      }
      throw err;
    }
  }

  /** Register (§6.2.1): a device with these LwM2M credentials, else 4.03 and nothing kept. */
  private async register(req: CoapRequest, queries: string[]): Promise<Reply> {
    // The device is read before it is known here: a change of it meanwhile is not missed (device-snapshots.ts).
    const opening = this.follower?.opening();
    try {
      const endpoint = Registrations.endpointOf(queries);
      const device = await this.ctx.devices.findByLwm2mEndpoint(endpoint);
      if (!device) throw new RegistrationError('4.03', `No device has the LwM2M endpoint "${endpoint}" (credentialsType LWM2M_CREDENTIALS)`);
      const registration = this.registrations.register(queries, payloadText(req), req.peer);
      const k = this.knownOf(device);
      k.registrationId = registration.id;
      this.byRegistration.set(registration.id, device.id);
      const client = new CoapDeviceClient({
        endpoint: this.endpoint,
        peer: () => this.registrations.get(registration.id)?.peer ?? registration.peer,
        rootPath: registration.objects.rootPath,
        maxPushBytes: this.options.maxPushBytes,
        timeoutMs: this.options.requestTimeoutMs,
      });
      k.client = client;
      this.emit('registration', this.registrationEvent('registered', registration, device));
      return {
        code: Code.CREATED,
        locationPath: ['rd', registration.id],
        // The device reads and is observed once it has its answer: it may only listen after that.
        // A change heard meanwhile is applied after the answer too: an end must not overtake it.
        sent: () => {
          k.ready = this.attach(k, registration, client);
          opening?.end(device);
        },
      };
    } catch (err) {
      opening?.end(null);
      throw err;
    }
  }

  private update(req: CoapRequest, id: string, queries: string[]): Reply {
    const registration = this.registrations.update(id, queries, req.payload.length ? payloadText(req) : null, req.peer);
    const k = this.known.get(this.byRegistration.get(id) as DeviceId);
    if (k) this.emit('registration', this.registrationEvent('updated', registration, k.device));
    return reply(Code.CHANGED);
  }

  private deregister(id: string): Reply {
    this.registrations.deregister(id);
    return reply(Code.DELETED);
  }

  private async attach(k: Known, registration: Registration, client: CoapDeviceClient): Promise<void> {
    try {
      const device = k.device;
      const profile = await this.ctx.profiles.findById(device.tenantId, device.deviceProfileId);
      const settings = this.settingsOf(profile, device);
      for (const type of OTA_PACKAGE_TYPES) {
        const target = await this.pendingTarget(device, profile, type);
        if (target) this.packages.allow(target.packageId, device.tenantId);
        if (k.registrationId !== registration.id) return;
        // A notification that came while this ran is newer than what the store said.
        if (target || !k.ota.target(type)) k.ota.setTarget(type, target ?? k.ota.target(type));
      }
      await k.ota.attach({ client, objects: registration.objects, version: registration.version, settings });
    } catch (err) {
      this.ctx.logger.warn(`lwm2m ${registration.endpoint}: ${(err as Error).message}`);
    }
  }

  /** A registration ended: its requests fail as `closed`, an update under way is FAILED (device-ota.ts). */
  private onRemoved(registration: Registration, reason: RemovalReason): void {
    const deviceId = this.byRegistration.get(registration.id);
    this.byRegistration.delete(registration.id);
    const k = deviceId ? this.known.get(deviceId) : undefined;
    if (!k || k.registrationId !== registration.id) return;
    k.client?.close();
    k.client = null;
    k.registrationId = null;
    k.ota.detach(reason);
    this.emit('registration', this.registrationEvent(reason, registration, k.device));
  }

  /** A device deleted, or its credentials changed: its registration ends and its state is forgotten. */
  private forgetDevice(deviceId: DeviceId, why: string): void {
    const k = this.known.get(deviceId);
    if (!k) return;
    if (k.registrationId) {
      this.ctx.logger.info(`lwm2m ${k.device.name}: registration ended (${why})`);
      try {
        this.registrations.deregister(k.registrationId);
      } catch {
        /* already gone */
      }
    }
    this.known.delete(deviceId);
  }

  // ---- the device's update ---------------------------------------------------------------------

  private knownOf(device: Device): Known {
    const found = this.known.get(device.id);
    if (found) {
      found.device = device;
      return found;
    }
    const k: Known = {
      device,
      registrationId: null,
      client: null,
      writes: Promise.resolve(),
      ready: Promise.resolve(),
      ota: new Lwm2mDeviceOta(device.id, {
        report: (ev) => this.report(k, ev),
        packageSource: (target, type) => this.packageSource(k.device, target, type),
        logger: this.ctx.logger,
      }),
    };
    this.known.set(device.id, k);
    return k;
  }

  private settingsOf(profile: DeviceProfile | null, device: Device): Lwm2mProfileSettings {
    const resource = this.resourceUrl();
    try {
      return lwm2mProfileSettings(profile?.extra ?? {}, resource);
    } catch (err) {
      this.ctx.logger.warn(`lwm2m ${device.name}: profile ${profile?.name ?? ''}: ${(err as Error).message}; using ThingsBoard's defaults`);
      return { ...LWM2M_PROFILE_DEFAULTS, fwUpdateResource: resource, swUpdateResource: resource };
    }
  }

  private resourceUrl(): string {
    if (this.options.resourceUrl) return this.options.resourceUrl.replace(/\/+$/, '');
    const a = this.endpoint.address;
    const host = !a || a.address === '0.0.0.0' || a.address === '::' ? '127.0.0.1' : a.address;
    return `coap://${host.includes(':') ? `[${host}]` : host}:${a?.port ?? this.options.port}`;
  }

  /**
   * The package a registering device should get: reference §6, ThingsBoard fetches the shared
   * `fw_title`, `fw_version`, `fw_tag`, `fw_url` on registration. They are written when the
   * pipeline notifies (INITIATED), so a device still QUEUED waits for its turn.
   */
  private async pendingTarget(device: Device, profile: DeviceProfile | null, type: OtaPackageType): Promise<OtaTarget | null> {
    const id = effectivePackageId(device, profile, type);
    if (!id) return null;
    const p = keyPrefix(type);
    const shared = await this.ctx.attributes.get(device.id, 'SHARED', [`${p}_title`, `${p}_version`, `${p}_tag`, `${p}_url`]);
    const pkg = await this.ctx.packages.findById(device.tenantId, id);
    if (!pkg || shared[`${p}_title`] !== pkg.title || shared[`${p}_version`] !== pkg.version) return null;
    return targetOf(type, id, shared);
  }

  private async packageSource(device: Device, target: OtaTarget, _type: OtaPackageType): Promise<OpaqueSource | null> {
    const pkg = await this.ctx.packages.findById(device.tenantId, target.packageId as OtaPackageId);
    if (!pkg || pkg.url || pkg.blobSha256 === null || pkg.dataSize === null) return null;
    const path = this.ctx.blobs.pathOf(pkg.blobSha256);
    return { size: pkg.dataSize, open: () => createReadStream(path) };
  }

  /** A state of the device's update: `fw_state`/`sw_state` (and `fw_error`) telemetry, in order. */
  private report(k: Known, ev: OtaUplink): void {
    const d = k.device;
    const base = { tenantId: d.tenantId, deviceId: d.id, deviceName: d.name, transport: 'LWM2M' as const, ts: this.timers.now() };
    if (ev.progress) {
      const target = k.ota.target(ev.type);
      if (target)
        this.uplink({ ...base, kind: 'download', type: ev.type, packageId: target.packageId as OtaPackageId, bytes: ev.progress.bytes, offset: 0, size: ev.progress.size });
      return;
    }
    const p = keyPrefix(ev.type);
    const values: Record<string, TelemetryValue> = { [`${p}_state`]: ev.state };
    if (ev.state === 'FAILED') values[`${p}_error`] = ev.error ?? 'Update failed';
    if (ev.state === 'UPDATED') {
      const target = k.ota.target(ev.type);
      if (target) {
        values[`current_${p}_title`] = target.title;
        values[`current_${p}_version`] = target.version;
      }
    }
    const entries = [{ ts: base.ts, values }];
    this.emit('state', { ...ev, tenantId: d.tenantId, deviceName: d.name });
    k.writes = k.writes
      .then(() => this.ctx.telemetry.save(d.id, entries))
      .then(() => this.uplink({ ...base, kind: 'telemetry', entries }))
      .catch((err: Error) => this.ctx.logger.warn(`lwm2m ${d.name}: ${p}_state ${ev.state} not saved: ${err.message}`));
  }

  /** A block of `tbfw`/`tbsw` served: the download progress of the registered device at that address. */
  private pulled(req: CoapRequest, b: { type: OtaPackageType; packageId: string; offset: number; bytes: number; size: number }): void {
    let found: Known | undefined;
    for (const r of this.registrations.all()) {
      if (r.peer.address !== req.peer.address) continue;
      const k = this.known.get(this.byRegistration.get(r.id) as DeviceId);
      if (!k || k.ota.target(b.type)?.packageId !== b.packageId) continue;
      found = k;
      if (r.peer.port === req.peer.port) break;
    }
    if (!found) return;
    const d = found.device;
    this.uplink({
      tenantId: d.tenantId,
      deviceId: d.id,
      deviceName: d.name,
      transport: 'LWM2M',
      ts: this.timers.now(),
      kind: 'download',
      type: b.type,
      packageId: b.packageId as OtaPackageId,
      bytes: b.bytes,
      offset: b.offset,
      size: b.size,
    });
  }

  private uplink(ev: UplinkEvent): void {
    this.ctx.events.emit('uplink', ev);
    this.emit('uplink', ev);
  }

  private registrationEvent(event: RegistrationEvent['event'], r: Registration, d: Device): RegistrationEvent {
    return {
      event,
      endpoint: r.endpoint,
      deviceId: d.id,
      tenantId: d.tenantId,
      deviceName: d.name,
      registrationId: r.id,
      lwm2m: r.version,
      lifetimeS: r.lifetimeS,
      ts: this.timers.now(),
    };
  }
}

/** The target a notification (or the shared attributes) names; null when it names none. */
function targetOf(type: OtaPackageType, packageId: string | null, attributes: Record<string, unknown>): OtaTarget | null {
  const p = keyPrefix(type);
  const title = attributes[`${p}_title`];
  const version = attributes[`${p}_version`];
  if (!packageId || typeof title !== 'string' || typeof version !== 'string') return null;
  const tag = attributes[`${p}_tag`];
  const url = attributes[`${p}_url`];
  return { packageId, title, version, tag: typeof tag === 'string' && tag ? tag : null, url: typeof url === 'string' && url ? url : null };
}

/** The registration payload, link format in UTF-8 (§6.2.1.1). */
const payloadText = (req: CoapRequest): string => req.payload.toString('utf8');
