import { Gauge, type Registry } from 'prom-client';
import type { EngineEvents } from '../events';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { Logger } from '../logger';
import type { UplinkEvent } from '../pipeline/uplink';
import { covered, merge, type ServedBytes, type ServedTotals } from '../store/download-progress';
import type { OtaPackageType } from '../store/ota-packages';
import type { Store } from '../store/store';

export { merge } from '../store/download-progress';

/** Devices whose served bytes wait in memory for the next write at most; one more writes at once. */
export const DEFAULT_MAX_TRACKED_DEVICES = 100_000;
/** `OTA_DOWNLOAD_PROGRESS_MAX_DEVICES`: unset means the default; anything but a positive whole number is refused. */
export function maxTrackedDownloadsFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_DOWNLOAD_PROGRESS_MAX_DEVICES;
  if (raw === undefined || raw === '') return DEFAULT_MAX_TRACKED_DEVICES;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`OTA_DOWNLOAD_PROGRESS_MAX_DEVICES must be a positive whole number of devices, not '${raw}'`);
  return n;
}

/** How long served bytes wait in memory before they are written, in one transaction for all devices (ms). */
export const DEFAULT_FLUSH_MS = 1000;
/** `OTA_DOWNLOAD_PROGRESS_FLUSH_MS`: unset means the default; anything but a whole number from 10 to 60,000 is refused. */
export function downloadFlushMsFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_DOWNLOAD_PROGRESS_FLUSH_MS;
  if (raw === undefined || raw === '') return DEFAULT_FLUSH_MS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 10 || n > 60_000) throw new Error(`OTA_DOWNLOAD_PROGRESS_FLUSH_MS must be a whole number of milliseconds from 10 to 60000, not '${raw}'`);
  return n;
}

/** How far a device's download of its current package got, from the bytes the server sent it. */
export interface DownloadProgressView {
  packageId: OtaPackageId;
  /** Distinct bytes of the package sent at least once: a resumed or repeated range counts once. */
  servedBytes: number;
  size: number;
  /** servedBytes / size, 0..100, one decimal. */
  percent: number;
  /** When the last bytes were sent (ms). */
  ts: number;
}

export interface DownloadProgressSettings {
  /** Devices whose bytes wait in memory at most (OTA_DOWNLOAD_PROGRESS_MAX_DEVICES). */
  maxPending: number;
  /** How long bytes wait before they are written (OTA_DOWNLOAD_PROGRESS_FLUSH_MS). */
  flushMs: number;
}

/**
 * Download progress seen from the server (issue 14): every transport reports each response it
 * sends as a `download` uplink (HTTP whole/chunk/Range, MQTT chunks, CoAP blocks), so this listens
 * in one place and merges the byte ranges per device and package type. The figure lives in the
 * store, so a device downloading from two instances, or across a restart, has one progress. A
 * chunked download sends a response every few milliseconds: its ranges are merged in memory and
 * written every `flushMs`, all devices in one transaction, never a write per chunk. Reads write
 * what waits first, so they see every byte this instance sent.
 */
export class DownloadProgress {
  private pending = new Map<string, ServedBytes>();
  private timer: NodeJS.Timeout | null = null;
  /** The write under way (they run one after another); never rejects. */
  private writing: Promise<void> = Promise.resolve();
  private readonly unhook: () => void;

  constructor(
    events: EngineEvents,
    private readonly store: Pick<Store, 'transaction' | 'downloads'>,
    private readonly settings: DownloadProgressSettings,
    private readonly logger: Pick<Logger, 'warn'>,
  ) {
    const listener = (ev: UplinkEvent): void => {
      if (ev.kind === 'download') this.served(ev.tenantId, ev.deviceId, ev.type, ev.packageId, ev.size, ev.offset, ev.offset + ev.bytes, ev.ts);
    };
    events.on('uplink', listener);
    this.unhook = () => events.off('uplink', listener);
  }

  /** Counts bytes `[start, end)` of a package sent to a device. */
  served(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType, packageId: OtaPackageId, size: number, start: number, end: number, ts: number): void {
    const s = Math.max(0, Math.min(start, size));
    const e = Math.max(s, Math.min(end, size));
    const key = `${deviceId}:${type}`;
    const waiting = this.pending.get(key);
    // The common case, chunk after chunk of one package: merged in place; the next chunk in order
    // only moves the end of the last range (no merge: this runs for every chunk a device is sent).
    if (waiting && waiting.packageId === packageId && waiting.tenantId === tenantId) {
      const last = waiting.ranges[waiting.ranges.length - 1];
      if (last && last[0] <= s && s <= last[1]) last[1] = Math.max(last[1], e);
      else if (e > s) merge(waiting.ranges, s, e);
      waiting.ts = Math.max(waiting.ts, ts);
    } else this.pending.set(key, { tenantId, deviceId, type, packageId, size, ranges: e > s ? [[s, e]] : [], ts });
    if (this.pending.size >= this.settings.maxPending) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.settings.flushMs).unref();
  }

  /** Writes what waits; resolves once it (and every write before it) is in the store. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size) {
      const batch = [...this.pending.values()];
      this.pending = new Map();
      this.writing = this.writing.then(() =>
        this.store.transaction((tx) => tx.downloads.add(batch)).catch((err: Error) => this.logger.warn(`download progress of ${batch.length} device(s) not kept: ${err.message}`)),
      );
    }
    return this.writing;
  }

  async of(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<DownloadProgressView | null> {
    await this.flush();
    const r = await this.store.downloads.get(tenantId, [deviceId]);
    const t = r.find((x) => x.type === type);
    return t ? view(t) : null;
  }

  /** The progress of these devices of the tenant, keyed `deviceId:type`. */
  async ofDevices(tenantId: TenantId, deviceIds: readonly DeviceId[]): Promise<Map<string, DownloadProgressView>> {
    await this.flush();
    return new Map((await this.store.downloads.get(tenantId, deviceIds)).map((t) => [`${t.deviceId}:${t.type}`, view(t)]));
  }

  /** The fleet figure: devices with bytes served, and the distinct bytes served over the bytes of their packages. */
  async fleet(tenantId?: TenantId): Promise<ServedTotals & { ratio: number }> {
    await this.flush();
    const t = await this.store.downloads.totals(tenantId);
    return { ...t, ratio: t.packageBytes ? t.servedBytes / t.packageBytes : 0 };
  }

  /** Gauges on the engine's /metrics registry. */
  register(registry: Registry): void {
    const fleet = (): ReturnType<DownloadProgress['fleet']> => this.fleet();
    new Gauge({
      name: 'ota_download_progress_ratio',
      help: 'Distinct package bytes served over the bytes of the packages being downloaded, 0..1, over every device with bytes served (by any instance)',
      registers: [registry],
      async collect() {
        this.set((await fleet()).ratio);
      },
    });
    new Gauge({
      name: 'ota_download_progress_devices',
      help: 'Devices with package bytes served (by any instance)',
      registers: [registry],
      async collect() {
        this.set((await fleet()).devices);
      },
    });
  }

  /** Stops listening and writes what waits. */
  close(): Promise<void> {
    this.unhook();
    return this.flush();
  }
}

function view(t: ServedBytes): DownloadProgressView {
  const served = covered(t.ranges);
  return { packageId: t.packageId, servedBytes: served, size: t.size, percent: t.size ? Math.round((served / t.size) * 1000) / 10 : 0, ts: t.ts };
}
