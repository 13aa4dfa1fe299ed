/**
 * Notifications between instances travel grouped (a batch's devices share their package and its
 * attributes) and packed into as few bus messages as PostgreSQL's NOTIFY limit allows.
 */
import { expect } from 'chai';
import { groupNotifications, ungroupNotifications } from '../../server/cluster-notifications';
import { newId } from '../../server/ids';
import type { Notification } from '../../server/pipeline/notifier';
import { CLUSTER_PAYLOAD_MAX_BYTES } from '../../server/store/cluster-bus';
import { packed } from '../../server/store/postgres/pg-cluster-bus';

const tenantId = newId<'TENANT'>();
const v1 = newId<'OTA_PACKAGE'>();
const v2 = newId<'OTA_PACKAGE'>();

function notification(packageId: typeof v1, version: string, deleted: string[] = ['fw_url']): Notification {
  return {
    tenantId,
    deviceId: newId<'DEVICE'>(),
    type: 'FIRMWARE',
    packageId,
    attributes: { fw_title: 'fw', fw_version: version, fw_size: 65536, fw_checksum_algorithm: 'SHA256', fw_checksum: 'a'.repeat(64), fw_ts: 1700000000000 },
    deleted,
    ts: 1700000000000,
  };
}

const byDevice = (ns: readonly Notification[]): Notification[] => [...ns].sort((a, b) => a.deviceId.localeCompare(b.deviceId));

describe('notifications between instances: grouped and packed', () => {
  it('a 500-device batch of one package is a few groups, each under the payload limit, standing for every notification once', () => {
    const batch = Array.from({ length: 500 }, () => notification(v1, '1.0'));
    const groups = groupNotifications(batch);
    expect(groups.length).to.be.within(2, 4);
    for (const g of groups) expect(Buffer.byteLength(JSON.stringify(g))).to.be.at.most(CLUSTER_PAYLOAD_MAX_BYTES);
    expect(byDevice(groups.flatMap(ungroupNotifications))).to.deep.equal(byDevice(batch));
  });

  it('keeps apart notifications that differ in anything but the device (package, deleted keys, tenant, ts)', () => {
    const batch = [
      notification(v1, '1.0'),
      notification(v2, '2.0'),
      notification(v1, '1.0', []),
      { ...notification(v1, '1.0'), tenantId: newId<'TENANT'>() },
      { ...notification(v1, '1.0'), ts: 1 },
      notification(v1, '1.0'),
    ];
    const groups = groupNotifications(batch);
    expect(groups).to.have.length(5);
    expect(byDevice(groups.flatMap(ungroupNotifications))).to.deep.equal(byDevice(batch));
  });

  it('a group of large attributes holds fewer devices, still under the limit', () => {
    const big = Array.from({ length: 50 }, () => ({ ...notification(v1, '1.0'), attributes: { fw_title: 't'.repeat(5000), fw_version: '1.0' } }));
    const groups = groupNotifications(big);
    for (const g of groups) expect(Buffer.byteLength(JSON.stringify(g))).to.be.at.most(CLUSTER_PAYLOAD_MAX_BYTES);
    expect(groups.flatMap((g) => g.deviceIds)).to.have.length(50);
  });

  it('packs payloads in order into NOTIFY texts under 8000 bytes; a payload too large alone is left out and reported', () => {
    const payloads = Array.from({ length: 300 }, (_, i) => ({ i, pad: 'x'.repeat(100) }));
    const tooLarge: number[] = [];
    const texts = packed('me', 'topic', [...payloads.slice(0, 150), { pad: 'y'.repeat(9000) }, ...payloads.slice(150)], (bytes) => tooLarge.push(bytes));
    expect(tooLarge).to.have.length(1);
    expect(tooLarge[0]).to.be.above(9000);
    expect(texts.length).to.be.within(2, 8);
    for (const t of texts) expect(Buffer.byteLength(t)).to.be.below(8000);
    const heard = texts.flatMap((t) => (JSON.parse(t) as { from: string; topic: string; payloads: unknown[] }).payloads);
    expect(heard).to.deep.equal(payloads);
    expect(packed('me', 'topic', [], () => undefined)).to.deep.equal([]);
  });
});
