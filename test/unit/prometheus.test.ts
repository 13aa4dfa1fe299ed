import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EngineEvents } from '../../server/events';
import { OtaPrometheus } from '../../server/fleet/prometheus';
import { Notifier } from '../../server/pipeline/notifier';
import { NotifyQueue } from '../../server/pipeline/notify-queue';
import { openStore } from '../../server/store/open-store';
import type { Store } from '../../server/store/store';
import { realTimers } from '../../server/timers';

describe('Prometheus exposition', () => {
  let dir: string;
  let store: Store;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-prometheus-'));
    store = await openStore({ dataDir: dir });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the active rollouts once per scrape for both rollout gauges', async () => {
    let reads = 0;
    const prometheus = new OtaPrometheus({
      fleet: store.fleet,
      queue: new NotifyQueue(store, realTimers, 30_000),
      notifier: new Notifier(store, realTimers),
      events: new EngineEvents(),
      liveStreams: () => ({ open: 0, bytes: 0, devices: 0 }),
      rollouts: {
        counts: () => store.rollouts.counts(),
        activeDeviceCounts: () => {
          reads += 1;
          return store.rollouts.activeDeviceCounts();
        },
      },
    });
    try {
      const text = await prometheus.exposition();
      expect(text).to.include('# TYPE ota_rollout_devices gauge').and.to.include('# TYPE ota_rollout_current_wave gauge');
      expect(reads).to.equal(1);
      await prometheus.exposition();
      expect(reads, 'a later scrape reads again').to.equal(2);
    } finally {
      prometheus.close();
    }
  });
});
