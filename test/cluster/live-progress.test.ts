/**
 * Download progress served by one instance shows on another's dashboard before it is written: two
 * `npm start` instances on one PostgreSQL database whose writes of served bytes wait a minute
 * (OTA_DOWNLOAD_PROGRESS_FLUSH_MS), so what B shows can only have come over the cluster bus. Runs
 * in the PostgreSQL run only (.mocharc.postgres.json). B's dashboard stream moves its progress bars
 * from the same bus.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { EventStream, type ServerEvent } from '../support/event-stream';
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

  /** Through A: a profile `name`, a 4,000-byte firmware `title` 1.0 of it, and a device `<name>-1` assigned that firmware. */
  async function deviceWithFirmware(name: string, title: string): Promise<{ profileId: string; info: Ref; d: Ref; token: string }> {
    const profileId = (await adminA.request<Ref>('POST', '/deviceProfile', { name })).id.id;
    const info = await adminA.firmware(profileId, title, '1.0', randomBytes(4000));
    const d = await adminA.request<Ref>('POST', '/device', {
      name: `${name}-1`,
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
      firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' },
    });
    const token = (await adminA.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    return { profileId, info, d, token };
  }

  it("shows on B's device list the bytes A served, a minute before A writes them, chunks served by both counted once", async () => {
    const { profileId, d, token } = await deviceWithFirmware('live-progress', 'live-fw');
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

  it("moves B's dashboard progress bar chunk by chunk as A serves them, before A writes them", async () => {
    const { info, d, token } = await deviceWithFirmware('live-stream', 'stream-fw');
    const { ticket } = await adminB.request<{ ticket: string }>('POST', '/ota/events/ticket');
    const stream = await EventStream.open(`${b.api}/api/ota/events?ticket=${ticket}`);
    try {
      const name = await stream.next((ev) => ev.event === 'ready' && ((ev.data as { stream: string | null }).stream ?? undefined), 'the ready event of B’s stream');
      await adminB.request('POST', '/ota/events/follow', { stream: name, devices: [d.id.id] });
      const progress = (bytes: number) => (ev: ServerEvent) =>
        ev.event === 'progress' &&
        (ev.data as { devices: Array<{ deviceId: string; bytes: number; percent: number }> }).devices.find((e) => e.deviceId === d.id.id && e.bytes === bytes);
      // Each chunk A serves shows on B's stream before the device asks A for the next.
      for (let chunk = 0; chunk < 4; chunk++) {
        expect((await new HttpDevice(a.api, token).chunk('stream-fw', '1.0', 1000, chunk)).status).to.equal(200);
        expect(await stream.next(progress((chunk + 1) * 1000), `chunk ${chunk} on B's stream`)).to.include({ packageId: info.id.id, percent: (chunk + 1) * 25 });
      }
    } finally {
      stream.close();
    }
  });
});
