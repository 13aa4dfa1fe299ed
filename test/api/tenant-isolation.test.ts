import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { checksumOf } from '../../server/packages/checksum';
import {
  ApiHarness,
  blobPathOf,
  expectError,
  filePart,
  ok,
  unique,
  type ApiClient,
  type ApiTenant,
  type ApiResponse,
  type DeviceBody,
  type DeviceCredentialsBody,
  type DeviceProfileBody,
  type PackageInfo,
  type PageData,
  type UserBody,
} from '../support/api-harness';

const FORBIDDEN = "You don't have permission to perform this operation!";

describe('admin API: tenant isolation', () => {
  let h: ApiHarness;
  let a: ApiClient;
  let b: ApiClient;
  let tb: ApiTenant;
  let aProfile: DeviceProfileBody;
  let aPackage: PackageInfo;
  let aBytes: Buffer;
  let aDevice: DeviceBody;
  let aToken: string;

  before(async () => {
    h = await ApiHarness.start();
    // Both tenants made through the REST API, as ThingsBoard's sysadmin makes them (tenants.test.ts).
    const ta = await h.apiTenant('Tenant A');
    tb = await h.apiTenant('Tenant B');
    a = ta.admin;
    b = tb.admin;
    aProfile = await a.createProfile(unique('a-profile'));
    aBytes = randomBytes(500);
    aPackage = await a.createPackageWithData({ deviceProfileId: aProfile.id.id, title: unique('a-fw') }, aBytes);
    aToken = unique('a-token');
    aDevice = await a.createDevice({ name: unique('a-device'), deviceProfileId: aProfile.id, firmwareId: aPackage.id }, aToken);
  });
  after(async () => h?.close());

  const forbidden = (res: ApiResponse): void => {
    expectError(res, 403, FORBIDDEN, 20);
  };

  it('gives the second tenant its own user, tenant and default profile', async () => {
    const userA = ok<UserBody>(await a.get('/api/auth/user'));
    const userB = ok<UserBody>(await b.get('/api/auth/user'));
    expect(userB.email).to.equal(tb.email);
    expect(userB.tenantId.id).to.not.equal(userA.tenantId.id);
    const bDefault = await b.defaultProfile();
    expect(bDefault.name).to.equal('default');
    expect(bDefault.id.id).to.not.equal((await a.defaultProfile()).id.id);
  });

  describe("tenant A's OTA package", () => {
    it('is forbidden to GET /api/otaPackage/{id}', async () => forbidden(await b.get(`/api/otaPackage/${aPackage.id.id}`)));
    it('is forbidden to GET /api/otaPackage/info/{id}', async () => forbidden(await b.get(`/api/otaPackage/info/${aPackage.id.id}`)));
    it('is forbidden to download', async () => forbidden(await b.get(`/api/otaPackage/${aPackage.id.id}/download`)));

    it('is forbidden to update with POST /api/otaPackage', async () => {
      forbidden(await b.post('/api/otaPackage', { ...aPackage, additionalInfo: { description: 'hijacked' } }));
      expect(ok<PackageInfo>(await a.get(`/api/otaPackage/info/${aPackage.id.id}`)).additionalInfo).to.equal(null);
    });

    it('is forbidden to upload to with POST /api/otaPackage/{id}', async () => {
      const info = await a.createPackage({ deviceProfileId: aProfile.id.id });
      forbidden(await b.upload(info.id.id, randomBytes(10), { checksumAlgorithm: 'SHA256' }));
      expect(ok<PackageInfo>(await a.get(`/api/otaPackage/info/${info.id.id}`)).hasData).to.equal(false);
    });

    it('is forbidden to DELETE', async () => {
      const victim = await a.createPackage({ deviceProfileId: aProfile.id.id });
      forbidden(await b.delete(`/api/otaPackage/${victim.id.id}`));
      ok(await a.get(`/api/otaPackage/info/${victim.id.id}`));
    });

    it('cannot be assigned to the other tenant\'s device: "Can\'t assign firmware from different tenant!"', async () => {
      const bDevice = await b.createDevice({ name: unique('b-device') });
      expectError(await b.post(`/api/device/${bDevice.id.id}`, { firmwareId: aPackage.id }), 400, "Can't assign firmware from different tenant!", 31);
      expectError(await b.post('/api/device', { name: unique('b-device'), firmwareId: aPackage.id }), 400, "Can't assign firmware from different tenant!", 31);
    });

    it('cannot be assigned to the other tenant\'s profile: "Can\'t assign firmware from different tenant!"', async () => {
      const bProfile = await b.defaultProfile();
      expectError(await b.post(`/api/deviceProfile/${bProfile.id.id}`, { firmwareId: aPackage.id }), 400, "Can't assign firmware from different tenant!", 31);
      expect(ok<DeviceProfileBody>(await b.get(`/api/deviceProfile/${bProfile.id.id}`)).firmwareId).to.equal(null);
    });

    it('is not a profile B can create packages for', async () => {
      expectError(await b.post('/api/otaPackage', b.packageBody({ deviceProfileId: aProfile.id.id })), 400, 'OtaPackage is referencing to non-existent device profile!', 31);
    });
  });

  describe("tenant A's device profile", () => {
    it('is forbidden to GET', async () => forbidden(await b.get(`/api/deviceProfile/${aProfile.id.id}`)));

    it('is forbidden to update with POST /api/deviceProfile', async () => {
      forbidden(await b.post('/api/deviceProfile', { ...aProfile, description: 'hijacked' }));
      expect(ok<DeviceProfileBody>(await a.get(`/api/deviceProfile/${aProfile.id.id}`)).description).to.equal(null);
    });

    it('is forbidden to update with the shorthand POST /api/deviceProfile/{id}', async () => {
      forbidden(await b.post(`/api/deviceProfile/${aProfile.id.id}`, { description: 'hijacked' }));
    });

    it('is forbidden to make default', async () => {
      forbidden(await b.post(`/api/deviceProfile/${aProfile.id.id}/default`, {}));
      expect(ok<DeviceProfileBody>(await a.get(`/api/deviceProfile/${aProfile.id.id}`)).default).to.equal(false);
    });

    it('is forbidden to DELETE', async () => {
      const victim = await a.createProfile();
      forbidden(await b.delete(`/api/deviceProfile/${victim.id.id}`));
      ok(await a.get(`/api/deviceProfile/${victim.id.id}`));
    });

    it("cannot hold the other tenant's devices", async () => {
      expectError(
        await b.post('/api/device', { name: unique('b-device'), deviceProfileId: aProfile.id }),
        400,
        'Device can`t be referencing to device profile from different tenant!',
        31,
      );
    });

    it("does not capture a device of B created with A's profile name as its type", async () => {
      const d = await b.createDevice({ name: unique('b-device'), type: aProfile.name });
      expect(d.deviceProfileId.id).to.not.equal(aProfile.id.id);
      expect(d.type).to.equal(aProfile.name);
    });
  });

  describe("tenant A's device", () => {
    it('is forbidden to GET', async () => forbidden(await b.get(`/api/device/${aDevice.id.id}`)));
    it('is forbidden to read credentials of', async () => forbidden(await b.get(`/api/device/${aDevice.id.id}/credentials`)));

    it('is forbidden to update with POST /api/device', async () => {
      forbidden(await b.post('/api/device', { ...aDevice, label: 'hijacked' }));
      expect(ok<DeviceBody>(await a.get(`/api/device/${aDevice.id.id}`)).label).to.equal(null);
    });

    it('is forbidden to update with the shorthand POST /api/device/{id}', async () => {
      forbidden(await b.post(`/api/device/${aDevice.id.id}`, { label: 'hijacked' }));
    });

    it('is forbidden to change the credentials of', async () => {
      const creds = ok<DeviceCredentialsBody>(await a.get(`/api/device/${aDevice.id.id}/credentials`));
      forbidden(await b.post('/api/device/credentials', { ...creds, credentialsId: 'stolen-token' }));
      expect(ok<DeviceCredentialsBody>(await a.get(`/api/device/${aDevice.id.id}/credentials`)).credentialsId).to.equal(aToken);
    });

    it('is forbidden to DELETE', async () => {
      const victim = await a.createDevice({ name: unique('victim') });
      forbidden(await b.delete(`/api/device/${victim.id.id}`));
      ok(await a.get(`/api/device/${victim.id.id}`));
    });

    it('is not found by name for B', async () => {
      expectError(await b.get(`/api/tenant/devices?deviceName=${encodeURIComponent(aDevice.name)}`), 404, undefined, 32);
    });
  });

  describe('lists', () => {
    it("never show A's packages to B", async () => {
      const page = ok<PageData<PackageInfo>>(await b.get('/api/otaPackages?pageSize=1000&page=0'));
      expect(page.data.map((p) => p.tenantId.id)).to.not.include(aPackage.tenantId.id);
      expect(page.data.map((p) => p.id.id)).to.not.include(aPackage.id.id);
      const search = ok<PageData<PackageInfo>>(await b.get(`/api/otaPackages?pageSize=10&page=0&textSearch=${aPackage.title}`));
      expect(search.totalElements).to.equal(0);
    });

    it("never show A's packages to B by A's profile id", async () => {
      const page = ok<PageData<PackageInfo>>(await b.get(`/api/otaPackages/${aProfile.id.id}/FIRMWARE?pageSize=100&page=0`));
      expect(page.totalElements).to.equal(0);
      expect(page.data).to.deep.equal([]);
    });

    it("never show A's profiles to B", async () => {
      const page = ok<PageData<DeviceProfileBody>>(await b.get('/api/deviceProfiles?pageSize=1000&page=0'));
      expect(page.data.map((p) => p.id.id)).to.not.include(aProfile.id.id);
      expect(page.data.every((p) => p.tenantId.id !== aProfile.tenantId.id)).to.equal(true);
    });

    it("never show A's devices to B", async () => {
      const page = ok<PageData<DeviceBody>>(await b.get('/api/tenant/devices?pageSize=1000&page=0'));
      expect(page.data.map((d) => d.id.id)).to.not.include(aDevice.id.id);
      expect(page.data.every((d) => d.tenantId.id !== aDevice.tenantId.id)).to.equal(true);
    });

    it("count only the caller's rows", async () => {
      const before = ok<PageData<PackageInfo>>(await a.get('/api/otaPackages?pageSize=1&page=0')).totalElements;
      await b.createPackage({ deviceProfileId: (await b.defaultProfile()).id.id });
      expect(ok<PageData<PackageInfo>>(await a.get('/api/otaPackages?pageSize=1&page=0')).totalElements).to.equal(before);
    });
  });

  describe('names are per tenant', () => {
    it("lets B use the title and version of A's package", async () => {
      const mine = await b.createPackage({ deviceProfileId: (await b.defaultProfile()).id.id, title: aPackage.title, version: aPackage.version });
      expect(mine.id.id).to.not.equal(aPackage.id.id);
    });

    it("lets B use the name of A's profile and device", async () => {
      const profileOfA = await a.createProfile();
      const deviceOfA = await a.createDevice({ name: unique('a-device') });
      expect((await b.createProfile(profileOfA.name)).id.id).to.not.equal(profileOfA.id.id);
      expect((await b.createDevice({ name: deviceOfA.name })).id.id).to.not.equal(deviceOfA.id.id);
    });

    it("refuses B an access token A's device already has", async () => {
      // device tokens authenticate devices across the whole server, so they are unique server-wide
      expectError(await b.post(`/api/device?accessToken=${aToken}`, { name: unique('b-device') }), 400, 'Device credentials are already assigned to another device!', 31);
    });
  });

  describe('shared bytes', () => {
    it("keeps A's blob when B deletes its own package with identical bytes", async () => {
      const bProfile = await b.defaultProfile();
      const info = await b.createPackage({ deviceProfileId: bProfile.id.id });
      ok(await b.postMultipart(`/api/otaPackage/${info.id.id}`, [{ name: 'checksumAlgorithm', value: 'SHA256' }, filePart(aBytes)]));
      ok(await b.delete(`/api/otaPackage/${info.id.id}`));
      expect(await h.blobFiles()).to.include(blobPathOf(checksumOf('SHA256', aBytes)));
      const download = await a.get(`/api/otaPackage/${aPackage.id.id}/download`);
      expect(download.bytes.equals(aBytes)).to.equal(true);
    });
  });
});
