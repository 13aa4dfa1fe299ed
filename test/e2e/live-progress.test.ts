/**
 * The dashboard's live stream carries the download progress of the devices its page follows:
 * `npm start`, a device downloading its firmware in MQTT chunks, and a client reading
 * `/api/ota/events` as the page does (ticket, `ready`, then `POST /api/ota/events/follow`).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { EventStream, type ServerEvent } from '../support/event-stream';
import { MqttDevice } from '../support/mqtt-clients';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

interface Ref {
  id: { id: string };
}
interface Entry {
  deviceId: string;
  type: string;
  packageId: string;
  bytes: number;
  size: number;
  percent: number;
}

const INTERVAL_MS = 250;
const MAX_DEVICES = 5;
const CHUNK = 1024;
const CHUNKS = 64;

describe('live download progress on the dashboard stream (npm start)', function () {
  this.timeout(120_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let mqttUrl: string;
  let profileId: string;
  let packageId: string;
  const streams: EventStream[] = [];
  const clients: MqttDevice[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-live-progress-'));
    server = await startServer(dataDir, { OTA_DASHBOARD_PROGRESS_MS: String(INTERVAL_MS), OTA_DASHBOARD_PROGRESS_MAX_DEVICES: String(MAX_DEVICES) });
    admin = await adminClient(server.api);
    mqttUrl = `mqtt://127.0.0.1:${(await admin.endpoint('MQTT')).port}`;
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'live-progress' })).id.id;
    packageId = (await admin.firmware(profileId, 'live-fw', '1.0', randomBytes(CHUNK * CHUNKS))).id.id;
  });

  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await Promise.all(clients.splice(0).map((c) => c.client.endAsync(true).catch(() => undefined)));
  });

  after(async () => {
    if (server) await stopServer(server);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  async function device(name: string): Promise<{ id: string; token: string }> {
    const d = await admin.request<Ref>('POST', '/device', {
      name,
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
      firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' },
    });
    return { id: d.id.id, token: (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId };
  }

  /** A live stream as the page opens it; answers it with the name its `ready` event gives it. */
  async function openStream(): Promise<{ stream: EventStream; name: string }> {
    const { ticket } = await admin.request<{ ticket: string }>('POST', '/ota/events/ticket');
    const stream = await EventStream.open(`${server.api}/api/ota/events?ticket=${ticket}`);
    streams.push(stream);
    expect(stream.status).to.equal(200);
    const name = await stream.next((ev) => ev.event === 'ready' && ((ev.data as { stream: string | null }).stream ?? undefined), 'the ready event with the stream name');
    return { stream, name };
  }

  async function connect(token: string): Promise<MqttDevice> {
    const d = await MqttDevice.connect(mqttUrl, token);
    clients.push(d);
    await d.subscribe(['v2/fw/response/+/chunk/+']);
    return d;
  }

  const chunk = (d: MqttDevice, i: number) => d.ask(`v2/fw/request/1/chunk/${i}`, String(CHUNK), `v2/fw/response/1/chunk/${i}`);
  const progressOf = (ev: ServerEvent): Entry[] => (ev.event === 'progress' ? (ev.data as { devices: Entry[] }).devices : []);

  it('pushes the progress of a followed device while it downloads, at most one event per interval, and nothing of a device not followed', async () => {
    const followed = await device('followed-1');
    const ignored = await device('not-followed-1');
    const { stream, name } = await openStream();
    expect(await admin.request('POST', '/ota/events/follow', { stream: name, devices: [followed.id] })).to.deep.equal({ stream: name, following: 1 });
    const d = await connect(followed.token);
    const other = await connect(ignored.token);

    // The first chunk shows before the device asks for the second.
    await chunk(d, 0);
    const first = await stream.next((ev) => progressOf(ev).find((e) => e.bytes === CHUNK), 'the first chunk’s progress');
    expect(first).to.deep.include({ deviceId: followed.id, type: 'FIRMWARE', packageId, bytes: CHUNK, size: CHUNK * CHUNKS, percent: 1.6 });
    const from = stream.events.length;

    // The rest as fast as the device asks, the other device downloading beside it.
    const started = Date.now();
    for (let i = 1; i < CHUNKS; i++) {
      await chunk(d, i);
      if (i % 8 === 0) await chunk(other, i / 8);
    }
    await stream.next((ev) => progressOf(ev).find((e) => e.bytes === CHUNK * CHUNKS), 'the whole package served');
    const elapsed = Date.now() - started;
    const pushed = stream.events.slice(from).filter((ev) => ev.event === 'progress');
    const entries = pushed.flatMap(progressOf);
    expect(new Set(entries.map((e) => e.deviceId)), 'only the followed device').to.deep.equal(new Set([followed.id]));
    for (const ev of pushed) expect(progressOf(ev), 'a device once per event').to.have.length(1);
    // Coalesced: the chunks after the first arrived over `elapsed` ms, and a round runs at most once per interval.
    expect(pushed.length, `${pushed.length} events for ${CHUNKS - 1} chunks over ${elapsed} ms`).to.be.at.most(Math.ceil(elapsed / INTERVAL_MS) + 1);
    expect(
      entries.map((e) => e.bytes),
      'growing',
    ).to.deep.equal([...entries.map((e) => e.bytes)].sort((a, b) => a - b));
    expect(entries.at(-1)).to.include({ bytes: CHUNK * CHUNKS, percent: 100 });
  });

  it('refuses an unknown stream, more devices than OTA_DASHBOARD_PROGRESS_MAX_DEVICES, anything but device ids, and no login; what it follows stays', async () => {
    const followed = await device('followed-2');
    const { stream, name } = await openStream();
    await admin.request('POST', '/ota/events/follow', { stream: name, devices: [followed.id] });
    const post = async (body: unknown, headers = admin.headers): Promise<{ status: number; message: string }> => {
      const res = await fetch(`${admin.base}/ota/events/follow`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, message: ((await res.json()) as { message: string }).message };
    };
    const ids = (n: number) => Array.from({ length: n }, () => followed.id.replace(/^.{8}/, randomBytes(4).toString('hex')));
    expect(await post({ stream: 'no-such-stream', devices: [followed.id] })).to.deep.equal({ status: 404, message: "No live stream 'no-such-stream': open /api/ota/events first" });
    expect(await post({ stream: name, devices: ids(MAX_DEVICES + 1) })).to.deep.equal({
      status: 400,
      message: `A live stream follows at most ${MAX_DEVICES} devices (OTA_DASHBOARD_PROGRESS_MAX_DEVICES), not ${MAX_DEVICES + 1}`,
    });
    expect(await post({ stream: name, devices: ['thermo-1'] })).to.deep.equal({ status: 400, message: 'Invalid request body: devices must be device ids, not "thermo-1"' });
    expect((await post({ stream: name })).status).to.equal(400);
    expect((await post({ stream: name, devices: [] }, {})).status).to.equal(401);

    const d = await connect(followed.token);
    await chunk(d, 0);
    expect(await stream.next((ev) => progressOf(ev).find((e) => e.deviceId === followed.id), 'progress of the device still followed')).to.include({ bytes: CHUNK });
  });
});
