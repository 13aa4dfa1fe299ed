/**
 * Numbered schema migrations. Each runs once, in order, inside a transaction; the applied number is
 * kept in SQLite's `user_version`. Never edit a shipped migration: add the next number.
 */
export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'tenants, users, device profiles, devices, OTA packages, settings',
    sql: `
      CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      CREATE TABLE tenants (
        id           TEXT PRIMARY KEY,
        title        TEXT NOT NULL,
        created_time INTEGER NOT NULL
      );
      CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL REFERENCES tenants(id),
        email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        authority     TEXT NOT NULL,
        created_time  INTEGER NOT NULL
      );
      CREATE TABLE device_profiles (
        id           TEXT PRIMARY KEY,
        tenant_id    TEXT NOT NULL REFERENCES tenants(id),
        name         TEXT NOT NULL,
        description  TEXT,
        is_default   INTEGER NOT NULL DEFAULT 0,
        firmware_id  TEXT REFERENCES ota_packages(id),
        software_id  TEXT REFERENCES ota_packages(id),
        created_time INTEGER NOT NULL,
        version      INTEGER NOT NULL DEFAULT 1,
        extra        TEXT NOT NULL DEFAULT '{}',
        UNIQUE (tenant_id, name)
      );
      CREATE TABLE devices (
        id                TEXT PRIMARY KEY,
        tenant_id         TEXT NOT NULL REFERENCES tenants(id),
        name              TEXT NOT NULL,
        label             TEXT,
        device_profile_id TEXT NOT NULL REFERENCES device_profiles(id),
        firmware_id       TEXT REFERENCES ota_packages(id),
        software_id       TEXT REFERENCES ota_packages(id),
        access_token      TEXT NOT NULL UNIQUE,
        credentials_id    TEXT NOT NULL,
        created_time      INTEGER NOT NULL,
        version           INTEGER NOT NULL DEFAULT 1,
        extra             TEXT NOT NULL DEFAULT '{}',
        UNIQUE (tenant_id, name)
      );
      CREATE INDEX devices_profile ON devices(device_profile_id, id);
      CREATE INDEX devices_firmware ON devices(firmware_id);
      CREATE INDEX devices_software ON devices(software_id);
      CREATE TABLE ota_packages (
        id                 TEXT PRIMARY KEY,
        tenant_id          TEXT NOT NULL REFERENCES tenants(id),
        device_profile_id  TEXT NOT NULL REFERENCES device_profiles(id),
        type               TEXT NOT NULL CHECK (type IN ('FIRMWARE', 'SOFTWARE')),
        title              TEXT NOT NULL,
        version            TEXT NOT NULL,
        tag                TEXT,
        url                TEXT,
        file_name          TEXT,
        content_type       TEXT,
        checksum_algorithm TEXT,
        checksum           TEXT,
        data_size          INTEGER,
        blob_sha256        TEXT,
        additional_info    TEXT,
        external_id        TEXT,
        created_time       INTEGER NOT NULL,
        UNIQUE (tenant_id, title, version)
      );
      CREATE INDEX ota_packages_profile ON ota_packages(device_profile_id, type);
      CREATE INDEX ota_packages_blob ON ota_packages(blob_sha256);
    `,
  },
  {
    version: 2,
    description: 'attributes, telemetry, the notify queue, OTA targets and device update states',
    sql: `
      CREATE TABLE attributes (
        device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        scope      TEXT NOT NULL CHECK (scope IN ('CLIENT', 'SHARED', 'SERVER')),
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        ts         INTEGER NOT NULL,
        PRIMARY KEY (device_id, scope, key)
      ) WITHOUT ROWID;
      CREATE TABLE telemetry_latest (
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        key       TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        value     TEXT NOT NULL,
        PRIMARY KEY (device_id, key)
      ) WITHOUT ROWID;
      -- History is kept for the OTA keys only (states, targets, current versions, errors).
      CREATE TABLE telemetry_history (
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        key       TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        value     TEXT NOT NULL
      );
      CREATE INDEX telemetry_history_key_ts ON telemetry_history(device_id, key, ts);
      -- One row per device and type: a newer assignment replaces the queued one.
      CREATE TABLE notify_queue (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id  TEXT NOT NULL,
        device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        type       TEXT NOT NULL,
        package_id TEXT,
        ts         INTEGER NOT NULL,
        attempt    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (device_id, type)
      );
      -- The last package a device was queued for and whether it was notified: what reconciliation
      -- compares with the effective package, and what keeps a device from being notified twice.
      CREATE TABLE ota_targets (
        device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        type       TEXT NOT NULL,
        package_id TEXT,
        ts         INTEGER NOT NULL,
        notified   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, type)
      ) WITHOUT ROWID;
      -- The update state the tracker keeps per device and type, for metrics and timeouts.
      CREATE TABLE ota_states (
        device_id        TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        tenant_id        TEXT NOT NULL,
        type             TEXT NOT NULL,
        state            TEXT,
        state_ts         INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        current_title    TEXT,
        current_version  TEXT,
        target_package_id TEXT,
        retries          INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, type)
      ) WITHOUT ROWID;
      CREATE INDEX ota_states_state ON ota_states(tenant_id, type, state, state_ts);
    `,
  },
  {
    version: 3,
    description: 'dashboard: indexes for the device list, a change log of update states, state snapshots for the chart',
    sql: `
      -- The dashboard's device list sorts by name (case-insensitive) and creation time, filters by
      -- target package; /metrics and the live stream count the queue per tenant.
      CREATE INDEX devices_tenant_name_nocase ON devices(tenant_id, name COLLATE NOCASE, id);
      CREATE INDEX devices_tenant_created ON devices(tenant_id, created_time, id);
      CREATE INDEX ota_states_target ON ota_states(target_package_id, type);
      CREATE INDEX ota_states_tenant_ts ON ota_states(tenant_id, type, state_ts);
      CREATE INDEX notify_queue_tenant ON notify_queue(tenant_id);
      -- Every write to a device's update state, whoever makes it (tracker, queue, notifier, a node of
      -- the user's own): what the dashboard's live stream reads. Consumed and emptied as it is read.
      CREATE TABLE ota_state_changes (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        type      TEXT NOT NULL
      );
      CREATE TRIGGER ota_states_inserted AFTER INSERT ON ota_states BEGIN
        INSERT INTO ota_state_changes (tenant_id, device_id, type) VALUES (NEW.tenant_id, NEW.device_id, NEW.type);
      END;
      CREATE TRIGGER ota_states_updated AFTER UPDATE ON ota_states
        WHEN OLD.state IS NOT NEW.state OR OLD.state_ts IS NOT NEW.state_ts OR OLD.error IS NOT NEW.error
          OR OLD.current_title IS NOT NEW.current_title OR OLD.current_version IS NOT NEW.current_version
          OR OLD.target_package_id IS NOT NEW.target_package_id
      BEGIN
        INSERT INTO ota_state_changes (tenant_id, device_id, type) VALUES (NEW.tenant_id, NEW.device_id, NEW.type);
      END;
      -- The state distribution of targeted devices over time, per tenant and type: the chart.
      CREATE TABLE ota_state_snapshots (
        tenant_id   TEXT NOT NULL,
        type        TEXT NOT NULL,
        ts          INTEGER NOT NULL,
        queued      INTEGER NOT NULL DEFAULT 0,
        initiated   INTEGER NOT NULL DEFAULT 0,
        downloading INTEGER NOT NULL DEFAULT 0,
        downloaded  INTEGER NOT NULL DEFAULT 0,
        verified    INTEGER NOT NULL DEFAULT 0,
        updating    INTEGER NOT NULL DEFAULT 0,
        updated     INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0,
        other       INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, type, ts)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    description: 'device credentials types: LwM2M endpoints beside access tokens',
    sql: `
      -- access_token keeps ThingsBoard's credentialsId of any type (unique across types, as
      -- ThingsBoard's device_credentials_id_unq_key): the token, or the LwM2M endpoint name.
      ALTER TABLE devices ADD COLUMN credentials_type TEXT NOT NULL DEFAULT 'ACCESS_TOKEN';
      ALTER TABLE devices ADD COLUMN credentials_value TEXT;
    `,
  },
  {
    version: 5,
    description: 'notify queue: a lease on claimed rows, so a consumer that dies mid-batch gives its rows back',
    sql: `
      -- NULL = waiting; otherwise the time (ms) until which a consumer holds the row.
      ALTER TABLE notify_queue ADD COLUMN claimed_until INTEGER;
    `,
  },
  {
    version: 6,
    description: "users: a token generation, raised to revoke a user's tokens (logout, password change)",
    sql: `
      -- Every admin JWT carries the generation it was issued under; a token of an older one is
      -- refused (issue 10, item 3).
      ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 7,
    description: 'fleet counts kept by triggers: /metrics and the dashboard read a few rows instead of counting every targeted device',
    sql: `
      -- Targeted devices per tenant, type, target package, profile and state ('' = no state yet), and
      -- how many of them already run the target. Kept by the triggers below on every write, whoever
      -- makes it, so the metrics read a few rows instead of grouping 50,000 (160 ms during which the
      -- synchronous driver blocks the whole server).
      CREATE TABLE ota_fleet_counts (
        tenant_id  TEXT NOT NULL,
        type       TEXT NOT NULL,
        package_id TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        state      TEXT NOT NULL,
        devices    INTEGER NOT NULL,
        on_target  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, package_id, profile_id, type, state)
      ) WITHOUT ROWID;
      INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
        SELECT s.tenant_id, s.type, s.target_package_id, d.device_profile_id, coalesce(s.state, ''), count(*),
               coalesce(sum(s.current_title = p.title AND s.current_version = p.version), 0)
        FROM ota_states s JOIN devices d ON d.id = s.device_id LEFT JOIN ota_packages p ON p.id = s.target_package_id
        WHERE s.target_package_id IS NOT NULL
        GROUP BY s.tenant_id, s.type, s.target_package_id, d.device_profile_id, coalesce(s.state, '');
      CREATE TRIGGER ota_fleet_counts_inserted AFTER INSERT ON ota_states WHEN NEW.target_package_id IS NOT NULL BEGIN
        INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT NEW.tenant_id, NEW.type, NEW.target_package_id, d.device_profile_id, coalesce(NEW.state, ''), 1,
                 coalesce((SELECT NEW.current_title = p.title AND NEW.current_version = p.version FROM ota_packages p WHERE p.id = NEW.target_package_id), 0)
          FROM devices d WHERE d.id = NEW.device_id
          ON CONFLICT (tenant_id, package_id, profile_id, type, state) DO UPDATE SET devices = devices + 1, on_target = on_target + excluded.on_target;
      END;
      CREATE TRIGGER ota_fleet_counts_deleted AFTER DELETE ON ota_states WHEN OLD.target_package_id IS NOT NULL BEGIN
        UPDATE ota_fleet_counts SET devices = devices - 1,
            on_target = on_target - coalesce((SELECT OLD.current_title = p.title AND OLD.current_version = p.version FROM ota_packages p WHERE p.id = OLD.target_package_id), 0)
          WHERE tenant_id = OLD.tenant_id AND package_id = OLD.target_package_id AND type = OLD.type AND state = coalesce(OLD.state, '')
            AND profile_id = (SELECT device_profile_id FROM devices WHERE id = OLD.device_id);
      END;
      CREATE TRIGGER ota_fleet_counts_updated AFTER UPDATE ON ota_states
        WHEN OLD.state IS NOT NEW.state OR OLD.target_package_id IS NOT NEW.target_package_id
          OR OLD.current_title IS NOT NEW.current_title OR OLD.current_version IS NOT NEW.current_version
      BEGIN
        UPDATE ota_fleet_counts SET devices = devices - 1,
            on_target = on_target - coalesce((SELECT OLD.current_title = p.title AND OLD.current_version = p.version FROM ota_packages p WHERE p.id = OLD.target_package_id), 0)
          WHERE OLD.target_package_id IS NOT NULL
            AND tenant_id = OLD.tenant_id AND package_id = OLD.target_package_id AND type = OLD.type AND state = coalesce(OLD.state, '')
            AND profile_id = (SELECT device_profile_id FROM devices WHERE id = OLD.device_id);
        INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT NEW.tenant_id, NEW.type, NEW.target_package_id, d.device_profile_id, coalesce(NEW.state, ''), 1,
                 coalesce((SELECT NEW.current_title = p.title AND NEW.current_version = p.version FROM ota_packages p WHERE p.id = NEW.target_package_id), 0)
          FROM devices d WHERE d.id = NEW.device_id AND NEW.target_package_id IS NOT NULL
          ON CONFLICT (tenant_id, package_id, profile_id, type, state) DO UPDATE SET devices = devices + 1, on_target = on_target + excluded.on_target;
      END;
      -- A deleted device's states go first, while the device still says which profile they count under.
      CREATE TRIGGER ota_fleet_counts_device_deleting BEFORE DELETE ON devices BEGIN
        DELETE FROM ota_states WHERE device_id = OLD.id;
      END;
      -- A device moved to another profile takes its counts with it.
      CREATE TRIGGER ota_fleet_counts_device_moved AFTER UPDATE OF device_profile_id ON devices
        WHEN OLD.device_profile_id IS NOT NEW.device_profile_id
      BEGIN
        UPDATE ota_fleet_counts SET devices = devices - 1,
            on_target = on_target - coalesce((SELECT s.current_title = p.title AND s.current_version = p.version FROM ota_states s JOIN ota_packages p ON p.id = s.target_package_id
                                              WHERE s.device_id = NEW.id AND s.type = ota_fleet_counts.type), 0)
          WHERE profile_id = OLD.device_profile_id AND tenant_id = NEW.tenant_id
            AND EXISTS (SELECT 1 FROM ota_states s WHERE s.device_id = NEW.id AND s.type = ota_fleet_counts.type
                          AND s.target_package_id = ota_fleet_counts.package_id AND coalesce(s.state, '') = ota_fleet_counts.state);
        INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT s.tenant_id, s.type, s.target_package_id, NEW.device_profile_id, coalesce(s.state, ''), 1,
                 coalesce((SELECT s.current_title = p.title AND s.current_version = p.version FROM ota_packages p WHERE p.id = s.target_package_id), 0)
          FROM ota_states s WHERE s.device_id = NEW.id AND s.target_package_id IS NOT NULL
          ON CONFLICT (tenant_id, package_id, profile_id, type, state) DO UPDATE SET devices = devices + 1, on_target = on_target + excluded.on_target;
      END;
      -- A package whose title or version changes: which devices run it is counted again (rare).
      CREATE TRIGGER ota_fleet_counts_package_renamed AFTER UPDATE OF title, version ON ota_packages
        WHEN OLD.title IS NOT NEW.title OR OLD.version IS NOT NEW.version
      BEGIN
        UPDATE ota_fleet_counts SET on_target = (
            SELECT count(*) FROM ota_states s JOIN devices d ON d.id = s.device_id
            WHERE s.target_package_id = NEW.id AND s.type = ota_fleet_counts.type AND coalesce(s.state, '') = ota_fleet_counts.state
              AND d.device_profile_id = ota_fleet_counts.profile_id AND s.current_title = NEW.title AND s.current_version = NEW.version)
          WHERE package_id = NEW.id;
      END;
    `,
  },
  {
    version: 8,
    description: 'signed packages: package signatures, tenant signing keys and policies',
    sql: `
      -- The Ed25519 signature of the package's SHA-256 digest (see server/packages/package-signing.ts).
      ALTER TABLE ota_packages ADD COLUMN signature TEXT;
      ALTER TABLE ota_packages ADD COLUMN signature_algorithm TEXT;
      -- One key per tenant; private_key is NULL when only the public key was imported (offline key).
      CREATE TABLE signing_keys (
        tenant_id    TEXT PRIMARY KEY REFERENCES tenants(id),
        algorithm    TEXT NOT NULL,
        public_key   TEXT NOT NULL,
        private_key  TEXT,
        created_time INTEGER NOT NULL
      );
      CREATE TABLE tenant_policies (
        tenant_id               TEXT PRIMARY KEY REFERENCES tenants(id),
        require_signed_packages INTEGER NOT NULL DEFAULT 0
      );
    `,
  },
  {
    version: 9,
    description: 'tenants and users as ThingsBoard has them: the system tenant, tenant profiles, tenant and user details, activation tokens',
    sql: `
      -- ThingsBoard's SYS_ADMIN belongs to the system tenant (TenantId.SYS_TENANT_ID, the null UUID);
      -- it owns nothing else and is never listed as a tenant.
      INSERT OR IGNORE INTO tenants (id, title, created_time) VALUES ('13814000-1dd2-11b2-8080-808080808080', 'System', 0);
      -- ThingsBoard's tenant profiles: profile_data is its JSON (configuration.maxDevices and
      -- configuration.maxOtaPackagesInBytes are the limits we enforce; 0 = unlimited).
      CREATE TABLE tenant_profiles (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        description  TEXT,
        is_default   INTEGER NOT NULL DEFAULT 0,
        profile_data TEXT NOT NULL DEFAULT '{}',
        created_time INTEGER NOT NULL
      );
      ALTER TABLE tenants ADD COLUMN tenant_profile_id TEXT REFERENCES tenant_profiles(id);
      -- The contact fields ThingsBoard keeps (country, city, email, ...) and additionalInfo, as sent.
      ALTER TABLE tenants ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';
      -- firstName, lastName, phone, additionalInfo, as sent.
      ALTER TABLE users ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';
      -- Set while a user created without a password has not activated (ThingsBoard's user_credentials.activate_token).
      ALTER TABLE users ADD COLUMN activate_token TEXT;
      CREATE UNIQUE INDEX users_activate_token ON users(activate_token);
      CREATE INDEX users_tenant ON users(tenant_id, created_time);
      `,
  },
  {
    version: 10,
    description: 'download progress in the store: every instance adds to one figure per device, and a restart keeps it',
    sql: `
      -- The bytes of its current package served to a device, per type (issue 14): merged ranges as
      -- JSON ([[start, end), ...], at most 256), their total, and when the last were sent.
      CREATE TABLE download_progress (
        device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        type         TEXT NOT NULL,
        tenant_id    TEXT NOT NULL,
        package_id   TEXT NOT NULL,
        size         INTEGER NOT NULL,
        served_bytes INTEGER NOT NULL,
        ranges       TEXT NOT NULL,
        ts           INTEGER NOT NULL,
        PRIMARY KEY (device_id, type)
      ) WITHOUT ROWID;
      CREATE INDEX download_progress_tenant ON download_progress(tenant_id);
    `,
  },
  {
    version: 11,
    description: 'rollouts: a package sent to a target in waves, and each device’s part in one',
    sql: `
      -- spec and waves are JSON text; lease_owner/lease_until: the instance driving a RUNNING rollout.
      CREATE TABLE rollouts (
        id            TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL REFERENCES tenants(id),
        name          TEXT NOT NULL,
        package_id    TEXT NOT NULL,
        type          TEXT NOT NULL,
        spec          TEXT NOT NULL,
        state         TEXT NOT NULL,
        reason        TEXT,
        current_wave  INTEGER NOT NULL DEFAULT 0,
        waves         TEXT NOT NULL,
        created_time  INTEGER NOT NULL,
        started_time  INTEGER,
        finished_time INTEGER,
        version       INTEGER NOT NULL,
        lease_owner   TEXT,
        lease_until   INTEGER
      );
      CREATE INDEX rollouts_tenant_created ON rollouts(tenant_id, created_time);
      CREATE INDEX rollouts_state ON rollouts(state);
      CREATE TABLE rollout_devices (
        rollout_id          TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
        device_id           TEXT NOT NULL,
        wave                INTEGER NOT NULL,
        position            INTEGER NOT NULL,
        status              TEXT NOT NULL,
        previous_package_id TEXT,
        PRIMARY KEY (rollout_id, device_id)
      ) WITHOUT ROWID;
      `,
  },
  {
    version: 12,
    description: 'activation tokens expire, password reset tokens (ThingsBoard: user_credentials.activate_token_exp_time, reset_token, reset_token_exp_time)',
    sql: `
      -- When a user's activation token stops working (ms); null with no token.
      ALTER TABLE users ADD COLUMN activate_token_exp_time INTEGER;
      -- A password reset link's token while one is outstanding, and when it stops working (ms).
      ALTER TABLE users ADD COLUMN reset_token TEXT;
      ALTER TABLE users ADD COLUMN reset_token_exp_time INTEGER;
      CREATE UNIQUE INDEX users_reset_token ON users(reset_token);
    `,
  },
  {
    version: 13,
    description: 'dashboard: indexes that read the device list in order by state, current version and profile (fleet-sorted-page.ts)',
    sql: `
      -- By state and by what a device runs: the state rows in that order, ties by device (a whole
      -- state's rows, or 50,000 versions, were sorted for a page).
      CREATE INDEX ota_states_sort_state ON ota_states(tenant_id, type, state, device_id);
      CREATE INDEX ota_states_sort_version ON ota_states(tenant_id, type, current_version, device_id);
      -- By profile name: each profile's devices in id order, and the count per profile, from the index alone.
      CREATE INDEX devices_tenant_profile ON devices(tenant_id, device_profile_id, id);
    `,
  },
  {
    version: 14,
    description: 'cheaper update-state writes: one index fewer on ota_states, fleet-count triggers with one statement and no package read for a device reporting no version',
    sql: `
      -- Every state change rewrote this index. Of the dashboard's queries only a filter by state
      -- sorted by time used it; ota_states_sort_state (tenant, type, state, device_id) answers the
      -- filter and its count, and ota_states_tenant_ts the time sorts (bench/fleet-read.ts).
      DROP INDEX ota_states_state;
      -- As migration 7's, with the same counts: a device that reports no current title or version
      -- is not on target, so the package is not read; an update moves the device out of its old
      -- row and into its new one in one upsert (one device read, not two statements of two reads
      -- each). The old row exists (it counted the device), so its upsert only ever updates.
      DROP TRIGGER ota_fleet_counts_inserted;
      DROP TRIGGER ota_fleet_counts_updated;
      CREATE TRIGGER ota_fleet_counts_inserted AFTER INSERT ON ota_states WHEN NEW.target_package_id IS NOT NULL BEGIN
        INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT NEW.tenant_id, NEW.type, NEW.target_package_id, d.device_profile_id, coalesce(NEW.state, ''), 1,
                 CASE WHEN NEW.current_title IS NULL OR NEW.current_version IS NULL THEN 0
                      ELSE coalesce((SELECT NEW.current_title = p.title AND NEW.current_version = p.version FROM ota_packages p WHERE p.id = NEW.target_package_id), 0) END
          FROM devices d WHERE d.id = NEW.device_id
          ON CONFLICT (tenant_id, package_id, profile_id, type, state) DO UPDATE SET devices = devices + 1, on_target = on_target + excluded.on_target;
      END;
      CREATE TRIGGER ota_fleet_counts_updated AFTER UPDATE ON ota_states
        WHEN OLD.state IS NOT NEW.state OR OLD.target_package_id IS NOT NEW.target_package_id
          OR OLD.current_title IS NOT NEW.current_title OR OLD.current_version IS NOT NEW.current_version
      BEGIN
        INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT NEW.tenant_id, NEW.type, m.package_id, d.device_profile_id, m.state, m.delta,
                 CASE WHEN m.title IS NULL OR m.version IS NULL THEN 0
                      ELSE m.delta * coalesce((SELECT m.title = p.title AND m.version = p.version FROM ota_packages p WHERE p.id = m.package_id), 0) END
          FROM (SELECT OLD.target_package_id AS package_id, coalesce(OLD.state, '') AS state, -1 AS delta, OLD.current_title AS title, OLD.current_version AS version
                WHERE OLD.target_package_id IS NOT NULL
                UNION ALL
                SELECT NEW.target_package_id, coalesce(NEW.state, ''), 1, NEW.current_title, NEW.current_version
                WHERE NEW.target_package_id IS NOT NULL) m
          JOIN devices d ON d.id = NEW.device_id WHERE true
          ON CONFLICT (tenant_id, package_id, profile_id, type, state) DO UPDATE SET devices = devices + excluded.devices, on_target = on_target + excluded.on_target;
      END;
    `,
  },
];
