import { expect } from 'chai';
import {
  ApiHarness,
  expectError,
  ok,
  ref,
  unique,
  type DeviceBody,
  type DeviceCredentialsBody,
  type DeviceProfileBody,
  type PackageInfo,
  type PageData,
} from '../support/api-harness';

describe('admin API: devices', () => {
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h?.close());

  const credentialsOf = async (id: string): Promise<DeviceCredentialsBody> => ok<DeviceCredentialsBody>(await h.admin.get(`/api/device/${id}/credentials`));

  describe('POST /api/device', () => {
    it('creates a device in the default profile when neither profile nor type is given', async () => {
      const name = unique('dev');
      const d = await h.admin.createDevice({ name, label: 'Room 1' });
      const def = await h.admin.defaultProfile();
      expect(d.id.entityType).to.equal('DEVICE');
      expect(d.name).to.equal(name);
      expect(d.label).to.equal('Room 1');
      expect(d.deviceProfileId).to.deep.equal({ entityType: 'DEVICE_PROFILE', id: def.id.id });
      expect(d.type).to.equal('default');
      expect(d.firmwareId).to.equal(null);
      expect(d.softwareId).to.equal(null);
      expect(d.tenantId.entityType).to.equal('TENANT');
    });

    it('generates an access token of 20 alphanumerics when none is given', async () => {
      const d = await h.admin.createDevice({ name: unique('dev') });
      expect((await credentialsOf(d.id.id)).credentialsId).to.match(/^[A-Za-z0-9]{20}$/);
    });

    it('generates a different token for every device', async () => {
      const tokens = new Set<string>();
      for (let i = 0; i < 20; i++) tokens.add((await credentialsOf((await h.admin.createDevice({ name: unique('many') })).id.id)).credentialsId);
      expect(tokens.size).to.equal(20);
    });

    it('uses the token given as ?accessToken=', async () => {
      const token = unique('tok');
      const d = await h.admin.createDevice({ name: unique('dev') }, token);
      expect((await credentialsOf(d.id.id)).credentialsId).to.equal(token);
    });

    it('refuses a token another device has with "Device credentials are already assigned to another device!"', async () => {
      const token = unique('taken');
      await h.admin.createDevice({ name: unique('dev') }, token);
      const name = unique('dev');
      expectError(await h.admin.post(`/api/device?accessToken=${token}`, { name }), 400, 'Device credentials are already assigned to another device!', 31);
      expectError(await h.admin.get(`/api/tenant/devices?deviceName=${name}`), 404, undefined, 32);
    });

    it('refuses a second device with the same name with "Device with such name already exists!"', async () => {
      const name = unique('dup');
      await h.admin.createDevice({ name });
      expectError(await h.admin.post('/api/device', { name }), 400, 'Device with such name already exists!', 31);
    });

    it('refuses a device without a name with "Device name should be specified!"', async () => {
      expectError(await h.admin.post('/api/device', { label: 'nameless' }), 400, 'Device name should be specified!', 31);
    });

    it('creates a profile named after `type` when only a type is given', async () => {
      const type = unique('thermostat');
      const d = await h.admin.createDevice({ name: unique('dev'), type });
      expect(d.type).to.equal(type);
      const profile = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${d.deviceProfileId.id}`));
      expect(profile.name).to.equal(type);
      expect(profile.default).to.equal(false);
    });

    it('creates no profile when a device with only a new `type` is refused', async () => {
      const name = unique('dup');
      await h.admin.createDevice({ name });
      const type = unique('never-created');
      expectError(await h.admin.post('/api/device', { name, type }), 400, 'Device with such name already exists!', 31);
      const taken = unique('taken');
      await h.admin.createDevice({ name: unique('dev') }, taken);
      expectError(await h.admin.post(`/api/device?accessToken=${taken}`, { name: unique('dev'), type }), 400, 'Device credentials are already assigned to another device!', 31);
      const page = ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${type}`));
      expect(page.totalElements).to.equal(0);
    });

    it('refuses firmware for a device whose `type` names a profile not created yet: "Can\'t assign firmware with different deviceProfile!"', async () => {
      const p = await h.admin.createProfile();
      const fw = await h.admin.createPackageWithData({ deviceProfileId: p.id.id });
      const type = unique('brand-new');
      expectError(await h.admin.post('/api/device', { name: unique('dev'), type, firmwareId: fw.id }), 400, "Can't assign firmware with different deviceProfile!", 31);
      expect(ok<PageData<DeviceProfileBody>>(await h.admin.get(`/api/deviceProfiles?pageSize=10&page=0&textSearch=${type}`)).totalElements).to.equal(0);
    });

    it('reuses the existing profile of that name for the next device of the same type', async () => {
      const type = unique('sensor');
      const a = await h.admin.createDevice({ name: unique('dev'), type });
      const b = await h.admin.createDevice({ name: unique('dev'), type });
      expect(b.deviceProfileId.id).to.equal(a.deviceProfileId.id);
    });

    it("always reports the profile's name as `type`, whatever type was sent", async () => {
      const profile = await h.admin.createProfile();
      const d = await h.admin.createDevice({ name: unique('dev'), type: 'something-else', deviceProfileId: profile.id });
      expect(d.type).to.equal(profile.name);
      expect(d.deviceProfileId.id).to.equal(profile.id.id);
    });

    it('follows a renamed profile in `type`', async () => {
      const profile = await h.admin.createProfile();
      const d = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id });
      const renamed = unique('renamed');
      ok(await h.admin.post('/api/deviceProfile', { ...profile, name: renamed }));
      expect(ok<DeviceBody>(await h.admin.get(`/api/device/${d.id.id}`)).type).to.equal(renamed);
    });

    it('refuses a non-existent profile with "Device is referencing non existing device profile!"', async () => {
      const res = await h.admin.post('/api/device', { name: unique('dev'), deviceProfileId: ref('DEVICE_PROFILE', '3f1e5a5c-0000-4000-8000-0000000000aa') });
      expectError(res, 400, 'Device is referencing non existing device profile!', 31);
    });

    it('updates a device when the body carries its id, keeping its token', async () => {
      const d = await h.admin.createDevice({ name: unique('dev') });
      const token = (await credentialsOf(d.id.id)).credentialsId;
      const saved = ok<DeviceBody>(await h.admin.post('/api/device', { ...d, label: 'relabelled' }));
      expect(saved.id.id).to.equal(d.id.id);
      expect(saved.label).to.equal('relabelled');
      expect((await credentialsOf(d.id.id)).credentialsId).to.equal(token);
    });

    it('keeps fields it does not model (additionalInfo, deviceData, ...) and returns them', async () => {
      const d = await h.admin.createDevice({ name: unique('dev'), additionalInfo: { gateway: false, description: 'lab' } });
      const fetched = ok<DeviceBody>(await h.admin.get(`/api/device/${d.id.id}`));
      expect(fetched.additionalInfo).to.deep.equal({ gateway: false, description: 'lab' });
    });
  });

  describe('GET /api/device/{id}', () => {
    it("answers an unknown device id with 404 and ThingsBoard's error JSON", async () => {
      const id = '3f1e5a5c-0000-4000-8000-0000000000bb';
      expectError(await h.admin.get(`/api/device/${id}`), 404, `Device with id [${id}] is not found`, 32);
    });
  });

  describe('credentials', () => {
    it("GET /api/device/{id}/credentials answers ThingsBoard's DeviceCredentials shape", async () => {
      const token = unique('shape');
      const d = await h.admin.createDevice({ name: unique('dev') }, token);
      const c = await credentialsOf(d.id.id);
      expect(c.id).to.have.keys(['id']);
      expect(c.id.id).to.match(/^[0-9a-f-]{36}$/);
      expect(c.createdTime).to.be.a('number');
      expect(c.deviceId).to.deep.equal({ entityType: 'DEVICE', id: d.id.id });
      expect(c.credentialsType).to.equal('ACCESS_TOKEN');
      expect(c.credentialsId).to.equal(token);
      expect(c.credentialsValue).to.equal(null);
    });

    it('POST /api/device/credentials changes the access token', async () => {
      const d = await h.admin.createDevice({ name: unique('dev') });
      const c = await credentialsOf(d.id.id);
      const fresh = unique('newtoken');
      const saved = ok<DeviceCredentialsBody>(await h.admin.post('/api/device/credentials', { ...c, credentialsId: fresh }));
      expect(saved.credentialsId).to.equal(fresh);
      expect(saved.id.id).to.equal(c.id.id);
      expect((await credentialsOf(d.id.id)).credentialsId).to.equal(fresh);
    });

    it('POST /api/device/credentials refuses a token another device holds', async () => {
      const taken = unique('held');
      await h.admin.createDevice({ name: unique('dev') }, taken);
      const d = await h.admin.createDevice({ name: unique('dev') });
      const c = await credentialsOf(d.id.id);
      expectError(await h.admin.post('/api/device/credentials', { ...c, credentialsId: taken }), 400, 'Device credentials are already assigned to another device!', 31);
    });
  });

  describe('GET /api/tenant/devices', () => {
    let prefix: string;
    before(async () => {
      prefix = unique('listing');
      for (const n of ['c', 'a', 'b']) await h.admin.createDevice({ name: `${prefix}-${n}` });
    });

    it("pages the tenant's devices with textSearch and sorting", async () => {
      const first = ok<PageData<DeviceBody>>(await h.admin.get(`/api/tenant/devices?pageSize=2&page=0&textSearch=${prefix}&sortProperty=name&sortOrder=ASC`));
      expect(first.totalElements).to.equal(3);
      expect(first.totalPages).to.equal(2);
      expect(first.hasNext).to.equal(true);
      expect(first.data.map((d) => d.name)).to.deep.equal([`${prefix}-a`, `${prefix}-b`]);
      const second = ok<PageData<DeviceBody>>(await h.admin.get(`/api/tenant/devices?pageSize=2&page=1&textSearch=${prefix}&sortProperty=name&sortOrder=ASC`));
      expect(second.data.map((d) => d.name)).to.deep.equal([`${prefix}-c`]);
      expect(second.hasNext).to.equal(false);
    });

    it('requires pageSize and page with 400', async () => {
      expectError(await h.admin.get('/api/tenant/devices?page=0'), 400, /pageSize/, 31);
    });

    it('sorts by type, which is the profile name', async () => {
      const zulu = await h.admin.createDevice({ name: `${prefix}-typed-1`, type: `${prefix}-Zulu` });
      const alpha = await h.admin.createDevice({ name: `${prefix}-typed-2`, type: `${prefix}-alpha` });
      for (const sortProperty of ['type', 'deviceProfileName']) {
        const asc = ok<PageData<DeviceBody>>(await h.admin.get(`/api/tenant/devices?pageSize=10&page=0&textSearch=${prefix}-typed&sortProperty=${sortProperty}&sortOrder=ASC`));
        expect(asc.data.map((d) => d.id.id)).to.deep.equal([alpha.id.id, zulu.id.id]);
        const desc = ok<PageData<DeviceBody>>(await h.admin.get(`/api/tenant/devices?pageSize=10&page=0&textSearch=${prefix}-typed&sortProperty=${sortProperty}&sortOrder=DESC`));
        expect(desc.data.map((d) => d.id.id)).to.deep.equal([zulu.id.id, alpha.id.id]);
      }
      for (const d of [zulu, alpha]) ok(await h.admin.delete(`/api/device/${d.id.id}`));
    });

    it('lists only the devices of one profile with ?type=', async () => {
      const type = unique('kind');
      const d = await h.admin.createDevice({ name: unique('dev'), type });
      const page = ok<PageData<DeviceBody>>(await h.admin.get(`/api/tenant/devices?pageSize=10&page=0&type=${type}`));
      expect(page.data.map((x) => x.id.id)).to.deep.equal([d.id.id]);
      const none = ok<PageData<DeviceBody>>(await h.admin.get(`/api/tenant/devices?pageSize=10&page=0&type=${unique('no-such-type')}`));
      expect(none).to.deep.equal({ data: [], totalPages: 0, totalElements: 0, hasNext: false });
    });

    it('returns the one device of ?deviceName=', async () => {
      const d = ok<DeviceBody>(await h.admin.get(`/api/tenant/devices?deviceName=${prefix}-b`));
      expect(d.name).to.equal(`${prefix}-b`);
      expect(d.type).to.equal('default');
    });

    it('answers an unknown ?deviceName= with 404', async () => {
      expectError(await h.admin.get(`/api/tenant/devices?deviceName=${unique('nobody')}`), 404, "Requested item wasn't found!", 32);
    });
  });

  describe('DELETE /api/device/{id}', () => {
    it('deletes the device and frees its name and token', async () => {
      const name = unique('gone');
      const token = unique('gonetoken');
      const d = await h.admin.createDevice({ name }, token);
      const res = await h.admin.delete(`/api/device/${d.id.id}`);
      expect(res.status).to.equal(200);
      expect(res.text).to.equal('');
      expectError(await h.admin.get(`/api/device/${d.id.id}`), 404, undefined, 32);
      await h.admin.createDevice({ name }, token);
    });
  });

  describe('firmware and software assignment', () => {
    let profile: DeviceProfileBody;
    let fw: PackageInfo;
    let sw: PackageInfo;
    let device: DeviceBody;
    beforeEach(async () => {
      profile = await h.admin.createProfile();
      fw = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, type: 'FIRMWARE' });
      sw = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, type: 'SOFTWARE' });
      device = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, label: 'keep', additionalInfo: { a: 1 } });
    });

    it('assigns firmware with the shorthand POST /api/device/{id} and changes nothing else', async () => {
      const saved = ok<DeviceBody>(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: { id: fw.id.id, entityType: 'OTA_PACKAGE' } }));
      expect(saved.firmwareId).to.deep.equal({ entityType: 'OTA_PACKAGE', id: fw.id.id });
      const fetched = ok<DeviceBody>(await h.admin.get(`/api/device/${device.id.id}`));
      expect(fetched.firmwareId?.id).to.equal(fw.id.id);
      expect(fetched.name).to.equal(device.name);
      expect(fetched.label).to.equal('keep');
      expect(fetched.additionalInfo).to.deep.equal({ a: 1 });
      expect(fetched.deviceProfileId.id).to.equal(profile.id.id);
    });

    it('assigns firmware and software in a full save', async () => {
      const saved = ok<DeviceBody>(await h.admin.post('/api/device', { ...device, firmwareId: fw.id, softwareId: sw.id }));
      expect(saved.firmwareId?.id).to.equal(fw.id.id);
      expect(saved.softwareId?.id).to.equal(sw.id.id);
    });

    it('creates a device with firmware assigned', async () => {
      const d = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, firmwareId: fw.id });
      expect(d.firmwareId?.id).to.equal(fw.id.id);
    });

    it('unassigns on a full save without firmwareId', async () => {
      ok(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: fw.id }));
      const current = ok<DeviceBody>(await h.admin.get(`/api/device/${device.id.id}`));
      const { firmwareId: _dropped, ...rest } = current;
      expect(ok<DeviceBody>(await h.admin.post('/api/device', rest)).firmwareId).to.equal(null);
    });

    it('refuses a non-existent firmware with "Can\'t assign non-existent firmware!"', async () => {
      const res = await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: ref('OTA_PACKAGE', '3f1e5a5c-0000-4000-8000-0000000000cc') });
      expectError(res, 400, "Can't assign non-existent firmware!", 31);
    });

    it('refuses a non-existent software with "Can\'t assign non-existent software!"', async () => {
      const res = await h.admin.post(`/api/device/${device.id.id}`, { softwareId: ref('OTA_PACKAGE', '3f1e5a5c-0000-4000-8000-0000000000cd') });
      expectError(res, 400, "Can't assign non-existent software!", 31);
    });

    it('refuses software in the firmware slot with "Can\'t assign firmware with type: SOFTWARE"', async () => {
      expectError(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: sw.id }), 400, "Can't assign firmware with type: SOFTWARE", 31);
    });

    it('refuses a package without data with "Can\'t assign firmware with empty data!"', async () => {
      const empty = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: empty.id }), 400, "Can't assign firmware with empty data!", 31);
    });

    it('refuses another profile\'s firmware with "Can\'t assign firmware with different deviceProfile!"', async () => {
      const other = await h.admin.createProfile();
      const foreign = await h.admin.createPackageWithData({ deviceProfileId: other.id.id });
      expectError(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: foreign.id }), 400, "Can't assign firmware with different deviceProfile!", 31);
    });

    it('refuses moving a device with firmware to another profile with "Can\'t assign firmware with different deviceProfile!"', async () => {
      ok(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: fw.id }));
      const other = await h.admin.createProfile();
      expectError(await h.admin.post(`/api/device/${device.id.id}`, { deviceProfileId: other.id }), 400, "Can't assign firmware with different deviceProfile!", 31);
    });

    it('leaves the device unchanged after a refused assignment', async () => {
      await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: sw.id });
      expect(ok<DeviceBody>(await h.admin.get(`/api/device/${device.id.id}`)).firmwareId).to.equal(null);
    });
  });
});
