/**
 * What the dashboard's live download progress costs the download path: every chunk served passes
 * through DownloadProgress.served(), which tells LiveProgress (server/fleet/live-progress.ts). Timed:
 * BENCH_PROGRESS_CHUNKS chunks (default 1,000,000) over BENCH_PROGRESS_DEVICES devices (default
 * 10,000), server CPU per chunk, with no live stream (the reference: served() as it was before),
 * with a stream following none of the downloading devices, and with one following 1,000 of them
 * (a page of the largest size). Then what one round of a stream costs: the totals of 1,000 followed
 * devices read (store rows plus what waits in memory), beside the store's bare read of those rows.
 *
 * Medians of BENCH_PROGRESS_ROUNDS rounds (default 7), the cases in a rotating order so that none
 * always runs after another's garbage; CPU time of this process, which swings less than wall time
 * on a shared machine. SQLite in a temporary directory; nothing is written.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EngineEvents } from '../server/events';
import { DownloadProgress } from '../server/fleet/download-progress';
import { backgroundTimers } from '../server/fleet/fleet-watch';
import { LiveProgress } from '../server/fleet/live-progress';
import type { DeviceId, OtaPackageId, TenantId } from '../server/ids';
import { openStore } from '../server/store/open-store';
import type { Store } from '../server/store/store';
import { benchLogger, positiveInt, printTable, type Benchmark } from './lib';

export const liveProgress: Benchmark = { name: 'Live download progress on the dashboard (cost per chunk served, cost of a round)', run };

const FOLLOWED = 1000;

/** CPU time this process used since `start` (user + system), in ms: on a loaded machine wall time swings, this less. */
function cpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function run(): Promise<void> {
  const chunks = positiveInt('BENCH_PROGRESS_CHUNKS', 1_000_000);
  const deviceCount = positiveInt('BENCH_PROGRESS_DEVICES', 10_000);
  const rounds = positiveInt('BENCH_PROGRESS_ROUNDS', 7);
  const dir = await mkdtemp(path.join(tmpdir(), 'ota-bench-progress-'));
  const store: Store = await openStore({ dataDir: dir });
  const logger = benchLogger();
  try {
    const tenant = randomUUID() as TenantId;
    const pkg = randomUUID() as OtaPackageId;
    const devices = Array.from({ length: deviceCount }, () => randomUUID() as DeviceId);
    const perDevice = Math.ceil(chunks / deviceCount);
    const settings = { maxPending: deviceCount + 1, flushMs: 60_000 };

    /** Chunks served to every device in turn, with a stream following `follow` of them (none: no stream at all). */
    const serve = async (follow: number | null): Promise<number> => {
      const downloads = new DownloadProgress(new EngineEvents(), store, settings, logger);
      let live: LiveProgress | null = null;
      if (follow !== null) {
        live = new LiveProgress(downloads, { intervalMs: 250, maxDevices: FOLLOWED }, logger, backgroundTimers);
        live.follow(
          tenant,
          live.open(tenant, () => true),
          devices.slice(0, follow),
        );
      }
      const start = process.cpuUsage();
      for (let c = 0; c < perDevice; c++) for (const d of devices) downloads.served(tenant, d, 'FIRMWARE', pkg, perDevice * 1000, c * 1000, c * 1000 + 1000, c);
      const ms = cpuSince(start);
      live?.stop();
      // Writes what waits, outside the timed part (the devices do not exist: nothing is kept).
      await downloads.close();
      return (ms * 1e6) / (perDevice * deviceCount);
    };

    const cases: Array<[string, () => Promise<number>]> = [
      ['no live stream (reference)', () => serve(null)],
      ['a stream following none of them', () => serve(0)],
      [`a stream following ${FOLLOWED.toLocaleString('en-US')} of them`, () => serve(FOLLOWED)],
    ];
    const ns = cases.map(() => [] as number[]);
    await serve(FOLLOWED); // warm-up
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < cases.length; k++) {
        const i = (r + k) % cases.length;
        (ns[i] as number[]).push(await (cases[i] as [string, () => Promise<number>])[1]());
      }
    }
    console.log(`${(perDevice * deviceCount).toLocaleString('en-US')} chunks over ${deviceCount.toLocaleString('en-US')} devices, medians of ${rounds} rounds:\n`);
    printTable(
      ['served() with', 'CPU ns per chunk', 'vs reference'],
      cases.map(([name], i) => [name, median(ns[i] as number[]).toFixed(0), `${(median(ns[i] as number[]) / median(ns[0] as number[])).toFixed(2)}x`]),
    );

    // One round: the followed devices' totals, half of them with bytes waiting in memory.
    const downloads = new DownloadProgress(new EngineEvents(), store, settings, logger);
    const followed = devices.slice(0, FOLLOWED);
    for (const d of followed.slice(0, FOLLOWED / 2)) downloads.served(tenant, d, 'FIRMWARE', pkg, 1_000_000, 0, 5000, 1);
    const ours: number[] = [];
    const bare: number[] = [];
    for (let r = 0; r < rounds * 3; r++) {
      let start = process.cpuUsage();
      await downloads.current(tenant, followed);
      ours.push(cpuSince(start));
      start = process.cpuUsage();
      await store.downloads.get(tenant, followed);
      bare.push(cpuSince(start));
    }
    await downloads.close();
    console.log('');
    printTable(
      ['one round (SQLite)', 'median CPU ms'],
      [
        [`totals of ${FOLLOWED.toLocaleString('en-US')} followed devices (current())`, median(ours).toFixed(2)],
        ['the store read of their rows alone (reference)', median(bare).toFixed(2)],
      ],
    );
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
