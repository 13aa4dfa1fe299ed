import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger';
import type { Rollout, RolloutDeviceStatus, RolloutDeviceView, WaveProgress } from '../store/rollouts';
import type { Store } from '../store/store';
import type { Timers } from '../timers';
import { abortReason, gateDecision, insideWindow, outcomeOf, type Tally } from './rollout-rules';
import type { RolloutService } from './rollout-service';

/** How often running rollouts are looked at, unless `OTA_ROLLOUT_TICK_MS` says otherwise. */
export const DEFAULT_ROLLOUT_TICK_MS = 1000;
/** How long a rollout stays with the instance driving it before another may take it over. */
export const DEFAULT_ROLLOUT_LEASE_MS = 30_000;
/** The cluster bus topic of "a rollout started or resumed": the other instances look at once. */
const ROLLOUTS_TOPIC = 'rollouts';
/** Rollouts driven per tick by one instance. */
const CLAIM_LIMIT = 50;

/** `OTA_ROLLOUT_TICK_MS`: how often running rollouts move on (outcomes read, gates and abort rules checked). */
export function rolloutTickFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_ROLLOUT_TICK_MS;
  if (raw === undefined || raw === '') return DEFAULT_ROLLOUT_TICK_MS;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 10) throw new Error(`OTA_ROLLOUT_TICK_MS must be a whole number of milliseconds, at least 10, not '${raw}'`);
  return ms;
}

const FINISHED: ReadonlySet<RolloutDeviceStatus> = new Set(['UPDATED', 'FAILED', 'SKIPPED']);

/**
 * Moves running rollouts on, one step per tick: reads each assigned device's outcome from the
 * state tracker's records (UPDATED = success, FAILED = failure), applies the abort rule over every
 * finished device, assigns the current wave's devices while the maintenance window is open (and
 * takes queued ones back when it closes), and opens the gate to the next wave.
 *
 * Durable: everything lives in the store, so a restart goes on where it stood. With several
 * instances on one database, a rollout is driven by the instance holding its lease (`claim`, as
 * the notify queue's), renewed every tick; a dead instance's rollouts go to another when it runs out.
 */
export class RolloutDriver {
  private readonly owner = randomUUID();
  private timer: unknown = null;
  private ticking: Promise<void> | null = null;
  private stopped = true;
  private soon = false;
  private readonly unhear: () => void;

  constructor(
    private readonly store: Store,
    private readonly service: RolloutService,
    private readonly timers: Timers,
    private readonly logger: Logger,
    private readonly tickMs: number = DEFAULT_ROLLOUT_TICK_MS,
    private readonly leaseMs: number = DEFAULT_ROLLOUT_LEASE_MS,
  ) {
    // A rollout started or resumed here, or on another instance on the database (the cluster bus).
    service.on('started', () => {
      this.poke();
      void store.cluster.publish(ROLLOUTS_TOPIC, [{}]).catch((err: Error) => logger.warn(`cannot tell the other instances of a rollout: ${err.message}`));
    });
    this.unhear = store.cluster.subscribe(ROLLOUTS_TOPIC, () => this.poke());
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Looks again now (a rollout started or resumed). */
  poke(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.soon = true;
      return;
    }
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.schedule(0);
  }

  /** Stops ticking, waits for a tick under way, and gives the leases up for another instance. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unhear();
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
    await this.store.rollouts.release(this.owner).catch((err: Error) => this.logger.warn(`cannot release the rollout leases: ${err.message}`));
  }

  /**
   * Ticks while any rollout runs (here, or on another instance whose lease may run out); with none,
   * no timer at all until a start or resume pokes it.
   */
  private schedule(ms: number): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      let running = true;
      this.ticking = this.tick()
        .then((r) => void (running = r))
        .catch((err: Error) => this.logger.error(`rollouts: ${err.message}`))
        .finally(() => {
          this.ticking = null;
          const again = this.soon;
          this.soon = false;
          if (again) this.schedule(0);
          else if (running) this.schedule(this.tickMs);
        });
    }, ms);
  }

  /**
   * One step of every running rollout this instance may drive; answers whether any rollout runs
   * (driven here or elsewhere). Public for tests that step by hand.
   */
  async tick(): Promise<boolean> {
    const claimed = await this.store.rollouts.claim(this.owner, this.timers.now(), this.leaseMs, CLAIM_LIMIT);
    for (const r of claimed) {
      try {
        await this.service.serial(() => this.step(r.tenantId, r));
      } catch (err) {
        this.logger.error(`rollout '${r.name}': ${(err as Error).message}`);
      }
    }
    return claimed.length > 0 || (await this.store.rollouts.counts()).some((c) => c.state === 'RUNNING' && c.rollouts > 0);
  }

  /** One step of one rollout; the stored rollout is read again inside `serial`, a command may have changed it. */
  private async step(tenantId: Rollout['tenantId'], claimed: Rollout): Promise<void> {
    let r = await this.store.rollouts.findById(tenantId, claimed.id);
    if (!r || r.state !== 'RUNNING') return;
    const now = this.timers.now();
    let devices = await this.store.rollouts.devices(r.id, r.type);
    devices = await this.recordOutcomes(r, devices);

    const tally = tallyOf(devices);
    const abort = abortReason(r.spec.abort, tally);
    if (abort) {
      this.logger.warn(`rollout '${r.name}' aborted: ${abort}`);
      await this.service.settle(r, 'ABORTED', abort, false);
      return;
    }

    for (;;) {
      const w = r.currentWave;
      const wave = r.waves[w];
      if (!wave) {
        await this.service.save(r, { state: 'COMPLETED', reason: null, finishedTime: now });
        return;
      }
      const open = insideWindow(r.spec.window, now);
      const inWave = devices.filter((d) => d.wave === w);
      if (wave.state === 'PENDING') {
        if (!open) {
          await this.setReason(r, 'waiting for the maintenance window');
          return;
        }
        r = await this.service.save(r, { waves: withWave(r.waves, w, { state: 'RUNNING', startedTime: now }), reason: null });
      }
      if (open) {
        devices = await this.assignPending(r, devices, inWave);
        if (r.reason === 'outside the maintenance window') r = await this.service.save(r, { reason: null });
      } else {
        await this.takeBackQueued(r, inWave, now);
        await this.setReason(r, 'outside the maintenance window');
        return;
      }

      // After the last wave the rollout is complete only when every device of every wave finished
      // (an earlier wave's gate may have passed while some of its devices still updated).
      const last = w === r.waves.length - 1;
      const waveDone = devices.filter((d) => last || d.wave === w).every((d) => FINISHED.has(d.status));
      const gate = gateDecision(r.spec.gate, tallyOf(devices), waveDone, last);
      if (!gate.open) {
        if (gate.final) {
          this.logger.warn(`rollout '${r.name}' stopped: ${gate.reason}`);
          await this.service.settle(r, 'ABORTED', gate.reason, false);
        }
        return;
      }
      const passed = r.waves[w]?.gatePassedTime ?? now;
      if (r.waves[w]?.gatePassedTime === null) r = await this.service.save(r, { waves: withWave(r.waves, w, { gatePassedTime: now }) });
      if (now < passed + r.spec.gate.waitSeconds * 1000) return;
      r = await this.service.save(r, { waves: withWave(r.waves, w, { state: 'PASSED' }), currentWave: w + 1 });
      // The next wave starts in the same step.
    }
  }

  /** ASSIGNED devices whose state tracker record says UPDATED or FAILED for this package. */
  private async recordOutcomes(r: Rollout, devices: RolloutDeviceView[]): Promise<RolloutDeviceView[]> {
    const changed: RolloutDeviceView[] = [];
    const out = devices.map((d) => {
      const status = outcomeOf(r, d);
      if (status === d.status) return d;
      const next = { ...d, status };
      changed.push(next);
      return next;
    });
    if (changed.length) await this.store.rollouts.putDevices(changed);
    return out;
  }

  private async assignPending(r: Rollout, devices: RolloutDeviceView[], inWave: readonly RolloutDeviceView[]): Promise<RolloutDeviceView[]> {
    const updated = new Map<string, RolloutDeviceView>();
    for (const d of inWave) {
      if (d.status !== 'PENDING') continue;
      const { assigned, error } = await this.service.devices.assign(r, d);
      if (!assigned) {
        this.logger.warn(`rollout '${r.name}': device '${d.name ?? d.deviceId}' left out: ${error}`);
        await this.store.rollouts.putDevices([{ ...d, status: 'SKIPPED' }]);
      }
      updated.set(d.deviceId, { ...d, status: assigned ? 'ASSIGNED' : 'SKIPPED' });
    }
    return devices.map((d) => updated.get(d.deviceId) ?? d);
  }

  /** The window closed: devices of the wave still in the queue come back out, until it opens again. */
  private async takeBackQueued(r: Rollout, inWave: readonly RolloutDeviceView[], now: number): Promise<void> {
    for (const d of inWave) if (d.status === 'ASSIGNED') await this.service.devices.takeBack(r, d, now);
  }

  private async setReason(r: Rollout, reason: string): Promise<void> {
    if (r.reason !== reason) await this.service.save(r, { reason });
  }
}

/** Finished and assigned devices over every wave so far. */
export function tallyOf(devices: readonly RolloutDeviceView[]): Tally {
  let assigned = 0;
  let updated = 0;
  let failed = 0;
  for (const d of devices) {
    if (d.status === 'ASSIGNED' || d.status === 'UPDATED' || d.status === 'FAILED') assigned += 1;
    if (d.status === 'UPDATED') updated += 1;
    else if (d.status === 'FAILED') failed += 1;
  }
  return { assigned, updated, failed };
}

const withWave = (waves: readonly WaveProgress[], i: number, change: Partial<WaveProgress>): WaveProgress[] => waves.map((w, j) => (j === i ? { ...w, ...change } : w));
