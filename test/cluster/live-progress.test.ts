/**
 * Download progress served by one instance shows on another's dashboard before it is written: two
 * `npm start` instances on one PostgreSQL database whose writes of served bytes wait a minute
 * (OTA_DOWNLOAD_PROGRESS_FLUSH_MS), so what B shows can only have come over the cluster bus. Runs
 * in the PostgreSQL run only (.mocharc.postgres.json).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { HttpDevice } from '../support/http-device';
import { eventually } from '../support/eventually';
import type { Admin, Running } from '../support/standalone';
import { TwoInstances } from '../support/cluster';

interface Ref {
  id: { id: string };
}
interface Progress {
  FIRMWARE: { packageId: string; servedBytes: number; size: number; percent: number } | null;
}

describe('two instances on one PostgreSQL: live download progress (npm start twice)', function () {
  this.timeout(120_000);
  const cluster = new TwoInstances('ota-cluster-progress');
  let a: Running;
  let b: Running;
  let adminA: Admin;
  let adminB: Admin;

  before(async () => {
    ({ a, b, adminA, adminB } = await cluster.start({ OTA_DOWNLOAD_PROGRESS_FLUSH_MS: '60000' }));
  });

  after(async () => {
    await cluster.stop();
  });

  it("shows on B's device list the bytes A served, a minute before A writes them, chunks served by both counted once", async () => {
    const profileId = (await adminA.request<Ref>('POST', '/deviceProfile', { name: 'live-progress' })).id.id;
    const info = await adminA.request<Ref>('POST', '/otaPackage', {
      title: 'live-fw',
      version: '1.0',
      type: 'FIRMWARE',
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
    });
    await adminA.upload(info.id.id, randomBytes(4000), 'SHA256');
    const d = await adminA.request<Ref>('POST', '/device', {
      name: 'live-progress-1',
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
      firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' },
    });
    const token = (await adminA.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    for (const [api, chunk] of [
      [a.api, 0],
      [a.api, 1],
      [b.api, 1],
    ] as const)
      expect((await new HttpDevice(api, token).chunk('live-fw', '1.0', 1000, chunk)).status).to.equal(200);
    const served = async (admin: Admin): Promise<number | undefined> => (await admin.request<Progress>('GET', `/ota/device/${d.id.id}/downloadProgress`)).FIRMWARE?.servedBytes;
    // B: its own chunk 1 and A's chunks 0 and 1, heard on the bus; A: its own two and B's one.
    await eventually(async () => (await served(adminB)) === 2000, "A's bytes on B", { timeoutMs: 5000, everyMs: 20 });
    await eventually(async () => (await served(adminA)) === 2000, "B's bytes on A", { timeoutMs: 5000, everyMs: 20 });
    // The dashboard's device list carries it too.
    const page = await adminB.request<{ data: Array<{ id: string; firmware: { served?: { bytes: number; percent: number } } }> }>(
      'GET',
      `/ota/devices?type=FIRMWARE&deviceProfileId=${profileId}&pageSize=10&page=0`,
    );
    expect(page.data.find((r) => r.id === d.id.id)?.firmware.served).to.deep.include({ bytes: 2000, percent: 50 });
  });
});
