import { EventEmitter } from 'node:events';
import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { NotifyQueue } from './notify-queue';
import type { Timers } from '../timers';
import { keyPrefix, UPDATE_STATES, type UpdateState } from './ota-keys';
import type { OtaPackageType } from '../store/ota-packages';
import type { FleetCounts } from '../store/ota-states';
import type { TelemetryEntry, TelemetryValue } from '../store/telemetry';
import type { Store } from '../store/store';
import type { UplinkEvent } from './uplink';

export interface StateChange {
  tenantId: TenantId;
  deviceId: DeviceId;
  type: OtaPackageType;
  from: string | null;
  to: string;
  error: string | null;
  ts: number;
  /** `reported` by the device, `timeout` by the tracker, `retry` when a failed device is queued again. */
  reason: 'reported' | 'timeout' | 'retry';
}

export interface TrackerSettings {
  /** A device in INITIATED..UPDATING longer than this becomes FAILED; 0 = never. */
  timeoutMs: number;
  /** A FAILED device is queued again up to this many times per target; 0 = never. */
  maxRetries: number;
}

export interface GroupMetrics extends FleetCounts {
  type: OtaPackageType;
  /** Share of targeted devices already on the target version, 0..1. */
  coverage: number;
}
export interface PackageMetrics extends GroupMetrics {
  packageId: string;
  title: string;
  version: string;
}
export interface ProfileMetrics extends GroupMetrics {
  deviceProfileId: string;
  name: string;
}
export interface FleetMetrics {
  ts: number;
  packages: PackageMetrics[];
  profiles: ProfileMetrics[];
}

const TYPES: readonly OtaPackageType[] = ['FIRMWARE', 'SOFTWARE'];
const isState = (v: TelemetryValue | undefined): v is UpdateState | 'IDLE' => typeof v === 'string' && (UPDATE_STATES as readonly string[]).includes(v);
const str = (v: TelemetryValue | undefined): string | null => (v === undefined || v === null ? null : typeof v === 'string' ? v : JSON.stringify(v));

/**
 * Follows each device's update as it reports `fw_state`/`sw_state`, `current_*` and `fw_error`;
 * turns silence into FAILED after a timeout and FAILED into another try when retries are on.
 */
export class StateTracker extends EventEmitter<{ free: [] }> {
  /** Whose settings apply (an ota-state-tracker node's id): one owner per server. */
  private settingsOwner: string | null = null;
  private settings: TrackerSettings = { timeoutMs: 0, maxRetries: 0 };
  private timer: unknown = null;
  private onChange: ((changes: StateChange[]) => void) | null = null;
  private watcher: symbol | null = null;
  /** Per device, its uplink being recorded (the last one in line). */
  private readonly recording = new Map<DeviceId, Promise<StateChange[]>>();

  constructor(
    private readonly store: Store,
    private readonly deps: { queue: NotifyQueue },
    private readonly timers: Timers,
  ) {
    super();
  }

  /** Who owns the settings and the timeout checks now, if anyone. */
  get owner(): string | null {
    return this.settingsOwner;
  }

  /** Takes the settings and the timeout checks for `owner`; false when someone else has them. */
  claim(owner: string): boolean {
    if (this.settingsOwner !== null && this.settingsOwner !== owner) return false;
    this.settingsOwner = owner;
    return true;
  }

  /** `owner` gives them up: checks stop, settings go back to off, and whoever waits may claim them. */
  unclaim(owner: string): void {
    if (this.settingsOwner !== owner) return;
    this.settingsOwner = null;
    this.stop();
    this.configure({ timeoutMs: 0, maxRetries: 0 });
    this.emit('free');
  }

  configure(settings: TrackerSettings): void {
    this.settings = { timeoutMs: Math.max(0, settings.timeoutMs), maxRetries: Math.max(0, Math.floor(settings.maxRetries)) };
  }

  /** Checks for timeouts every `everyMs` while started; changes found go to `onChange`. */
  start(everyMs: number, onChange: (changes: StateChange[]) => void): symbol {
    this.stop();
    const handle = Symbol('watcher');
    this.watcher = handle;
    this.onChange = onChange;
    const loop = (): void => {
      this.timer = this.timers.setTimeout(() => {
        this.checkTimeouts()
          .then((changes) => changes.length && this.onChange?.(changes))
          .catch(() => undefined)
          .finally(() => this.onChange && loop());
      }, everyMs);
    };
    loop();
    return handle;
  }

  /** Stops the timeout checks (only if `handle` is still the watcher, when given). */
  stop(handle?: symbol): void {
    if (handle !== undefined && handle !== this.watcher) return;
    this.watcher = null;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.onChange = null;
  }

  /**
   * Records what a device reported; answers the state changes it made (late reports change nothing).
   * A device's uplinks are recorded one after the other, in the order they came: handled at once,
   * their writes could land in any order on a pool of connections, and two reports of the same
   * millisecond (UPDATING, UPDATED) must keep the order the device sent them in.
   */
  handleUplink(ev: UplinkEvent): Promise<StateChange[]> {
    if (ev.kind !== 'telemetry') return Promise.resolve([]);
    const record = (): Promise<StateChange[]> => this.record(ev.tenantId, ev.deviceId, ev.entries);
    const run = (this.recording.get(ev.deviceId) ?? Promise.resolve([])).then(record, record);
    this.recording.set(ev.deviceId, run);
    const done = (): void => {
      if (this.recording.get(ev.deviceId) === run) this.recording.delete(ev.deviceId);
    };
    run.then(done, done);
    return run;
  }

  private async record(tenantId: TenantId, deviceId: DeviceId, entries: readonly TelemetryEntry[]): Promise<StateChange[]> {
    const changes: StateChange[] = [];
    for (const entry of [...entries].sort((a, b) => a.ts - b.ts)) {
      for (const type of TYPES) {
        const p = keyPrefix(type);
        const v = entry.values;
        const title = str(v[`current_${p}_title`]);
        const version = str(v[`current_${p}_version`]);
        const state = v[`${p}_state`];
        if (!isState(state)) {
          if (title !== null || version !== null) await this.store.states.setCurrent(deviceId, tenantId, type, title, version);
          continue;
        }
        const error = str(v[`${p}_error`]) || null;
        const before = await this.store.states.get(deviceId, type);
        // The version goes with its state (one write): UPDATED is never counted off its target.
        if (!(await this.store.states.setState(deviceId, tenantId, type, state, entry.ts, error, { title, version }))) continue;
        if (before?.state !== state) changes.push({ tenantId, deviceId, type, from: before?.state ?? null, to: state, error, ts: entry.ts, reason: 'reported' });
        // Only a move into FAILED retries: a repeated FAILED report must not use up the retries.
        if (state === 'FAILED' && before?.state !== 'FAILED') changes.push(...(await this.retry(tenantId, deviceId, type)));
      }
    }
    return changes;
  }

  /** Devices stuck in INITIATED..UPDATING past the timeout become FAILED (and are retried if allowed). */
  async checkTimeouts(): Promise<StateChange[]> {
    if (this.settings.timeoutMs <= 0) return [];
    const now = this.timers.now();
    const changes: StateChange[] = [];
    for (const s of await this.store.states.stuck(now - this.settings.timeoutMs, 1000)) {
      const seconds = Math.round(this.settings.timeoutMs / 1000);
      const error = `Update timed out: no progress for ${seconds} s in state ${s.state}`;
      const p = keyPrefix(s.type);
      if (!(await this.store.states.setState(s.deviceId, s.tenantId, s.type, 'FAILED', now, error))) continue;
      await this.store.telemetry.save(s.deviceId, [{ ts: now, values: { [`${p}_state`]: 'FAILED', [`${p}_error`]: error } }]);
      changes.push({ tenantId: s.tenantId, deviceId: s.deviceId, type: s.type, from: s.state, to: 'FAILED', error, ts: now, reason: 'timeout' });
      changes.push(...(await this.retry(s.tenantId, s.deviceId, s.type)));
    }
    return changes;
  }

  private async retry(tenantId: TenantId, deviceId: DeviceId, type: OtaPackageType): Promise<StateChange[]> {
    if (this.settings.maxRetries <= 0) return [];
    const state = await this.store.states.get(deviceId, type);
    if (!state?.targetPackageId || state.retries >= this.settings.maxRetries) return [];
    const attempt = await this.store.states.incrementRetries(deviceId, type);
    const ts = this.timers.now();
    const queued = await this.deps.queue.enqueue({ tenantId, deviceId, type, packageId: state.targetPackageId as OtaPackageId, ts });
    if (!queued) return [];
    return [{ tenantId, deviceId, type, from: 'FAILED', to: 'QUEUED', error: `retry ${attempt} of ${this.settings.maxRetries}`, ts, reason: 'retry' }];
  }

  /** Pending, in progress, updated, failed and coverage per package and per profile. */
  async metrics(tenantId: TenantId): Promise<FleetMetrics> {
    const withCoverage = <T extends FleetCounts>(c: T): T & { coverage: number } => ({ ...c, coverage: c.targeted ? c.onTarget / c.targeted : 0 });
    const [packages, counted, assigned] = await Promise.all([
      this.store.fleet.counts(tenantId, 'package'),
      this.store.fleet.counts(tenantId, 'profile'),
      this.store.profiles.listAssigned(tenantId),
    ]);
    const profiles: ProfileMetrics[] = counted.map(({ key, title, version: _version, ...c }) => ({ deviceProfileId: key, name: title, ...withCoverage(c) }));
    // A profile with a package but no device yet is still an assignment: shown with 0 devices.
    for (const p of assigned) {
      for (const [type, packageId] of [
        ['FIRMWARE', p.firmwareId],
        ['SOFTWARE', p.softwareId],
      ] as const) {
        if (packageId && !profiles.some((m) => m.deviceProfileId === p.id && m.type === type)) {
          profiles.push({ deviceProfileId: p.id, name: p.name, type, targeted: 0, pending: 0, inProgress: 0, updated: 0, failed: 0, onTarget: 0, coverage: 0 });
        }
      }
    }
    return {
      ts: this.timers.now(),
      packages: packages.map(({ key, title, version, ...c }) => ({ packageId: key, title, version, ...withCoverage(c) })),
      profiles,
    };
  }
}
