import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { OtaPackageType } from './ota-packages';

/** Disjoint byte ranges kept per download; a client scattering more is counted up to this. */
export const MAX_RANGES = 256;

/** A device's download of one package as the server served it (issue 14): which bytes, when last. */
export interface ServedBytes {
  tenantId: TenantId;
  deviceId: DeviceId;
  type: OtaPackageType;
  packageId: OtaPackageId;
  size: number;
  /** Sorted, disjoint, non-adjacent `[start, end)` ranges of the package sent at least once. */
  ranges: Array<[number, number]>;
  /** When the last of them was sent (ms). */
  ts: number;
}

/** The fleet figure: devices with bytes served, their distinct bytes served and their packages' bytes. */
export interface ServedTotals {
  devices: number;
  servedBytes: number;
  packageBytes: number;
}

/**
 * Download progress kept in the store, so every instance serving a device adds to one figure and a
 * restart keeps it. One row per device and package type; a device's row of another package starts
 * over. A deleted device's rows go with it.
 */
export interface DownloadProgressRepository {
  /**
   * Adds what each entry says was served to the device's row, merging ranges (bytes served twice,
   * by this instance or another, count once); entries of devices deleted meanwhile are dropped.
   * One transaction for the batch.
   */
  add(batch: readonly ServedBytes[]): Promise<void>;
  /** The rows of these devices of the tenant (both types; none for a device nothing was served to). */
  get(tenantId: TenantId, deviceIds: readonly DeviceId[]): Promise<ServedBytes[]>;
  /** Every tenant's when `tenantId` is left out (Prometheus' scrape is no tenant's). */
  totals(tenantId?: TenantId): Promise<ServedTotals>;
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
  return covered(kept);
}

/** The bytes sorted disjoint ranges cover. */
export const covered = (ranges: ReadonlyArray<readonly [number, number]>): number => ranges.reduce((n, [a, b]) => n + (b - a), 0);

/** What a stored row becomes once `next` is added: the same package merges, another starts over. */
export function combine(stored: ServedBytes | null, next: ServedBytes): ServedBytes {
  if (!stored || stored.packageId !== next.packageId || stored.tenantId !== next.tenantId) return next;
  const ranges = stored.ranges.map(([a, b]): [number, number] => [a, b]);
  for (const [a, b] of next.ranges) merge(ranges, a, b);
  return { ...next, ranges, ts: Math.max(stored.ts, next.ts) };
}

/** Ranges as stored (JSON text); anything unreadable counts as nothing served. */
export function parseRanges(text: string): Array<[number, number]> {
  try {
    const v = JSON.parse(text) as unknown;
    if (!Array.isArray(v)) return [];
    return v.filter((r): r is [number, number] => Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] < r[1]);
  } catch {
    return [];
  }
}
