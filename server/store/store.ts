import type { AttributeRepository } from './attributes';
import type { BlobStore } from './blob-store';
import type { ClusterBus } from './cluster-bus';
import type { DeviceProfileRepository } from './device-profiles';
import type { DeviceRepository } from './devices';
import type { DownloadProgressRepository } from './download-progress';
import type { FleetReadModel } from './fleet-read-model';
import type { NotifyQueueRepository } from './notify-queue-repository';
import type { OtaPackageRepository } from './ota-packages';
import type { OtaStateRepository } from './ota-states';
import type { OtaTargetRepository } from './ota-targets';
import type { ReportedVersionRepository } from './reported-versions';
import type { RolloutRepository } from './rollouts';
import type { SettingsRepository } from './settings';
import type { SigningKeyRepository } from './signing-keys';
import type { TelemetryRepository } from './telemetry';
import type { TenantPolicyRepository } from './tenant-policies';
import type { TenantRepository } from './tenants';

/** Everything the engine keeps, one repository per kind of record. */
export interface Repositories {
  tenants: TenantRepository;
  profiles: DeviceProfileRepository;
  devices: DeviceRepository;
  packages: OtaPackageRepository;
  attributes: AttributeRepository;
  telemetry: TelemetryRepository;
  queue: NotifyQueueRepository;
  targets: OtaTargetRepository;
  states: OtaStateRepository;
  settings: SettingsRepository;
  /** Each tenant's package signing key (issue 14). */
  signingKeys: SigningKeyRepository;
  /** What each tenant requires of its packages (issue 14). */
  policies: TenantPolicyRepository;
  /** The versions devices report, read by downgrade protection (issue 14). */
  reportedVersions: ReportedVersionRepository;
  /** The package bytes served to each device, whichever instance served them (issue 14). */
  downloads: DownloadProgressRepository;
  /** Rollouts in waves and each device's part in them (issue 14). */
  rollouts: RolloutRepository;
}

/**
 * Transactions of different lanes may run at once where the database can (PostgreSQL: each on a
 * connection of its own; SQLite has one connection and runs every transaction in turn).
 * `enqueue`: the queue's intake (`NotifyQueue` queueing and cancelling, in the order asked), so a
 * fan-out's next batch is queued while the batches before it are released and notified; `main`
 * (the default): everything else.
 */
export type TransactionLane = 'main' | 'enqueue';

/**
 * The engine's one store. Each repository call outside `transaction` commits on its own; inside,
 * the calls made through `tx` commit together or not at all (a unit of work), so a batch of
 * devices is one commit instead of several per device.
 *
 * Implementations: SQLite (store/sqlite/, the embedded default; bytes in the data directory) and
 * PostgreSQL (store/postgres/: each transaction on one pooled client; bytes in the database, cached
 * in the data directory), chosen by openStore.
 */
export interface Store extends Repositories {
  /** The package bytes, where every instance on this store can read them. */
  readonly blobs: BlobStore;
  /** Messages to the other instances on this store (none on SQLite). */
  readonly cluster: ClusterBus;
  /** What the dashboard and /metrics read; outside any transaction. */
  readonly fleet: FleetReadModel;
  /**
   * Runs `work` in one transaction: committed when it resolves, rolled back when it throws. The
   * transactions of one lane run one after another, in the order asked.
   */
  transaction<T>(work: (tx: Repositories) => Promise<T>, lane?: TransactionLane): Promise<T>;
  close(): Promise<void>;
}
