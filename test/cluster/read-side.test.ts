/**
 * What one instance changes, the other acts on and shows: two `npm start` instances on one
 * PostgreSQL database, each with its own data directory. A device re-keyed or deleted through A
 * loses the sessions it holds on B; a change made through A shows in B's live dashboard stream;
 * bytes served by both add up to one download progress. Runs in the PostgreSQL run only
 * (.mocharc.postgres.json).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { HttpDevice } from '../support/http-device';
import { eventually } from '../support/eventually';
import { EventStream, type ServerEvent } from '../support/event-stream';
import { MqttDevice } from '../support/mqtt-clients';
import type { Admin, Running } from '../support/standalone';
import { TwoInstances } from '../support/cluster';

interface Ref {
  id: { id: string };
}
interface Row {
  id: string;
  firmware: { state: string | null };
}
interface Progress {
  FIRMWARE: { packageId: string; servedBytes: number; size: number; percent: number } | null;
}

/** Resolves when `p` does, fails after `ms`: what should happen at once must not hang the test. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('two instances on one PostgreSQL: the read side and revocations (npm start twice)', function () {
  this.timeout(120_000);
  const cluster = new TwoInstances('ota-cluster-read');
  let a: Running;
  let b: Running;
  let adminA: Admin;
  let adminB: Admin;
  let profileId: string;
  let mqttB: string;
  const clients: MqttDevice[] = [];
  const streams: EventStream[] = [];

  async function device(admin: Admin, name: string, extra: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
    const d = await admin.request<Ref>('POST', '/device', {
      name: `${name}-${randomUUID().slice(0, 8)}`,
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
      ...extra,
    });
    const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    return { id: d.id.id, token };
  }

  async function connect(url: string, token: string): Promise<MqttDevice> {
    const d = await MqttDevice.connect(url, token, 5);
    clients.push(d);
    return d;
  }

  /** Whether MQTT refuses a CONNECT with this token. */
  async function mqttRefuses(url: string, token: string): Promise<boolean> {
    try {
      await connect(url, token);
      return false;
    } catch {
      return true;
    }
  }

  const httpStatus = async (api: string, token: string): Promise<number> => (await new HttpDevice(api, token).attributes()).status;

  before(async () => {
    ({ a, b, adminA, adminB } = await cluster.start());
    profileId = (await adminA.request<Ref>('POST', '/deviceProfile', { name: 'cluster-read' })).id.id;
    const endpoint = await adminB.endpoint('MQTT');
    mqttB = `mqtt://127.0.0.1:${endpoint.port}`;
  });

  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await Promise.all(clients.splice(0).map((c) => c.client.endAsync(true).catch(() => undefined)));
  });

  after(async () => {
    await cluster.stop();
  });

  it('closes the MQTT session on B of a device re-keyed through A; the old token is refused by both, the new one works', async () => {
    const d = await device(adminA, 'rekeyed');
    const session = await connect(mqttB, d.token);
    const fresh = `fresh-${randomUUID()}`;
    await adminA.request('POST', '/device/credentials', { deviceId: { entityType: 'DEVICE', id: d.id }, credentialsType: 'ACCESS_TOKEN', credentialsId: fresh });
    await within(session.closed, 5000, 'B closing the re-keyed session');
    // MQTT 5: B says why (0x98 administrative action).
    expect(session.disconnect).to.have.property('reasonCode', 0x98);
    const mqttA = `mqtt://127.0.0.1:${(await adminA.endpoint('MQTT')).port}`;
    for (const url of [mqttB, mqttA]) expect(await mqttRefuses(url, d.token), `old token over ${url}`).to.equal(true);
    for (const api of [a.api, b.api]) expect(await httpStatus(api, d.token), `old token over HTTP on ${api}`).to.equal(401);
    await connect(mqttB, fresh);
    expect(await httpStatus(a.api, fresh)).to.equal(200);
  });

  it('closes the MQTT session and the HTTP long poll on B of a device deleted through A', async () => {
    const d = await device(adminA, 'deleted');
    const session = await connect(mqttB, d.token);
    const poll = new HttpDevice(b.api, d.token).waitForUpdate(60_000).then(
      () => 'answered',
      (err: Error) => err.message,
    );
    // The long poll is waiting on B before the deletion.
    await adminB.endpoint('HTTP', (e) => e.connections >= 1);
    await adminA.request('DELETE', `/device/${d.id}`);
    await within(session.closed, 5000, 'B closing the deleted device’s session');
    expect(await within(poll, 5000, 'B ending the deleted device’s long poll')).to.match(/403|401/);
    expect(await mqttRefuses(mqttB, d.token)).to.equal(true);
  });

  it("shows in B's live stream a change made through A, while A's own stream watches too", async () => {
    const bytes = randomBytes(2000);
    const info = await adminA.firmware(profileId, 'live-fw', '1.0', bytes);
    const d = await device(adminA, 'live');
    // A watches too: its own watcher, nudged by A's events, reads the change log first.
    const open = async (admin: Admin, api: string): Promise<EventStream> => {
      const ticket = await admin.request<{ ticket: string }>('POST', '/ota/events/ticket');
      const stream = await EventStream.open(`${api}/api/ota/events?ticket=${ticket.ticket}`);
      streams.push(stream);
      expect(stream.status).to.equal(200);
      await stream.next((ev) => ev.event === 'metrics', 'first metrics');
      return stream;
    };
    const onA = await open(adminA, a.api);
    const onB = await open(adminB, b.api);
    const rowOf = (state: string) => (ev: ServerEvent) => ev.event === 'devices' && (ev.data as { rows: Row[] }).rows.find((r) => r.id === d.id && r.firmware.state === state);
    // Assigned through A: queued by whichever instance, seen by both.
    const saved = await adminA.request('GET', `/device/${d.id}`);
    await adminA.request('POST', '/device', { ...saved, firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });
    for (const stream of [onA, onB]) await stream.next((ev) => rowOf('QUEUED')(ev) || rowOf('INITIATED')(ev), 'the row queued or notified');
    // Reported through A's HTTP device API.
    expect(await new HttpDevice(a.api, d.token).telemetry({ fw_state: 'DOWNLOADING' })).to.equal(200);
    await onA.next(rowOf('DOWNLOADING'), "the row DOWNLOADING on A's stream");
    const row = await onB.next(rowOf('DOWNLOADING'), "the row DOWNLOADING on B's stream");
    expect(row.firmware.state).to.equal('DOWNLOADING');
  });

  it('adds the bytes both instances served to one download progress, a chunk served by both once', async () => {
    const info = await adminA.firmware(profileId, 'progress-fw', '1.0', randomBytes(4000));
    const d = await device(adminA, 'progress', { firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });
    for (const [api, chunk] of [
      [a.api, 0],
      [a.api, 1],
      [b.api, 1],
      [b.api, 2],
    ] as const) {
      const res = await new HttpDevice(api, d.token).chunk('progress-fw', '1.0', 1000, chunk);
      expect(res.status).to.equal(200);
      expect((await res.arrayBuffer()).byteLength).to.equal(1000);
    }
    for (const admin of [adminA, adminB]) {
      // Each instance writes what it served within OTA_DOWNLOAD_PROGRESS_FLUSH_MS (1 s).
      const p = await eventually(
        async () => {
          const served = (await admin.request<Progress>('GET', `/ota/device/${d.id}/downloadProgress`)).FIRMWARE;
          return served?.servedBytes === 3000 && served;
        },
        'progress of chunks served by both',
        { timeoutMs: 10_000, everyMs: 100 },
      );
      expect(p).to.include({ packageId: info.id.id, servedBytes: 3000, size: 4000, percent: 75 });
    }
  });
});
