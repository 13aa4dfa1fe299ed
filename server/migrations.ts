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
];
