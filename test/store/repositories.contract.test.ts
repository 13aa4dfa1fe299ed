/**
 * One contract per repository interface, run against the SQLite classes and the PostgreSQL classes
 * alike, each on a real database (a temp SQLite file; a fresh PostgreSQL database). Each test makes
 * its own tenant, so tests of one suite share the schema but never see each other's rows.
 */
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OtaError } from '../../server/errors';
import { newId, type DeviceProfileId, type TenantId } from '../../server/ids';
import { deviceRow } from '../support/device-row';
import { packageRow } from '../support/package-row';
import { SqliteAttributeRepository, type AttributeRepository } from '../../server/store/attributes';
import { SqliteDeviceProfileRepository, type DeviceProfile, type DeviceProfileRepository } from '../../server/store/device-profiles';
import { SqliteDeviceRepository, type Device, type DeviceRepository } from '../../server/store/devices';
import { SqliteOtaPackageRepository, type OtaPackage, type OtaPackageRepository } from '../../server/store/ota-packages';
import { openPgRepositories, type PgRepositories } from '../../server/store/postgres/pg-repositories';
import { openPool } from '../../server/store/postgres/pool';
import { openDatabase, type Db } from '../../server/store/sqlite/database';
import { SqliteTelemetryRepository, type TelemetryRepository } from '../../server/store/telemetry';
import { SqliteTenantRepository, type TenantRepository } from '../../server/store/tenants';
import { withTestDatabase } from '../support/postgres';

interface Repositories {
  tenants: TenantRepository;
  profiles: DeviceProfileRepository;
  devices: DeviceRepository;
  packages: OtaPackageRepository;
  attributes: AttributeRepository;
  telemetry: TelemetryRepository;
  /** Whether a unique-constraint violation surfaces as the service's OtaError (PostgreSQL maps them). */
  mapsConflicts: boolean;
}

type Get = () => Repositories;

// ---- fixtures -----------------------------------------------------------------------------------

async function tenant(r: Repositories): Promise<TenantId> {
  return (await r.tenants.createTenant('contract tenant')).id;
}

let clock = 1_700_000_000_000;
const nextTime = (): number => (clock += 1000);

function profileOf(tenantId: TenantId, over: Partial<DeviceProfile> = {}): DeviceProfile {
  return {
    id: newId<'DEVICE_PROFILE'>(),
    tenantId,
    name: `profile ${newId()}`,
    description: null,
    isDefault: false,
    firmwareId: null,
    softwareId: null,
    createdTime: nextTime(),
    version: 1,
    extra: {},
    ...over,
  };
}

function deviceOf(tenantId: TenantId, profileId: DeviceProfileId, over: Partial<Device> = {}): Device {
  return deviceRow(tenantId, profileId, { createdTime: nextTime(), ...over });
}

function packageOf(tenantId: TenantId, profileId: DeviceProfileId, over: Partial<OtaPackage> = {}): OtaPackage {
  return packageRow(tenantId, profileId, { version: `v${newId()}`, url: null, createdTime: nextTime(), ...over });
}

async function withProfile(r: Repositories, over: Partial<DeviceProfile> = {}): Promise<{ tenantId: TenantId; profile: DeviceProfile }> {
  const tenantId = await tenant(r);
  const profile = profileOf(tenantId, over);
  await r.profiles.insert(profile);
  return { tenantId, profile };
}

/** Rejects; where the implementation maps conflicts, with exactly the service's message. */
async function expectConflict(r: Repositories, write: Promise<unknown>, message: string): Promise<void> {
  const err = await write.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'the write should have been refused').to.be.instanceOf(Error);
  if (r.mapsConflicts) {
    expect(err).to.be.instanceOf(OtaError);
    expect((err as OtaError).message).to.equal(message);
    expect((err as OtaError).status).to.equal(400);
  }
}

const page0 = { page: 0, pageSize: 100 };

// ---- contracts ----------------------------------------------------------------------------------

function tenantContract(get: Get): void {
  describe('TenantRepository', () => {
    it('creates a tenant and finds it by id; an unknown id finds nothing', async () => {
      const t = await get().tenants.createTenant('Acme');
      expect(await get().tenants.findTenant(t.id)).to.deep.equal(t);
      expect(await get().tenants.findTenant(newId<'TENANT'>())).to.equal(null);
    });

    it('finds a user by id and by email in any letter case', async () => {
      const r = get();
      const tenantId = await tenant(r);
      const email = `Admin.${newId()}@Example.org`;
      const user = await r.tenants.createUser({ tenantId, email, passwordHash: 'h1', authority: 'TENANT_ADMIN' });
      expect(await r.tenants.findUser(user.id)).to.deep.equal(user);
      expect(await r.tenants.findUserByEmail(email.toLowerCase())).to.deep.equal(user);
      expect(await r.tenants.findUserByEmail(email.toUpperCase())).to.deep.equal(user);
      expect(await r.tenants.findUserByEmail(`x${email}`)).to.equal(null);
    });

    it('refuses a second user whose email differs only in letter case', async () => {
      const r = get();
      const tenantId = await tenant(r);
      const email = `dup.${newId()}@example.org`;
      await r.tenants.createUser({ tenantId, email, passwordHash: 'h', authority: 'TENANT_ADMIN' });
      await expectConflict(r, r.tenants.createUser({ tenantId, email: email.toUpperCase(), passwordHash: 'h', authority: 'TENANT_ADMIN' }), 'User with such email already exists!');
    });

    it('changes a password and counts users', async () => {
      const r = get();
      const tenantId = await tenant(r);
      const before = await r.tenants.countUsers();
      const user = await r.tenants.createUser({ tenantId, email: `${newId()}@example.org`, passwordHash: 'old', authority: 'TENANT_ADMIN' });
      await r.tenants.setPassword(user.id, 'new');
      expect((await r.tenants.findUser(user.id))?.passwordHash).to.equal('new');
      expect(await r.tenants.countUsers()).to.equal(before + 1);
    });
  });
}

function deviceProfileContract(get: Get): void {
  describe('DeviceProfileRepository', () => {
    it('finds a profile by id and name within its tenant only; ownerOf tells whose it is', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r, { description: 'd', extra: { type: 'DEFAULT', profileData: { a: [1, 2] } } });
      const other = await tenant(r);
      expect(await r.profiles.findById(tenantId, profile.id)).to.deep.equal(profile);
      expect(await r.profiles.findByName(tenantId, profile.name)).to.deep.equal(profile);
      expect(await r.profiles.findById(other, profile.id)).to.equal(null);
      expect(await r.profiles.findByName(other, profile.name)).to.equal(null);
      expect(await r.profiles.ownerOf(profile.id)).to.equal(tenantId);
      expect(await r.profiles.ownerOf(newId())).to.equal(null);
      expect(await r.profiles.ownerOf('not-a-uuid')).to.equal(null);
    });

    it('finds a profile by its provision device key, whatever the tenant (the key is the credential)', async () => {
      const r = get();
      const key = `key-${newId()}`;
      const { profile } = await withProfile(r, {
        extra: { provisionType: 'ALLOW_CREATE_NEW_DEVICES', provisionDeviceKey: key, profileData: { provisionConfiguration: { provisionDeviceSecret: 's' } } },
      });
      await withProfile(r, { extra: { provisionType: 'DISABLED', provisionDeviceKey: null } });
      expect(await r.profiles.findByProvisionDeviceKey(key)).to.deep.equal(profile);
      expect(await r.profiles.findByProvisionDeviceKey(`${key}x`)).to.equal(null);
      expect(await r.profiles.findByProvisionDeviceKey('')).to.equal(null);
    });

    it('saves changed fields and extra data', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const changed = { ...profile, name: `${profile.name} 2`, description: 'now described', version: 2, extra: { transportType: 'MQTT' } };
      await r.profiles.update(changed);
      expect(await r.profiles.findById(tenantId, profile.id)).to.deep.equal(changed);
    });

    it('keeps one default profile per tenant', async () => {
      const r = get();
      const { tenantId, profile: a } = await withProfile(r, { isDefault: true });
      const b = profileOf(tenantId);
      await r.profiles.insert(b);
      expect((await r.profiles.findDefault(tenantId))?.id).to.equal(a.id);
      await r.profiles.setDefault(tenantId, b.id);
      expect((await r.profiles.findDefault(tenantId))?.id).to.equal(b.id);
      expect((await r.profiles.findById(tenantId, a.id))?.isDefault).to.equal(false);
    });

    it('pages by case-insensitive name with text search, scoped to the tenant', async () => {
      const r = get();
      const tenantId = await tenant(r);
      for (const name of ['beta', 'Alpha', 'gamma', 'alpha 2', 'Delta%']) await r.profiles.insert(profileOf(tenantId, { name }));
      await r.profiles.insert(profileOf(await tenant(r), { name: 'alpha elsewhere' }));
      const sorted = await r.profiles.page(tenantId, { page: 0, pageSize: 2, sortProperty: 'name', sortOrder: 'ASC' });
      expect(sorted.data.map((p) => p.name)).to.deep.equal(['Alpha', 'alpha 2']);
      expect(sorted).to.include({ totalElements: 5, totalPages: 3, hasNext: true });
      const last = await r.profiles.page(tenantId, { page: 2, pageSize: 2, sortProperty: 'name', sortOrder: 'DESC' });
      expect(last.data.map((p) => p.name)).to.deep.equal(['Alpha']);
      expect(last.hasNext).to.equal(false);
      const found = await r.profiles.page(tenantId, { ...page0, textSearch: 'ALPHA', sortProperty: 'name' });
      expect(found.data.map((p) => p.name)).to.deep.equal(['Alpha', 'alpha 2']);
      // LIKE wildcards in the search are literal characters.
      expect((await r.profiles.page(tenantId, { ...page0, textSearch: '%' })).data.map((p) => p.name)).to.deep.equal(['Delta%']);
    });

    it('refuses a second profile of the same name in a tenant, not in another tenant', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      await expectConflict(r, r.profiles.insert(profileOf(tenantId, { name: profile.name })), 'Device profile with such name already exists!');
      await r.profiles.insert(profileOf(await tenant(r), { name: profile.name }));
    });

    it('counts the profiles using a package and deletes within the tenant only', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const pkg = packageOf(tenantId, profile.id);
      await r.packages.insert(pkg);
      await r.profiles.update({ ...profile, firmwareId: pkg.id });
      expect(await r.profiles.countUsingPackage(tenantId, pkg.id)).to.equal(1);
      const spare = profileOf(tenantId);
      await r.profiles.insert(spare);
      await r.profiles.delete(await tenant(r), spare.id);
      expect(await r.profiles.findById(tenantId, spare.id)).to.not.equal(null);
      await r.profiles.delete(tenantId, spare.id);
      expect(await r.profiles.findById(tenantId, spare.id)).to.equal(null);
    });
  });
}

function deviceContract(get: Get): void {
  describe('DeviceRepository', () => {
    it('finds a device by id, name and access token; other tenants see nothing', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const d = deviceOf(tenantId, profile.id, { label: 'lbl', extra: { additionalInfo: { gateway: false }, customerId: { id: 'x' } } });
      await r.devices.insert(d);
      const other = await tenant(r);
      expect(await r.devices.findById(tenantId, d.id)).to.deep.equal(d);
      expect(await r.devices.findByName(tenantId, d.name)).to.deep.equal(d);
      expect(await r.devices.findByAccessToken(d.accessToken)).to.deep.equal(d);
      expect(await r.devices.findById(other, d.id)).to.equal(null);
      expect(await r.devices.findByName(other, d.name)).to.equal(null);
      expect(await r.devices.ownerOf(d.id)).to.equal(tenantId);
      expect(await r.devices.findByAccessToken('no such token')).to.equal(null);
    });

    it('a changed token finds the device; the old one finds nothing', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const d = deviceOf(tenantId, profile.id);
      await r.devices.insert(d);
      const changed = { ...d, accessToken: `t-${newId()}`, version: 2 };
      await r.devices.update(changed);
      expect(await r.devices.findByAccessToken(changed.accessToken)).to.deep.equal(changed);
      expect(await r.devices.findByAccessToken(d.accessToken)).to.equal(null);
    });

    it('refuses a token another device holds, and a name taken in the tenant', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const d = deviceOf(tenantId, profile.id);
      await r.devices.insert(d);
      await expectConflict(r, r.devices.insert(deviceOf(tenantId, profile.id, { accessToken: d.accessToken })), 'Device credentials are already assigned to another device!');
      await expectConflict(r, r.devices.insert(deviceOf(tenantId, profile.id, { name: d.name })), 'Device with such name already exists!');
      expect((await r.devices.page(tenantId, page0)).totalElements).to.equal(1);
    });

    it('pages by name, by profile name, by profile filter and text search', async () => {
      const r = get();
      const { tenantId, profile: pb } = await withProfile(r, { name: 'B profile' });
      const pa = profileOf(tenantId, { name: 'a profile' });
      await r.profiles.insert(pa);
      await r.devices.insert(deviceOf(tenantId, pb.id, { name: 'sensor-2' }));
      await r.devices.insert(deviceOf(tenantId, pa.id, { name: 'Sensor-1' }));
      await r.devices.insert(deviceOf(tenantId, pb.id, { name: 'pump_1' }));
      await r.devices.insert(deviceOf(tenantId, pb.id, { name: 'pumpX1' }));
      const byName = await r.devices.page(tenantId, { ...page0, sortProperty: 'name', sortOrder: 'ASC' });
      expect(byName.data.map((d) => d.name)).to.deep.equal(['pump_1', 'pumpX1', 'Sensor-1', 'sensor-2']);
      const byProfile = await r.devices.page(tenantId, { ...page0, sortProperty: 'deviceProfileName', sortOrder: 'ASC' });
      expect(byProfile.data[0].name).to.equal('Sensor-1');
      const filtered = await r.devices.page(tenantId, page0, { deviceProfileId: pa.id });
      expect(filtered.data.map((d) => d.name)).to.deep.equal(['Sensor-1']);
      expect((await r.devices.page(tenantId, { ...page0, textSearch: 'SENSOR' })).totalElements).to.equal(2);
      expect((await r.devices.page(tenantId, { ...page0, textSearch: 'p_1' })).data.map((d) => d.name)).to.deep.equal(['pump_1']);
    });

    it('sorts missing labels first in ascending order and last in descending order', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      for (const label of ['b', null, 'a']) await r.devices.insert(deviceOf(tenantId, profile.id, { label }));
      const asc = await r.devices.page(tenantId, { ...page0, sortProperty: 'label', sortOrder: 'ASC' });
      expect(asc.data.map((d) => d.label)).to.deep.equal([null, 'a', 'b']);
      const desc = await r.devices.page(tenantId, { ...page0, sortProperty: 'label', sortOrder: 'DESC' });
      expect(desc.data.map((d) => d.label)).to.deep.equal(['b', 'a', null]);
    });

    it('lists the devices inheriting a slot in id order, page after page', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const pkg = packageOf(tenantId, profile.id);
      await r.packages.insert(pkg);
      const inheriting: Device[] = [];
      for (let i = 0; i < 5; i++) {
        const d = deviceOf(tenantId, profile.id);
        inheriting.push(d);
        await r.devices.insert(d);
      }
      await r.devices.insert(deviceOf(tenantId, profile.id, { firmwareId: pkg.id }));
      const ids = inheriting.map((d) => d.id).sort();
      const first = await r.devices.listInheriting(tenantId, profile.id, 'firmware_id', '', 3);
      expect(first.map((d) => d.id)).to.deep.equal(ids.slice(0, 3));
      const rest = await r.devices.listInheriting(tenantId, profile.id, 'firmware_id', first[2].id, 3);
      expect(rest.map((d) => d.id)).to.deep.equal(ids.slice(3));
      expect(await r.devices.listInheriting(tenantId, profile.id, 'software_id', '', 10)).to.have.length(6);
      expect(await r.devices.listInheriting(await tenant(r), profile.id, 'firmware_id', '', 10)).to.have.length(0);
    });

    it('counts by profile and by package, and deletes within the tenant only', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const pkg = packageOf(tenantId, profile.id, { type: 'SOFTWARE' });
      await r.packages.insert(pkg);
      const d = deviceOf(tenantId, profile.id, { softwareId: pkg.id });
      await r.devices.insert(d);
      await r.devices.insert(deviceOf(tenantId, profile.id));
      expect(await r.devices.countByProfile(tenantId, profile.id)).to.equal(2);
      expect(await r.devices.countUsingPackage(tenantId, pkg.id)).to.equal(1);
      await r.devices.delete(await tenant(r), d.id);
      expect(await r.devices.countByProfile(tenantId, profile.id)).to.equal(2);
      await r.devices.delete(tenantId, d.id);
      expect(await r.devices.findById(tenantId, d.id)).to.equal(null);
      expect(await r.devices.countUsingPackage(tenantId, pkg.id)).to.equal(0);
    });
  });
}

function otaPackageContract(get: Get): void {
  describe('OtaPackageRepository', () => {
    it('finds a package by id and by title and version, in its tenant only', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const p = packageOf(tenantId, profile.id, {
        tag: 'fw 1.0',
        fileName: 'fw.bin',
        contentType: 'application/octet-stream',
        checksumAlgorithm: 'SHA256',
        checksum: 'ab'.repeat(32),
        dataSize: 3_000_000_000,
        blobSha256: 'cd'.repeat(32),
        additionalInfo: { description: 'first', nested: { list: [1, 'two', null] } },
        externalId: 'ext-1',
        signature: 'c2ln'.repeat(22),
        signatureAlgorithm: 'ED25519',
      });
      await r.packages.insert(p);
      expect(await r.packages.findById(tenantId, p.id)).to.deep.equal(p);
      expect(await r.packages.findByTitleVersion(tenantId, p.title, p.version)).to.deep.equal(p);
      expect(await r.packages.findById(await tenant(r), p.id)).to.equal(null);
      expect(await r.packages.ownerOf(p.id)).to.equal(tenantId);
      const updated = { ...p, url: 'http://example.invalid/fw.bin', blobSha256: null, additionalInfo: null };
      await r.packages.update(updated);
      expect(await r.packages.findById(tenantId, p.id)).to.deep.equal(updated);
    });

    it('refuses a second package of the same title and version in a tenant', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const p = packageOf(tenantId, profile.id);
      await r.packages.insert(p);
      await expectConflict(r, r.packages.insert(packageOf(tenantId, profile.id, { version: p.version })), 'OtaPackage with such title and version already exists!');
    });

    it('pages only packages with data for a profile and type when filtered', async () => {
      const r = get();
      const { tenantId, profile } = await withProfile(r);
      const withBlob = packageOf(tenantId, profile.id, { title: 'blob', blobSha256: 'ef'.repeat(32), dataSize: 10 });
      const withUrl = packageOf(tenantId, profile.id, { title: 'url', url: 'http://example.invalid/x' });
      const empty = packageOf(tenantId, profile.id, { title: 'empty', url: '' });
      const software = packageOf(tenantId, profile.id, { title: 'sw', type: 'SOFTWARE', blobSha256: 'ef'.repeat(32), dataSize: 5 });
      for (const p of [withBlob, withUrl, empty, software]) await r.packages.insert(p);
      const filtered = await r.packages.page(tenantId, { ...page0, sortProperty: 'title' }, { deviceProfileId: profile.id, type: 'FIRMWARE', withData: true });
      expect(filtered.data.map((p) => p.title)).to.deep.equal(['blob', 'url']);
      const all = await r.packages.page(tenantId, { ...page0, sortProperty: 'dataSize', sortOrder: 'ASC' });
      expect(all.data.map((p) => p.dataSize)).to.deep.equal([null, null, 5, 10]);
      expect(await r.packages.count(tenantId)).to.equal(4);
      expect(await r.packages.countByProfile(tenantId, profile.id)).to.equal(4);
      expect(await r.packages.listByProfile(tenantId, profile.id)).to.have.length(4);
      expect(await r.packages.totalDataSize(tenantId)).to.equal(15);
    });

    it('counts the packages using a blob across tenants, and deletes within the tenant only', async () => {
      const r = get();
      const sha = newId().replace(/-/g, '').padEnd(64, '0');
      const a = await withProfile(r);
      const b = await withProfile(r);
      const pa = packageOf(a.tenantId, a.profile.id, { blobSha256: sha });
      await r.packages.insert(pa);
      await r.packages.insert(packageOf(b.tenantId, b.profile.id, { blobSha256: sha }));
      expect(await r.packages.countUsingBlob(sha)).to.equal(2);
      await r.packages.delete(b.tenantId, pa.id);
      expect(await r.packages.countUsingBlob(sha)).to.equal(2);
      await r.packages.delete(a.tenantId, pa.id);
      expect(await r.packages.countUsingBlob(sha)).to.equal(1);
    });
  });
}

function attributeContract(get: Get): void {
  async function device(r: Repositories): Promise<Device> {
    const { tenantId, profile } = await withProfile(r);
    const d = deviceOf(tenantId, profile.id);
    await r.devices.insert(d);
    return d;
  }

  describe('AttributeRepository', () => {
    it('keeps values of every JSON type per scope, all keys in key order', async () => {
      const r = get();
      const d = await device(r);
      const values = { s: 'text', n: 1.5, i: 42, b: false, nil: null, o: { x: [1, { y: 'z' }] }, a: [1, 'a', true] };
      await r.attributes.save(d.id, 'SHARED', values, 1000);
      await r.attributes.save(d.id, 'CLIENT', { s: 'client' }, 1000);
      const all = await r.attributes.get(d.id, 'SHARED');
      expect(all).to.deep.equal(values);
      expect(Object.keys(all)).to.deep.equal(['a', 'b', 'i', 'n', 'nil', 'o', 's']);
      expect(await r.attributes.get(d.id, 'SHARED', ['s', 'missing', 'nil'])).to.deep.equal({ s: 'text', nil: null });
      expect(await r.attributes.get(d.id, 'SHARED', [])).to.deep.equal({});
      expect(await r.attributes.get(d.id, 'CLIENT')).to.deep.equal({ s: 'client' });
    });

    it('overwrites a key saved again', async () => {
      const r = get();
      const d = await device(r);
      await r.attributes.save(d.id, 'SHARED', { fw_title: 'a', fw_version: '1' }, 1);
      await r.attributes.save(d.id, 'SHARED', { fw_version: '2' }, 2);
      expect(await r.attributes.get(d.id, 'SHARED')).to.deep.equal({ fw_title: 'a', fw_version: '2' });
    });

    it('claims a key once: of racing claims to the same value exactly one changes it', async () => {
      const r = get();
      const d = await device(r);
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => r.attributes.claim(d.id, 'SERVER', 'provisionState', 'provisioned', i)));
      expect(results.filter(Boolean)).to.have.length(1);
      expect(await r.attributes.get(d.id, 'SERVER')).to.deep.equal({ provisionState: 'provisioned' });
      expect(await r.attributes.claim(d.id, 'SERVER', 'provisionState', 'provisioned', 9)).to.equal(false);
      // Another value is a change.
      expect(await r.attributes.claim(d.id, 'SERVER', 'provisionState', 'reset', 10)).to.equal(true);
    });

    it('deletes keys and answers those that existed, in the order asked', async () => {
      const r = get();
      const d = await device(r);
      await r.attributes.save(d.id, 'SHARED', { a: 1, b: 2, c: 3 }, 1);
      expect(await r.attributes.delete(d.id, 'SHARED', ['c', 'x', 'a', 'c'])).to.deep.equal(['c', 'a']);
      expect(await r.attributes.get(d.id, 'SHARED')).to.deep.equal({ b: 2 });
      expect(await r.attributes.delete(d.id, 'CLIENT', ['b'])).to.deep.equal([]);
    });

    it('forgets the attributes of a deleted device', async () => {
      const r = get();
      const d = await device(r);
      await r.attributes.save(d.id, 'SHARED', { a: 1 }, 1);
      await r.devices.delete(d.tenantId, d.id);
      expect(await r.attributes.get(d.id, 'SHARED')).to.deep.equal({});
    });
  });
}

function telemetryContract(get: Get): void {
  async function device(r: Repositories): Promise<Device> {
    const { tenantId, profile } = await withProfile(r);
    const d = deviceOf(tenantId, profile.id);
    await r.devices.insert(d);
    return d;
  }

  describe('TelemetryRepository', () => {
    it('forgets the telemetry and attributes of deleted devices, one or a batch of them; another device keeps its own', async () => {
      const r = get();
      const [one, batchA, kept] = [await device(r), await device(r), await device(r)];
      // A batch is deleted within one tenant.
      const batchB = deviceOf(batchA.tenantId, batchA.deviceProfileId);
      await r.devices.insert(batchB);
      const range = { startTs: 0, endTs: 100, limit: 10, order: 'ASC' } as const;
      for (const d of [one, batchA, batchB, kept]) {
        await r.telemetry.save(d.id, [{ ts: 10, values: { fw_state: 'QUEUED', temperature: 1 } }]);
        await r.attributes.save(d.id, 'SHARED', { fw_version: '1.0' }, 10);
      }
      await r.devices.delete(one.tenantId, one.id);
      await r.devices.deleteMany(batchA.tenantId, [batchA.id, batchB.id]);
      for (const d of [one, batchA, batchB]) {
        expect(await r.telemetry.latest(d.id)).to.deep.equal({});
        expect(await r.telemetry.history(d.id, ['fw_state'], range)).to.deep.equal({});
        expect(await r.attributes.get(d.id, 'SHARED')).to.deep.equal({});
      }
      expect(await r.telemetry.latest(kept.id)).to.deep.equal({ fw_state: { ts: 10, value: 'QUEUED' }, temperature: { ts: 10, value: 1 } });
      expect(await r.telemetry.history(kept.id, ['fw_state'], range)).to.deep.equal({ fw_state: [{ ts: 10, value: 'QUEUED' }] });
      expect(await r.attributes.get(kept.id, 'SHARED')).to.deep.equal({ fw_version: '1.0' });
    });

    it('moves the latest value forward in time only', async () => {
      const r = get();
      const d = await device(r);
      await r.telemetry.save(d.id, [{ ts: 200, values: { temperature: 20, fw_state: 'DOWNLOADING' } }]);
      await r.telemetry.save(d.id, [{ ts: 100, values: { temperature: 10 } }]);
      await r.telemetry.save(d.id, [{ ts: 300, values: { fw_state: { nested: true } } }]);
      expect(await r.telemetry.latest(d.id)).to.deep.equal({ temperature: { ts: 200, value: 20 }, fw_state: { ts: 300, value: { nested: true } } });
      expect(await r.telemetry.latest(d.id, ['temperature', 'missing'])).to.deep.equal({ temperature: { ts: 200, value: 20 } });
      expect(await r.telemetry.latest(d.id, [])).to.deep.equal({});
    });

    it('within one save, the last report of a key wins among equal times and a newer time wins', async () => {
      const r = get();
      const d = await device(r);
      await r.telemetry.save(d.id, [
        { ts: 10, values: { fw_state: 'A' } },
        { ts: 10, values: { fw_state: 'B' } },
        { ts: 30, values: { x: 'newest' } },
        { ts: 20, values: { x: 'older' } },
      ]);
      expect(await r.telemetry.latest(d.id)).to.deep.equal({ fw_state: { ts: 10, value: 'B' }, x: { ts: 30, value: 'newest' } });
      expect(await r.telemetry.history(d.id, ['fw_state'], { startTs: 0, endTs: 100, limit: 10, order: 'ASC' })).to.deep.equal({
        fw_state: [
          { ts: 10, value: 'A' },
          { ts: 10, value: 'B' },
        ],
      });
    });

    it('keeps history for the OTA keys only, by range, order and limit', async () => {
      const r = get();
      const d = await device(r);
      for (const ts of [100, 200, 300, 400]) await r.telemetry.save(d.id, [{ ts, values: { fw_state: `S${ts}`, current_fw_version: `v${ts}`, temperature: ts } }]);
      const range = { startTs: 150, endTs: 400, limit: 2 };
      expect(await r.telemetry.history(d.id, ['fw_state', 'temperature'], { ...range, order: 'DESC' })).to.deep.equal({
        fw_state: [
          { ts: 400, value: 'S400' },
          { ts: 300, value: 'S300' },
        ],
      });
      expect(await r.telemetry.history(d.id, ['current_fw_version'], { ...range, order: 'ASC' })).to.deep.equal({
        current_fw_version: [
          { ts: 200, value: 'v200' },
          { ts: 300, value: 'v300' },
        ],
      });
    });
  });
}

function allContracts(get: Get): void {
  tenantContract(get);
  deviceProfileContract(get);
  deviceContract(get);
  otaPackageContract(get);
  attributeContract(get);
  telemetryContract(get);
}

// ---- the implementations --------------------------------------------------------------------------

describe('repository contracts on SQLite', () => {
  let dir: string;
  let db: Db;
  let repos: Repositories;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-contract-'));
    db = openDatabase(path.join(dir, 'ota.db'));
    repos = {
      tenants: new SqliteTenantRepository(db),
      profiles: new SqliteDeviceProfileRepository(db),
      devices: new SqliteDeviceRepository(db),
      packages: new SqliteOtaPackageRepository(db),
      attributes: new SqliteAttributeRepository(db),
      telemetry: new SqliteTelemetryRepository(db),
      mapsConflicts: false,
    };
  });
  after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });
  allContracts(() => repos);
});

describe('repository contracts on PostgreSQL', () => {
  const database = withTestDatabase();
  let dir: string;
  let pg: PgRepositories | undefined;
  let repos: Repositories;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-contract-pg-'));
    pg = await openPgRepositories({ connectionString: database().url, blobCacheDir: path.join(dir, 'blobs'), poolSize: 4 });
    repos = { ...pg, mapsConflicts: true };
  });
  after(async () => {
    await pg?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  allContracts(() => repos);

  it('applies its migrations once: a second pool on the same database finds the schema current', async () => {
    const again = await openPool({ connectionString: database().url, max: 1 });
    try {
      const versions = (await again.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
      expect(versions).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
    } finally {
      await again.end();
    }
  });
});
