import { expect } from 'chai';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import { OtaError } from '../../server/errors';
import { settle, useHarness, type PipelineHarness } from './pipeline-support';

describe('downgrade protection (issue 14)', () => {
  const harness = useHarness();

  async function reports(h: PipelineHarness, device: Device, values: Record<string, string>): Promise<void> {
    await h.timers.advance(10);
    await h.pipeline.tracker.handleUplink(h.report(device, values));
  }

  async function refusal(p: Promise<unknown>): Promise<OtaError> {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, 'refused').to.be.instanceOf(OtaError);
    return err as OtaError;
  }

  const assignToProfile = (h: PipelineHarness, profile: DeviceProfile, packageId: string, forceDowngrade?: boolean) =>
    h.engine.profiles.save(h.tenantId, { firmwareId: { id: packageId } }, { mergeInto: profile.id, forceDowngrade });

  it('refuses a profile assignment older than a version its devices report, naming the device, and changes nothing', async () => {
    const h = harness();
    const profile = await h.profile();
    const older = await h.binaryPackage(profile, { version: '1.2.0' });
    const devices = [await h.device(profile, { name: 'thermo-a' }), await h.device(profile, { name: 'thermo-b' })];
    await reports(h, devices[0] as Device, { current_fw_title: 'fw', current_fw_version: '1.10.0' });
    await reports(h, devices[1] as Device, { current_fw_title: 'fw', current_fw_version: '1.1.0' });
    const events = h.recordAssignments();
    const err = await refusal(assignToProfile(h, profile, older.id));
    expect(err.status).to.equal(400);
    expect(err.message).to.equal("Can't assign firmware version 1.2.0: it is a downgrade, device 'thermo-a' runs 1.10.0! Save with forceDowngrade=true to assign it anyway.");
    expect((await h.engine.profiles.get(h.tenantId, profile.id)).firmwareId).to.equal(null);
    await settle();
    expect(events).to.deep.equal([]);
  });

  it('assigns it when forced, and queues the devices', async () => {
    const h = harness();
    const profile = await h.profile();
    const older = await h.binaryPackage(profile, { version: '1.0.0' });
    const device = await h.device(profile);
    await reports(h, device, { current_fw_version: '2.0.0' });
    const events = h.recordAssignments();
    const saved = await assignToProfile(h, profile, older.id, true);
    expect(saved.firmwareId).to.equal(older.id);
    await settle();
    expect(events.map((e) => e.deviceId)).to.deep.equal([device.id]);
  });

  it('allows an upgrade, the same version, and versions that do not parse', async () => {
    const h = harness();
    const profile = await h.profile();
    const device = await h.device(profile);
    await reports(h, device, { current_fw_version: 'build-42' });
    const nightly = await h.binaryPackage(profile, { version: 'nightly' });
    expect((await assignToProfile(h, profile, nightly.id)).firmwareId).to.equal(nightly.id);
    await reports(h, device, { current_fw_version: '2.0.0' });
    const same = await h.binaryPackage(profile, { version: '2.0.0' });
    expect((await assignToProfile(h, profile, same.id)).firmwareId).to.equal(same.id);
    const newer = await h.binaryPackage(profile, { version: '2.1.0-rc.1' });
    expect((await assignToProfile(h, profile, newer.id)).firmwareId).to.equal(newer.id);
  });

  it('ignores devices with a package of their own: the profile assignment does not reach them', async () => {
    const h = harness();
    const profile = await h.profile();
    const own = await h.binaryPackage(profile, { version: '9.0.0' });
    const older = await h.binaryPackage(profile, { version: '1.0.0' });
    const device = await h.device(profile, { firmwareId: own.id });
    await reports(h, device, { current_fw_version: '9.0.0' });
    expect((await assignToProfile(h, profile, older.id)).firmwareId).to.equal(older.id);
  });

  it('refuses a device assignment older than what the device reports unless forced', async () => {
    const h = harness();
    const profile = await h.profile();
    const older = await h.binaryPackage(profile, { version: '1.0.0' });
    const device = await h.device(profile, { name: 'pump-1' });
    await reports(h, device, { current_fw_version: '3.0.0' });
    const save = (force?: boolean) => h.engine.devices.save(h.tenantId, { firmwareId: { id: older.id } }, { mergeInto: device.id, forceDowngrade: force });
    const err = await refusal(save());
    expect(err.message).to.equal("Can't assign firmware version 1.0.0: it is a downgrade, device 'pump-1' runs 3.0.0! Save with forceDowngrade=true to assign it anyway.");
    expect((await h.engine.devices.get(h.tenantId, device.id)).firmwareId).to.equal(null);
    expect((await save(true)).firmwareId).to.equal(older.id);
  });
});
