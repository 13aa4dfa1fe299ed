/**
 * Numbered PostgreSQL schema migrations: the same tables and meaning as the SQLite ones
 * (../sqlite/migrations.ts, versions 1-3 here mirror versions 1-3 there), in PostgreSQL types:
 * uuid ids, bigint millisecond timestamps, jsonb where JSON is kept, boolean flags. Each runs once,
 * in order, in a transaction; applied numbers are kept in `schema_migrations`. Never edit a shipped
 * migration: add the next number.
 *
 * Text that is sorted or compared for uniqueness uses the "C" collation so the order is the
 * bytewise order SQLite uses, whatever the cluster's locale.
 */
export interface PgMigration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'tenants, users, device profiles, devices, OTA packages, settings',
    sql: `
      CREATE TABLE settings (
        key   text PRIMARY KEY,
        value text NOT NULL
      );
      CREATE TABLE tenants (
        id           uuid PRIMARY KEY,
        title        text NOT NULL,
        created_time bigint NOT NULL
      );
      CREATE TABLE users (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL REFERENCES tenants(id),
        email         text NOT NULL,
        password_hash text NOT NULL,
        authority     text NOT NULL,
        created_time  bigint NOT NULL
      );
      -- SQLite: email UNIQUE COLLATE NOCASE.
      CREATE UNIQUE INDEX users_email ON users (lower(email));
      CREATE TABLE device_profiles (
        id           uuid PRIMARY KEY,
        tenant_id    uuid NOT NULL REFERENCES tenants(id),
        name         text COLLATE "C" NOT NULL,
        description  text COLLATE "C",
        is_default   boolean NOT NULL DEFAULT false,
        firmware_id  uuid,
        software_id  uuid,
        created_time bigint NOT NULL,
        version      bigint NOT NULL DEFAULT 1,
        extra        jsonb NOT NULL DEFAULT '{}',
        CONSTRAINT device_profiles_tenant_name UNIQUE (tenant_id, name)
      );
      -- At most one default profile per tenant (the service checks it; this holds it between instances).
      CREATE UNIQUE INDEX device_profiles_default ON device_profiles (tenant_id) WHERE is_default;
      CREATE TABLE devices (
        id                uuid PRIMARY KEY,
        tenant_id         uuid NOT NULL REFERENCES tenants(id),
        name              text COLLATE "C" NOT NULL,
        label             text COLLATE "C",
        device_profile_id uuid NOT NULL REFERENCES device_profiles(id),
        firmware_id       uuid,
        software_id       uuid,
        access_token      text NOT NULL,
        credentials_id    uuid NOT NULL,
        created_time      bigint NOT NULL,
        version           bigint NOT NULL DEFAULT 1,
        extra             jsonb NOT NULL DEFAULT '{}',
        CONSTRAINT devices_tenant_name UNIQUE (tenant_id, name),
        CONSTRAINT devices_access_token UNIQUE (access_token)
      );
      CREATE INDEX devices_profile ON devices(device_profile_id, id);
      CREATE INDEX devices_firmware ON devices(firmware_id);
      CREATE INDEX devices_software ON devices(software_id);
      CREATE TABLE ota_packages (
        id                 uuid PRIMARY KEY,
        tenant_id          uuid NOT NULL REFERENCES tenants(id),
        device_profile_id  uuid NOT NULL REFERENCES device_profiles(id),
        type               text NOT NULL CHECK (type IN ('FIRMWARE', 'SOFTWARE')),
        title              text COLLATE "C" NOT NULL,
        version            text COLLATE "C" NOT NULL,
        tag                text COLLATE "C",
        url                text COLLATE "C",
        file_name          text COLLATE "C",
        content_type       text,
        checksum_algorithm text,
        checksum           text COLLATE "C",
        data_size          bigint,
        blob_sha256        text,
        additional_info    jsonb,
        external_id        text,
        created_time       bigint NOT NULL,
        CONSTRAINT ota_packages_tenant_title_version UNIQUE (tenant_id, title, version)
      );
      CREATE INDEX ota_packages_profile ON ota_packages(device_profile_id, type);
      CREATE INDEX ota_packages_blob ON ota_packages(blob_sha256);
      -- Profiles, devices and packages refer to each other; SQLite declares these inline.
      ALTER TABLE device_profiles ADD FOREIGN KEY (firmware_id) REFERENCES ota_packages(id);
      ALTER TABLE device_profiles ADD FOREIGN KEY (software_id) REFERENCES ota_packages(id);
      ALTER TABLE devices ADD FOREIGN KEY (firmware_id) REFERENCES ota_packages(id);
      ALTER TABLE devices ADD FOREIGN KEY (software_id) REFERENCES ota_packages(id);
    `,
  },
  {
    version: 2,
    description: 'attributes, telemetry, the notify queue, OTA targets and device update states',
    sql: `
      CREATE TABLE attributes (
        device_id uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        scope     text NOT NULL CHECK (scope IN ('CLIENT', 'SHARED', 'SERVER')),
        key       text COLLATE "C" NOT NULL,
        value     jsonb NOT NULL,
        ts        bigint NOT NULL,
        PRIMARY KEY (device_id, scope, key)
      );
      CREATE TABLE telemetry_latest (
        device_id uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        key       text NOT NULL,
        ts        bigint NOT NULL,
        value     jsonb NOT NULL,
        PRIMARY KEY (device_id, key)
      );
      -- History is kept for the OTA keys only (states, targets, current versions, errors); seq
      -- orders reports of the same millisecond as SQLite's rowid does.
      CREATE TABLE telemetry_history (
        seq       bigserial PRIMARY KEY,
        device_id uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        key       text NOT NULL,
        ts        bigint NOT NULL,
        value     jsonb NOT NULL
      );
      CREATE INDEX telemetry_history_key_ts ON telemetry_history(device_id, key, ts);
      -- One row per device and type: a newer assignment replaces the queued one.
      CREATE TABLE notify_queue (
        seq        bigserial PRIMARY KEY,
        tenant_id  uuid NOT NULL,
        device_id  uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        type       text NOT NULL,
        package_id uuid,
        ts         bigint NOT NULL,
        attempt    integer NOT NULL DEFAULT 0,
        UNIQUE (device_id, type)
      );
      -- The last package a device was queued for and whether it was notified.
      CREATE TABLE ota_targets (
        device_id  uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        type       text NOT NULL,
        package_id uuid,
        ts         bigint NOT NULL,
        notified   boolean NOT NULL DEFAULT false,
        PRIMARY KEY (device_id, type)
      );
      -- The update state the tracker keeps per device and type, for metrics and timeouts.
      CREATE TABLE ota_states (
        device_id         uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        tenant_id         uuid NOT NULL,
        type              text NOT NULL,
        state             text,
        state_ts          bigint NOT NULL DEFAULT 0,
        error             text,
        current_title     text,
        current_version   text,
        target_package_id uuid,
        retries           integer NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, type)
      );
      CREATE INDEX ota_states_state ON ota_states(tenant_id, type, state, state_ts);
    `,
  },
  {
    version: 3,
    description: 'dashboard: indexes for the device list, a change log of update states, state snapshots for the chart',
    sql: `
      CREATE INDEX devices_tenant_name_nocase ON devices(tenant_id, lower(name), id);
      CREATE INDEX devices_tenant_created ON devices(tenant_id, created_time, id);
      CREATE INDEX ota_states_target ON ota_states(target_package_id, type);
      CREATE INDEX ota_states_tenant_ts ON ota_states(tenant_id, type, state_ts);
      CREATE INDEX notify_queue_tenant ON notify_queue(tenant_id);
      -- Every write to a device's update state, whoever makes it: what the dashboard's live stream reads.
      CREATE TABLE ota_state_changes (
        seq       bigserial PRIMARY KEY,
        tenant_id uuid NOT NULL,
        device_id uuid NOT NULL,
        type      text NOT NULL
      );
      CREATE FUNCTION ota_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ota_state_changes (tenant_id, device_id, type) VALUES (NEW.tenant_id, NEW.device_id, NEW.type);
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_states_inserted AFTER INSERT ON ota_states
        FOR EACH ROW EXECUTE FUNCTION ota_state_changed();
      CREATE TRIGGER ota_states_updated AFTER UPDATE ON ota_states FOR EACH ROW
        WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.state_ts IS DISTINCT FROM NEW.state_ts
          OR OLD.error IS DISTINCT FROM NEW.error OR OLD.current_title IS DISTINCT FROM NEW.current_title
          OR OLD.current_version IS DISTINCT FROM NEW.current_version
          OR OLD.target_package_id IS DISTINCT FROM NEW.target_package_id)
        EXECUTE FUNCTION ota_state_changed();
      -- The state distribution of targeted devices over time, per tenant and type: the chart.
      CREATE TABLE ota_state_snapshots (
        tenant_id   uuid NOT NULL,
        type        text NOT NULL,
        ts          bigint NOT NULL,
        queued      integer NOT NULL DEFAULT 0,
        initiated   integer NOT NULL DEFAULT 0,
        downloading integer NOT NULL DEFAULT 0,
        downloaded  integer NOT NULL DEFAULT 0,
        verified    integer NOT NULL DEFAULT 0,
        updating    integer NOT NULL DEFAULT 0,
        updated     integer NOT NULL DEFAULT 0,
        failed      integer NOT NULL DEFAULT 0,
        other       integer NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, type, ts)
      );
    `,
  },
  {
    version: 4,
    description: 'package bytes, content-addressed by SHA-256, in bounded chunks every instance reads',
    sql: `
      -- A blob is visible (complete) only once all its chunks are written, in the same transaction.
      CREATE TABLE package_blobs (
        sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        size         bigint NOT NULL,
        chunk_size   integer NOT NULL,
        created_time bigint NOT NULL
      );
      CREATE TABLE package_blob_chunks (
        sha256 text NOT NULL REFERENCES package_blobs(sha256) ON DELETE CASCADE,
        seq    integer NOT NULL,
        data   bytea NOT NULL,
        PRIMARY KEY (sha256, seq)
      );
      -- The bytes are already compressed or random more often than not: do not try to compress them.
      ALTER TABLE package_blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    `,
  },
  {
    version: 5,
    description: 'device credentials types: LwM2M endpoints beside access tokens (SQLite migration 4)',
    sql: `
      -- access_token keeps ThingsBoard's credentialsId of any type, unique across types.
      ALTER TABLE devices ADD COLUMN credentials_type text NOT NULL DEFAULT 'ACCESS_TOKEN';
      ALTER TABLE devices ADD COLUMN credentials_value text;
    `,
  },
  {
    version: 6,
    description: "users: a token generation, raised to revoke a user's tokens (SQLite migration 6)",
    sql: `ALTER TABLE users ADD COLUMN token_generation integer NOT NULL DEFAULT 0;`,
  },
  {
    version: 7,
    description: 'notify queue: a lease on claimed rows, so an instance that dies mid-batch gives its rows back (SQLite migration 5)',
    sql: `
      -- NULL = waiting; otherwise the time (ms) until which an instance holds the row.
      ALTER TABLE notify_queue ADD COLUMN claimed_until bigint;
    `,
  },
  {
    version: 8,
    description: 'signed packages: package signatures, tenant signing keys and policies (SQLite migration 7)',
    sql: `
      ALTER TABLE ota_packages ADD COLUMN signature text;
      ALTER TABLE ota_packages ADD COLUMN signature_algorithm text;
      CREATE TABLE signing_keys (
        tenant_id    uuid PRIMARY KEY REFERENCES tenants(id),
        algorithm    text NOT NULL,
        public_key   text NOT NULL,
        private_key  text,
        created_time bigint NOT NULL
      );
      CREATE TABLE tenant_policies (
        tenant_id               uuid PRIMARY KEY REFERENCES tenants(id),
        require_signed_packages boolean NOT NULL DEFAULT false
      );
    `,
  },
  {
    version: 9,
    description: 'tenants and users as ThingsBoard has them: the system tenant, tenant profiles, tenant and user details, activation tokens (SQLite migration 9)',
    sql: `
      INSERT INTO tenants (id, title, created_time) VALUES ('13814000-1dd2-11b2-8080-808080808080', 'System', 0) ON CONFLICT DO NOTHING;
      CREATE TABLE tenant_profiles (
        id           uuid PRIMARY KEY,
        name         text COLLATE "C" NOT NULL,
        description  text,
        is_default   boolean NOT NULL DEFAULT false,
        profile_data jsonb NOT NULL DEFAULT '{}',
        created_time bigint NOT NULL,
        CONSTRAINT tenant_profiles_name UNIQUE (name)
      );
      ALTER TABLE tenants ADD COLUMN tenant_profile_id uuid REFERENCES tenant_profiles(id);
      ALTER TABLE tenants ADD COLUMN extra jsonb NOT NULL DEFAULT '{}';
      ALTER TABLE users ADD COLUMN extra jsonb NOT NULL DEFAULT '{}';
      ALTER TABLE users ADD COLUMN activate_token text;
      CREATE UNIQUE INDEX users_activate_token ON users (activate_token);
      CREATE INDEX users_tenant ON users (tenant_id, created_time);
      `,
  },
  {
    version: 10,
    description: 'download progress in the store: every instance adds to one figure per device, and a restart keeps it (SQLite migration 10)',
    sql: `
      CREATE TABLE download_progress (
        device_id    uuid NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        type         text NOT NULL,
        tenant_id    uuid NOT NULL,
        package_id   uuid NOT NULL,
        size         bigint NOT NULL,
        served_bytes bigint NOT NULL,
        ranges       jsonb NOT NULL,
        ts           bigint NOT NULL,
        PRIMARY KEY (device_id, type)
      );
      CREATE INDEX download_progress_tenant ON download_progress(tenant_id);
    `,
  },
  {
    version: 11,
    description: 'fleet counts kept by triggers, as deltas folded into a few rows: /metrics and the dashboard stop grouping every targeted device',
    sql: `
      -- Targeted devices per tenant, type, target package, profile and state ('' = no state yet), and
      -- how many already run the target (SQLite migration 7 keeps the same table). Grouping every
      -- targeted device took 46-212 ms at 50,000. Here the triggers append deltas instead of updating
      -- the counts: every instance's transactions write states at once, and a counter row updated
      -- by all of them would serialise them (and deadlock them, in different orders). A reader folds
      -- the deltas into the counts now and then (one at a time, under an advisory lock) and reads
      -- counts plus the deltas not folded yet.
      CREATE TABLE ota_fleet_counts (
        tenant_id  uuid NOT NULL,
        type       text NOT NULL,
        package_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        state      text NOT NULL,
        devices    integer NOT NULL,
        on_target  integer NOT NULL,
        PRIMARY KEY (tenant_id, package_id, profile_id, type, state)
      );
      CREATE TABLE ota_fleet_count_deltas (
        tenant_id  uuid NOT NULL,
        type       text NOT NULL,
        package_id uuid NOT NULL,
        profile_id uuid NOT NULL,
        state      text NOT NULL,
        devices    integer NOT NULL,
        on_target  integer NOT NULL
      );
      CREATE INDEX ota_fleet_count_deltas_tenant ON ota_fleet_count_deltas(tenant_id);
      INSERT INTO ota_fleet_counts (tenant_id, type, package_id, profile_id, state, devices, on_target)
        SELECT s.tenant_id, s.type, s.target_package_id, d.device_profile_id, coalesce(s.state, ''), count(*),
               count(*) FILTER (WHERE s.current_title = p.title AND s.current_version = p.version)
        FROM ota_states s JOIN devices d ON d.id = s.device_id LEFT JOIN ota_packages p ON p.id = s.target_package_id
        WHERE s.target_package_id IS NOT NULL
        GROUP BY s.tenant_id, s.type, s.target_package_id, d.device_profile_id, coalesce(s.state, '');

      -- A state row leaves its old group and joins its new one.
      CREATE FUNCTION ota_fleet_count_state() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'INSERT' AND OLD.target_package_id IS NOT NULL THEN
          INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
            SELECT OLD.tenant_id, OLD.type, OLD.target_package_id, d.device_profile_id, coalesce(OLD.state, ''), -1,
                   -coalesce((SELECT (OLD.current_title = p.title AND OLD.current_version = p.version)::int FROM ota_packages p WHERE p.id = OLD.target_package_id), 0)
            FROM devices d WHERE d.id = OLD.device_id;
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.target_package_id IS NOT NULL THEN
          INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
            SELECT NEW.tenant_id, NEW.type, NEW.target_package_id, d.device_profile_id, coalesce(NEW.state, ''), 1,
                   coalesce((SELECT (NEW.current_title = p.title AND NEW.current_version = p.version)::int FROM ota_packages p WHERE p.id = NEW.target_package_id), 0)
            FROM devices d WHERE d.id = NEW.device_id;
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_fleet_counts_inserted AFTER INSERT ON ota_states FOR EACH ROW EXECUTE FUNCTION ota_fleet_count_state();
      CREATE TRIGGER ota_fleet_counts_deleted AFTER DELETE ON ota_states FOR EACH ROW EXECUTE FUNCTION ota_fleet_count_state();
      CREATE TRIGGER ota_fleet_counts_updated AFTER UPDATE ON ota_states FOR EACH ROW
        WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.target_package_id IS DISTINCT FROM NEW.target_package_id
          OR OLD.current_title IS DISTINCT FROM NEW.current_title OR OLD.current_version IS DISTINCT FROM NEW.current_version)
        EXECUTE FUNCTION ota_fleet_count_state();

      -- A deleted device's states go first, while the device still says which profile they count
      -- under (the foreign key's cascade would run after the device is gone).
      CREATE FUNCTION ota_fleet_count_device_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        DELETE FROM ota_states WHERE device_id = OLD.id;
        RETURN OLD;
      END $$;
      CREATE TRIGGER ota_fleet_counts_device_deleting BEFORE DELETE ON devices FOR EACH ROW EXECUTE FUNCTION ota_fleet_count_device_deleting();

      -- A device moved to another profile takes its counts with it.
      CREATE FUNCTION ota_fleet_count_device_moved() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT s.tenant_id, s.type, s.target_package_id, m.profile_id, coalesce(s.state, ''), m.sign,
                 m.sign * coalesce((s.current_title = p.title AND s.current_version = p.version)::int, 0)
          FROM ota_states s LEFT JOIN ota_packages p ON p.id = s.target_package_id
          CROSS JOIN (VALUES (OLD.device_profile_id, -1), (NEW.device_profile_id, 1)) AS m(profile_id, sign)
          WHERE s.device_id = NEW.id AND s.target_package_id IS NOT NULL;
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_fleet_counts_device_moved AFTER UPDATE OF device_profile_id ON devices FOR EACH ROW
        WHEN (OLD.device_profile_id IS DISTINCT FROM NEW.device_profile_id)
        EXECUTE FUNCTION ota_fleet_count_device_moved();

      -- A package whose title or version changes: which devices run it is counted again (rare).
      CREATE FUNCTION ota_fleet_count_package_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT s.tenant_id, s.type, NEW.id, d.device_profile_id, coalesce(s.state, ''), 0,
                 sum(coalesce((s.current_title = NEW.title AND s.current_version = NEW.version)::int, 0)
                   - coalesce((s.current_title = OLD.title AND s.current_version = OLD.version)::int, 0))
          FROM ota_states s JOIN devices d ON d.id = s.device_id
          WHERE s.target_package_id = NEW.id
          GROUP BY s.tenant_id, s.type, d.device_profile_id, coalesce(s.state, '');
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_fleet_counts_package_renamed AFTER UPDATE OF title, version ON ota_packages FOR EACH ROW
        WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.version IS DISTINCT FROM NEW.version)
        EXECUTE FUNCTION ota_fleet_count_package_renamed();
    `,
  },
  {
    version: 12,
    description: 'rollouts: a package sent to a target in waves, and each device’s part in one (SQLite migration 11)',
    sql: `
      CREATE TABLE rollouts (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL REFERENCES tenants(id),
        name          text NOT NULL,
        package_id    uuid NOT NULL,
        type          text NOT NULL,
        spec          jsonb NOT NULL,
        state         text NOT NULL,
        reason        text,
        current_wave  integer NOT NULL DEFAULT 0,
        waves         jsonb NOT NULL,
        created_time  bigint NOT NULL,
        started_time  bigint,
        finished_time bigint,
        version       integer NOT NULL,
        lease_owner   text,
        lease_until   bigint
      );
      CREATE INDEX rollouts_tenant_created ON rollouts(tenant_id, created_time);
      CREATE INDEX rollouts_state ON rollouts(state);
      CREATE TABLE rollout_devices (
        rollout_id          uuid NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
        device_id           uuid NOT NULL,
        wave                integer NOT NULL,
        position            integer NOT NULL,
        status              text NOT NULL,
        previous_package_id uuid,
        PRIMARY KEY (rollout_id, device_id)
      );
      `,
  },
  {
    version: 13,
    description: 'activation tokens expire, password reset tokens (ThingsBoard: user_credentials.activate_token_exp_time, reset_token, reset_token_exp_time) (SQLite migration 12)',
    sql: `
      ALTER TABLE users ADD COLUMN activate_token_exp_time bigint;
      ALTER TABLE users ADD COLUMN reset_token text;
      ALTER TABLE users ADD COLUMN reset_token_exp_time bigint;
      CREATE UNIQUE INDEX users_reset_token ON users (reset_token);
    `,
  },
  {
    version: 14,
    description: "a device's attributes and telemetry go with it by trigger, not by foreign key: a fan-out writes ~19 such rows per device, each checked against devices",
    sql: `
      -- Each row written to these tables checked its device with a row lock on devices (FOR KEY
      -- SHARE): 190,000 checks, ~40 % of the statements' time, when 10,000 devices are notified.
      -- A deleted device's rows go in the same statement as the device, as the cascade did. A row
      -- written for a device deleted at that very moment by another transaction may outlive it
      -- (ThingsBoard's attribute and time-series tables have no such keys either): keyed by an id
      -- never used again, it is never read.
      ALTER TABLE attributes DROP CONSTRAINT IF EXISTS attributes_device_id_fkey;
      ALTER TABLE telemetry_latest DROP CONSTRAINT IF EXISTS telemetry_latest_device_id_fkey;
      ALTER TABLE telemetry_history DROP CONSTRAINT IF EXISTS telemetry_history_device_id_fkey;
      CREATE FUNCTION device_rows_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        DELETE FROM attributes WHERE device_id IN (SELECT id FROM gone);
        DELETE FROM telemetry_latest WHERE device_id IN (SELECT id FROM gone);
        DELETE FROM telemetry_history WHERE device_id IN (SELECT id FROM gone);
        RETURN NULL;
      END $$;
      CREATE TRIGGER devices_rows_deleted AFTER DELETE ON devices REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION device_rows_deleted();
    `,
  },
  {
    version: 15,
    description: 'update states: the change log and the fleet count deltas written once per statement (transition tables), not once per row',
    sql: `
      -- A batch of 500 states wrote 500 change-log rows and 500-1,000 count deltas, each by a trigger
      -- call of its own with its own look-ups of the device and the package. Per statement: the
      -- change-log rows in one INSERT, the deltas summed per group (their readers sum them anyway).
      -- In sum the same as the row triggers wrote.
      DROP TRIGGER ota_states_inserted ON ota_states;
      DROP TRIGGER ota_states_updated ON ota_states;
      DROP TRIGGER ota_fleet_counts_inserted ON ota_states;
      DROP TRIGGER ota_fleet_counts_deleted ON ota_states;
      DROP TRIGGER ota_fleet_counts_updated ON ota_states;

      CREATE FUNCTION ota_states_inserted_rows() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ota_state_changes (tenant_id, device_id, type) SELECT tenant_id, device_id, type FROM new_rows;
        INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT r.tenant_id, r.type, r.target_package_id, d.device_profile_id, coalesce(r.state, ''), count(*),
                 count(*) FILTER (WHERE r.current_title = p.title AND r.current_version = p.version)
          FROM new_rows r JOIN devices d ON d.id = r.device_id LEFT JOIN ota_packages p ON p.id = r.target_package_id
          WHERE r.target_package_id IS NOT NULL
          GROUP BY r.tenant_id, r.type, r.target_package_id, d.device_profile_id, coalesce(r.state, '');
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_states_inserted_rows AFTER INSERT ON ota_states REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION ota_states_inserted_rows();

      CREATE FUNCTION ota_states_deleted_rows() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT r.tenant_id, r.type, r.target_package_id, d.device_profile_id, coalesce(r.state, ''), -count(*),
                 -count(*) FILTER (WHERE r.current_title = p.title AND r.current_version = p.version)
          FROM old_rows r JOIN devices d ON d.id = r.device_id LEFT JOIN ota_packages p ON p.id = r.target_package_id
          WHERE r.target_package_id IS NOT NULL
          GROUP BY r.tenant_id, r.type, r.target_package_id, d.device_profile_id, coalesce(r.state, '');
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_states_deleted_rows AFTER DELETE ON ota_states REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION ota_states_deleted_rows();

      -- Transition tables have no indexes: joining the old rows to the new ones was a nested loop
      -- (0.5 s a batch). The change log takes the new versions that differ from every old one (a
      -- hashed EXCEPT, NULLs equal as IS DISTINCT FROM has them); the deltas take every old version
      -- out and every new one in, so an unchanged row nets zero and its group is left out.
      CREATE FUNCTION ota_states_updated_rows() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ota_state_changes (tenant_id, device_id, type)
          SELECT tenant_id, device_id, type FROM (
            SELECT tenant_id, device_id, type, state, state_ts, error, current_title, current_version, target_package_id FROM new_rows
            EXCEPT ALL
            SELECT tenant_id, device_id, type, state, state_ts, error, current_title, current_version, target_package_id FROM old_rows
          ) changed;
        INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT r.tenant_id, r.type, r.target_package_id, d.device_profile_id, coalesce(r.state, ''), sum(r.sign),
                 coalesce(sum(r.sign) FILTER (WHERE r.current_title = p.title AND r.current_version = p.version), 0)
          FROM (
            SELECT tenant_id, device_id, type, target_package_id, state, current_title, current_version, -1 AS sign FROM old_rows
            UNION ALL
            SELECT tenant_id, device_id, type, target_package_id, state, current_title, current_version, 1 FROM new_rows
          ) r JOIN devices d ON d.id = r.device_id LEFT JOIN ota_packages p ON p.id = r.target_package_id
          WHERE r.target_package_id IS NOT NULL
          GROUP BY r.tenant_id, r.type, r.target_package_id, d.device_profile_id, coalesce(r.state, '')
          HAVING sum(r.sign) <> 0 OR coalesce(sum(r.sign) FILTER (WHERE r.current_title = p.title AND r.current_version = p.version), 0) <> 0;
        RETURN NULL;
      END $$;
      CREATE TRIGGER ota_states_updated_rows AFTER UPDATE ON ota_states REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION ota_states_updated_rows();
    `,
  },
  {
    version: 16,
    description: 'dashboard: indexes that read the device list in order by state, current version and profile (fleet-sorted-page.ts) (SQLite migration 13)',
    sql: `
      -- The list sorts text bytewise (COLLATE "C", as SQLite does): the index must say so to be read in that order.
      CREATE INDEX ota_states_sort_state ON ota_states (tenant_id, type, state COLLATE "C", device_id);
      CREATE INDEX ota_states_sort_version ON ota_states (tenant_id, type, current_version COLLATE "C", device_id);
      CREATE INDEX devices_tenant_profile ON devices (tenant_id, device_profile_id, id);
    `,
  },
  {
    version: 17,
    description: 'fewer index and key writes per row of a fan-out: one index on telemetry history, no device keys on the queue and targets, room for in-place updates',
    sql: `
      -- History had two indexes: the seq key (read by nothing) and (device, key, ts), the readers'.
      -- One key over both holds every row once and reads a device's key in (ts, seq) order as
      -- the readers sort it: each history row a fan-out writes (six per device) updates one index.
      ALTER TABLE telemetry_history DROP CONSTRAINT telemetry_history_pkey;
      DROP INDEX telemetry_history_key_ts;
      ALTER TABLE telemetry_history ADD PRIMARY KEY (device_id, key, ts, seq);

      -- Rows a fan-out updates soon after writing them (the queue row claimed, the target notified,
      -- the latest fw_state): with room left on their page the update stays there and writes no
      -- index entry (a heap-only tuple), where on a full page it wrote one in every index. The room
      -- is what the fan-out updates: every queue row and target, one latest key in five (targets
      -- at 70 % kept 46 % of their updates on the page, at 50 % nearly all).
      ALTER TABLE notify_queue SET (fillfactor = 50);
      ALTER TABLE ota_targets SET (fillfactor = 50);
      ALTER TABLE telemetry_latest SET (fillfactor = 80);

      -- As migration 14 for attributes and telemetry: each row inserted checked its device with a
      -- row lock on devices (12 ms per 1,000 rows in each table; every fan-out inserts its queue
      -- rows anew). Deleting a device deletes them in the same statement, as the cascade did. A row
      -- written for a device deleted at that very moment by another transaction may outlive it: the
      -- notifier drops and acks a queued row whose device is gone, and targets are only read through
      -- their device. Update states keep their key: the state tracker acts on their rows alone.
      ALTER TABLE notify_queue DROP CONSTRAINT IF EXISTS notify_queue_device_id_fkey;
      ALTER TABLE ota_targets DROP CONSTRAINT IF EXISTS ota_targets_device_id_fkey;
      CREATE OR REPLACE FUNCTION device_rows_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        DELETE FROM attributes WHERE device_id IN (SELECT id FROM gone);
        DELETE FROM telemetry_latest WHERE device_id IN (SELECT id FROM gone);
        DELETE FROM telemetry_history WHERE device_id IN (SELECT id FROM gone);
        DELETE FROM notify_queue WHERE device_id IN (SELECT id FROM gone);
        DELETE FROM ota_targets WHERE device_id IN (SELECT id FROM gone);
        RETURN NULL;
      END $$;
    `,
  },
  {
    version: 18,
    description: 'fleet counts: a device moved to another profile waits for the transactions writing its states, and holds new ones off until it commits',
    sql: `
      -- The move and a state write each read the other's table: run at once (READ COMMITTED), the
      -- move took the state as it was and the write counted under the old profile, and the counts
      -- drifted from a GROUP BY over the states. Moves are rare, so the move takes the locks and the
      -- state writes (a fan-out's hot path) take none: an update or delete of the device's states
      -- waits for the share lock on its rows, an inserted state's foreign-key check (FOR KEY SHARE
      -- on the device) waits for FOR UPDATE; and the move waits for writes under way. The deltas
      -- are then read from states committed before the move, and later writes read the new profile.
      CREATE OR REPLACE FUNCTION ota_fleet_count_device_moved() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM 1 FROM ota_states WHERE device_id = NEW.id ORDER BY type FOR SHARE;
        PERFORM 1 FROM devices WHERE id = NEW.id FOR UPDATE;
        INSERT INTO ota_fleet_count_deltas (tenant_id, type, package_id, profile_id, state, devices, on_target)
          SELECT s.tenant_id, s.type, s.target_package_id, m.profile_id, coalesce(s.state, ''), m.sign,
                 m.sign * coalesce((s.current_title = p.title AND s.current_version = p.version)::int, 0)
          FROM ota_states s LEFT JOIN ota_packages p ON p.id = s.target_package_id
          CROSS JOIN (VALUES (OLD.device_profile_id, -1), (NEW.device_profile_id, 1)) AS m(profile_id, sign)
          WHERE s.device_id = NEW.id AND s.target_package_id IS NOT NULL;
        RETURN NULL;
      END $$;
    `,
  },
];
