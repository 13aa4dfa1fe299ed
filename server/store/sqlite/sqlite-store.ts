import path from 'node:path';
import { SqliteAttributeRepository } from '../attributes';
import { BlobStore } from '../blob-store';
import { LoneInstanceBus } from '../cluster-bus';
import { SqliteDeviceProfileRepository } from '../device-profiles';
import { SqliteDeviceRepository } from '../devices';
import { SqliteOtaPackageRepository } from '../ota-packages';
import { SqliteTelemetryRepository } from '../telemetry';
import { SqliteTenantRepository } from '../tenants';
import type { Repositories, Store } from '../store';
import { openDatabase, type Db } from './database';
import { SqliteDownloadProgressRepository } from './download-progress';
import { SqliteFleetReadModel } from './fleet-read-model';
import { SqliteNotifyQueueRepository } from './notify-queue';
import { SqliteOtaStateRepository } from './ota-states';
import { SqliteOtaTargetRepository } from './ota-targets';
import { SqliteReportedVersionRepository } from './reported-versions';
import { SqliteRolloutRepository } from './rollouts';
import { SqliteSettingsRepository } from './settings';
import { SqliteSigningKeyRepository } from './signing-keys';
import { SqliteTenantPolicyRepository } from './tenant-policies';

/** How long without a commit before the store checkpoints its WAL. */
const IDLE_CHECKPOINT_MS = 1000;

/**
 * The store on one better-sqlite3 connection. Its statements are synchronous; the repositories
 * answer promises so the interface fits an asynchronous database too.
 */
export class SqliteStore implements Store {
  readonly tenants;
  readonly profiles;
  readonly devices;
  readonly packages;
  readonly attributes;
  readonly telemetry;
  readonly queue;
  readonly targets;
  readonly states;
  readonly settings;
  readonly signingKeys;
  readonly policies;
  readonly reportedVersions;
  readonly downloads;
  readonly rollouts;
  /** One process owns a SQLite file: no other instance to tell. */
  readonly cluster = new LoneInstanceBus();
  readonly fleet;
  /** The end of the last transaction queued: transactions run one after another. */
  private tail: Promise<unknown> = Promise.resolve();
  private checkpointTimer: NodeJS.Timeout | null = null;

  /** Package bytes as files beside the database (`blobs/`), unless given. */
  constructor(
    readonly db: Db,
    readonly blobs: BlobStore = new BlobStore(path.join(path.dirname(db.name), 'blobs')),
  ) {
    this.tenants = new SqliteTenantRepository(db);
    this.profiles = new SqliteDeviceProfileRepository(db);
    this.devices = new SqliteDeviceRepository(db);
    this.packages = new SqliteOtaPackageRepository(db);
    this.attributes = new SqliteAttributeRepository(db);
    this.telemetry = new SqliteTelemetryRepository(db);
    this.queue = new SqliteNotifyQueueRepository(db);
    this.targets = new SqliteOtaTargetRepository(db);
    this.states = new SqliteOtaStateRepository(db);
    this.settings = new SqliteSettingsRepository(db);
    this.fleet = new SqliteFleetReadModel(db);
    this.signingKeys = new SqliteSigningKeyRepository(db);
    this.policies = new SqliteTenantPolicyRepository(db);
    this.reportedVersions = new SqliteReportedVersionRepository(db);
    this.downloads = new SqliteDownloadProgressRepository(db);
    this.rollouts = new SqliteRolloutRepository(db);
  }

  /** Opens the database file and the blob folder beside it. */
  static async open(file: string): Promise<SqliteStore> {
    const store = new SqliteStore(openDatabase(file));
    try {
      await store.blobs.init();
    } catch (err) {
      store.db.close();
      throw err;
    }
    return store;
  }

  /**
   * SQLite has one connection, so a transaction is the connection's state, not a client's: while
   * `work` awaits, any other async work on this process runs inside the open transaction. Two
   * rules keep that safe. Transactions are serialised (each waits for the one before it to end),
   * so one never commits or rolls back another's writes. And the repositories run each call as one
   * synchronous statement group (nested transactions become savepoints), so a write made meanwhile
   * outside a transaction is whole: it commits with this one, or is lost only if this one fails,
   * which the pipeline's bodies do only on a broken database. The write lock is held across those
   * awaits, so a second connection in this same process that writes synchronously meanwhile waits
   * for a lock that cannot be released until busy_timeout: never write through another connection
   * in-process while the engine works (tests wait for the engine to be idle first).
   */
  transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this);
        this.db.exec('COMMIT');
        this.checkpointWhenIdle();
        return result;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    };
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /**
   * Copies the WAL into the database once no transaction has committed for a while, so a burst of
   * transactions (a fan-out) does not wait for checkpoints and their fsyncs in its commits (see
   * WAL_AUTOCHECKPOINT_PAGES). PASSIVE: it never waits for a reader.
   */
  private checkpointWhenIdle(): void {
    if (this.checkpointTimer) {
      this.checkpointTimer.refresh();
      return;
    }
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      if (!this.db.open || this.db.inTransaction) return;
      try {
        this.db.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // Another connection checkpointing, say: the next idle moment or a commit past the bound does it.
      }
    }, IDLE_CHECKPOINT_MS).unref();
  }

  async close(): Promise<void> {
    await this.tail;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    if (this.db.open) this.db.close();
  }
}
