import { emptyCounts, type DistributionPoint, type StateCounts } from './fleet-read-model';

/** The columns of `ota_state_snapshots`, one per counted state, and the count each keeps. */
export const SNAPSHOT_COLUMNS: ReadonlyArray<{ column: string; key: keyof StateCounts }> = [
  { column: 'queued', key: 'QUEUED' },
  { column: 'initiated', key: 'INITIATED' },
  { column: 'downloading', key: 'DOWNLOADING' },
  { column: 'downloaded', key: 'DOWNLOADED' },
  { column: 'verified', key: 'VERIFIED' },
  { column: 'updating', key: 'UPDATING' },
  { column: 'updated', key: 'UPDATED' },
  { column: 'failed', key: 'FAILED' },
  { column: 'other', key: 'OTHER' },
];

export type SnapshotRow = { ts: number } & Record<string, number>;

export function snapshotPoint(r: SnapshotRow): DistributionPoint {
  const counts = emptyCounts();
  for (const c of SNAPSHOT_COLUMNS) counts[c.key] = Number(r[c.column]);
  return { ts: Number(r.ts), counts };
}
