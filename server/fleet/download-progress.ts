import { Gauge, type Registry } from 'prom-client';
import type { EngineEvents } from '../events';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { Logger } from '../logger';
import type { UplinkEvent } from '../pipeline/uplink';
import { combine, covered, MAX_RANGES, merge, type ServedBytes, type ServedTotals } from '../store/download-progress';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../store/ota-packages';
import type { Store } from '../store/store';
import type { ClusterBus } from '../store/cluster-bus';

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

/** The cluster bus topic of bytes served, sent to the other instances before they reach the store. */
export const SERVED_TOPIC = 'download-progress';
/** How often served bytes go on the bus (ms): what another instance shows is this much behind at most. */
const LIVE_MS = 250;
/** Messages per send at most (PostgreSQL NOTIFY takes under 8000 bytes each): 8 a second; the rest comes through the store. */
const MAX_LIVE_MESSAGES = 2;
const MAX_LIVE_BYTES = 7000;

/** Hears that bytes of a device's download were served here or by another instance (every chunk: keep it cheap). */
export type ProgressListener = (tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType) => void;

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
  /** Served here since the last send on the bus. */
  private live = new Map<string, ServedBytes>();
  private liveTimer: NodeJS.Timeout | null = null;
  private toldAt = 0;
  /** Served by other instances and heard on the bus, until their own write is surely in the store. */
  private readonly heard = new Map<string, ServedBytes & { until: number }>();
  /** The write under way (they run one after another); never rejects. */
  private writing: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<ProgressListener>();
  private readonly unhook: () => void;

  constructor(
    events: EngineEvents,
    private readonly store: Pick<Store, 'transaction' | 'downloads'> & { cluster?: ClusterBus },
    private readonly settings: DownloadProgressSettings,
    private readonly logger: Pick<Logger, 'warn'>,
  ) {
    const listener = (ev: UplinkEvent): void => {
      if (ev.kind === 'download') this.served(ev.tenantId, ev.deviceId, ev.type, ev.packageId, ev.size, ev.offset, ev.offset + ev.bytes, ev.ts);
    };
    events.on('uplink', listener);
    const unhear = store.cluster?.subscribe(SERVED_TOPIC, (m) => this.hear(m));
    this.unhook = () => {
      events.off('uplink', listener);
      unhear?.();
    };
  }

  /** Counts bytes `[start, end)` of a package sent to a device. */
  served(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType, packageId: OtaPackageId, size: number, start: number, end: number, ts: number): void {
    const s = Math.max(0, Math.min(start, size));
    const e = Math.max(s, Math.min(end, size));
    const key = `${deviceId}:${type}`;
    const waiting = this.pending.get(key);
    // The common case, chunk after chunk of one package: merged in place.
    if (waiting && waiting.packageId === packageId && waiting.tenantId === tenantId) extend(waiting, s, e, ts);
    else this.pending.set(key, { tenantId, deviceId, type, packageId, size, ranges: e > s ? [[s, e]] : [], ts });
    if (this.pending.size >= this.settings.maxPending) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.settings.flushMs).unref();
    if (this.store.cluster) {
      const told = this.live.get(key);
      if (told && told.packageId === packageId && told.tenantId === tenantId) extend(told, s, e, ts);
      else if (this.live.size < this.settings.maxPending) this.live.set(key, { tenantId, deviceId, type, packageId, size, ranges: e > s ? [[s, e]] : [], ts });
      // At once after a quiet spell, then at most every LIVE_MS.
      this.liveTimer ??= setTimeout(() => this.tell(), Math.max(0, this.toldAt + Math.min(LIVE_MS, this.settings.flushMs) - Date.now())).unref();
    }
    for (const listener of this.listeners) listener(tenantId, deviceId, type);
  }

  /** Calls `listener` whenever a device's download moves, here or on another instance, until the returned function is called. */
  onProgress(listener: ProgressListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Several instances: what was served here since the last send goes on the bus, so another
   * instance's dashboard shows it before this one writes it (every flushMs). A few messages a
   * second at most, whatever the number of downloads: entries past them wait for the store.
   */
  private tell(): void {
    this.liveTimer = null;
    const bus = this.store.cluster;
    if (!bus || !this.live.size) return;
    this.toldAt = Date.now();
    const entries = [...this.live.values()];
    this.live = new Map();
    const messages: ServedBytes[][] = [];
    let bytes = 0;
    for (const entry of entries) {
      const size = JSON.stringify(entry).length;
      if (!messages.length || bytes + size > MAX_LIVE_BYTES) {
        if (messages.length === MAX_LIVE_MESSAGES) break;
        messages.push([]);
        bytes = 0;
      }
      (messages[messages.length - 1] as ServedBytes[]).push(entry);
      bytes += size;
    }
    bus.publish(SERVED_TOPIC, messages).catch((err: Error) => this.logger.warn(`cannot tell the other instances of bytes served: ${err.message}`));
  }

  /** Bytes another instance served, kept until its own write is surely in the store (two of its flush periods). */
  private hear(message: unknown): void {
    if (!Array.isArray(message)) return;
    const until = Date.now() + 2 * this.settings.flushMs + 1000;
    for (const m of message as unknown[]) {
      const e = asServed(m);
      if (!e) continue;
      const key = `${e.deviceId}:${e.type}`;
      const known = this.heard.get(key);
      if (known && known.packageId === e.packageId && known.tenantId === e.tenantId) {
        for (const [a, b] of e.ranges) merge(known.ranges, a, b);
        known.ts = Math.max(known.ts, e.ts);
        known.until = until;
      } else {
        if (!known && this.heard.size >= this.settings.maxPending) this.heard.delete(this.heard.keys().next().value as string);
        this.heard.set(key, { ...e, until });
      }
      for (const listener of this.listeners) listener(e.tenantId, e.deviceId, e.type);
    }
  }

  /** A row read from the store with what was heard of it on the bus since (served elsewhere, not written yet). */
  private withHeard(row: ServedBytes | undefined, tenantId: TenantId, key: string): ServedBytes | undefined {
    const h = this.heard.get(key);
    if (!h) return row;
    if (h.until < Date.now()) {
      this.heard.delete(key);
      return row;
    }
    if (h.tenantId !== tenantId) return row;
    // Another package, written after what was heard: the device has moved on.
    if (row && row.packageId !== h.packageId && row.ts >= h.ts) return row;
    return combine(row ?? null, h);
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
    return (await this.ofDevices(tenantId, [deviceId])).get(`${deviceId}:${type}`) ?? null;
  }

  /** The progress of these devices of the tenant, keyed `deviceId:type`. */
  async ofDevices(tenantId: TenantId, deviceIds: readonly DeviceId[]): Promise<Map<string, DownloadProgressView>> {
    await this.flush();
    return this.current(tenantId, deviceIds);
  }

  /**
   * The same without writing what waits first: the dashboard's live progress asks every few
   * hundred ms while bytes are served, and the writes keep their own pace (flushMs). What waits
   * is added to the rows read, and so is what was heard on the bus.
   */
  async current(tenantId: TenantId, deviceIds: readonly DeviceId[]): Promise<Map<string, DownloadProgressView>> {
    // Once no write is under way, what is not in the store waits in `pending`: taken before the
    // read, so that a write starting meanwhile writes these very entries.
    for (let w = this.writing; ; w = this.writing) {
      await w;
      if (w === this.writing) break;
    }
    // Each key made once: building and hashing 2,000 of them is most of a round's time.
    const slots: Array<{ key: string; waiting: ServedBytes | undefined }> = [];
    for (const deviceId of deviceIds) {
      for (const type of OTA_PACKAGE_TYPES) {
        const key = `${deviceId}:${type}`;
        const w = this.pending.get(key);
        slots.push({ key, waiting: w?.tenantId === tenantId ? w : undefined });
      }
    }
    const rows = new Map((await this.store.downloads.get(tenantId, deviceIds)).map((t) => [`${t.deviceId}:${t.type}`, t]));
    const out = new Map<string, DownloadProgressView>();
    for (const { key, waiting } of slots) {
      const row = rows.get(key);
      const t = this.withHeard(waiting ? combine(row ?? null, waiting) : row, tenantId, key);
      if (t) out.set(key, view(t));
    }
    return out;
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
    this.listeners.clear();
    if (this.liveTimer) clearTimeout(this.liveTimer);
    this.liveTimer = null;
    this.live.clear();
    this.heard.clear();
    return this.flush();
  }
}

/**
 * Adds bytes `[s, e)` to an entry of the same package in place: the next chunk in order only moves
 * the end of the last range (no merge: this runs for every chunk a device is sent).
 */
function extend(entry: ServedBytes, s: number, e: number, ts: number): void {
  const last = entry.ranges[entry.ranges.length - 1];
  if (last && last[0] <= s && s <= last[1]) last[1] = Math.max(last[1], e);
  else if (e > s) merge(entry.ranges, s, e);
  entry.ts = Math.max(entry.ts, ts);
}

/** A served-bytes entry heard on the bus, checked field by field; null when malformed. */
function asServed(m: unknown): ServedBytes | null {
  if (!m || typeof m !== 'object') return null;
  const { tenantId, deviceId, type, packageId, size, ranges, ts } = m as Record<string, unknown>;
  if (typeof tenantId !== 'string' || typeof deviceId !== 'string' || typeof packageId !== 'string') return null;
  if (type !== 'FIRMWARE' && type !== 'SOFTWARE') return null;
  if (typeof size !== 'number' || typeof ts !== 'number' || !Array.isArray(ranges) || ranges.length > MAX_RANGES) return null;
  const clean: Array<[number, number]> = [];
  for (const r of ranges as unknown[]) {
    if (!Array.isArray(r) || typeof r[0] !== 'number' || typeof r[1] !== 'number' || !(r[0] <= r[1])) return null;
    clean.push([r[0], r[1]]);
  }
  return { tenantId: tenantId as TenantId, deviceId: deviceId as DeviceId, type, packageId: packageId as OtaPackageId, size, ranges: clean, ts };
}

function view(t: ServedBytes): DownloadProgressView {
  const served = covered(t.ranges);
  return { packageId: t.packageId, servedBytes: served, size: t.size, percent: t.size ? Math.round((served / t.size) * 1000) / 10 : 0, ts: t.ts };
}
