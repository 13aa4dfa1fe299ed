import { expect } from 'chai';
import net from 'node:net';
import { getDefaultHighWaterMark } from 'node:stream';
import type { DeviceRow } from '../../server/store/fleet-read-model';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { OtaPackage } from '../../server/store/ota-packages';
import { ADMIN_PASSWORD, ADMIN_USER, T0, useHarness } from './pipeline-support';
import { EventStream, type ServerEvent } from '../support/event-stream';

const FLEET = 10_000;
/** Devices changed at once: the rows one `devices` event carries (WATCH_DEFAULTS.maxRows). */
const SLICE = 200;

/** The dashboard's live stream against a client that never reads: what the server holds for it stays bounded. */
describe('dashboard live stream backlog', () => {
  const harness = useHarness({ http: true });
  let token: string;
  let sensors: DeviceProfile;
  let fw: OtaPackage;
  const open: Array<{ close(): void }> = [];

  beforeEach(async () => {
    const h = harness();
    token = (await h.engine.accounts.login(ADMIN_USER, ADMIN_PASSWORD)).token;
    sensors = await h.profile('sensors');
    fw = await h.binaryPackage(sensors, { type: 'FIRMWARE', title: 'sensor-fw', version: '2.0' });
  });
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
  });

  async function ticket(): Promise<{ status: number; body: { ticket?: string; status?: number; errorCode?: number; message?: string } }> {
    const res = await fetch(`${harness().baseUrl}/api/ota/events/ticket`, { method: 'POST', headers: { 'X-Authorization': `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as { ticket?: string } };
  }
  async function reader(): Promise<EventStream> {
    const t = await ticket();
    expect(t.status).to.equal(200);
    const s = await EventStream.open(`${harness().baseUrl}/api/ota/events?ticket=${t.body.ticket}`);
    open.push(s);
    expect(s.status).to.equal(200);
    await s.next((ev) => ev.event === 'metrics', 'the first metrics');
    return s;
  }
  /** A client that asks for the stream and then reads nothing: what reaches it stays in the kernel's buffers and ours. */
  async function stalled(): Promise<net.Socket & { received(): string }> {
    const t = await ticket();
    const { port } = harness().engine.httpAddress as net.AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write(`GET /api/ota/events?ticket=${t.body.ticket} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    // The headers and the first events come; then it stops reading.
    await new Promise((resolve) => socket.once('data', resolve));
    socket.pause();
    open.push({ close: () => socket.destroy() });
    return Object.assign(socket, { received: () => text });
  }
  async function gauges(): Promise<Record<string, number>> {
    const text = await (await fetch(`${harness().baseUrl}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^(ota_dashboard_live_stream\w*) (\S+)$/gm)) out[m[1] as string] = Number(m[2]);
    return out;
  }

  it(`holds at most its high-water mark plus one event for a client that never reads while ${FLEET.toLocaleString('en')} devices change, and the client reloads once it reads`, async function () {
    this.timeout(180_000);
    const h = harness();
    const watching = await reader();
    const attacker = await stalled();
    expect((await gauges()).ota_dashboard_live_streams).to.equal(2);
    const ids = h.insertDevices(sensors, FLEET, 'flood');
    let maxBuffered = 0;
    let maxPending = 0;
    let largestEvent = 0;
    for (let from = 0; from < FLEET; from += SLICE) {
      const slice = ids.slice(from, from + SLICE);
      // Written through a second connection as another instance would: the change log carries it to the watcher.
      const db = h.openDb();
      try {
        const insert = db.prepare("INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, target_package_id) VALUES (?, ?, 'FIRMWARE', 'QUEUED', ?, ?)");
        db.transaction(() => slice.forEach((id, i) => insert.run(id, h.tenantId, T0 + from + i, fw.id)))();
      } finally {
        db.close();
      }
      const last = slice.at(-1) as string;
      await watching.next((ev) => ev.event === 'devices' && (ev.data as { rows: DeviceRow[] }).rows.some((r) => r.id === last), `the row of device ${from + SLICE}`);
      const g = await gauges();
      maxBuffered = Math.max(maxBuffered, g.ota_dashboard_live_stream_buffered_bytes ?? NaN);
      maxPending = Math.max(maxPending, g.ota_dashboard_live_stream_pending_devices ?? NaN);
    }
    for (const ev of watching.events) largestEvent = Math.max(largestEvent, JSON.stringify(ev.data).length + 32);

    // The reading client got every change.
    const seen = new Set(watching.events.flatMap((ev: ServerEvent) => (ev.event === 'devices' ? (ev.data as { rows: DeviceRow[] }).rows.map((r) => r.id) : [])));
    const reloaded = watching.events.some((ev) => ev.event === 'devices' && (ev.data as { more: boolean }).more);
    expect(reloaded || ids.every((id) => seen.has(id)), 'every change, or a reload').to.equal(true);
    // What the server held for the one that did not read.
    expect(maxPending, 'device rows waiting').to.be.at.most(SLICE);
    expect(maxBuffered, 'bytes in its socket').to.be.at.most(getDefaultHighWaterMark(false) + largestEvent);

    // Once it reads, it is told to reload (it missed more changes than a stream keeps).
    attacker.resume();
    const reload = 'event: devices\ndata: {"rows":[],"removed":[],"more":true}\n\n';
    for (let i = 0; !attacker.received().includes(reload); i++) {
      expect(i, 'a reload within 10 s of reading again').to.be.below(500);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const g = await gauges();
    expect(g.ota_dashboard_live_stream_pending_devices).to.equal(0);
  });

  it('lets go of the stream of a client that hung up while its ticket was being checked', async () => {
    const { port } = harness().engine.httpAddress as net.AddressInfo;
    for (let i = 0; i < 30; i++) {
      const t = await ticket();
      const socket = net.connect(port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.end(`GET /api/ota/events?ticket=${t.body.ticket} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      socket.destroy();
    }
    for (let i = 0; (await gauges()).ota_dashboard_live_streams !== 0; i++) {
      expect(i, 'every stream let go').to.be.below(500);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await ticket()).status, 'the user may open streams again').to.equal(200);
  });

  it('lets a user hold 10 streams at once and answers the next with 429 and the error JSON, until one closes', async () => {
    const streams: EventStream[] = [];
    for (let i = 0; i < 10; i++) streams.push(await reader());
    const refused = await ticket();
    expect(refused.status).to.equal(429);
    expect(refused.body).to.include({ status: 429, errorCode: 33 });
    expect(refused.body.message).to.contain('OTA_DASHBOARD_STREAMS_PER_USER');
    (streams[0] as EventStream).close();
    for (let i = 0; (await gauges()).ota_dashboard_live_streams !== 9; i++) {
      expect(i, 'the closed stream to be let go').to.be.below(500);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await ticket()).status).to.equal(200);
  });
});
