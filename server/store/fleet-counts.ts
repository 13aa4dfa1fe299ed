import type { OtaPackageType } from './ota-packages';
import type { FleetCounts, FleetGroupCounts } from './ota-states';
import { COUNTED_STATES, emptyCounts, type StateCounts } from './fleet-read-model';

/** Per type, targeted devices by state: the named states on their own, any other as OTHER. */
export function distributionOf(rows: ReadonlyArray<{ type: OtaPackageType; state: string | null; n: number }>): Record<OtaPackageType, StateCounts> {
  const out: Record<OtaPackageType, StateCounts> = { FIRMWARE: emptyCounts(), SOFTWARE: emptyCounts() };
  for (const r of rows) {
    const counts = out[r.type];
    if (!counts) continue;
    const key = (COUNTED_STATES as readonly string[]).includes(r.state ?? '') ? (r.state as keyof StateCounts) : 'OTHER';
    counts[key] += Number(r.n);
  }
  return out;
}

export function groupCounts(r: { key: string; type: OtaPackageType; title: string; version: string } & Record<keyof FleetCounts, number | string | null>): FleetGroupCounts {
  return {
    key: r.key,
    type: r.type,
    title: r.title,
    version: r.version,
    targeted: Number(r.targeted ?? 0),
    pending: Number(r.pending ?? 0),
    inProgress: Number(r.inProgress ?? 0),
    updated: Number(r.updated ?? 0),
    failed: Number(r.failed ?? 0),
    onTarget: Number(r.onTarget ?? 0),
  };
}
