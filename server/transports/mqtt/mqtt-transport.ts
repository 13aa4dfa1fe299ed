import { EventEmitter } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { DeviceContext } from '../device-context';
import type { Device } from '../../store/devices';
import type { EngineEventMap } from '../../events';
import { updateMessage } from '../http/http-transport';
import type { DeviceId, TenantId } from '../../ids';
import { protoPayloadsOf } from '../proto-payloads';
import type { Notification } from '../../pipeline/notifier';
import { realTimers, type Timers } from '../../timers';
import type { BlobReader } from '../../store/blob-reader';
import { REASON, type ProtocolVersion } from './reason-codes';
import { SharedPublish } from './packets';
import { ReadAheadBudget, readAheadBytesFromEnv } from './chunk-read-ahead';
import type { DisconnectReason, SessionConfig } from './publish-context';
import { MqttSession, type SessionHost } from './session';
import { MqttAuthenticator } from './authenticate';
import { DEFAULT_VERIFIED_CACHE_SIZE, PasswordVerifier } from '../../devices/password-hash';
import { credentialsChanged } from '../../devices/device-revocations';
import type { UplinkEvent } from '../../pipeline/uplink';
import { followDeviceSnapshots, type SessionOpening, type SessionSnapshots, type SnapshotFollower } from '../device-snapshots';

export type { DisconnectReason } from './publish-context';

export interface MqttOptions {
  /** 0 picks a free port. */
  port?: number;
  host?: string;
  /**
   * PEM certificate and key: the endpoint then speaks MQTT over TLS only. With `ca`, devices may
   * present a client certificate (X509_CERTIFICATE credentials); one that does not chain to `ca`
   * is cut right after the handshake. Devices without one still use tokens or basic credentials.
   */
  tls?: MqttTlsOptions | null;
  /** Verified MQTT basic passwords remembered, so reconnects skip scrypt (`OTA_MQTT_AUTH_CACHE_SIZE`). */
  authCacheSize?: number;
  /**
   * ThingsBoard's `transport.mqtt.netty.max_payload_size`: the largest chunk a device may ask for
   * (a larger one is PAYLOAD_TOO_LARGE), the largest PUBLISH it may send, and the `maxPayloadSize`
   * of `getSessionLimits`.
   */
  maxChunkSize?: number;
  /** Reported to devices by `getSessionLimits` (ThingsBoard's `msg_queue_size_per_device_limit`). */
  maxInflightMessages?: number;
  /** A connection that sends no CONNECT within this time is closed. */
  connectTimeoutMs?: number;
  /** How long a closed connection waits for the device to close its side before it is cut. */
  closeLingerMs?: number;
  /**
   * Connections one device may hold; a new one closes the oldest (MQTT 5: DISCONNECT 0x8E), as
   * ThingsBoard's `actors.max_concurrent_session_per_device` (default 1) does. 0: no limit.
   */
  maxSessionsPerDevice?: number;
  /**
   * Bytes of package chunks read ahead for devices downloading, all connections together
   * (`OTA_MQTT_READ_AHEAD_BYTES`, default 32 MiB; 0: none). One chunk per connection at most.
   */
  readAheadBytes?: number;
}

export interface MqttTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** PEM CA certificate(s) client certificates must chain to. */
  ca?: string | Buffer | null;
}

export const MQTT_DEFAULTS = {
  port: 1883,
  host: '0.0.0.0',
  maxChunkSize: 65536,
  maxInflightMessages: 100,
  connectTimeoutMs: 10_000,
  closeLingerMs: 5_000,
  maxSessionsPerDevice: 1,
} as const;

interface SessionInfo {
  tenantId: TenantId;
  deviceId: DeviceId;
  deviceName: string;
  clientId: string;
  protocolVersion: ProtocolVersion;
}

export interface MqttTransportEvents {
  /** A device authenticated (CONNACK 0 sent). */
  connect: [SessionInfo];
  /** An authenticated device's connection ended. */
  disconnect: [SessionInfo & { reason: DisconnectReason }];
  /** A CONNECT was refused with `code` (per protocol version, §3.1). */
  refused: [{ clientId: string; protocolVersion: ProtocolVersion; code: number }];
  /** What a device sent; the same events go to the engine's `uplink`. */
  uplink: [UplinkEvent];
}

/**
 * ThingsBoard's device MQTT API (reference §3) as a server of its own, not a broker: devices
 * authenticate with their access token, send telemetry and attributes, ask for attributes and
 * firmware chunks, and receive shared-attribute updates through `deliver`. MQTT 3.1, 3.1.1 and 5,
 * QoS 0 and 1, optional TLS; built on mqtt-packet's codec.
 */
export class MqttTransport extends EventEmitter<MqttTransportEvents> implements SessionHost {
  readonly config: SessionConfig;
  readonly reader: BlobReader;
  readonly readAheadBudget: ReadAheadBudget;
  private readonly port: number;
  private readonly host: string;
  private readonly tlsOptions: MqttTlsOptions | null;
  readonly authenticator: MqttAuthenticator;
  private readonly maxSessionsPerDevice: number;
  private server: net.Server | null = null;
  private readonly sessions = new Set<MqttSession>();
  private readonly byDevice = new Map<DeviceId, Set<MqttSession>>();
  private connectedCount = 0;
  private readonly onDeviceDeleted = ({ device }: EngineEventMap['deviceDeleted'][0]): void => this.closeDevice(device.id, 'device-deleted');
  private readonly onDeviceRevoked = ({ deviceId, reason }: EngineEventMap['deviceRevoked'][0]): void => this.closeDevice(deviceId, reason);
  private readonly onDeviceSaved = ({ before, after }: EngineEventMap['deviceSaved'][0]): void => {
    // A new token invalidates the connections made with the old one (ThingsBoard closes them too).
    if (before && credentialsChanged(before, after)) this.closeDevice(after.id, 'credentials-changed');
  };
  /**
   * The device and profile its sessions hold, kept as saved here or on another instance
   * (device-snapshots.ts): the name the flow sees, the payloads as the profile now says (ThingsBoard's
   * `onDeviceProfileUpdate`).
   */
  private readonly snapshots: SessionSnapshots = {
    holds: (deviceId) => this.byDevice.has(deviceId),
    holdsProfile: (tenantId, profileId) => {
      for (const set of this.byDevice.values()) for (const s of set) if (s.device?.deviceProfileId === profileId && s.device.tenantId === tenantId) return true;
      return false;
    },
    deviceChanged: (device, profile) => {
      const payloads = profile === undefined ? undefined : protoPayloadsOf(profile);
      for (const s of this.byDevice.get(device.id) ?? []) {
        if (s.device?.tenantId !== device.tenantId) continue;
        s.device = device;
        if (payloads !== undefined) s.payloads = payloads;
      }
    },
    profileChanged: (profile) => {
      const payloads = protoPayloadsOf(profile);
      for (const set of this.byDevice.values()) for (const s of set) if (s.device?.deviceProfileId === profile.id && s.device.tenantId === profile.tenantId) s.payloads = payloads;
    },
    revoked: (deviceId, reason) => this.closeDevice(deviceId, reason),
  };
  private follower: SnapshotFollower | null = null;
  private readonly onPackageDeleted = ({ pkg }: EngineEventMap['packageDeleted'][0]): void => {
    if (!pkg.blobSha256) return;
    this.reader.forget(pkg.blobSha256);
    for (const s of this.sessions) s.forgetBlob(pkg.blobSha256);
  };

  constructor(
    readonly ctx: DeviceContext,
    options: MqttOptions = {},
    readonly timers: Timers = realTimers,
  ) {
    super();
    this.port = options.port ?? MQTT_DEFAULTS.port;
    this.host = options.host ?? MQTT_DEFAULTS.host;
    this.tlsOptions = options.tls ?? null;
    this.maxSessionsPerDevice = options.maxSessionsPerDevice ?? MQTT_DEFAULTS.maxSessionsPerDevice;
    this.reader = ctx.blobs.reader();
    this.readAheadBudget = new ReadAheadBudget(options.readAheadBytes ?? readAheadBytesFromEnv(process.env));
    this.authenticator = new MqttAuthenticator(ctx.devices, new PasswordVerifier(options.authCacheSize ?? DEFAULT_VERIFIED_CACHE_SIZE));
    this.config = {
      maxChunkSize: options.maxChunkSize ?? MQTT_DEFAULTS.maxChunkSize,
      maxInflightMessages: options.maxInflightMessages ?? MQTT_DEFAULTS.maxInflightMessages,
      connectTimeoutMs: options.connectTimeoutMs ?? MQTT_DEFAULTS.connectTimeoutMs,
      closeLingerMs: options.closeLingerMs ?? MQTT_DEFAULTS.closeLingerMs,
    };
  }

  /** Devices connected now (authenticated connections). */
  get connections(): number {
    return this.connectedCount;
  }

  /** One tenant's devices connected now (a tenant admin's view of `GET /api/ota/endpoints`). */
  connectionsOf(tenantId: TenantId): number {
    let n = 0;
    for (const set of this.byDevice.values()) {
      const first = set.values().next().value;
      if (first?.device?.tenantId === tenantId) n += set.size;
    }
    return n;
  }

  get tls(): boolean {
    return this.tlsOptions !== null;
  }

  /** Where it listens, once started. */
  get address(): AddressInfo | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : null;
  }

  async start(): Promise<AddressInfo> {
    if (this.server) throw new Error('the MQTT endpoint is already started');
    const accept = (socket: net.Socket): void => {
      this.sessions.add(new MqttSession(socket, this));
    };
    // noDelay on accept, and on each socket again in the session: a chunk loop is one small
    // request and one answer at a time, which Nagle's algorithm would hold back ~40 ms each.
    const server = this.tlsOptions ? this.createTlsServer(this.tlsOptions, accept) : net.createServer({ noDelay: true }, accept);
    // A failed TLS handshake never becomes a session; nothing to do but let it go.
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err: Error) => this.ctx.logger.error(`MQTT endpoint: ${err.message}`));
    this.server = server;
    this.ctx.events.on('deviceDeleted', this.onDeviceDeleted);
    this.ctx.events.on('deviceRevoked', this.onDeviceRevoked);
    this.ctx.events.on('deviceSaved', this.onDeviceSaved);
    this.follower = followDeviceSnapshots(this.ctx, this.snapshots, 'MQTT endpoint');
    this.ctx.events.on('packageDeleted', this.onPackageDeleted);
    return this.address as AddressInfo;
  }

  /** Stops listening and closes every connection (MQTT 5: DISCONNECT 0x8B first). Idempotent. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    this.ctx.events.off('deviceDeleted', this.onDeviceDeleted);
    this.ctx.events.off('deviceRevoked', this.onDeviceRevoked);
    this.ctx.events.off('deviceSaved', this.onDeviceSaved);
    this.follower?.stop();
    this.follower = null;
    this.ctx.events.off('packageDeleted', this.onPackageDeleted);
    const closedServer = new Promise<void>((resolve) => server.close(() => resolve()));
    const closedSockets = [...this.sessions].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.socket.closed) return resolve();
          s.socket.once('close', () => resolve());
          s.shutdown();
        }),
    );
    await Promise.all([closedServer, ...closedSockets]);
    await this.reader.close();
  }

  /**
   * Sends a notification's update (`{...attributes, deleted}`, §3.2) to the connections of its
   * device that subscribed to attribute updates, on the family they subscribed with. Answers how
   * many got it.
   */
  deliver(n: Pick<Notification, 'tenantId' | 'deviceId' | 'attributes' | 'deleted'>): number {
    const sessions = this.byDevice.get(n.deviceId);
    if (!sessions) return 0;
    return this.deliverTo(sessions, n, jsonUpdate(n));
  }

  /**
   * `deliver` for a batch of notifications (ota-notify's "One message per batch"). The devices of a
   * batch share their package's attribute map (Notifier), so its JSON and PUBLISH are made once per
   * map, not per device; by identity, which is safe only because nothing can change a map during
   * this loop.
   */
  deliverAll(list: ReadonlyArray<Pick<Notification, 'tenantId' | 'deviceId' | 'attributes' | 'deleted'>>): number {
    let last: { attributes: Notification['attributes']; deleted: Notification['deleted']; payload: SharedPublish } | null = null;
    let delivered = 0;
    for (const n of list) {
      const sessions = this.byDevice.get(n.deviceId);
      if (!sessions) continue;
      if (!last || last.attributes !== n.attributes || last.deleted !== n.deleted) last = { attributes: n.attributes, deleted: n.deleted, payload: jsonUpdate(n) };
      delivered += this.deliverTo(sessions, n, last.payload);
    }
    return delivered;
  }

  private deliverTo(sessions: Set<MqttSession>, n: Pick<Notification, 'tenantId' | 'attributes' | 'deleted'>, payload: SharedPublish): number {
    let delivered = 0;
    for (const s of sessions) if (s.device?.tenantId === n.tenantId && s.deliverUpdate(n, payload)) delivered += 1;
    return delivered;
  }

  // ---- SessionHost ----------------------------------------------------------------------------

  opening(): SessionOpening {
    return this.follower?.opening() ?? { end: () => undefined };
  }

  connected(session: MqttSession): void {
    const device = session.device as Device;
    if (this.maxSessionsPerDevice > 0) {
      // Oldest first (a Set keeps insertion order). Evicting may empty the set and drop it from
      // the map, so the new session is added to whatever set the map holds afterwards.
      for (const older of [...(this.byDevice.get(device.id) ?? [])]) {
        if ((this.byDevice.get(device.id)?.size ?? 0) < this.maxSessionsPerDevice) break;
        this.forget(older);
        older.close('session-taken-over', REASON.sessionTakenOver);
        this.emit('disconnect', { ...info(older), reason: 'session-taken-over' });
      }
    }
    let set = this.byDevice.get(device.id);
    if (!set) this.byDevice.set(device.id, (set = new Set()));
    set.add(session);
    this.connectedCount += 1;
    this.emit('connect', info(session));
  }

  refused(session: MqttSession, code: number): void {
    this.emit('refused', { clientId: session.clientId, protocolVersion: session.version, code });
  }

  closed(session: MqttSession, reason: DisconnectReason): void {
    this.sessions.delete(session);
    if (this.forget(session)) this.emit('disconnect', { ...info(session), reason });
  }

  uplink(ev: UplinkEvent): void {
    this.ctx.events.emit('uplink', ev);
    this.emit('uplink', ev);
  }

  /**
   * Client certificates are asked for, not required: ThingsBoard's 8883 serves tokens and basic
   * credentials too. A presented certificate that does not chain to the CA ends the connection
   * before any MQTT (ThingsBoard's trust manager fails the handshake there).
   */
  private createTlsServer(o: MqttTlsOptions, accept: (socket: net.Socket) => void): tls.Server {
    const verify = Boolean(o.ca);
    return tls.createServer(
      { cert: o.cert, key: o.key, noDelay: true, ...(verify ? { ca: o.ca as string | Buffer, requestCert: true, rejectUnauthorized: false } : {}) },
      (socket) => {
        if (verify && !socket.authorized && socket.getPeerCertificate().raw) return void socket.destroy();
        accept(socket);
      },
    );
  }

  /** Takes a session out of its device's set; whether it was there. */
  private forget(session: MqttSession): boolean {
    const device = session.device;
    const set = device ? this.byDevice.get(device.id) : undefined;
    if (!set || !set.delete(session)) return false;
    if (set.size === 0) this.byDevice.delete((device as Device).id);
    this.connectedCount -= 1;
    return true;
  }

  private closeDevice(deviceId: DeviceId, reason: 'device-deleted' | 'credentials-changed'): void {
    for (const s of [...(this.byDevice.get(deviceId) ?? [])]) s.close(reason, REASON.administrativeAction);
  }
}

/** A notification's update as JSON (§3.2), ready to be published to any number of sessions. */
const jsonUpdate = (n: Pick<Notification, 'attributes' | 'deleted'>): SharedPublish => new SharedPublish(Buffer.from(JSON.stringify(updateMessage(n))));

function info(s: MqttSession): SessionInfo {
  const d = s.device as Device;
  return { tenantId: d.tenantId, deviceId: d.id, deviceName: d.name, clientId: s.clientId, protocolVersion: s.version };
}
