import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { ApiHarness, blobPathOf, expectError, ok, rawRequest, rawToApi, ref, unique, type DeviceProfileBody, type PackageInfo, type PageData } from '../support/api-harness';
import { checksumOf } from '../../server/packages/checksum';

describe('admin API: device profiles', () => {
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h?.close());

  describe('the default profile', () => {
    it('exists for a new tenant, named "default" and marked default', async () => {
      const page = ok<PageData<DeviceProfileBody>>(await h.admin.get('/api/deviceProfiles?pageSize=100&page=0'));
      const defaults = page.data.filter((p) => p.default);
      expect(defaults).to.have.length(1);
      expect(defaults[0]?.name).to.equal('default');
      expect(defaults[0]?.description).to.equal('Default device profile');
      expect(defaults[0]?.type).to.equal('DEFAULT');
      expect(defaults[0]?.transportType).to.equal('DEFAULT');
    });

    it('refuses to delete the default profile with "Deletion of Default Device Profile is prohibited!"', async () => {
      const def = await h.admin.defaultProfile();
      expectError(await h.admin.delete(`/api/deviceProfile/${def.id.id}`), 400, 'Deletion of Default Device Profile is prohibited!', 31);
      ok(await h.admin.get(`/api/deviceProfile/${def.id.id}`));
    });
  });

  describe('POST /api/deviceProfile', () => {
    it('creates a profile with ThingsBoard defaults and returns it', async () => {
      const name = unique('create');
      const p = await h.admin.createProfile(name, { description: 'made by a test' });
      expect(p.id.entityType).to.equal('DEVICE_PROFILE');
      expect(p.id.id).to.match(/^[0-9a-f-]{36}$/);
      expect(p.tenantId.entityType).to.equal('TENANT');
      expect(p.name).to.equal(name);
      expect(p.description).to.equal('made by a test');
      expect(p.default).to.equal(false);
      expect(p.type).to.equal('DEFAULT');
      expect(p.transportType).to.equal('DEFAULT');
      expect(p.provisionType).to.equal('DISABLED');
      expect(p.firmwareId).to.equal(null);
      expect(p.softwareId).to.equal(null);
      expect(p.createdTime).to.be.a('number');
      expect(p.version).to.be.a('number');
    });

    it('keeps the fields it does not model (profileData, provisionType, transportType, ...) and returns them', async () => {
      const profileData = {
        configuration: { type: 'DEFAULT' },
        transportConfiguration: { type: 'MQTT', deviceTelemetryTopic: 'v1/devices/me/telemetry' },
        provisionConfiguration: { type: 'ALLOW_CREATE_NEW_DEVICES', provisionDeviceSecret: 's3cret' },
        alarms: [{ id: 'a1', alarmType: 'High temperature' }],
      };
      const sent = {
        name: unique('extras'),
        transportType: 'MQTT',
        provisionType: 'ALLOW_CREATE_NEW_DEVICES',
        provisionDeviceKey: 'key-123',
        defaultQueueName: 'HighPriority',
        image: 'data:image/png;base64,AAAA',
        profileData,
        someFutureField: { nested: [1, 2, 3] },
      };
      const created = ok<DeviceProfileBody>(await h.admin.post('/api/deviceProfile', sent));
      const fetched = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${created.id.id}`));
      for (const p of [created, fetched]) {
        expect(p.transportType).to.equal('MQTT');
        expect(p.provisionType).to.equal('ALLOW_CREATE_NEW_DEVICES');
        expect(p.provisionDeviceKey).to.equal('key-123');
        expect(p.defaultQueueName).to.equal('HighPriority');
        expect(p.image).to.equal('data:image/png;base64,AAAA');
        expect(p.profileData).to.deep.equal(profileData);
        expect(p.someFutureField).to.deep.equal({ nested: [1, 2, 3] });
      }
    });

    it('returns a numeric version that grows with every save', async () => {
      const created = await h.admin.createProfile();
      const saved = ok<DeviceProfileBody>(await h.admin.post('/api/deviceProfile', { ...created, description: 'changed' }));
      expect(saved.version).to.be.a('number').greaterThan(created.version);
    });

    it('updates a profile when the body carries its id', async () => {
      const created = await h.admin.createProfile();
      const renamed = unique('renamed');
      const saved = ok<DeviceProfileBody>(await h.admin.post('/api/deviceProfile', { ...created, name: renamed }));
      expect(saved.id.id).to.equal(created.id.id);
      expect(saved.name).to.equal(renamed);
      expect(saved.createdTime).to.equal(created.createdTime);
      const fetched = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${created.id.id}`));
      expect(fetched.name).to.equal(renamed);
    });

    it('refuses a second profile with the same name with "Device profile with such name already exists!"', async () => {
      const name = unique('dup');
      await h.admin.createProfile(name);
      expectError(await h.admin.post('/api/deviceProfile', { name }), 400, 'Device profile with such name already exists!', 31);
    });

    it('refuses a profile without a name with "Device profile name should be specified!"', async () => {
      expectError(await h.admin.post('/api/deviceProfile', { description: 'no name' }), 400, 'Device profile name should be specified!', 31);
    });

    it('answers an update of an unknown profile id with 404', async () => {
      const res = await h.admin.post('/api/deviceProfile', { id: ref('DEVICE_PROFILE', '3f1e5a5c-0000-4000-8000-000000000001'), name: unique('ghost') });
      expectError(res, 404, undefined, 32);
    });
  });

  describe('GET /api/deviceProfile/{id}', () => {
    it("answers an unknown profile id with 404 and ThingsBoard's error JSON", async () => {
      const id = '3f1e5a5c-0000-4000-8000-000000000002';
      expectError(await h.admin.get(`/api/deviceProfile/${id}`), 404, `Device profile with id [${id}] is not found`, 32);
    });

    it('works with Content-Type: application/json and a {} body on GET', async () => {
      const p = await h.admin.createProfile();
      // fetch refuses a GET with a body; ThingsBoard's Java clients send one, so use node:http
      const res = await rawRequest(h.port, {
        method: 'GET',
        path: `/api/deviceProfile/${p.id.id}`,
        headers: { 'Content-Type': 'application/json', 'Content-Length': '2', 'X-Authorization': `Bearer ${h.admin.token as string}` },
        chunks: [Buffer.from('{}')],
      });
      expect(ok<DeviceProfileBody>(rawToApi(res)).id.id).to.equal(p.id.id);
    });
  });

  describe('GET /api/deviceProfiles', () => {
    let prefix: string;
    before(async () => {
      prefix = unique('paging');
      for (const n of ['Charlie', 'alpha', 'Bravo', 'delta', 'Echo']) await h.admin.createProfile(`${prefix}-${n}`);
    });

    it('requires pageSize with 400', async () => {
      expectError(await h.admin.get('/api/deviceProfiles?page=0'), 400, "Required request parameter 'pageSize' for method parameter type int is not present", 31);
    });

    it('requires page with 400', async () => {
      expectError(await h.admin.get('/api/deviceProfiles?pageSize=10'), 400, "Required request parameter 'page' for method parameter type int is not present", 31);
    });

    it('finds profiles by a case-insensitive substring of the name (textSearch)', async () => {
      const page = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${prefix.toUpperCase()}`));
      expect(page.totalElements).to.equal(5);
      expect(page.data.every((p) => p.name.startsWith(prefix))).to.equal(true);
    });

    it('pages with totalPages, totalElements and hasNext', async () => {
      const first = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=2&page=0&textSearch=${prefix}&sortProperty=name&sortOrder=ASC`));
      expect(first.data).to.have.length(2);
      expect(first.totalElements).to.equal(5);
      expect(first.totalPages).to.equal(3);
      expect(first.hasNext).to.equal(true);
      const last = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=2&page=2&textSearch=${prefix}&sortProperty=name&sortOrder=ASC`));
      expect(last.data).to.have.length(1);
      expect(last.hasNext).to.equal(false);
    });

    it('sorts by name ascending and descending', async () => {
      const asc = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${prefix}&sortProperty=name&sortOrder=ASC`));
      expect(asc.data.map((p) => p.name.slice(prefix.length + 1))).to.deep.equal(['alpha', 'Bravo', 'Charlie', 'delta', 'Echo']);
      const desc = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${prefix}&sortProperty=name&sortOrder=DESC`));
      expect(desc.data.map((p) => p.name.slice(prefix.length + 1))).to.deep.equal(['Echo', 'delta', 'Charlie', 'Bravo', 'alpha']);
    });

    it('sorts by createdTime', async () => {
      const asc = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${prefix}&sortProperty=createdTime&sortOrder=ASC`));
      const times = asc.data.map((p) => p.createdTime);
      expect(times).to.deep.equal([...times].sort((a, b) => a - b));
    });

    it('sorts by transportType', async () => {
      const mqtt = await h.admin.createProfile(`${prefix}-x-mqtt`, { transportType: 'MQTT' });
      const coap = await h.admin.createProfile(`${prefix}-x-coap`, { transportType: 'COAP' });
      const search = `${prefix}-x-`;
      const asc = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${search}&sortProperty=transportType&sortOrder=ASC`));
      expect(asc.data.map((p) => p.id.id)).to.deep.equal([coap.id.id, mqtt.id.id]);
      const desc = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${search}&sortProperty=transportType&sortOrder=DESC`));
      expect(desc.data.map((p) => p.id.id)).to.deep.equal([mqtt.id.id, coap.id.id]);
      for (const p of [mqtt, coap]) ok(await h.admin.delete(`/api/deviceProfile/${p.id.id}`));
    });

    it('answers an unknown sort property with 400 "Invalid sort property"', async () => {
      expectError(await h.admin.get('/api/deviceProfiles?pageSize=10&page=0&sortProperty=password'), 400, 'Invalid sort property', 31);
    });

    it("answers an unknown sort order with 400 and ThingsBoard's message", async () => {
      expectError(
        await h.admin.get('/api/deviceProfiles?pageSize=10&page=0&sortProperty=name&sortOrder=UP'),
        400,
        "Unsupported sort order 'UP'! Only 'ASC' or 'DESC' types are allowed.",
        31,
      );
    });
  });

  describe('DELETE /api/deviceProfile/{id}', () => {
    it('deletes an unused profile', async () => {
      const p = await h.admin.createProfile();
      const res = await h.admin.delete(`/api/deviceProfile/${p.id.id}`);
      expect(res.status).to.equal(200);
      expect(res.text).to.equal('');
      expectError(await h.admin.get(`/api/deviceProfile/${p.id.id}`), 404, undefined, 32);
    });

    it('works with Content-Type: application/json and a {} body on DELETE', async () => {
      const p = await h.admin.createProfile();
      const res = await h.admin.request('DELETE', `/api/deviceProfile/${p.id.id}`, { body: Buffer.from('{}'), headers: { 'Content-Type': 'application/json' } });
      expect(res.status).to.equal(200);
      expectError(await h.admin.get(`/api/deviceProfile/${p.id.id}`), 404, undefined, 32);
    });

    it('refuses a profile that devices use with "The device profile referenced by the devices cannot be deleted!"', async () => {
      const p = await h.admin.createProfile();
      await h.admin.createDevice({ name: unique('dev'), deviceProfileId: p.id });
      expectError(await h.admin.delete(`/api/deviceProfile/${p.id.id}`), 400, 'The device profile referenced by the devices cannot be deleted!', 31);
    });

    it("deletes the profile's OTA packages with it, and their unshared blobs", async () => {
      const p = await h.admin.createProfile();
      const bytes = randomBytes(300);
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: p.id.id }, bytes);
      const urlPkg = await h.admin.createPackage({ deviceProfileId: p.id.id, usesUrl: true, url: 'https://example.org/fw.bin' });
      ok(await h.admin.post(`/api/deviceProfile/${p.id.id}`, { firmwareId: pkg.id }));
      expect(await h.blobFiles()).to.include(blobPathOf(checksumOf('SHA256', bytes)));

      expect((await h.admin.delete(`/api/deviceProfile/${p.id.id}`)).status).to.equal(200);
      expectError(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`), 404, undefined, 32);
      expectError(await h.admin.get(`/api/otaPackage/info/${urlPkg.id.id}`), 404, undefined, 32);
      expect(await h.blobFiles()).to.not.include(blobPathOf(checksumOf('SHA256', bytes)));
    });

    it("keeps a blob another profile's package still shares when deleting a profile", async () => {
      const doomed = await h.admin.createProfile();
      const kept = await h.admin.createProfile();
      const bytes = randomBytes(300);
      await h.admin.createPackageWithData({ deviceProfileId: doomed.id.id }, bytes);
      const survivor = await h.admin.createPackageWithData({ deviceProfileId: kept.id.id }, bytes);
      expect((await h.admin.delete(`/api/deviceProfile/${doomed.id.id}`)).status).to.equal(200);
      expect(await h.blobFiles()).to.include(blobPathOf(checksumOf('SHA256', bytes)));
      const download = await h.admin.get(`/api/otaPackage/${survivor.id.id}/download`);
      expect(download.status).to.equal(200);
      expect(download.bytes.equals(bytes)).to.equal(true);
    });
  });

  describe('firmware and software assignment', () => {
    let profile: DeviceProfileBody;
    let fw: PackageInfo;
    let sw: PackageInfo;
    beforeEach(async () => {
      profile = await h.admin.createProfile();
      fw = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, type: 'FIRMWARE' });
      sw = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, type: 'SOFTWARE' });
    });

    it('assigns firmware with the shorthand POST /api/deviceProfile/{id} and changes nothing else', async () => {
      const before = ok<DeviceProfileBody>(
        await h.admin.post('/api/deviceProfile', { ...profile, description: 'keep me', profileData: { configuration: { type: 'DEFAULT' }, marker: 7 } }),
      );
      const saved = ok<DeviceProfileBody>(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: { id: fw.id.id, entityType: 'OTA_PACKAGE' } }));
      expect(saved.firmwareId).to.deep.equal({ entityType: 'OTA_PACKAGE', id: fw.id.id });
      const fetched = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${profile.id.id}`));
      expect(fetched.firmwareId).to.deep.equal({ entityType: 'OTA_PACKAGE', id: fw.id.id });
      expect(fetched.name).to.equal(before.name);
      expect(fetched.description).to.equal('keep me');
      expect(fetched.profileData).to.deep.equal({ configuration: { type: 'DEFAULT' }, marker: 7 });
      expect(fetched.softwareId).to.equal(null);
    });

    it('keeps the software slot when the shorthand sets only firmware', async () => {
      ok(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { softwareId: sw.id }));
      ok(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: fw.id }));
      const fetched = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${profile.id.id}`));
      expect(fetched.firmwareId?.id).to.equal(fw.id.id);
      expect(fetched.softwareId?.id).to.equal(sw.id.id);
    });

    it('unassigns firmware on a full save without firmwareId', async () => {
      ok(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: fw.id }));
      const current = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${profile.id.id}`));
      const { firmwareId: _dropped, ...withoutFirmware } = current;
      const saved = ok<DeviceProfileBody>(await h.admin.post('/api/deviceProfile', withoutFirmware));
      expect(saved.firmwareId).to.equal(null);
      expect(ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${profile.id.id}`)).firmwareId).to.equal(null);
    });

    it('unassigns with the shorthand and firmwareId null', async () => {
      ok(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: fw.id }));
      const saved = ok<DeviceProfileBody>(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: null }));
      expect(saved.firmwareId).to.equal(null);
    });

    it('refuses a non-existent package with "Can\'t assign non-existent firmware!"', async () => {
      const res = await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: ref('OTA_PACKAGE', '3f1e5a5c-0000-4000-8000-00000000000f') });
      expectError(res, 400, "Can't assign non-existent firmware!", 31);
    });

    it('refuses software in the firmware slot with "Can\'t assign firmware with type: SOFTWARE"', async () => {
      expectError(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: sw.id }), 400, "Can't assign firmware with type: SOFTWARE", 31);
    });

    it('refuses firmware in the software slot with "Can\'t assign software with type: FIRMWARE"', async () => {
      expectError(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { softwareId: fw.id }), 400, "Can't assign software with type: FIRMWARE", 31);
    });

    it('refuses a package without data with "Can\'t assign firmware with empty data!"', async () => {
      const empty = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: empty.id }), 400, "Can't assign firmware with empty data!", 31);
    });

    it('refuses another profile\'s package with "Can\'t assign firmware with different deviceProfile!"', async () => {
      const other = await h.admin.createProfile();
      const foreign = await h.admin.createPackageWithData({ deviceProfileId: other.id.id });
      expectError(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: foreign.id }), 400, "Can't assign firmware with different deviceProfile!", 31);
    });

    it('accepts a URL-only package in the firmware slot', async () => {
      const urlPkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, usesUrl: true, url: 'https://example.org/a.bin' });
      const saved = ok<DeviceProfileBody>(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: urlPkg.id }));
      expect(saved.firmwareId?.id).to.equal(urlPkg.id.id);
    });
  });
});
