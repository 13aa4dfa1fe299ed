import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { ApiHarness, expectError, ok, unique, type DeviceBody, type DeviceProfileBody } from '../support/api-harness';
import type { DeviceId, TenantId } from '../../server/ids';

describe('admin API: downgrade protection (forceDowngrade=true)', () => {
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h?.close());

  it('refuses a profile or device save that downgrades a device, and accepts it with ?forceDowngrade=true', async () => {
    const profile = await h.admin.createProfile();
    const older = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, version: '1.0.0' }, randomBytes(64));
    const device = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id });
    // The device reports it runs 2.0.0, as the state tracker records it from any transport.
    await h.engine.pipeline.tracker.handleUplink({
      tenantId: device.tenantId.id as TenantId,
      deviceId: device.id.id as DeviceId,
      deviceName: device.name,
      transport: 'HTTP',
      ts: Date.now(),
      kind: 'telemetry',
      entries: [{ ts: Date.now(), values: { current_fw_title: 'fw', current_fw_version: '2.0.0' } }],
    });
    const message = `Can't assign firmware version 1.0.0: it is a downgrade, device '${device.name}' runs 2.0.0! Save with forceDowngrade=true to assign it anyway.`;
    expectError(await h.admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: older.id }), 400, message, 31);
    expectError(await h.admin.post(`/api/device/${device.id.id}`, { firmwareId: older.id }), 400, message, 31);
    expectError(await h.admin.post(`/api/deviceProfile/${profile.id.id}?forceDowngrade=false`, { firmwareId: older.id }), 400, message);
    expect(ok<DeviceProfileBody>(await h.admin.post(`/api/deviceProfile/${profile.id.id}?forceDowngrade=true`, { firmwareId: older.id })).firmwareId).to.deep.equal(older.id);
    expect(ok<DeviceBody>(await h.admin.post(`/api/device/${device.id.id}?forceDowngrade=true`, { firmwareId: older.id })).firmwareId).to.deep.equal(older.id);
  });
});
