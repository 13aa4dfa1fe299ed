import { Gauge, type Registry } from 'prom-client';
import type { EngineEvents } from '../events';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { UplinkEvent } from '../pipeline/uplink';
import type { OtaPackageType } from '../store/ota-packages';

/** Devices whose progress is kept at most; the least recently served is forgotten first. */
export const DEFAULT_MAX_TRACKED_DEVICES = 100_000;
/** `OTA_DOWNLOAD_PROGRESS_MAX_DEVICES`: unset means the default; anything but a positive whole number is refused. */
export function maxTrackedDownloadsFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_DOWNLOAD_PROGRESS_MAX_DEVICES;
  if (raw === undefined || raw === '') return DEFAULT_MAX_TRACKED_DEVICES;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`OTA_DOWNLOAD_PROGRESS_MAX_DEVICES must be a positive whole number of devices, not '${raw}'`);
  return n;
}
/** Disjoint byte ranges kept per download; a client scattering more is counted up to this. */
const MAX_RANGES = 256;

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

interface Tracked {
  tenantId: TenantId;
  packageId: OtaPackageId;
  size: number;
  /** Sorted, disjoint, non-adjacent `[start, end)` ranges. */
  ranges: Array<[number, number]>;
  served: number;
  ts: number;
}

/**
 * Download progress seen from the server (issue 14): every transport reports each response it
 * sends as a `download` uplink (HTTP whole/chunk/Range, MQTT chunks, CoAP blocks), so this listens
 * in one place and merges the byte ranges per device and package type. Kept in memory per
 * instance, not in the store: it is a live figure, rebuilt by the next bytes sent after a
 * restart, and writing it per chunk would cost a store write per chunk.
 */
export class DownloadProgress {
  private readonly tracked = new Map<string, Tracked>();
  private readonly unhook: () => void;

  constructor(
    events: EngineEvents,
    private readonly maxDevices = DEFAULT_MAX_TRACKED_DEVICES,
  ) {
    const listener = (ev: UplinkEvent): void => {
      if (ev.kind === 'download') this.served(ev.tenantId, ev.deviceId, ev.type, ev.packageId, ev.size, ev.offset, ev.offset + ev.bytes, ev.ts);
    };
    events.on('uplink', listener);
    this.unhook = () => events.off('uplink', listener);
  }

  /** Counts bytes `[start, end)` of a package sent to a device. */
  served(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType, packageId: OtaPackageId, size: number, start: number, end: number, ts: number): void {
    const key = `${deviceId}:${type}`;
    let t = this.tracked.get(key);
    // Another package: its download starts from nothing.
    if (!t || t.packageId !== packageId || t.tenantId !== tenantId) t = { tenantId, packageId, size, ranges: [], served: 0, ts };
    this.tracked.delete(key); // re-inserted last: the map's order is least recently served first
    const s = Math.max(0, Math.min(start, size));
    const e = Math.max(s, Math.min(end, size));
    if (e > s) t.served = merge(t.ranges, s, e);
    t.ts = ts;
    this.tracked.set(key, t);
    while (this.tracked.size > this.maxDevices) this.tracked.delete(this.tracked.keys().next().value as string);
  }

  of(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): DownloadProgressView | null {
    const t = this.tracked.get(`${deviceId}:${type}`);
    return t && t.tenantId === tenantId ? view(t) : null;
  }

  /** The fleet figure: devices with bytes served, and the distinct bytes served over the bytes of their packages. */
  fleet(tenantId?: TenantId): { devices: number; servedBytes: number; packageBytes: number; ratio: number } {
    let devices = 0;
    let servedBytes = 0;
    let packageBytes = 0;
    for (const t of this.tracked.values()) {
      if (tenantId !== undefined && t.tenantId !== tenantId) continue;
      devices += 1;
      servedBytes += t.served;
      packageBytes += t.size;
    }
    return { devices, servedBytes, packageBytes, ratio: packageBytes ? servedBytes / packageBytes : 0 };
  }

  /** Gauges on the engine's /metrics registry. */
  register(registry: Registry): void {
    const fleet = (): ReturnType<DownloadProgress['fleet']> => this.fleet();
    new Gauge({
      name: 'ota_download_progress_ratio',
      help: 'Distinct package bytes served over the bytes of the packages being downloaded, 0..1, over every device with bytes served (this instance, since start)',
      registers: [registry],
      collect() {
        this.set(fleet().ratio);
      },
    });
    new Gauge({
      name: 'ota_download_progress_devices',
      help: 'Devices with package bytes served whose progress this instance keeps',
      registers: [registry],
      collect() {
        this.set(fleet().devices);
      },
    });
  }

  close(): void {
    this.unhook();
  }
}

function view(t: Tracked): DownloadProgressView {
  return { packageId: t.packageId, servedBytes: t.served, size: t.size, percent: t.size ? Math.round((t.served / t.size) * 1000) / 10 : 0, ts: t.ts };
}

/** Adds `[start, end)` to sorted disjoint ranges in place; returns the bytes they now cover. */
export function merge(ranges: Array<[number, number]>, start: number, end: number): number {
  let s = start;
  let e = end;
  const kept: Array<[number, number]> = [];
  for (const [a, b] of ranges) {
    if (b < s || a > e) kept.push([a, b]);
    else {
      s = Math.min(s, a);
      e = Math.max(e, b);
    }
  }
  if (kept.length < MAX_RANGES) kept.push([s, e]);
  kept.sort((x, y) => x[0] - y[0]);
  ranges.splice(0, ranges.length, ...kept);
  return kept.reduce((n, [a, b]) => n + (b - a), 0);
}
