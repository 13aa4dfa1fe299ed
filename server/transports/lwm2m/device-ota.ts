import type { Logger } from '../../logger';
import type { UpdateState } from '../../pipeline/ota-keys';
import type { OtaPackageType } from '../../store/ota-packages';
import { ContentFormat, writeFormatFor } from './content-formats';
import { Lwm2mRequestError, type Lwm2mDeviceClient, type OpaqueSource } from './device-client';
import { hasObject, type RegisteredObjects } from './object-links';
import {
  FW_RESULT_TEXT,
  FW_STATE,
  MAX_RETRIES,
  SW_RESULT,
  SW_RESULT_TEXT,
  SW_STATE,
  firmwareResultRetries,
  firmwareResultToStatus,
  firmwareStateToStatus,
  softwareResultRetries,
  softwareResultToStatus,
  softwareStateToStatus,
} from './ota-status';
import type { Lwm2mProfileSettings } from './profile-settings';
import type { Lwm2mVersion, RemovalReason } from './registrations';
import type { Lwm2mValue } from './resource-types';
import { isUpdateRequired, type CurrentPackage, type OtaTarget } from './update-decision';

/** An update state change of one device, for the state tracker (`fw_state`/`sw_state`, `fw_error`). */
export interface OtaUplink {
  deviceId: string;
  type: OtaPackageType;
  state: UpdateState;
  /** Why a FAILED happened; null otherwise. */
  error: string | null;
  /** ThingsBoard's `transportLog` line, e.g. "Firmware Update State: DOWNLOADING". */
  log: string;
  /** Bytes of a pushed package the device has acknowledged. */
  progress?: { bytes: number; size: number };
}

/** A registered client as the OTA logic uses it. */
export interface Lwm2mConnection {
  client: Lwm2mDeviceClient;
  objects: RegisteredObjects;
  version: Lwm2mVersion;
  settings: Lwm2mProfileSettings;
}

export interface DeviceOtaDeps {
  report(event: OtaUplink): void;
  /** The bytes of a package to push; null when it has none (URL-only). */
  packageSource(target: OtaTarget, type: OtaPackageType): Promise<OpaqueSource | null>;
  logger?: Logger;
}

const ACTIVE: readonly (UpdateState | null)[] = ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING'];

interface Track {
  readonly type: OtaPackageType;
  target: OtaTarget | null;
  supported: boolean;
  /** The last state we reported for the target, and its error. */
  status: UpdateState | null;
  error: string | null;
  /** Retries used for the target (results 4/5, lost responses, a de-register mid-download). */
  retries: number;
  /** The current attempt failed already (a result and an Idle state can both say so). */
  attemptFailed: boolean;
  /**
   * A new attempt's Write is not acknowledged yet: an Idle state or a failure Result now still
   * belongs to the attempt before, and is not counted again.
   */
  awaitingStart: boolean;
  executed: boolean;
  /** The registration ended while DOWNLOADING (why): retry on the next registration if retries remain. */
  interrupted: string | null;
  uninstalling: boolean;
  failedPackageId: string | null;
  updatedPackageId: string | null;
  current: CurrentPackage;
  deviceState: number | null;
  deliveryMethod: number | null;
}

const newTrack = (type: OtaPackageType): Track => ({
  type,
  target: null,
  supported: false,
  status: null,
  error: null,
  retries: 0,
  attemptFailed: false,
  awaitingStart: false,
  executed: false,
  interrupted: null,
  uninstalling: false,
  failedPackageId: null,
  updatedPackageId: null,
  current: { name: null, version: null, firmwareVersion: null },
  deviceState: null,
  deliveryMethod: null,
});

/**
 * One LwM2M device's firmware (Object 5) and software (Object 9) updates, as ThingsBoard drives
 * them (reference §6): read what the device runs, observe its State and Result, write the package
 * or its URI, Execute Update/Install when it is downloaded, map States and Results to `fw_state` /
 * `sw_state`, retry results 4 and 5 (50, 51, 56-59 for software) up to 3 times. It outlives a
 * registration: a device that reboots to apply an update registers again and reports its Result
 * to the same object. Every failure ends in FAILED with the reason; nothing stays DOWNLOADING
 * when the device is gone.
 */
export class Lwm2mDeviceOta {
  private conn: Lwm2mConnection | null = null;
  /** Bumped on every attach/detach: an answer from an older registration changes nothing. */
  private epoch = 0;
  private readonly tracks: Record<OtaPackageType, Track> = { FIRMWARE: newTrack('FIRMWARE'), SOFTWARE: newTrack('SOFTWARE') };

  constructor(
    readonly deviceId: string,
    private readonly deps: DeviceOtaDeps,
  ) {}

  /** The last state reported for a type (null before any). */
  status(type: OtaPackageType): { state: UpdateState | null; error: string | null; retries: number } {
    const t = this.tracks[type];
    return { state: t.status, error: t.error, retries: t.retries };
  }

  /** The package the device should run for a type (null: none). */
  target(type: OtaPackageType): OtaTarget | null {
    return this.tracks[type].target;
  }

  get registered(): boolean {
    return this.conn !== null;
  }

  /** A registration (Register, or a Register replacing an old one): read, observe, then go on. */
  async attach(conn: Lwm2mConnection): Promise<void> {
    this.conn = conn;
    const epoch = ++this.epoch;
    const fw = this.tracks.FIRMWARE;
    const sw = this.tracks.SOFTWARE;
    fw.supported = hasObject(conn.objects, 5, 0);
    sw.supported = hasObject(conn.objects, 9, 0);
    fw.executed = false;
    sw.executed = false;

    const read = async (path: string): Promise<Lwm2mValue | undefined> => {
      try {
        return await conn.client.read(path);
      } catch (err) {
        this.log('info', `read ${path}: ${(err as Error).message}`);
        return undefined;
      }
    };
    if (hasObject(conn.objects, 3, 0)) fw.current.firmwareVersion = text(await read('/3/0/3'));
    if (fw.supported) {
      fw.current.name = text(await read('/5/0/6'));
      fw.current.version = text(await read('/5/0/7'));
      fw.deliveryMethod = int(await read('/5/0/9'));
    }
    if (sw.supported) {
      sw.current.name = text(await read('/9/0/0'));
      sw.current.version = text(await read('/9/0/1'));
    }
    if (epoch !== this.epoch) return;

    const observe = async (path: string, handle: (value: number, initial: boolean) => void): Promise<void> => {
      try {
        const initial = await conn.client.observe(path, (v) => {
          const n = int(v);
          if (epoch === this.epoch && n !== null) handle(n, false);
        });
        const n = int(initial);
        if (epoch === this.epoch && n !== null) handle(n, true);
      } catch (err) {
        this.log('warn', `observe ${path}: ${(err as Error).message}`);
      }
    };
    if (fw.supported) {
      await observe('/5/0/3', (v) => this.onFirmwareState(v));
      await observe('/5/0/5', (v) => this.onFirmwareResult(v));
    }
    if (sw.supported) {
      await observe('/9/0/7', (v, initial) => this.onSoftwareState(v, initial));
      await observe('/9/0/9', (v) => this.onSoftwareResult(v));
    }
    if (epoch !== this.epoch) return;
    this.resume(fw);
    this.resume(sw);
  }

  /** The registration ended. A download in progress is FAILED now, and retried if the device returns. */
  detach(reason: RemovalReason): void {
    this.conn = null;
    this.epoch++;
    for (const t of Object.values(this.tracks)) {
      if (t.status !== 'DOWNLOADING' || !t.target) continue;
      const why = { deregistered: 'de-registered', expired: 'stopped updating its registration (lifetime expired)', replaced: 'registered again' }[reason];
      t.interrupted = `Device ${why} during the download`;
      this.report(t, 'FAILED', t.interrupted);
    }
  }

  /**
   * The package the device should run (null: none); a registered device starts at once if needed.
   * `notified`: the pipeline notified this target (again), so a package that failed before is
   * tried again; a target loaded at registration keeps ThingsBoard's "previously failed" rule.
   */
  setTarget(type: OtaPackageType, target: OtaTarget | null, opts: { notified?: boolean } = {}): void {
    const t = this.tracks[type];
    if (target?.packageId !== t.target?.packageId || (opts.notified && !ACTIVE.includes(t.status))) {
      t.retries = 0;
      t.interrupted = null;
      t.status = null;
      t.error = null;
      if (opts.notified) t.failedPackageId = null;
    }
    t.target = target;
    if (target && this.conn && !ACTIVE.includes(t.status)) this.maybeStart(t);
  }

  // ---- decisions -------------------------------------------------------------------------------

  private resume(t: Track): void {
    if (!t.target) return;
    if (t.interrupted) {
      const reason = t.interrupted;
      t.interrupted = null;
      this.fail(t, reason, true);
      return;
    }
    if (!ACTIVE.includes(t.status)) this.maybeStart(t);
  }

  private maybeStart(t: Track): void {
    const target = t.target;
    const conn = this.conn;
    if (!target || !conn) return;
    if (!t.supported) {
      const object = t.type === 'FIRMWARE' ? 'Object 5 (Firmware Update)' : 'Object 9 (Software Management)';
      this.report(t, 'FAILED', `Device registered without ${object}, instance 0`);
      return;
    }
    if (!isUpdateRequired(target, t.current, t)) {
      if (t.failedPackageId !== target.packageId && t.status !== 'UPDATED') {
        t.updatedPackageId = target.packageId;
        this.report(t, 'UPDATED', null, `already runs ${target.title} ${target.version}`);
      }
      return;
    }
    if (t.type === 'SOFTWARE' && t.deviceState === SW_STATE.INSTALLED) {
      // Reference §6: an installed package is uninstalled "for update" (argument "1") first; the
      // update starts when /9/0/7 is back at Initial.
      if (t.uninstalling) return;
      t.uninstalling = true;
      this.execute(t, '/9/0/6', '1');
      return;
    }
    void this.startUpdate(t);
  }

  private async startUpdate(t: Track): Promise<void> {
    const target = t.target;
    const conn = this.conn;
    if (!target || !conn) return;
    const epoch = this.epoch;
    t.attemptFailed = false;
    t.awaitingStart = true;
    t.executed = false;
    const settings = conn.settings;
    let write: { path: string; value: string | OpaqueSource; format: ContentFormat } | null = null;
    if (t.type === 'FIRMWARE') {
      // Reference §6: Delivery Method /5/0/9 overrides the profile: 0 pull -> URI, 1 push -> binary.
      const strategy = t.deliveryMethod === 0 ? 2 : t.deliveryMethod === 1 ? 1 : settings.fwUpdateStrategy;
      if (target.url) write = { path: '/5/0/1', value: target.url, format: writeFormatFor(conn, 'string') };
      else if (strategy === 2) write = { path: '/5/0/1', value: `${settings.fwUpdateResource}/tbfw/${target.packageId}`, format: writeFormatFor(conn, 'string') };
      else if (strategy === 3) return this.fail(t, 'fwUpdateStrategy 3 (Object 19 binary) is not supported; use 1 (Object 5 binary) or 2 (Object 5 URI)', false);
    } else if (target.url) write = { path: '/9/0/3', value: target.url, format: writeFormatFor(conn, 'string') };
    // Reference §6: the software URI strategy also uses the `tbfw` resource (ThingsBoard's quirk).
    else if (settings.swUpdateStrategy === 2) write = { path: '/9/0/3', value: `${settings.swUpdateResource}/tbfw/${target.packageId}`, format: writeFormatFor(conn, 'string') };

    if (!write) {
      const source = await this.deps.packageSource(target, t.type);
      if (epoch !== this.epoch || t.target !== target) return;
      if (!source) return this.fail(t, `Package ${target.title} ${target.version} has no data to push`, false);
      write = { path: t.type === 'FIRMWARE' ? '/5/0/0' : '/9/0/2', value: source, format: ContentFormat.OPAQUE };
    }
    const attempt = t.retries > 0 ? ` (retry ${t.retries} of ${MAX_RETRIES})` : '';
    this.report(t, 'DOWNLOADING', null, `write ${write.path}${attempt}`);
    const size = typeof write.value === 'string' ? 0 : write.value.size;
    try {
      await conn.client.write(write.path, write.value, write.format, {
        onProgress: (bytes) => {
          if (epoch === this.epoch && t.target === target) this.deps.report({ ...this.event(t, 'DOWNLOADING', null, 'pushing'), progress: { bytes, size } });
        },
      });
      if (epoch === this.epoch && t.target === target) t.awaitingStart = false;
    } catch (err) {
      if (epoch !== this.epoch || t.target !== target) return; // the registration ended: detach decided
      t.awaitingStart = false;
      if (err instanceof Lwm2mRequestError && err.kind === 'timeout') return this.fail(t, `Write ${write.path}: no response from the device`, true);
      if (err instanceof Lwm2mRequestError && err.kind === 'closed') return;
      return this.fail(t, `Device refused Write ${write.path}: ${(err as Error).message}`, false);
    }
  }

  /** A failed attempt: try again while retries remain (when `retryable`), else FAILED for good. */
  private fail(t: Track, reason: string, retryable: boolean): void {
    if (t.attemptFailed || !t.target) return;
    t.attemptFailed = true;
    if (retryable && t.retries < MAX_RETRIES) {
      t.retries++;
      this.log('info', `${t.type} ${t.target.title} ${t.target.version}: ${reason}; retry ${t.retries} of ${MAX_RETRIES}`);
      if (this.conn) void this.startUpdate(t);
      return;
    }
    t.failedPackageId = t.target.packageId;
    this.report(t, 'FAILED', retryable ? `${reason} (gave up after ${MAX_RETRIES} retries)` : reason);
  }

  private execute(t: Track, path: string, args?: string): void {
    const conn = this.conn;
    const target = t.target;
    if (!conn || !target) return;
    const epoch = this.epoch;
    conn.client.execute(path, args).then(
      () => {
        if (epoch !== this.epoch || t.target !== target) return;
        if (path !== '/9/0/6') this.report(t, 'UPDATING', null, `execute ${path}`);
      },
      (err: unknown) => {
        if (epoch !== this.epoch || t.target !== target) return;
        if (path === '/9/0/6') t.uninstalling = false;
        // No answer to Execute Update: the device may be rebooting into the new package already;
        // its Result after it registers again decides (and the tracker's timeout, if it never does).
        if (err instanceof Lwm2mRequestError && err.kind !== 'response') {
          this.log('warn', `execute ${path}: ${err.message}`);
          return;
        }
        this.fail(t, `Device refused Execute ${path}: ${(err as Error).message}`, false);
      },
    );
  }

  // ---- notifications ---------------------------------------------------------------------------

  private onFirmwareState(state: number): void {
    const t = this.tracks.FIRMWARE;
    t.deviceState = state;
    if (!t.target || !ACTIVE.includes(t.status)) return;
    if (state !== FW_STATE.IDLE) t.awaitingStart = false;
    else if (t.awaitingStart) return;
    if (state === FW_STATE.IDLE) {
      // Reference §6: Idle while DOWNLOADING is FAILED; the Result (4, 5: retry) says why, if it came.
      if (t.status === 'DOWNLOADING') void this.idleDuringDownload(t, '/5/0/5');
      return;
    }
    const mapped = firmwareStateToStatus(state);
    if (mapped) this.report(t, mapped, null, `Firmware Update State: ${mapped}`);
    if (state === FW_STATE.DOWNLOADED && !t.executed) {
      t.executed = true;
      this.execute(t, '/5/0/2');
    }
  }

  private onFirmwareResult(result: number): void {
    const t = this.tracks.FIRMWARE;
    if (!t.target || !ACTIVE.includes(t.status) || t.awaitingStart) return;
    if (result === 0) {
      if (t.status === 'UPDATING') this.succeed(t);
      return;
    }
    const mapped = firmwareResultToStatus(result);
    if (mapped === 'UPDATED') this.succeed(t);
    else if (mapped === 'FAILED') this.fail(t, `${FW_RESULT_TEXT[result] ?? 'Firmware update failed'} (Update Result ${result})`, firmwareResultRetries(result));
  }

  private onSoftwareState(state: number, initial: boolean): void {
    const t = this.tracks.SOFTWARE;
    t.deviceState = state;
    if (!t.target) return;
    if (state !== SW_STATE.INITIAL) t.awaitingStart = false;
    if (state === SW_STATE.INITIAL) {
      if (t.awaitingStart) return;
      if (t.status === 'DOWNLOADING') void this.idleDuringDownload(t, '/9/0/9');
      else if (t.uninstalling || (!initial && !ACTIVE.includes(t.status))) {
        t.uninstalling = false;
        this.maybeStart(t);
      }
      return;
    }
    if (!ACTIVE.includes(t.status)) return;
    const mapped = softwareStateToStatus(state);
    if (mapped) this.report(t, mapped, null, `Software Update State: ${mapped}`);
    if (state === SW_STATE.DELIVERED && !t.executed) {
      t.executed = true;
      this.execute(t, '/9/0/4');
    }
  }

  private onSoftwareResult(result: number): void {
    const t = this.tracks.SOFTWARE;
    if (!t.target || !ACTIVE.includes(t.status) || t.awaitingStart || result === SW_RESULT.INITIAL) return;
    const mapped = softwareResultToStatus(result);
    if (mapped === 'UPDATED') this.succeed(t);
    else if (mapped === 'FAILED') this.fail(t, `${SW_RESULT_TEXT[result] ?? 'Software update failed'} (Update Result ${result})`, softwareResultRetries(result));
    else if (mapped) this.report(t, mapped, null, `Software Update Result: ${mapped}`);
  }

  /** Idle (Initial) while downloading: read the Result to tell a retryable failure from a cancel. */
  private async idleDuringDownload(t: Track, resultPath: string): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    const epoch = this.epoch;
    let result: number | null = null;
    try {
      result = int(await conn.client.read(resultPath));
    } catch {
      /* no result to tell: the plain Idle rule below */
    }
    if (epoch !== this.epoch || t.attemptFailed || t.awaitingStart || t.status !== 'DOWNLOADING') return;
    if (result !== null && result !== 0) {
      if (t.type === 'FIRMWARE') this.onFirmwareResult(result);
      else this.onSoftwareResult(result);
      if (t.attemptFailed) return;
    }
    this.fail(t, `Device went back to ${t.type === 'FIRMWARE' ? 'Idle' : 'Initial'} during the download`, false);
  }

  private succeed(t: Track): void {
    const target = t.target;
    if (!target) return;
    t.updatedPackageId = target.packageId;
    t.current = { ...t.current, name: target.title, version: target.version };
    this.report(t, 'UPDATED', null, `${t.type === 'FIRMWARE' ? 'Firmware' : 'Software'} Update Result: UPDATED`);
  }

  private report(t: Track, state: UpdateState, error: string | null, log?: string): void {
    if (t.status === state && t.error === error) return;
    t.status = state;
    t.error = error;
    this.deps.report(this.event(t, state, error, log));
  }

  private event(t: Track, state: UpdateState, error: string | null, log?: string): OtaUplink {
    const what = t.type === 'FIRMWARE' ? 'Firmware' : 'Software';
    return { deviceId: this.deviceId, type: t.type, state, error, log: `${what} Update State: ${state}${error ? `: ${error}` : log ? ` (${log})` : ''}` };
  }

  private log(level: 'info' | 'warn', message: string): void {
    this.deps.logger?.[level](`lwm2m ${this.deviceId}: ${message}`);
  }
}

const text = (v: Lwm2mValue | undefined): string | null => (typeof v === 'string' && v !== '' ? v : null);
const int = (v: Lwm2mValue | undefined): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
