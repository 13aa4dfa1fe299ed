/**
 * Shared setup for the update pipeline's engine tests: a real engine over SQLite in a temporary
 * directory, a fake clock driving the queue and the tracker, and short helpers that create
 * profiles, devices and packages through the engine's own services.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ChecksumAlgorithm } from '../../server/packages/checksum';
import { openDatabase, type Db } from '../../server/store/sqlite/database';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import { OtaEngine } from '../../server/engine';
import { type Logger } from '../../server/logger';
import type { DeviceId, OtaPackageId, TenantId } from '../../server/ids';
import type { AssignmentEvent } from '../../server/pipeline/notify-queue';
import type { Timers } from '../../server/timers';
import type { OtaPackage, OtaPackageType } from '../../server/store/ota-packages';
import type { TelemetryEntry } from '../../server/store/telemetry';
import type { UplinkEvent } from '../../server/pipeline/uplink';

export const quietLogger: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };
export const ADMIN_USER = 'tenant@thingsboard.org';
export const ADMIN_PASSWORD = 'x-pipeline-tests-password';
/** Where the fake clock starts: behind the real clock, so device reports stamped with Date.now() are newer. */
export const T0 = 1_700_000_000_000;

interface FakeTimer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * A clock that moves only when told. `advance` fires due timers in time order (timers they set
 * included) and lets the promise chains they start settle before the next one, so pacing and
 * timeouts are tested to the millisecond without sleeping.
 */
export class FakeTimers implements Timers {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, FakeTimer>();

  constructor(start = T0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  async advance(ms: number): Promise<void> {
    const until = this.t + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const timer of this.timers.values()) if (timer.at <= until && (!next || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) next = timer;
      if (!next) break;
      this.timers.delete(next.id);
      this.t = Math.max(this.t, next.at);
      next.fn();
      await settle();
    }
    this.t = until;
  }
}

/**
 * Lets event handlers the engine starts without awaiting (assignment on `deviceSaved`) run to their
 * end: a few turns of the event loop, each one draining every promise continuation queued before it.
 */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await nextTurn();
}

export interface PackageSpec {
  type?: OtaPackageType;
  title?: string;
  version?: string;
  tag?: string | null;
  bytes?: Buffer;
  algorithm?: ChecksumAlgorithm;
  fileName?: string;
  contentType?: string;
}

export interface UrlPackageSpec {
  type?: OtaPackageType;
  title?: string;
  version?: string;
  tag?: string | null;
  url?: string;
  checksumAlgorithm?: ChecksumAlgorithm | null;
  checksum?: string | null;
  dataSize?: number | null;
}

let templateDir: Promise<string> | undefined;

/** A data directory bootstrapped once with the admin and its password, closed, to be copied. */
function template(): Promise<string> {
  templateDir ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-pipeline-template-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const engine = await OtaEngine.open({ dataDir: dir, http: false, admin: { username: ADMIN_USER, password: ADMIN_PASSWORD }, logger: quietLogger });
    await engine.close();
    return dir;
  })();
  return templateDir;
}

let counter = 0;
const unique = (prefix: string): string => `${prefix}-${++counter}`;

/** An engine in a temporary data directory, with the helpers most pipeline tests need. */
export class PipelineHarness {
  private constructor(
    readonly engine: OtaEngine,
    readonly dataDir: string,
    readonly timers: FakeTimers,
  ) {}

  /**
   * A fresh engine. Its data directory starts as a copy of one bootstrapped once per process, so
   * each test gets its own database without paying for the admin's password hash every time.
   */
  static async open(opts: { http?: boolean; timers?: FakeTimers; dataDir?: string; logger?: Logger } = {}): Promise<PipelineHarness> {
    let dataDir = opts.dataDir;
    if (!dataDir) {
      const from = await template();
      dataDir = await mkdtemp(path.join(tmpdir(), 'ota-pipeline-unit-'));
      await copyFile(path.join(from, 'ota.sqlite'), path.join(dataDir, 'ota.sqlite'));
    }
    const timers = opts.timers ?? new FakeTimers();
    const engine = await OtaEngine.open({
      dataDir,
      http: opts.http ? { port: 0, host: '127.0.0.1' } : false,
      admin: { username: ADMIN_USER },
      logger: opts.logger ?? quietLogger,
      timers,
      // Rollouts have suites of their own; here their driver's tick would be one more fake timer.
      rolloutTickMs: false,
    });
    return new PipelineHarness(engine, dataDir, timers);
  }

  get tenantId(): TenantId {
    return this.engine.bootstrap.admin.tenantId;
  }

  get pipeline(): OtaEngine['pipeline'] {
    return this.engine.pipeline;
  }

  /** `http://127.0.0.1:<port>` when opened with `http: true`. */
  get baseUrl(): string {
    const a = this.engine.httpAddress;
    if (!a) throw new Error('the engine is not listening');
    return `http://127.0.0.1:${a.port}`;
  }

  /** The data directory's database through a second connection, as another process would see it. */
  openDb(): Db {
    return openDatabase(path.join(this.dataDir, 'ota.sqlite'));
  }

  /**
   * `n` devices of a profile, written straight into the table through a second connection: for
   * fleets whose creation is not what a test is about (no events, no assignment).
   */
  insertDevices(profile: DeviceProfile, n: number, prefix = unique('fleet'), from = 0): DeviceId[] {
    const ids: DeviceId[] = [];
    const db = this.openDb();
    try {
      const insert = db.prepare('INSERT INTO devices (id, tenant_id, name, device_profile_id, access_token, credentials_id, created_time) VALUES (?, ?, ?, ?, ?, ?, ?)');
      db.transaction(() => {
        for (let i = from; i < from + n; i++) {
          const id = randomUUID() as DeviceId;
          insert.run(id, profile.tenantId, `${prefix}-${i}`, profile.id, `${prefix}-token-${i}`, randomUUID(), 1);
          ids.push(id);
        }
      })();
    } finally {
      db.close();
    }
    return ids;
  }

  /** Closes the engine only (the data directory stays, to be opened again). */
  async closeEngine(): Promise<void> {
    await this.engine.close();
  }

  async close(): Promise<void> {
    await this.engine.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  async profile(name = unique('profile'), tenantId = this.tenantId): Promise<DeviceProfile> {
    return this.engine.profiles.save(tenantId, { name });
  }

  /** Sets (or, with null, empties) a profile's slot as `POST /api/deviceProfile/{id}` does. */
  async setProfilePackage(profile: DeviceProfile, type: OtaPackageType, packageId: OtaPackageId | null, tenantId = this.tenantId): Promise<DeviceProfile> {
    const field = type === 'FIRMWARE' ? 'firmwareId' : 'softwareId';
    return this.engine.profiles.save(tenantId, { [field]: packageId ? { id: packageId, entityType: 'OTA_PACKAGE' } : null }, { mergeInto: profile.id });
  }

  async device(profile: DeviceProfile, opts: { name?: string; firmwareId?: OtaPackageId | null; softwareId?: OtaPackageId | null; tenantId?: TenantId } = {}): Promise<Device> {
    const ref = (id: OtaPackageId | null | undefined): { id: string } | null => (id ? { id } : null);
    return this.engine.devices.save(opts.tenantId ?? this.tenantId, {
      name: opts.name ?? unique('device'),
      deviceProfileId: { id: profile.id },
      firmwareId: ref(opts.firmwareId),
      softwareId: ref(opts.softwareId),
    });
  }

  /** Changes only the given fields of a device, as `POST /api/device/{id}` does. */
  async updateDevice(device: Device, body: Record<string, unknown>, tenantId = this.tenantId): Promise<Device> {
    return this.engine.devices.save(tenantId, body, { mergeInto: device.id });
  }

  async setDevicePackage(device: Device, type: OtaPackageType, packageId: OtaPackageId | null): Promise<Device> {
    const field = type === 'FIRMWARE' ? 'firmwareId' : 'softwareId';
    return this.updateDevice(device, { [field]: packageId ? { id: packageId, entityType: 'OTA_PACKAGE' } : null }, device.tenantId);
  }

  /** A package with uploaded bytes (random unless given). */
  async binaryPackage(profile: DeviceProfile, spec: PackageSpec = {}, tenantId = this.tenantId): Promise<OtaPackage> {
    const info = await this.engine.packages.saveInfo(tenantId, {
      deviceProfileId: profile.id,
      type: spec.type ?? 'FIRMWARE',
      title: spec.title ?? unique('fw'),
      version: spec.version ?? '1.0.0',
      tag: spec.tag ?? null,
    });
    const bytes = spec.bytes ?? Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 31 + counter) & 0xff));
    const algorithm = spec.algorithm ?? 'SHA256';
    const staged = await this.engine.packages.stage(Readable.from([bytes]), algorithm);
    return this.engine.packages.attachData(tenantId, info.id, staged, {
      fileName: spec.fileName ?? `${info.title}-${info.version}.bin`,
      contentType: spec.contentType ?? 'application/octet-stream',
      checksumAlgorithm: algorithm,
      checksum: null,
    });
  }

  /** A URL-only package: devices fetch the bytes themselves. */
  async urlPackage(profile: DeviceProfile, spec: UrlPackageSpec = {}, tenantId = this.tenantId): Promise<OtaPackage> {
    return this.engine.packages.saveInfo(tenantId, {
      deviceProfileId: profile.id,
      type: spec.type ?? 'FIRMWARE',
      title: spec.title ?? unique('url-fw'),
      version: spec.version ?? '1.0.0',
      tag: spec.tag ?? null,
      usesUrl: true,
      url: spec.url ?? 'https://updates.example.com/fw.bin',
      checksumAlgorithm: spec.checksumAlgorithm ?? null,
      checksum: spec.checksum ?? null,
      dataSize: spec.dataSize ?? null,
    });
  }

  /** Records every `assignment` event (a listener makes the engine hand events to the flow, not the queue). */
  recordAssignments(): AssignmentEvent[] {
    const seen: AssignmentEvent[] = [];
    this.engine.events.on('assignment', (ev) => seen.push(ev));
    return seen;
  }

  /** Telemetry as a device would report it over a transport. */
  uplink(device: Device, entries: TelemetryEntry[]): UplinkEvent {
    return { tenantId: device.tenantId, deviceId: device.id, deviceName: device.name, transport: 'HTTP', ts: this.timers.now(), kind: 'telemetry', entries };
  }

  /** A device's state report at `ts` (the fake clock's now by default). */
  report(device: Device, values: Record<string, string>, ts = this.timers.now()): UplinkEvent {
    return this.uplink(device, [{ ts, values }]);
  }

  event(device: Device, type: OtaPackageType, packageId: OtaPackageId | null, ts = this.timers.now()): AssignmentEvent {
    return { tenantId: device.tenantId, deviceId: device.id as DeviceId, type, packageId, ts };
  }
}

/** Opens a harness for each test and closes it after. */
export function useHarness(opts: { http?: boolean } = {}): () => PipelineHarness {
  let h: PipelineHarness | undefined;
  beforeEach(async () => {
    h = await PipelineHarness.open(opts);
  });
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });
  return () => {
    if (!h) throw new Error('no harness outside a test');
    return h;
  };
}
