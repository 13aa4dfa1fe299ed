import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { invalid, notFound } from '../errors';
import { isUuid, type DeviceId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../ids';
import type { Logger } from '../logger';
import type { OtaPackageService } from '../packages/ota-package-service';
import { effectivePackageId } from '../pipeline/notifier';
import type { Timers } from '../timers';
import type { DeviceProfile } from '../store/device-profiles';
import type { Device } from '../store/devices';
import type { Rollout, RolloutDevice, RolloutDeviceView, RolloutId, RolloutSpec, RolloutState, WaveState } from '../store/rollouts';
import type { PageData, PageLink } from '../store/sqlite/database';
import type { Store } from '../store/store';
import { RolloutDevices } from './rollout-devices';
import { isTimeZone, outcomeOf, waveSizes } from './rollout-rules';

/** What a rollout is created with (the REST body, validated by its schema). */
export interface RolloutInput {
  name: string;
  packageId: OtaPackageId;
  spec: RolloutSpec;
}

/** A wave with its devices counted by outcome (the REST API's and the dashboard's view). */
export interface WaveView {
  state: WaveState;
  devices: number;
  updated: number;
  failed: number;
  inProgress: number;
  /** Not yet assigned (waiting for the wave, the window, a resume). */
  pending: number;
  skipped: number;
  startedTime: number | null;
}

export interface RolloutView extends Rollout {
  waveViews: WaveView[];
}

export type RolloutEvent = { kind: 'state'; rollout: Rollout } | { kind: 'wave'; rollout: Rollout; wave: number; state: WaveState };

/** Devices of a profile read per page when a rollout starts. */
const PAGE = 1000;
/** How often a save lost to a concurrent one (another instance, the driver) is tried again. */
const ATTEMPTS = 5;

const TRANSITIONS: Record<'pause' | 'resume' | 'cancel' | 'abort', readonly RolloutState[]> = {
  pause: ['RUNNING'],
  resume: ['PAUSED'],
  cancel: ['DRAFT', 'RUNNING', 'PAUSED'],
  abort: ['RUNNING', 'PAUSED'],
};

/**
 * Rollouts (issue 14): a package sent to a target in waves, with a gate between waves and an abort
 * rule. This class holds the commands (create, start, pause, resume, cancel, abort) and the views;
 * `RolloutDriver` moves running rollouts on. Every change of a rollout of this instance runs one
 * at a time (`serial`), and every save is versioned, so a command and the driver (here or on
 * another instance) never overwrite each other.
 */
export class RolloutService extends EventEmitter<{ rollout: [RolloutEvent]; started: [] }> {
  readonly devices: RolloutDevices;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly deps: { packages: OtaPackageService; devices: RolloutDevices; logger: Logger },
    private readonly timers: Pick<Timers, 'now'>,
  ) {
    super();
    this.devices = deps.devices;
  }

  /** Runs `work` after every change of a rollout this instance started before it. */
  serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  async create(tenantId: TenantId, input: RolloutInput): Promise<Rollout> {
    const pkg = await this.store.packages.findById(tenantId, input.packageId);
    if (!pkg) throw invalid("Can't create a rollout of a non-existent package!");
    const { spec } = input;
    if (spec.window && !isTimeZone(spec.window.timeZone)) throw invalid(`Unknown time zone: '${spec.window.timeZone}'`);
    if ('deviceIds' in spec.target) {
      for (const id of spec.target.deviceIds) if (!(await this.store.devices.findById(tenantId, id))) throw invalid(`Device with id [${id}] is not found!`);
    } else if (!(await this.store.profiles.findById(tenantId, spec.target.deviceProfileId))) {
      throw invalid(`Device profile with id [${spec.target.deviceProfileId}] is not found!`);
    }
    const rollout: Rollout = {
      id: randomUUID() as RolloutId,
      tenantId,
      name: input.name,
      packageId: pkg.id,
      type: pkg.type,
      spec,
      state: 'DRAFT',
      reason: null,
      currentWave: 0,
      waves: [],
      createdTime: this.timers.now(),
      startedTime: null,
      finishedTime: null,
      version: 1,
    };
    await this.store.rollouts.insert(rollout);
    this.emit('rollout', { kind: 'state', rollout });
    return rollout;
  }

  /** A package by title and version and a profile by name, as a flow names them (ota-rollout's `create`). */
  async idsByName(tenantId: TenantId, names: { package?: { title: string; version: string }; deviceProfile?: string }): Promise<{ packageId?: string; deviceProfileId?: string }> {
    const out: { packageId?: string; deviceProfileId?: string } = {};
    if (names.package) {
      const pkg = await this.store.packages.findByTitleVersion(tenantId, names.package.title, names.package.version);
      if (!pkg) throw invalid(`No package '${names.package.title}' version '${names.package.version}'`);
      out.packageId = pkg.id;
    }
    if (names.deviceProfile !== undefined) {
      const profile = await this.store.profiles.findByName(tenantId, names.deviceProfile);
      if (!profile) throw invalid(`No device profile named '${names.deviceProfile}'`);
      out.deviceProfileId = profile.id;
    }
    return out;
  }

  async get(tenantId: TenantId, id: string): Promise<Rollout> {
    const r = isUuid(id) ? await this.store.rollouts.findById(tenantId, id as RolloutId) : null;
    if (!r) throw notFound(`Rollout with id [${id}] is not found!`);
    return r;
  }

  page(tenantId: TenantId, link: PageLink): Promise<PageData<Rollout>> {
    return this.store.rollouts.page(tenantId, link);
  }

  /** The rollout with its waves counted. */
  async view(r: Rollout): Promise<RolloutView> {
    // Outcomes as they are now, also of a rollout no longer driven (paused, aborted: devices told go on).
    const devices = (await this.store.rollouts.devices(r.id, r.type)).map((d) => ({ ...d, status: outcomeOf(r, d) }));
    return { ...r, waveViews: r.waves.map((w, i) => ({ ...countWave(devices.filter((d) => d.wave === i)), state: w.state, startedTime: w.startedTime })) };
  }

  deviceViews(r: Rollout): Promise<RolloutDeviceView[]> {
    return this.store.rollouts.devices(r.id, r.type);
  }

  /**
   * DRAFT -> RUNNING: the target is resolved to its devices now (a profile's devices as they are
   * at start), split into waves, checked (the package fits their profile, the tenant's policy, the
   * downgrade guard unless forced) and kept; the driver assigns the first wave.
   */
  start(tenantId: TenantId, id: string): Promise<Rollout> {
    return this.serial(async () => {
      const r = await this.get(tenantId, id);
      if (r.state !== 'DRAFT') throw invalid(`Rollout is ${r.state}: only a DRAFT rollout can be started!`);
      const devices = await this.targetDevices(r);
      // Each profile read and checked once, not once per device: a profile may hold 100,000 devices.
      const profiles = new Map<DeviceProfileId, DeviceProfile | null>();
      for (const d of devices) if (!profiles.has(d.deviceProfileId)) profiles.set(d.deviceProfileId, await this.store.profiles.findById(tenantId, d.deviceProfileId));
      for (const profileId of profiles.keys()) await this.deps.packages.checkAssignable(tenantId, r.type, r.packageId, profileId);
      if (!r.spec.forceDowngrade) for (const d of devices) await this.deps.packages.downgrades.check(tenantId, r.type, r.packageId, { deviceId: d.id }, false);
      const sizes = waveSizes(r.spec.waves, devices.length);
      const rows: RolloutDevice[] = [];
      let position = 0;
      for (const [wave, size] of sizes.entries()) {
        for (let i = 0; i < size; i++, position++) {
          const d = devices[position] as Device;
          const already = effectivePackageId(d, profiles.get(d.deviceProfileId) ?? null, r.type) === r.packageId;
          rows.push({ rolloutId: r.id, deviceId: d.id, wave, position, status: already ? 'SKIPPED' : 'PENDING', previousPackageId: null });
        }
      }
      await this.store.rollouts.putDevices(rows);
      const now = this.timers.now();
      const started = await this.save(r, { state: 'RUNNING', startedTime: now, waves: sizes.map(() => ({ state: 'PENDING' as const, startedTime: null, gatePassedTime: null })) });
      this.emit('started');
      return started;
    });
  }

  pause(tenantId: TenantId, id: string): Promise<Rollout> {
    return this.stop(tenantId, id, 'pause', 'PAUSED', null, false);
  }

  resume(tenantId: TenantId, id: string): Promise<Rollout> {
    return this.serial(async () => {
      const r = await this.get(tenantId, id);
      if (!TRANSITIONS.resume.includes(r.state)) throw invalid(`Rollout is ${r.state}: only a PAUSED rollout can be resumed!`);
      const resumed = await this.save(r, { state: 'RUNNING', reason: null });
      this.emit('started');
      return resumed;
    });
  }

  cancel(tenantId: TenantId, id: string): Promise<Rollout> {
    return this.stop(tenantId, id, 'cancel', 'CANCELLED', null, false);
  }

  abort(tenantId: TenantId, id: string, rollback: boolean): Promise<Rollout> {
    return this.stop(tenantId, id, 'abort', 'ABORTED', null, rollback);
  }

  private stop(tenantId: TenantId, id: string, command: keyof typeof TRANSITIONS, state: RolloutState, reason: string | null, rollback: boolean): Promise<Rollout> {
    return this.serial(async () => {
      const r = await this.get(tenantId, id);
      if (!TRANSITIONS[command].includes(r.state)) throw invalid(`Rollout is ${r.state}: it can't be ${PAST[command]}!`);
      return this.settle(r, state, reason, rollback);
    });
  }

  /**
   * Moves a rollout to a state where no device is told anything more (PAUSED, CANCELLED, ABORTED):
   * the state is saved first (so the driver assigns no one else), then every device still waiting
   * in the queue is taken back; with `rollback`, the devices that updated get their previous
   * package again. Called inside `serial`.
   */
  async settle(r: Rollout, state: RolloutState, reason: string | null, rollback: boolean): Promise<Rollout> {
    const now = this.timers.now();
    const final = state !== 'PAUSED';
    const waves = r.waves.map((w) => (final && w.state === 'RUNNING' ? { ...w, state: 'FAILED' as const } : w));
    let saved = await this.save(r, { state, reason, waves, finishedTime: final ? now : null });
    const devices = (await this.store.rollouts.devices(r.id, r.type)).map((d) => ({ ...d, status: outcomeOf(r, d) }));
    let takenBack = 0;
    for (const d of devices) if (d.status === 'ASSIGNED' && (await this.devices.takeBack(r, d, now))) takenBack += 1;
    let restored = 0;
    if (rollback) for (const d of devices) if (d.status === 'UPDATED' && (await this.devices.restore(r.tenantId, r, d))) restored += 1;
    if (takenBack || restored) this.deps.logger.info(`rollout '${r.name}' ${state}: ${takenBack} queued device(s) taken back${rollback ? `, ${restored} rolled back` : ''}`);
    if (rollback && restored) saved = await this.save(saved, { reason: [reason, `${restored} updated device(s) rolled back`].filter(Boolean).join('; ') });
    return saved;
  }

  /**
   * Saves `changes` over `before`, versioned. A save that lost a race (another instance changed the
   * rollout) is made again over the stored rollout, a few times.
   */
  async save(before: Rollout, changes: Partial<Rollout>): Promise<Rollout> {
    let base = before;
    for (let attempt = 1; ; attempt++) {
      const saved = { ...base, ...changes, version: base.version + 1 };
      if (await this.store.rollouts.update(saved)) {
        this.announce(base, saved);
        return saved;
      }
      const stored = await this.store.rollouts.findById(before.tenantId, before.id);
      if (!stored || attempt >= ATTEMPTS) throw new Error(`rollout ${before.id} changed meanwhile`);
      base = stored;
    }
  }

  /** State and wave events for whoever listens (the ota-rollout node). */
  private announce(before: Rollout, after: Rollout): void {
    if (this.listenerCount('rollout') === 0) return;
    after.waves.forEach((w, i) => {
      if (before.waves[i]?.state !== w.state) this.emit('rollout', { kind: 'wave', rollout: after, wave: i, state: w.state });
    });
    if (before.state !== after.state || before.reason !== after.reason) this.emit('rollout', { kind: 'state', rollout: after });
  }

  /** The target's devices in a stable order: a profile's by name, a list as given. */
  private async targetDevices(r: Rollout): Promise<Device[]> {
    const t = r.spec.target;
    if ('deviceIds' in t) {
      const out: Device[] = [];
      const seen = new Set<DeviceId>();
      for (const id of t.deviceIds) {
        if (seen.has(id)) continue;
        seen.add(id);
        const d = await this.store.devices.findById(r.tenantId, id);
        if (!d) throw invalid(`Device with id [${id}] is not found!`);
        out.push(d);
      }
      return out;
    }
    const filter = t.nameFilter?.toLowerCase();
    const out: Device[] = [];
    for (let page = 0; ; page++) {
      const p = await this.store.devices.page(r.tenantId, { pageSize: PAGE, page, sortProperty: 'name', sortOrder: 'ASC' }, { deviceProfileId: t.deviceProfileId });
      for (const d of p.data) if (!filter || d.name.toLowerCase().includes(filter)) out.push(d);
      if (!p.hasNext) break;
    }
    if (out.length === 0) throw invalid('The rollout target has no devices!');
    return out;
  }
}

const PAST: Record<keyof typeof TRANSITIONS, string> = { pause: 'paused', resume: 'resumed', cancel: 'cancelled', abort: 'aborted' };

function countWave(devices: readonly RolloutDeviceView[]): Omit<WaveView, 'state' | 'startedTime'> {
  const n = (s: RolloutDevice['status']): number => devices.filter((d) => d.status === s).length;
  return { devices: devices.length, updated: n('UPDATED'), failed: n('FAILED'), inProgress: n('ASSIGNED'), pending: n('PENDING'), skipped: n('SKIPPED') };
}
