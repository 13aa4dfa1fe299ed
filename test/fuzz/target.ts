/**
 * The server under fuzzing: one engine (REST, device HTTP API, dashboard) with the MQTT and CoAP
 * transports, in a temporary data directory, with a tenant's fixtures (a profile, a package with
 * bytes assigned to it, a device). It counts what must never happen (uncaught exceptions,
 * unhandled rejections, errors logged by the server) and fingerprints the stored state, so that a
 * refused input can be shown to have changed nothing.
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OtaEngine } from '../../server/engine';
import type { Logger } from '../../server/logger';
import { CoapTransport } from '../../server/transports/coap/coap-transport';
import { MqttTransport } from '../../server/transports/mqtt/mqtt-transport';
import { ApiClient, ref, type DeviceBody, type DeviceProfileBody, type PackageInfo } from '../support/api-harness';

export const FUZZ_ADMIN = { username: 'tenant@thingsboard.org', password: 'fuzz-admin-password-1' };

/** Tables a request may change; the dashboard's derived tables are the watcher's, written on its own clock. */
const STATE_TABLES = [
  'tenants',
  'users',
  'device_profiles',
  'devices',
  'ota_packages',
  'settings',
  'attributes',
  'telemetry_latest',
  'telemetry_history',
  'notify_queue',
  'ota_targets',
  'ota_states',
];

export interface Incidents {
  uncaught: string[];
  unhandledRejections: string[];
  loggedErrors: string[];
}

export class FuzzTarget {
  readonly incidents: Incidents = { uncaught: [], unhandledRejections: [], loggedErrors: [] };
  private readonly reader: Database.Database;
  private readonly onUncaught = (err: Error): void => void this.incidents.uncaught.push(err.stack ?? String(err));
  private readonly onRejection = (reason: unknown): void =>
    void this.incidents.unhandledRejections.push(reason instanceof Error ? (reason.stack ?? reason.message) : String(reason));

  private constructor(
    readonly engine: OtaEngine,
    readonly mqtt: MqttTransport,
    readonly coap: CoapTransport,
    readonly dataDir: string,
    /** The tenant admin's access token. */
    readonly token: string,
    readonly profile: DeviceProfileBody,
    readonly pkg: PackageInfo,
    readonly device: DeviceBody,
    readonly image: Buffer,
  ) {
    this.reader = new Database(path.join(dataDir, 'ota.sqlite'), { readonly: true, fileMustExist: true });
    process.on('uncaughtException', this.onUncaught);
    process.on('unhandledRejection', this.onRejection);
  }

  static async start(): Promise<FuzzTarget> {
    // The dashboard's snapshots are the only writes made on a clock: far apart, so they cannot be
    // mistaken for a write made by a refused input.
    process.env.OTA_DASHBOARD_SNAPSHOT_S = '86400';
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ota-fuzz-'));
    const errors: string[] = [];
    const logger: Logger = { info: () => undefined, warn: () => undefined, error: (m: string) => void errors.push(m) };
    const engine = await OtaEngine.open({
      dataDir,
      http: { port: 0, host: '127.0.0.1' },
      admin: FUZZ_ADMIN,
      logger,
      // Every fuzzer comes from 127.0.0.1: guessing is what it does, being throttled is not what it tests.
      login: { maxFailuresPerAddress: 1_000_000_000, maxFailuresPerUser: 1_000_000_000, queue: 10_000 },
      httpLimits: { maxConnections: 100_000 },
    });
    const mqtt = new MqttTransport(engine.deviceContext, { port: 0, host: '127.0.0.1', closeLingerMs: 500 });
    const coap = new CoapTransport(engine.deviceContext, { port: 0, host: '127.0.0.1' });
    await mqtt.start();
    await coap.start();
    const token = (await engine.accounts.login(FUZZ_ADMIN.username, FUZZ_ADMIN.password)).token;
    const admin = new ApiClient(`http://127.0.0.1:${engine.httpAddress?.port}`, token);
    const image = randomBytes(20_000);
    const profile = await admin.createProfile('fuzz-profile');
    const pkg = await admin.createPackageWithData({ deviceProfileId: profile.id.id, title: 'fuzz-fw', version: '1.0' }, image);
    const device = await admin.createDevice(
      { name: 'fuzz-device', deviceProfileId: ref('DEVICE_PROFILE', profile.id.id), firmwareId: ref('OTA_PACKAGE', pkg.id.id) },
      'fuzz-device-token',
    );
    const target = new FuzzTarget(engine, mqtt, coap, dataDir, token, profile, pkg, device, image);
    target.incidents.loggedErrors = errors;
    return target;
  }

  get httpBase(): string {
    return `http://127.0.0.1:${this.engine.httpAddress?.port}`;
  }

  get httpPort(): number {
    return this.engine.httpAddress?.port ?? 0;
  }

  get mqttPort(): number {
    return this.mqtt.address?.port ?? 0;
  }

  get coapPort(): number {
    return this.coap.address?.port ?? 0;
  }

  private cached: { version: number; digest: string } | null = null;

  /**
   * A digest of every row a request may change, read through a connection of its own. SQLite's
   * `data_version` changes exactly when another connection commits, so the rows are read again
   * only after something was written.
   */
  fingerprint(): string {
    const version = this.reader.pragma('data_version', { simple: true }) as number;
    if (this.cached?.version === version) return this.cached.digest;
    this.cached = { version, digest: this.digest() };
    return this.cached.digest;
  }

  private digest(): string {
    const hash = createHash('sha256');
    for (const table of STATE_TABLES) {
      // A full scan reads in key order: the same rows give the same digest.
      for (const row of this.reader.prepare(`SELECT * FROM ${table}`).raw().iterate()) hash.update(JSON.stringify(row));
      hash.update('|');
    }
    return hash.digest('hex');
  }

  /** Files left in the blob store's staging area (an upload refused or cut must leave none). */
  async stagedFiles(): Promise<string[]> {
    return readdir(path.join(this.dataDir, 'blobs', 'tmp')).catch(() => []);
  }

  /** Nothing that must never happen happened. */
  get clean(): boolean {
    const i = this.incidents;
    return i.uncaught.length === 0 && i.unhandledRejections.length === 0 && i.loggedErrors.length === 0;
  }

  async close(): Promise<void> {
    process.off('uncaughtException', this.onUncaught);
    process.off('unhandledRejection', this.onRejection);
    this.reader.close();
    await this.mqtt.stop();
    await this.coap.stop();
    await this.engine.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}
