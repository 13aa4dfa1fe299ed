import path from 'node:path';
import type pg from 'pg';
import type { Logger } from '../../logger';
import type { Repositories, Store, TransactionLane } from '../store';
import { PgAttributeRepository } from './attributes';
import { PgDeviceProfileRepository } from './device-profiles';
import { PgDeviceRepository } from './devices';
import { PgDownloadProgressRepository } from './download-progress';
import { PgNotifyQueueRepository } from './notify-queue';
import { PgOtaPackageRepository } from './ota-packages';
import { PgOtaStateRepository } from './ota-states';
import { PgOtaTargetRepository } from './ota-targets';
import { DEFAULT_CHUNK_SIZE, PgPackageBytes } from './package-bytes';
import { PgBlobStore } from './pg-blob-store';
import { PgClusterBus } from './pg-cluster-bus';
import { openPool, type Sql } from './pool';
import { PgReportedVersionRepository } from './reported-versions';
import { PgRolloutRepository } from './rollouts';
import { PgSettingsRepository } from './settings';
import { PgSigningKeyRepository } from './signing-keys';
import { PgTenantPolicyRepository } from './tenant-policies';
import { PgTelemetryRepository } from './telemetry';
import { PgTenantRepository } from './tenants';
import { PgFleetReadModel } from './fleet-read-model';

/** Every repository running its statements on `sql`: the pool, or one client inside a transaction. */
function repositoriesOn(sql: Sql): Repositories {
  return {
    tenants: new PgTenantRepository(sql),
    profiles: new PgDeviceProfileRepository(sql),
    devices: new PgDeviceRepository(sql),
    packages: new PgOtaPackageRepository(sql),
    attributes: new PgAttributeRepository(sql),
    telemetry: new PgTelemetryRepository(sql),
    queue: new PgNotifyQueueRepository(sql),
    targets: new PgOtaTargetRepository(sql),
    states: new PgOtaStateRepository(sql),
    settings: new PgSettingsRepository(sql),
    signingKeys: new PgSigningKeyRepository(sql),
    policies: new PgTenantPolicyRepository(sql),
    reportedVersions: new PgReportedVersionRepository(sql),
    downloads: new PgDownloadProgressRepository(sql),
    rollouts: new PgRolloutRepository(sql),
  };
}

/** SQLSTATEs of a transaction PostgreSQL aborted to let another go on: running it again succeeds. */
const RETRYABLE = new Set(['40001', '40P01']);
/** Runs of one transaction before its error is passed on. */
const ATTEMPTS = 3;

export interface PgStoreOptions {
  connectionString: string;
  /** This instance's data directory: package bytes are cached under `blobs/` in it. */
  dataDir: string;
  poolSize?: number;
  logger?: Pick<Logger, 'warn'>;
}

/**
 * The store on a PostgreSQL pool, shared by every instance naming the same database. A call outside
 * `transaction` runs on any pooled connection; a transaction runs on one client checked out for it.
 * Package bytes live in PostgreSQL; this instance keeps a local copy of each blob by checksum.
 */
export class PgStore implements Store {
  readonly tenants: Repositories['tenants'];
  readonly profiles: Repositories['profiles'];
  readonly devices: Repositories['devices'];
  readonly packages: Repositories['packages'];
  readonly attributes: Repositories['attributes'];
  readonly telemetry: Repositories['telemetry'];
  readonly queue: Repositories['queue'];
  readonly targets: Repositories['targets'];
  readonly states: Repositories['states'];
  readonly settings: Repositories['settings'];
  /** What the dashboard and /metrics read; outside any transaction. */
  readonly fleet: PgFleetReadModel;
  readonly signingKeys: Repositories['signingKeys'];
  readonly policies: Repositories['policies'];
  readonly reportedVersions: Repositories['reportedVersions'];
  readonly downloads: Repositories['downloads'];
  readonly rollouts: Repositories['rollouts'];
  /** The end of the last transaction started in each lane: a lane runs its transactions one at a time. */
  private readonly tails = new Map<TransactionLane, Promise<unknown>>();

  private constructor(
    readonly pool: pg.Pool,
    readonly blobs: PgBlobStore,
    readonly cluster: PgClusterBus,
  ) {
    const r = repositoriesOn(pool);
    this.tenants = r.tenants;
    this.profiles = r.profiles;
    this.devices = r.devices;
    this.packages = r.packages;
    this.attributes = r.attributes;
    this.telemetry = r.telemetry;
    this.queue = r.queue;
    this.targets = r.targets;
    this.states = r.states;
    this.settings = r.settings;
    this.fleet = new PgFleetReadModel(pool);
    this.signingKeys = r.signingKeys;
    this.policies = r.policies;
    this.reportedVersions = r.reportedVersions;
    this.downloads = r.downloads;
    this.rollouts = r.rollouts;
  }

  /** Opens the pool (migrating the schema) and the blob cache. */
  static async open(opts: PgStoreOptions): Promise<PgStore> {
    const pool = await openPool({ connectionString: opts.connectionString, ...(opts.poolSize ? { max: opts.poolSize } : {}) });
    try {
      const blobs = new PgBlobStore(path.join(opts.dataDir, 'blobs'), new PgPackageBytes(pool, DEFAULT_CHUNK_SIZE), pool);
      await blobs.init();
      const cluster = new PgClusterBus(pool, opts.connectionString, opts.logger);
      await cluster.start();
      return new PgStore(pool, blobs, cluster);
    } catch (err) {
      await pool.end();
      throw err;
    }
  }

  /**
   * One transaction on one pooled client. The transactions of a lane run one after another, as on
   * SQLite: the pipeline's batches are written in the order they were made, and a batch never
   * waits for row locks held by another batch of its lane. The queue's intake (lane `enqueue`)
   * runs beside them: a fan-out's batches are queued while the earlier ones are notified, on other
   * devices' rows. A device queued again while its earlier release is being notified ends as its
   * later event says: its queue row is replaced (the earlier notification does not ack it), so it
   * is released and notified again, after the earlier one (one lane). Transactions running at once
   * (another lane, another instance) can deadlock; PostgreSQL then aborts one, which runs again.
   */
  transaction<T>(work: (tx: Repositories) => Promise<T>, lane: TransactionLane = 'main'): Promise<T> {
    const run = async (): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.once(work);
        } catch (err) {
          if (attempt >= ATTEMPTS || !RETRYABLE.has((err as { code?: string }).code ?? '')) throw err;
        }
      }
    };
    const next = (this.tails.get(lane) ?? Promise.resolve()).then(run, run);
    this.tails.set(
      lane,
      next.catch(() => undefined),
    );
    return next;
  }

  private async once<T>(work: (tx: Repositories) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await work(repositoriesOn(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      // A client that cannot roll back is dropped from the pool rather than handed out mid-transaction.
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.tails.values());
    await this.cluster.close();
    await this.pool.end();
  }
}
