import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { BlobReader } from '../../store/blob-reader';
import { CoapDeviceApi } from './device-api';
import { CoapEndpoint, ENDPOINT_DEFAULTS } from './endpoint';
import type { CoapRequest, Reply } from './messages';
import { Observations } from './observations';
import { PackagePages } from '../package-pages';
import { isBlockSize } from './block-wise';
import type { DeviceContext } from '../device-context';
import type { EngineEventMap } from '../../events';
import type { TenantId } from '../../ids';
import type { Notification } from '../../pipeline/notifier';
import { realTimers, type Timers } from '../../timers';
import type { UplinkEvent } from '../../pipeline/uplink';
import { credentialsChanged } from '../../devices/device-revocations';
import { followDeviceSnapshots, type SessionSnapshots, type SnapshotFollower } from '../device-snapshots';
import { protoPayloadsOf } from '../proto-payloads';

export interface CoapOptions {
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Address to bind; an IPv6 address binds a udp6 socket. */
  host?: string;
  /** Largest Block2 block sent: 16 … 1024, a power of two. */
  blockSize?: number;
  /** How long a response may take before an empty ACK is sent and the response follows separately. */
  piggybackMs?: number;
  /** Transmission parameters of confirmable notifications [RFC 7252 §4.8]. */
  ackTimeoutMs?: number;
  ackRandomFactor?: number;
  maxRetransmit?: number;
  /** Largest request body taken block-wise (Block1), in bytes. */
  maxBodySize?: number;
  /** Answers kept for retransmitted requests (OTA_COAP_DEDUP_ENTRIES). */
  dedupEntries?: number;
  /** Requests of one peer processed at once (OTA_COAP_MAX_EXCHANGES_PER_PEER); past it, 4.29. */
  maxExchangesPerPeer?: number;
  /** Bytes of Block1 uploads in progress held in all (OTA_COAP_UPLOAD_BYTES); past it a block gets 5.03. */
  uploadBytes?: number;
  /** Observations of one device (OTA_COAP_MAX_OBSERVATIONS_PER_DEVICE); past it, 4.29. */
  maxObservationsPerDevice?: number;
  /** Observations in all (OTA_COAP_MAX_OBSERVATIONS); past it, 5.03. */
  maxObservations?: number;
  /** Downloads whose device and package are kept between blocks (OTA_COAP_MAX_DOWNLOADS). */
  maxDownloads?: number;
  /** Bytes of package pages kept in memory for block reads (OTA_COAP_PAGE_CACHE_BYTES); 0 reads every block from the file. */
  pageCacheBytes?: number;
}

/** Every default in one place. */
export const COAP_DEFAULTS = {
  ...ENDPOINT_DEFAULTS,
  port: 5683,
  host: '0.0.0.0',
  /** Californium's (ThingsBoard's) PREFERRED_BLOCK_SIZE and MAX_MESSAGE_SIZE (reference §5). */
  blockSize: 1024,
  /** A device observes its attributes once; a few more cover a restart before the old one lapses. */
  maxObservationsPerDevice: 4,
  /** About 6 KB each: 100,000 devices observing take some 600 MB at most. */
  maxObservations: 100_000,
  /** About 1 KB each. */
  maxDownloads: 10_000,
  /** 1,024 pages of 16 KB: the blocks of the packages being downloaded, whatever the number of devices. */
  pageCacheBytes: 16 * 1024 * 1024,
} as const;

/** The environment variables of the limits, by option (read by the ota-coap-endpoint node). */
export const COAP_LIMIT_VARIABLES = {
  dedupEntries: 'OTA_COAP_DEDUP_ENTRIES',
  maxExchangesPerPeer: 'OTA_COAP_MAX_EXCHANGES_PER_PEER',
  uploadBytes: 'OTA_COAP_UPLOAD_BYTES',
  maxObservationsPerDevice: 'OTA_COAP_MAX_OBSERVATIONS_PER_DEVICE',
  maxObservations: 'OTA_COAP_MAX_OBSERVATIONS',
  maxDownloads: 'OTA_COAP_MAX_DOWNLOADS',
  pageCacheBytes: 'OTA_COAP_PAGE_CACHE_BYTES',
} as const;

export interface CoapTransportEvents {
  /** What a device sent: telemetry, attributes, a block of a download (also emitted on the engine's events). */
  uplink: [UplinkEvent];
  /** The number of observations changed. */
  observers: [count: number];
}

/**
 * ThingsBoard's CoAP device transport (reference §5): a CoAP endpoint of our own (endpoint.ts)
 * serving the device API (device-api.ts), and the Observe registry that carries notifications to
 * devices (observations.ts). A device deleted, or its token changed, loses its observations.
 */
export class CoapTransport extends EventEmitter<CoapTransportEvents> {
  private readonly options: Required<CoapOptions>;
  private readonly observations: Observations;
  private readonly api: CoapDeviceApi;
  private readonly endpoint: CoapEndpoint;
  private readonly reader: BlobReader;
  private readonly pages: PackagePages;
  private started = false;
  private unwatch: (() => void) | null = null;
  private stopping: Promise<void> | null = null;
  private readonly onDeviceDeleted = ({ device }: EngineEventMap['deviceDeleted'][0]): void => {
    this.api.forgetDevice(device.id);
    this.observations.endDevice(device.id, 'device deleted');
  };
  private readonly onDeviceSaved = ({ before, after }: EngineEventMap['deviceSaved'][0]): void => {
    this.api.forgetDevice(after.id);
    if (before && credentialsChanged(before, after)) this.observations.endDevice(after.id, 'credentials changed');
  };
  private readonly onDeviceRevoked = ({ deviceId, reason }: Pick<EngineEventMap['deviceRevoked'][0], 'deviceId' | 'reason'>): void => {
    this.api.forgetDevice(deviceId);
    this.observations.endDevice(deviceId, reason === 'device-deleted' ? 'device deleted' : 'credentials changed');
  };
  /** Whatever changes which package a device gets ends the downloads kept between blocks. */
  private readonly onAssignment = ({ deviceId }: EngineEventMap['assignment'][0]): void => this.api.forgetDevice(deviceId);
  private readonly onPackageChanged = (): void => {
    this.api.forgetDownloads();
    this.pages.clear();
  };

  /** What observations hold of their device's profile (its payload type), kept as saved here or on another instance (device-snapshots.ts). */
  private readonly snapshots: SessionSnapshots = {
    holds: (deviceId) => this.observations.observes(deviceId),
    holdsProfile: (tenantId, profileId) => this.observations.observesProfile(tenantId, profileId),
    deviceChanged: (device, profile) => {
      if (profile !== undefined) this.observations.setPayloadType({ deviceId: device.id, tenantId: device.tenantId }, device.deviceProfileId, protoPayloadsOf(profile) !== null);
    },
    profileChanged: (profile) => this.observations.setPayloadType({ profileId: profile.id, tenantId: profile.tenantId }, profile.id, protoPayloadsOf(profile) !== null),
    revoked: (deviceId, reason) => this.onDeviceRevoked({ deviceId, reason }),
  };
  private follower: SnapshotFollower | null = null;

  constructor(
    private readonly ctx: DeviceContext,
    options: CoapOptions,
    private readonly timers: Timers = realTimers,
  ) {
    super();
    this.options = { ...COAP_DEFAULTS, ...stripUndefined(options) };
    const { blockSize, port } = this.options;
    if (!isBlockSize(blockSize)) throw new RangeError(`CoAP block size must be 16, 32, 64, 128, 256, 512 or 1024, not ${blockSize}`);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`CoAP port must be 0-65535, not ${port}`);
    for (const name of Object.keys(COAP_LIMIT_VARIABLES) as (keyof typeof COAP_LIMIT_VARIABLES)[]) {
      const n = this.options[name];
      if (!Number.isSafeInteger(n) || n < minimum(name))
        throw new RangeError(`CoAP ${name} (${COAP_LIMIT_VARIABLES[name]}) must be a whole number of at least ${minimum(name)}, not ${n}`);
    }
    this.endpoint = new CoapEndpoint(
      this.options,
      (req) => this.serve(req),
      timers,
      (m) => ctx.logger.warn(m),
    );
    this.observations = new Observations(this.endpoint, timers, { maxPerDevice: this.options.maxObservationsPerDevice, maxTotal: this.options.maxObservations });
    this.observations.on('observers', (n) => this.emit('observers', n));
    this.endpoint.onReset = (peer, messageId) => void this.observations.onReset(peer, messageId);
    this.reader = ctx.blobs.reader();
    this.pages = new PackagePages(this.reader, this.options.pageCacheBytes);
    this.api = new CoapDeviceApi({
      ctx,
      pages: this.pages,
      blockSize,
      maxDownloads: this.options.maxDownloads,
      now: () => timers.now(),
      cancelObservation: (req) => this.observations.cancel(req.peer, req.token),
      uplink: (ev) => {
        ctx.events.emit('uplink', ev);
        this.emit('uplink', ev);
      },
    });
  }

  /** Binds the socket and serves; answers where it listens. */
  async start(): Promise<AddressInfo> {
    if (this.started) throw new Error('a CoAP transport starts once; make a new one to listen again');
    this.started = true;
    const address = await this.endpoint.start();
    // Watched, not listened to: a listener on `assignment` would tell the engine that a flow takes
    // those events from the queue (events.ts).
    const unobserve = this.ctx.events.observe((name, ...args) => {
      if (name === 'deviceDeleted') this.onDeviceDeleted(args[0] as EngineEventMap['deviceDeleted'][0]);
      else if (name === 'deviceSaved') this.onDeviceSaved(args[0] as EngineEventMap['deviceSaved'][0]);
      else if (name === 'deviceRevoked') this.onDeviceRevoked(args[0] as EngineEventMap['deviceRevoked'][0]);
      else if (name === 'assignment') this.onAssignment(args[0] as EngineEventMap['assignment'][0]);
      else if (name === 'packageSaved' || name === 'packageDeleted' || name === 'deviceProfileSaved') this.onPackageChanged();
    });
    const follower = (this.follower = followDeviceSnapshots(this.ctx, this.snapshots, 'CoAP endpoint'));
    this.unwatch = () => {
      unobserve();
      follower.stop();
    };
    return address;
  }

  /** Stops taking datagrams, finishes the requests under way, then closes the socket. Idempotent. */
  stop(): Promise<void> {
    if (!this.started) return Promise.resolve();
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.unwatch?.();
    this.unwatch = null;
    // Observations end first, so that their notifications in retransmission are given up, not timed out.
    this.observations.clear();
    // Requests under way still answer: their replies go out before the socket closes.
    await this.endpoint.stop();
    this.api.forgetDownloads();
    this.pages.clear();
    await this.reader.close();
  }

  /** Delivers a notification to every observer of its device; answers how many there were. */
  deliver(n: Pick<Notification, 'deviceId' | 'attributes' | 'deleted'>): number {
    return this.observations.notify(n.deviceId, n);
  }

  /** Devices observing their attributes right now. */
  get observers(): number {
    return this.observations.size;
  }

  /** One tenant's devices observing now (a tenant admin's view of `GET /api/ota/endpoints`). */
  observersOf(tenantId: TenantId): number {
    return this.observations.sizeOf(tenantId);
  }

  /** Where the socket is bound, while started. */
  get address(): AddressInfo | null {
    return this.endpoint.address;
  }

  /** Entries in each bounded table (tests, /metrics). */
  get load(): { dedup: number; retransmitting: number; exchanges: number; uploadBytes: number; observations: number; downloads: number } {
    return { ...this.endpoint.load, observations: this.observations.size, downloads: this.api.downloads };
  }

  /** A block of a download under way is answered at once when it can be; anything else takes the async path. */
  private serve(request: CoapRequest): Reply | Promise<Reply> {
    return this.api.block(request) ?? this.serveAsync(request);
  }

  private async serveAsync(request: CoapRequest): Promise<Reply> {
    // An observation reads its device and profile before it is held: a change of either meanwhile is not missed (device-snapshots.ts).
    const opening = request.observe === 0 ? this.follower?.opening() : undefined;
    try {
      const result = await this.api.handle(request);
      if (!('observe' in result)) {
        opening?.end(null);
        return result.reply;
      }
      const { device, attributes, proto } = result.observe;
      const reply = this.observations.accept(request, device.id, attributes, proto, device.tenantId, device.deviceProfileId);
      if (!opening) return reply;
      // Once the registration is answered: the end of an observation (4.04) must not overtake it.
      return {
        ...reply,
        sent: (messageId) => {
          reply.sent?.(messageId);
          opening.end(device);
        },
      };
    } catch (err) {
      opening?.end(null);
      throw err;
    }
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The page cache may be off (0); every other limit holds at least one. */
export const minimum = (name: keyof typeof COAP_LIMIT_VARIABLES): number => (name === 'pageCacheBytes' ? 0 : 1);
