import { expect } from 'chai';
import { createHash } from 'node:crypto';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { Notification, NotifyOutcome } from '../../server/pipeline/notifier';
import type { OtaPackage } from '../../server/store/ota-packages';
import { T0, settle, type PipelineHarness, useHarness } from './pipeline-support';

const notification = (o: NotifyOutcome): Notification => {
  if (!('notification' in o)) throw new Error(`dropped: ${o.dropped}`);
  return o.notification;
};

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('notifier (reference §1.2, §2 processing)', () => {
  const harness = useHarness();
  let profile: DeviceProfile;
  const bytes = Buffer.from('firmware image bytes '.repeat(50));

  beforeEach(async () => {
    profile = await harness().profile();
  });

  /** A device whose own slot holds `pkg`, with the assignment already queued (and the event in hand). */
  async function assigned(h: PipelineHarness, pkg: OtaPackage): Promise<Device> {
    const device = await h.device(profile, pkg.type === 'FIRMWARE' ? { firmwareId: pkg.id } : { softwareId: pkg.id });
    await settle();
    return device;
  }

  async function attributeTs(h: PipelineHarness, device: Device): Promise<number[]> {
    const db = h.openDb();
    try {
      return (db.prepare("SELECT DISTINCT ts FROM attributes WHERE device_id = ? AND scope = 'SHARED'").all(device.id) as Array<{ ts: number }>).map((r) => r.ts);
    } finally {
      db.close();
    }
  }

  it('drops an event for a deleted device', async () => {
    const h = harness();
    const pkg = await h.binaryPackage(profile);
    const device = await assigned(h, pkg);
    await h.engine.devices.delete(h.tenantId, device.id);
    expect(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', pkg.id))).to.deep.equal({ dropped: 'device deleted' });
  });

  it('drops an event whose package is no longer the effective one, writing nothing', async () => {
    const h = harness();
    const a = await h.binaryPackage(profile, { version: '1' });
    const b = await h.binaryPackage(profile, { version: '2' });
    const device = await assigned(h, a);
    const stale = h.event(device, 'FIRMWARE', a.id, T0 - 5);
    await h.setDevicePackage(device, 'FIRMWARE', b.id);
    await settle();
    expect(await h.pipeline.notifier.process(stale)).to.deep.equal({ dropped: 'package changed' });
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
    expect((await h.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.equal('QUEUED');
  });

  it('drops the same event the second time as already notified, writing INITIATED once', async () => {
    const h = harness();
    const pkg = await h.binaryPackage(profile);
    const device = await assigned(h, pkg);
    const ev = h.event(device, 'FIRMWARE', pkg.id, T0);
    notification(await h.pipeline.notifier.process(ev));
    await h.timers.advance(1000);
    expect(await h.pipeline.notifier.process(ev)).to.deep.equal({ dropped: 'already notified' });
    const history = await h.pipeline.telemetry.history(device.id, ['fw_state'], { startTs: 0, endTs: T0 * 2, limit: 100, order: 'ASC' });
    expect(history.fw_state?.map((p) => p.value)).to.deep.equal(['QUEUED', 'INITIATED']);
  });

  it('writes INITIATED at processing time, then exactly the binary package attributes at the enqueue ts', async () => {
    const h = harness();
    const pkg = await h.binaryPackage(profile, { title: 'thermo', version: '2.0.0', tag: 'thermo 2.0.0', bytes });
    const device = await assigned(h, pkg);
    const queuedAt = h.timers.now();
    await h.timers.advance(5000);
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', pkg.id, queuedAt)));

    const expected = {
      fw_title: 'thermo',
      fw_version: '2.0.0',
      fw_tag: 'thermo 2.0.0',
      fw_size: bytes.length,
      fw_checksum_algorithm: 'SHA256',
      fw_checksum: sha256(bytes),
      // Ours beside ThingsBoard's (issue 14): every upload is signed.
      fw_signature: pkg.signature,
      fw_signature_algorithm: 'ED25519',
    };
    expect(n).to.deep.equal({ tenantId: h.tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, ts: queuedAt, attributes: expected, deleted: [] });
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal(expected);
    expect(await attributeTs(h, device)).to.deep.equal([queuedAt]);
    const history = await h.pipeline.telemetry.history(device.id, ['fw_state'], { startTs: 0, endTs: T0 * 2, limit: 100, order: 'ASC' });
    expect(history.fw_state).to.deep.equal([
      { ts: queuedAt, value: 'QUEUED' },
      { ts: queuedAt + 5000, value: 'INITIATED' },
    ]);
  });

  it('deletes fw_tag for a package without a tag, and fw_url for a binary package', async () => {
    const h = harness();
    const tagged = await h.binaryPackage(profile, { version: '1', tag: 'one' });
    const url = await h.urlPackage(profile, { version: '2' });
    const plain = await h.binaryPackage(profile, { version: '3', tag: '', bytes });
    const device = await assigned(h, tagged);
    notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', tagged.id)));
    await h.setDevicePackage(device, 'FIRMWARE', url.id);
    await settle();
    notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', url.id)));
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.have.property('fw_url');
    await h.setDevicePackage(device, 'FIRMWARE', plain.id);
    await settle();
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', plain.id)));
    expect(n.deleted).to.have.members(['fw_url']);
    const expected = {
      fw_title: plain.title,
      fw_version: '3',
      fw_size: bytes.length,
      fw_checksum_algorithm: 'SHA256',
      fw_checksum: sha256(bytes),
      fw_signature: plain.signature,
      fw_signature_algorithm: 'ED25519',
    };
    expect(n.attributes).to.deep.equal(expected);
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal(expected);
  });

  it('a tagged package after an untagged one deletes nothing and sets fw_tag', async () => {
    const h = harness();
    const plain = await h.binaryPackage(profile, { version: '1' });
    const tagged = await h.binaryPackage(profile, { version: '2', tag: 'two' });
    const device = await assigned(h, plain);
    expect(notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', plain.id))).attributes).to.not.have.property('fw_tag');
    await h.setDevicePackage(device, 'FIRMWARE', tagged.id);
    await settle();
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', tagged.id)));
    expect(n.attributes.fw_tag).to.equal('two');
    expect(n.deleted).to.deep.equal([]);
  });

  it('gives a URL-only package fw_url, deleting size and checksum when it has none', async () => {
    const h = harness();
    const binary = await h.binaryPackage(profile, { version: '1', tag: 'bin' });
    const url = await h.urlPackage(profile, { version: '2', url: 'https://cdn.example.com/fw-2.bin' });
    const device = await assigned(h, binary);
    notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', binary.id)));
    await h.setDevicePackage(device, 'FIRMWARE', url.id);
    await settle();
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', url.id)));
    const expected = { fw_title: url.title, fw_version: '2', fw_url: 'https://cdn.example.com/fw-2.bin' };
    expect(n.attributes).to.deep.equal(expected);
    expect(n.deleted).to.have.members(['fw_tag', 'fw_size', 'fw_checksum_algorithm', 'fw_checksum', 'fw_signature', 'fw_signature_algorithm']);
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal(expected);
  });

  it('gives a URL-only package its size and checksum when they are set', async () => {
    const h = harness();
    const url = await h.urlPackage(profile, { url: 'https://cdn.example.com/fw.bin', dataSize: 4096, checksumAlgorithm: 'CRC32', checksum: '2639f4cb', tag: 'cdn' });
    const device = await assigned(h, url);
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', url.id)));
    const expected = {
      fw_title: url.title,
      fw_version: '1.0.0',
      fw_tag: 'cdn',
      fw_size: 4096,
      fw_checksum_algorithm: 'CRC32',
      fw_checksum: '2639f4cb',
      fw_url: 'https://cdn.example.com/fw.bin',
    };
    expect(n.attributes).to.deep.equal(expected);
    expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal(expected);
  });

  it('writes sw_* attributes and sw_state for software, leaving fw_* alone', async () => {
    const h = harness();
    const fw = await h.binaryPackage(profile, { type: 'FIRMWARE', version: 'f' });
    const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'agent', version: '7.1', bytes });
    const device = await h.device(profile, { firmwareId: fw.id, softwareId: sw.id });
    await settle();
    notification(await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', fw.id)));
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'SOFTWARE', sw.id)));
    const expected = {
      sw_title: 'agent',
      sw_version: '7.1',
      sw_size: bytes.length,
      sw_checksum_algorithm: 'SHA256',
      sw_checksum: sha256(bytes),
      sw_signature: sw.signature,
      sw_signature_algorithm: 'ED25519',
    };
    expect(n.attributes).to.deep.equal(expected);
    const shared = await h.pipeline.attributes.get(device.id, 'SHARED');
    expect(shared).to.include(expected);
    expect(shared).to.include({ fw_title: fw.title, fw_version: 'f' });
    expect((await h.pipeline.telemetry.latest(device.id, ['sw_state'])).sw_state?.value).to.equal('INITIATED');
  });

  it('turns an unassignment into a notification that deletes the nine keys and our two signature keys', async () => {
    const h = harness();
    const device = await h.device(profile);
    const n = notification(await h.pipeline.notifier.process(h.event(device, 'SOFTWARE', null)));
    expect(n.attributes).to.deep.equal({});
    expect(n.deleted).to.have.members([
      'sw_title',
      'sw_version',
      'sw_ts',
      'sw_state',
      'sw_size',
      'sw_checksum',
      'sw_checksum_algorithm',
      'sw_url',
      'sw_tag',
      'sw_signature',
      'sw_signature_algorithm',
    ]);
  });

  it("gives a batch's devices of one package one frozen attribute map and deleted list, with what each device's own rows say", async () => {
    const h = harness();
    const pkg = await h.binaryPackage(profile);
    const [a, b] = [await assigned(h, pkg), await assigned(h, pkg)];
    const [na, nb] = (await h.pipeline.notifier.processAll([h.event(a, 'FIRMWARE', pkg.id), h.event(b, 'FIRMWARE', pkg.id)])).map(notification);
    expect(na?.attributes, 'one map for the package: a transport makes its payload once').to.equal(nb?.attributes);
    expect(na?.deleted).to.equal(nb?.deleted);
    expect(Object.isFrozen(na?.attributes) && Object.isFrozen(na?.deleted), 'shared, so nobody may change it').to.equal(true);
    for (const d of [a, b]) expect(await h.pipeline.attributes.get(d.id, 'SHARED')).to.deep.equal(na?.attributes);
  });

  it('counts notifications and drops, in all and per tenant', async () => {
    const h = harness();
    const pkg = await h.binaryPackage(profile);
    const device = await assigned(h, pkg);
    const other = await h.engine.accounts.createTenant('Other', 'other@example.com', 'x-other-password');
    const theirProfile = await h.profile('theirs', other.tenant.id);
    const theirs = await h.device(theirProfile, { tenantId: other.tenant.id });

    const n = h.pipeline.notifier;
    notification(await n.process(h.event(device, 'FIRMWARE', pkg.id, T0)));
    await n.process(h.event(device, 'FIRMWARE', pkg.id, T0));
    await n.process(h.event(theirs, 'FIRMWARE', pkg.id));
    expect(n.stats).to.deep.equal({ notified: 1, dropped: 2 });
    expect(n.statsFor(h.tenantId)).to.deep.equal({ notified: 1, dropped: 1 });
    expect(n.statsFor(other.tenant.id)).to.deep.equal({ notified: 0, dropped: 1 });
    const copy = n.statsFor(h.tenantId);
    copy.notified = 99;
    expect(n.statsFor(h.tenantId).notified, 'statsFor answers a copy').to.equal(1);
  });
});
