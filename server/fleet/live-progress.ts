import { randomBytes } from 'node:crypto';
import type { DeviceId, TenantId } from '../ids';
import type { Logger } from '../logger';
import type { OtaPackageType } from '../store/ota-packages';
import type { Timers } from '../timers';
import type { DownloadProgress } from './download-progress';
import { numberFromEnv } from './env-number';

/** One device's download as a live stream shows it: distinct bytes of its package served, by any instance. */
export interface ProgressEntry {
  deviceId: string;
  type: OtaPackageType;
  packageId: string;
  bytes: number;
  size: number;
  /** bytes / size, 0..100, one decimal. */
  percent: number;
  /** When the last bytes were sent (ms). */
  ts: number;
}

export interface ProgressEvent {
  event: 'progress';
  data: { devices: ProgressEntry[] };
}

/** Answers false when the event was not taken (the client has not read what came before): it is offered again, newer. */
export type ProgressSink = (ev: ProgressEvent) => boolean | void;

export interface LiveProgressSettings {
  /** A stream hears of a device's download at most this often (ms): `OTA_DASHBOARD_PROGRESS_MS`. */
  intervalMs: number;
  /** Devices a stream follows at most, and so the entries of one event: `OTA_DASHBOARD_PROGRESS_MAX_DEVICES`. */
  maxDevices: number;
}

export const LIVE_PROGRESS_DEFAULTS: LiveProgressSettings = { intervalMs: 250, maxDevices: 1000 };

/** `OTA_DASHBOARD_PROGRESS_MS` (50..60,000) and `OTA_DASHBOARD_PROGRESS_MAX_DEVICES` (1..100,000); unset means the default, anything else is refused. */
export function liveProgressSettingsFromEnv(env: NodeJS.ProcessEnv): LiveProgressSettings {
  return {
    intervalMs: numberFromEnv(env, 'OTA_DASHBOARD_PROGRESS_MS', { min: 50, max: 60_000, fallback: LIVE_PROGRESS_DEFAULTS.intervalMs, unit: 'milliseconds' }),
    maxDevices: numberFromEnv(env, 'OTA_DASHBOARD_PROGRESS_MAX_DEVICES', { min: 1, max: 100_000, fallback: LIVE_PROGRESS_DEFAULTS.maxDevices, unit: 'devices' }),
  };
}

interface Moved {
  tenantId: TenantId;
  deviceId: DeviceId;
  type: OtaPackageType;
}

interface Stream {
  tenantId: TenantId;
  send: ProgressSink;
  devices: Set<string>;
  closed: boolean;
}

/**
 * Download progress for the dashboard's live streams. Each stream follows the devices its page
 * shows (at most `maxDevices`); a chunk served to one of them, here or on another instance (heard
 * on the cluster bus), marks it moved, and every `intervalMs` at most one event per stream carries
 * the moved devices' progress, read once for all streams. Whatever the number of downloads and
 * chunks, what waits is one entry per followed device, and a stream hears of a device at most once
 * per interval.
 */
export class LiveProgress {
  private readonly streams = new Map<string, Stream>();
  /** The streams following each device. */
  private readonly followers = new Map<string, Set<Stream>>();
  /** Followed devices whose download moved since the last round, keyed `deviceId:type`. */
  private moved = new Map<string, Moved>();
  private timer: unknown = null;
  private running = false;
  private lastRoundAt = -Infinity;
  private readonly unhook: () => void;

  constructor(
    private readonly downloads: Pick<DownloadProgress, 'onProgress' | 'current'>,
    readonly settings: LiveProgressSettings,
    private readonly logger: Pick<Logger, 'warn'>,
    private readonly timers: Pick<Timers, 'setTimeout' | 'clearTimeout'>,
  ) {
    this.unhook = downloads.onProgress((tenantId, deviceId, type) => {
      // Every chunk served passes here: one lookup for a device nobody follows.
      if (!this.followers.has(deviceId)) return;
      this.moved.set(`${deviceId}:${type}`, { tenantId, deviceId, type });
      this.schedule();
    });
  }

  /** A new stream of the tenant; answers its id, which `follow` and `close` take. */
  open(tenantId: TenantId, send: ProgressSink): string {
    const id = randomBytes(16).toString('base64url');
    this.streams.set(id, { tenantId, send, devices: new Set(), closed: false });
    return id;
  }

  /**
   * The devices the stream follows from now on, in place of those before; false when the tenant
   * has no such stream. Another tenant's device is never shown: progress is read per tenant.
   */
  follow(tenantId: TenantId, id: string, deviceIds: readonly string[]): boolean {
    const stream = this.streams.get(id);
    if (!stream || stream.tenantId !== tenantId) return false;
    if (deviceIds.length > this.settings.maxDevices) throw new RangeError(`a live stream follows ${this.settings.maxDevices} devices at most`);
    this.unfollow(stream);
    stream.devices = new Set(deviceIds);
    for (const d of stream.devices) {
      let set = this.followers.get(d);
      if (!set) this.followers.set(d, (set = new Set()));
      set.add(stream);
    }
    return true;
  }

  close(id: string): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    this.streams.delete(id);
    stream.closed = true;
    this.unfollow(stream);
  }

  /** Devices whose progress waits for the next round (at most every device followed). */
  get waiting(): number {
    return this.moved.size;
  }

  /** Stops listening; no event is sent after. */
  stop(): void {
    this.unhook();
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    for (const id of [...this.streams.keys()]) this.close(id);
    this.moved.clear();
  }

  private unfollow(stream: Stream): void {
    for (const d of stream.devices) {
      const set = this.followers.get(d);
      set?.delete(stream);
      if (set?.size === 0) this.followers.delete(d);
    }
    stream.devices.clear();
  }

  /** The next round at once after a quiet spell, then at most every intervalMs; never two at a time. */
  private schedule(): void {
    if (this.timer !== null || this.running || this.moved.size === 0) return;
    this.timer = this.timers.setTimeout(() => void this.round(), Math.max(0, this.lastRoundAt + this.settings.intervalMs - Date.now()));
  }

  private async round(): Promise<void> {
    this.timer = null;
    this.running = true;
    this.lastRoundAt = Date.now();
    const moved = this.moved;
    this.moved = new Map();
    try {
      const byTenant = new Map<TenantId, Set<DeviceId>>();
      for (const { tenantId, deviceId } of moved.values()) {
        const ids = byTenant.get(tenantId);
        if (ids) ids.add(deviceId);
        else byTenant.set(tenantId, new Set([deviceId]));
      }
      const out = new Map<Stream, ProgressEntry[]>();
      for (const [tenantId, ids] of byTenant) {
        const views = await this.downloads.current(tenantId, [...ids]);
        for (const [key, v] of views) {
          const at = moved.get(key);
          if (!at) continue;
          const entry: ProgressEntry = { deviceId: at.deviceId, type: at.type, packageId: v.packageId, bytes: v.servedBytes, size: v.size, percent: v.percent, ts: v.ts };
          for (const stream of this.followers.get(at.deviceId) ?? []) {
            if (stream.tenantId !== tenantId) continue;
            const list = out.get(stream);
            if (list) list.push(entry);
            else out.set(stream, [entry]);
          }
        }
      }
      for (const [stream, devices] of out) {
        if (stream.closed) continue;
        if (stream.send({ event: 'progress', data: { devices } }) === false) {
          // Offered again next round, read afresh; the devices since unfollowed drop out then.
          for (const e of devices) {
            const key = `${e.deviceId}:${e.type}`;
            if (!this.moved.has(key)) this.moved.set(key, moved.get(key) as Moved);
          }
        }
      }
    } catch (err) {
      this.logger.warn(`dashboard: live download progress not sent: ${(err as Error).message}`);
    } finally {
      this.running = false;
      this.schedule();
    }
  }
}
