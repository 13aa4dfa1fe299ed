import type { TenantId } from '../ids';
import type { RolloutService } from '../rollouts/rollout-service';
import { waveFigures } from '../rollouts/rollout-json';
import type { OtaPackageRepository } from '../store/ota-packages';
import type { RolloutState, WaveState } from '../store/rollouts';

/** Rollouts the dashboard lists: the newest ones, running or not. */
const PANEL_SIZE = 20;

export interface RolloutPanelRow {
  id: string;
  name: string;
  state: RolloutState;
  /** Why it stopped by itself, or what it waits for (the maintenance window). */
  reason: string | null;
  package: { id: string; title: string | null; version: string | null; type: string };
  currentWave: number;
  createdTime: number;
  finishedTime: number | null;
  devices: number;
  updated: number;
  failed: number;
  waves: Array<{ state: WaveState; devices: number; updated: number; failed: number; inProgress: number; pending: number; skipped: number }>;
}

/** The dashboard's Rollouts panel: each rollout with its package, its waves counted, and why it stopped. */
export async function rolloutPanel(rollouts: RolloutService, packages: Pick<OtaPackageRepository, 'findById'>, tenantId: TenantId): Promise<RolloutPanelRow[]> {
  const page = await rollouts.page(tenantId, { pageSize: PANEL_SIZE, page: 0, sortProperty: 'createdTime', sortOrder: 'DESC' });
  const rows: RolloutPanelRow[] = [];
  for (const r of page.data) {
    const v = await rollouts.view(r);
    const pkg = await packages.findById(tenantId, r.packageId);
    const waves = r.spec.waves.map((_, i) => waveFigures(v.waveViews[i]));
    const sum = (k: 'devices' | 'updated' | 'failed'): number => waves.reduce((a, w) => a + w[k], 0);
    rows.push({
      id: r.id,
      name: r.name,
      state: r.state,
      reason: r.reason,
      package: { id: r.packageId, title: pkg?.title ?? null, version: pkg?.version ?? null, type: r.type },
      currentWave: r.currentWave,
      createdTime: r.createdTime,
      finishedTime: r.finishedTime,
      devices: sum('devices'),
      updated: sum('updated'),
      failed: sum('failed'),
      waves,
    });
  }
  return rows;
}
