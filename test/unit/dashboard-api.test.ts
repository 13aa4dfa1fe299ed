import { expect } from 'chai';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { DeviceRow, TimelineEvent } from '../../server/fleet/fleet-view';
import type { LiveMetrics } from '../../server/fleet/fleet-watch';
import type { TenantId } from '../../server/ids';
import type { OtaPackage } from '../../server/store/ota-packages';
import { ADMIN_PASSWORD, ADMIN_USER, PipelineHarness, T0, useHarness } from './pipeline-support';
import { eventually } from '../support/eventually';
import { EventStream, type ServerEvent } from '../support/event-stream';

interface Reply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}
interface Page {
  data: DeviceRow[];
  totalPages: number;
  totalElements: number;
  hasNext: boolean;
}

/** Prometheus' text format: every sample as name, labels and value. */
function parseExposition(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  const out: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The fleet dashboard's API, live stream, page and `GET /metrics`, over real sockets on 127.0.0.1. */
describe('dashboard API, live stream and /metrics', () => {
  const saved = { snapshot: process.env.OTA_DASHBOARD_SNAPSHOT_S, token: process.env.OTA_METRICS_TOKEN };
  before(() => {
    process.env.OTA_DASHBOARD_SNAPSHOT_S = '0.05';
    delete process.env.OTA_METRICS_TOKEN;
  });
  after(() => {
    for (const [name, value] of [
      ['OTA_DASHBOARD_SNAPSHOT_S', saved.snapshot],
      ['OTA_METRICS_TOKEN', saved.token],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  const harness = useHarness({ http: true });
  const image = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 13) & 0xff));
  let token: string;
  let thermostats: DeviceProfile;
  let sensors: DeviceProfile;
  let fw: OtaPackage;
  let sw: OtaPackage;
  /** thermo-0 UPDATED, thermo-1 FAILED, thermo-2 DOWNLOADING, thermo-3 QUEUED, thermo-4 FAILED (latest); sensors without state. */
  let thermo: Device[];
  let sensor: Device[];

  async function request<T = unknown>(method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply<T>> {
    const bearer = opts.token === undefined ? token : opts.token;
    const res = await fetch(`${harness().baseUrl}${path}`, {
      method,
      headers: { ...(bearer ? { 'X-Authorization': `Bearer ${bearer}` } : {}), ...(opts.body === undefined ? {} : { 'Content-Type': 'application/json' }), ...opts.headers },
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
    });
    const text = await res.text();
    let body: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json') && text) body = JSON.parse(text);
    return { status: res.status, headers: res.headers, body: body as T, text };
  }
  const get = <T = unknown>(path: string, bearer?: string | null): Promise<Reply<T>> => request<T>('GET', path, { token: bearer });
  const list = async (query: string, bearer?: string): Promise<Page> => {
    const r = await get<Page>(`/api/ota/devices?${query}`, bearer);
    expect(r.status, r.text).to.equal(200);
    return r.body;
  };
  const names = (p: Page): string[] => p.data.map((d) => d.name);

  /** Releases the queue to the notifier (INITIATED in the same millisecond as QUEUED on the fake clock) and stops it again. */
  async function drain(): Promise<void> {
    const h = harness();
    const notified: Array<Promise<unknown>> = [];
    h.pipeline.queue.start({ packSize: 10, intervalMs: 0, mode: 'spaced' }, (evs) => notified.push(...evs.map((ev) => h.pipeline.notifier.process(ev))));
    await h.timers.advance(1);
    await Promise.all(notified);
    h.pipeline.queue.stop();
    expect(await h.pipeline.queue.depth()).to.equal(0);
  }

  /** A state report as a device sends it over HTTP (saved in the history), handed to the tracker as the flow would. */
  async function report(device: Device, values: Record<string, string>, ts: number): Promise<void> {
    const res = await fetch(`${harness().baseUrl}/api/v1/${device.accessToken}/telemetry`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ts, values }),
    });
    expect(res.status).to.equal(200);
    await harness().pipeline.tracker.handleUplink(harness().uplink(device, [{ ts, values }]));
  }

  beforeEach(async () => {
    const h = harness();
    token = (await h.engine.accounts.login(ADMIN_USER, ADMIN_PASSWORD)).token;
    thermostats = await h.profile('thermostats');
    sensors = await h.profile('sensors');
    fw = await h.binaryPackage(thermostats, { type: 'FIRMWARE', title: 'thermo-fw', version: '2.0', bytes: image });
    sw = await h.binaryPackage(thermostats, { type: 'SOFTWARE', title: 'thermo-app', version: '1.1' });
    thermo = [];
    for (let i = 0; i < 5; i++) thermo.push(await h.device(thermostats, { name: `thermo-${i}` }));
    sensor = [await h.device(sensors, { name: 'sensor-a' }), await h.device(sensors, { name: 'sensor-b' })];
    // Nothing listens for assignments, so the engine queues the five thermostats itself (QUEUED at T0).
    await h.setProfilePackage(thermostats, 'FIRMWARE', fw.id);
    await eventually(async () => (await h.pipeline.queue.depth()) === 5, 'the thermostats to be queued');
    const v = (state: string, extra: Record<string, string> = {}) => ({ current_fw_title: 'thermo-fw', current_fw_version: '1.0', fw_state: state, ...extra });
    await report(thermo[0]!, { ...v('UPDATED'), current_fw_version: '2.0' }, T0 + 100);
    await report(thermo[1]!, v('FAILED', { fw_error: 'Flash write failed' }), T0 + 200);
    await report(thermo[2]!, v('DOWNLOADING'), T0 + 300);
    await report(thermo[4]!, v('FAILED', { fw_error: 'Checksum verification failed!' }), T0 + 400);
    await h.pipeline.tracker.handleUplink(h.report(thermo[0]!, { sw_state: 'UPDATED', current_sw_title: 'thermo-app', current_sw_version: '1.0' }, T0 + 500));
  });

  describe('device list', () => {
    it("shows each device's credentials type, never its token, password or certificate", async () => {
      const h = harness();
      const d = await h.device(await h.profile('creds'), { name: 'basic-creds' });
      await h.engine.devices.updateCredentials(h.tenantId, d.id, {
        credentialsType: 'MQTT_BASIC',
        credentialsValue: JSON.stringify({ clientId: 'cc', userName: 'uu', password: 'pp-secret' }),
      });
      const page = await list('pageSize=20&page=0&textSearch=basic-creds');
      expect(page.data.map((r) => [r.name, r.credentialsType])).to.deep.equal([['basic-creds', 'MQTT_BASIC']]);
      const tokenRow = (await list('pageSize=20&page=0&textSearch=thermo-1')).data[0] as DeviceRow;
      expect(tokenRow.credentialsType).to.equal('ACCESS_TOKEN');
      const text = JSON.stringify(page) + JSON.stringify(tokenRow);
      expect(text).to.not.include('pp-secret').and.not.include('$scrypt$').and.not.include(thermo[1]!.accessToken);
    });

    it('answers 401 without a token, as the rest of /api', async () => {
      const r = await get('/api/ota/devices', null);
      expect(r.status).to.equal(401);
      expect(r.body).to.include({ status: 401, errorCode: 10 });
    });

    it("shows each device's firmware and software: current, target, state, last change and error", async () => {
      const page = await list('pageSize=20&page=0');
      expect(page.totalElements).to.equal(7);
      const row = (name: string): DeviceRow => page.data.find((d) => d.name === name) as DeviceRow;
      expect(row('thermo-1')).to.deep.include({ deviceProfileId: thermostats.id, deviceProfileName: 'thermostats' });
      expect(row('thermo-1').firmware).to.deep.equal({
        state: 'FAILED',
        stateTs: T0 + 200,
        error: 'Flash write failed',
        current: { title: 'thermo-fw', version: '1.0' },
        target: { packageId: fw.id, title: 'thermo-fw', version: '2.0' },
        retries: 0,
      });
      expect(row('thermo-0').firmware).to.include({ state: 'UPDATED', error: null });
      expect(row('thermo-0').firmware.current).to.deep.equal({ title: 'thermo-fw', version: '2.0' });
      expect(row('thermo-0').software).to.deep.include({ state: 'UPDATED', current: { title: 'thermo-app', version: '1.0' }, target: null });
      expect(row('thermo-3').firmware).to.include({ state: 'QUEUED', stateTs: T0 });
      expect(row('sensor-a').firmware).to.deep.equal({ state: null, stateTs: null, error: null, current: null, target: null, retries: 0 });
    });

    it('filters by one state, several states and NONE (no state yet)', async () => {
      expect(names(await list('state=FAILED&sortProperty=name'))).to.deep.equal(['thermo-1', 'thermo-4']);
      expect(names(await list('state=QUEUED,INITIATED,DOWNLOADING&sortProperty=name'))).to.deep.equal(['thermo-2', 'thermo-3']);
      expect(names(await list('state=NONE&sortProperty=name'))).to.deep.equal(['sensor-a', 'sensor-b']);
      expect(names(await list('state=FAILED,NONE&sortProperty=name'))).to.deep.equal(['sensor-a', 'sensor-b', 'thermo-1', 'thermo-4']);
      expect(names(await list('type=SOFTWARE&state=UPDATED'))).to.deep.equal(['thermo-0']);
    });

    it('filters by profile, by target package and by text in the name', async () => {
      expect(names(await list(`deviceProfileId=${sensors.id}`))).to.deep.equal(['sensor-a', 'sensor-b']);
      expect((await list(`packageId=${fw.id}`)).totalElements).to.equal(5);
      expect((await list(`packageId=${sw.id}`)).totalElements).to.equal(0);
      expect(names(await list('textSearch=SOR-b'))).to.deep.equal(['sensor-b']);
      expect(names(await list(`textSearch=thermo&state=FAILED&packageId=${fw.id}&deviceProfileId=${thermostats.id}`))).to.deep.equal(['thermo-1', 'thermo-4']);
      // `%` and `_` are text, not patterns.
      expect((await list('textSearch=%25')).totalElements).to.equal(0);
    });

    it('sorts by name, last change, state and profile, both ways', async () => {
      expect(names(await list('sortProperty=name&sortOrder=DESC'))).to.deep.equal(['thermo-4', 'thermo-3', 'thermo-2', 'thermo-1', 'thermo-0', 'sensor-b', 'sensor-a']);
      expect(names(await list(`sortProperty=stateTs&sortOrder=DESC&packageId=${fw.id}`))).to.deep.equal(['thermo-4', 'thermo-2', 'thermo-1', 'thermo-0', 'thermo-3']);
      expect((await list(`sortProperty=state&packageId=${fw.id}`)).data.map((d) => d.firmware.state)).to.deep.equal(['DOWNLOADING', 'FAILED', 'FAILED', 'QUEUED', 'UPDATED']);
      expect((await list('sortProperty=state&sortOrder=DESC&pageSize=2')).data.map((d) => d.firmware.state)).to.deep.equal(['UPDATED', 'QUEUED']);
      expect((await list('sortProperty=deviceProfileName&sortOrder=DESC')).data.map((d) => d.deviceProfileName)).to.deep.equal([
        ...Array(5).fill('thermostats'),
        'sensors',
        'sensors',
      ]);
    });

    it("pages with ThingsBoard's page data", async () => {
      const first = await list('pageSize=3&page=0&sortProperty=name');
      expect(first).to.deep.include({ totalElements: 7, totalPages: 3, hasNext: true });
      expect(names(first)).to.deep.equal(['sensor-a', 'sensor-b', 'thermo-0']);
      const last = await list('pageSize=3&page=2&sortProperty=name');
      expect(last).to.deep.include({ hasNext: false });
      expect(names(last)).to.deep.equal(['thermo-4']);
    });

    it('answers from SQL alone for 50,000 devices: count, a deep page, state filter, sort and text', async function () {
      this.timeout(120_000);
      const h = harness();
      // Written in slices with the event loop given back between them, as another writer would: one
      // synchronous write of 100,000 rows held the server's loop for seconds under load, and its
      // keep-alive timer then closed the client's idle connection just as the next request went out.
      for (let from = 0; from < 50_000; from += 5000) {
        const slice = h.insertDevices(sensors, 5000, 'bulk', from);
        const db = h.openDb();
        try {
          const insert = db.prepare("INSERT INTO ota_states (device_id, tenant_id, type, state, state_ts, error, target_package_id) VALUES (?, ?, 'FIRMWARE', ?, ?, ?, ?)");
          db.transaction(() =>
            slice.forEach((id, k) => {
              const i = from + k;
              insert.run(id, h.tenantId, i % 10 === 0 ? 'FAILED' : 'UPDATED', T0 + i, i % 10 === 0 ? `error ${i}` : null, fw.id);
            }),
          )();
        } finally {
          db.close();
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      const all = await list(`deviceProfileId=${sensors.id}&pageSize=100&page=250&sortProperty=createdTime`);
      expect(all.totalElements).to.equal(50_002);
      expect(all.data).to.have.length(100);
      const failed = await list(`deviceProfileId=${sensors.id}&state=FAILED&sortProperty=stateTs&sortOrder=DESC&pageSize=3`);
      expect(failed.totalElements).to.equal(5000);
      expect(failed.data.map((d) => [d.name, d.firmware.error])).to.deep.equal([
        ['bulk-49990', 'error 49990'],
        ['bulk-49980', 'error 49980'],
        ['bulk-49970', 'error 49970'],
      ]);
      expect((await list(`packageId=${fw.id}&state=FAILED`)).totalElements).to.equal(5000 + 2);
      expect((await list('textSearch=bulk-4999&pageSize=50')).totalElements).to.equal(11);
      const last = await list(`deviceProfileId=${sensors.id}&sortProperty=name&pageSize=1000&page=50`);
      expect(last).to.deep.include({ totalElements: 50_002, hasNext: false });
      expect(last.data).to.have.length(2);
    });

    it('refuses an unknown state, sort property or page size with 400 and says which', async () => {
      const bad = await get<{ message: string }>('/api/ota/devices?state=FAILED,BROKEN');
      expect(bad.status).to.equal(400);
      expect(bad.body.message).to.match(/'state'/);
      const sort = await get<{ message: string }>('/api/ota/devices?sortProperty=color');
      expect(sort.status).to.equal(400);
      expect(sort.body.message).to.match(/sortProperty.*name, createdTime/);
      expect((await get('/api/ota/devices?pageSize=0')).status).to.equal(400);
      expect((await get('/api/ota/devices?type=FIRMWARES')).status).to.equal(400);
    });
  });

  describe('another tenant', () => {
    let otherToken: string;
    let otherTenant: TenantId;
    beforeEach(async () => {
      const h = harness();
      const { tenant } = await h.engine.accounts.createTenant('Other tenant', 'other@example.com', 'other-password-1');
      otherTenant = tenant.id;
      otherToken = (await h.engine.accounts.login('other@example.com', 'other-password-1')).token;
      const own = await h.profile('other-profile', otherTenant);
      await h.device(own, { name: 'other-device', tenantId: otherTenant });
    });

    it('sees only its own devices, failures and metrics', async () => {
      expect(names(await list('pageSize=50&page=0', otherToken))).to.deep.equal(['other-device']);
      expect((await list(`packageId=${fw.id}`, otherToken)).totalElements).to.equal(0);
      const failures = await get<Page>('/api/ota/failures', otherToken);
      expect(failures.body.totalElements).to.equal(0);
      const dist = await get<{ points: Array<{ counts: Record<string, number> }> }>('/api/ota/distribution', otherToken);
      expect(dist.body.points.at(-1)?.counts.FAILED).to.equal(0);
    });

    it("refuses another tenant's device: 403 for its row, history and retry", async () => {
      expect((await get(`/api/ota/devices/${thermo[1]!.id}`, otherToken)).status).to.equal(403);
      expect((await get(`/api/ota/devices/${thermo[1]!.id}/history`, otherToken)).status).to.equal(403);
      expect((await request('POST', `/api/ota/devices/${thermo[1]!.id}/retry`, { token: otherToken, body: {} })).status).to.equal(403);
    });
  });

  describe('failed devices and history', () => {
    it('lists the failed devices with their fw_error, latest failure first', async () => {
      const r = await get<Page>('/api/ota/failures');
      expect(r.status).to.equal(200);
      expect(r.body.data.map((d) => [d.name, d.firmware.error])).to.deep.equal([
        ['thermo-4', 'Checksum verification failed!'],
        ['thermo-1', 'Flash write failed'],
      ]);
    });

    it("tells a device's update as a timeline: target, each state, versions and the error", async () => {
      await drain();
      const device = thermo[3]!;
      for (const [i, state] of ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED'].entries())
        await report(device, { current_fw_title: 'thermo-fw', current_fw_version: '1.0', fw_state: state, fw_error: '' }, T0 + 1000 + i);
      await report(device, { current_fw_title: 'thermo-fw', current_fw_version: '1.0', fw_state: 'FAILED', fw_error: 'Flash write failed' }, T0 + 1010);
      const r = await get<{ deviceId: string; name: string; events: TimelineEvent[] }>(`/api/ota/devices/${device.id}/history?type=FIRMWARE`);
      expect(r.status, r.text).to.equal(200);
      expect(r.body).to.include({ deviceId: device.id, name: 'thermo-3' });
      expect(r.body.events.map((e) => e.state)).to.deep.equal(['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'FAILED']);
      expect(r.body.events[0]).to.deep.include({ ts: T0, type: 'FIRMWARE', target: { title: 'thermo-fw', version: '2.0' } });
      expect(r.body.events[2]).to.deep.include({ current: { title: 'thermo-fw', version: '1.0' } });
      expect(r.body.events[2]).to.not.have.property('error'); // the SDK's empty fw_error is no error
      expect(r.body.events.at(-1)).to.deep.include({ ts: T0 + 1010, state: 'FAILED', error: 'Flash write failed' });
      const all = await get<{ events: TimelineEvent[] }>(`/api/ota/devices/${thermo[0]!.id}/history`);
      expect(all.body.events.map((e) => `${e.type}:${e.state}`)).to.include.members(['FIRMWARE:UPDATED']);
    });

    it('answers 404 for a device that does not exist and 400 for a malformed id', async () => {
      expect((await get('/api/ota/devices/6c8e0a4e-0000-4000-8000-000000000000/history')).status).to.equal(404);
      expect((await get('/api/ota/devices/not-a-uuid/history')).status).to.equal(400);
    });
  });

  describe('retry', () => {
    const retry = (device: Device, body: unknown = {}) => request<{ message: string; state: string; packageId: string }>('POST', `/api/ota/devices/${device.id}/retry`, { body });

    it('queues a failed device again for its target: QUEUED, in the queue, in the history', async () => {
      const h = harness();
      await drain();
      const r = await retry(thermo[1]!);
      expect(r.status, r.text).to.equal(200);
      expect(r.body).to.include({ state: 'QUEUED', packageId: fw.id });
      expect(await h.pipeline.queue.depth()).to.equal(1);
      const row = (await get<DeviceRow>(`/api/ota/devices/${thermo[1]!.id}`)).body;
      expect(row.firmware).to.include({ state: 'QUEUED', error: null });
    });

    it('refuses a device that is not FAILED, and says what state it is in', async () => {
      const r = await retry(thermo[2]!);
      expect(r.status).to.equal(400);
      expect(r.body.message).to.equal("Device 'thermo-2' is not FAILED (fw_state is DOWNLOADING); only a failed update can be retried");
    });

    it('refuses a device with no package to retry', async () => {
      const r = await retry(sensor[0]!, { type: 'FIRMWARE' });
      expect(r.status).to.equal(400);
      expect(r.body.message).to.equal("Device 'sensor-a' has no firmware to retry: no package is assigned to it");
      const s = await retry(thermo[0]!, { type: 'SOFTWARE' });
      expect(s.status).to.equal(400);
      expect(s.body.message).to.match(/has no software to retry/);
      expect((await retry(thermo[1]!, { type: 'FIRMWARE!' })).status).to.equal(400);
    });
  });

  describe('state distribution over time', () => {
    it('records snapshots while the fleet changes and ends the series with now', async () => {
      type Dist = { type: string; points: Array<{ ts: number; counts: Record<string, number> }> };
      const expected = { QUEUED: 1, INITIATED: 0, DOWNLOADING: 1, UPDATED: 1, FAILED: 2 };
      const settled = (d: Dist): boolean => d.points.length >= 2 && Object.entries(expected).every(([k, v]) => d.points[0]?.counts[k] === v);
      let r: Reply<Dist> | undefined;
      // The watcher takes a snapshot every 50 ms while anything changed (OTA_DASHBOARD_SNAPSHOT_S above).
      for (let i = 0; i < 200; i++) {
        r = await get<Dist>(`/api/ota/distribution?type=FIRMWARE&startTs=${T0 - 1000}`);
        if (settled(r.body)) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(r?.status).to.equal(200);
      const points = (r as Reply<Dist>).body.points;
      expect(points.length, 'a snapshot and now').to.be.at.least(2);
      expect(points[0]!.counts).to.include(expected);
      expect(points.at(-1)!.counts).to.include(expected);
      expect((await get('/api/ota/distribution?startTs=10&endTs=5')).status).to.equal(400);
    });
  });

  describe('live stream', () => {
    const streams: EventStream[] = [];
    afterEach(() => {
      for (const s of streams.splice(0)) s.close();
    });
    async function connect(bearer = token): Promise<EventStream> {
      const t = await request<{ ticket: string; expiresInMs: number }>('POST', '/api/ota/events/ticket', { token: bearer });
      expect(t.status).to.equal(200);
      const s = await EventStream.open(`${harness().baseUrl}/api/ota/events?ticket=${t.body.ticket}`);
      streams.push(s);
      return s;
    }
    /** The device's row in a `devices` event, in the firmware `state` when given (earlier rows may still be in flight). */
    const rowOf = (id: string, state?: string) => (ev: ServerEvent) =>
      ev.event === 'devices' && (ev.data as { rows: DeviceRow[] }).rows.find((r) => r.id === id && (state === undefined || r.firmware.state === state));

    it('refuses a stream without a ticket, with a made-up ticket, and a ticket used twice', async () => {
      expect((await EventStream.open(`${harness().baseUrl}/api/ota/events`)).status).to.equal(401);
      expect((await EventStream.open(`${harness().baseUrl}/api/ota/events?ticket=made-up`)).status).to.equal(401);
      const t = await request<{ ticket: string }>('POST', '/api/ota/events/ticket');
      const first = await EventStream.open(`${harness().baseUrl}/api/ota/events?ticket=${t.body.ticket}`);
      streams.push(first);
      expect(first.status).to.equal(200);
      expect((await EventStream.open(`${harness().baseUrl}/api/ota/events?ticket=${t.body.ticket}`)).status).to.equal(401);
      expect((await request('POST', '/api/ota/events/ticket', { token: null })).status).to.equal(401);
    });

    it('sends the metrics at once, then the row and new metrics when a device reports', async () => {
      const s = await connect();
      expect(s.contentType).to.match(/^text\/event-stream/);
      const first = await s.next((ev) => ev.event === 'metrics' && (ev.data as LiveMetrics), 'first metrics');
      const pkg = first.packages.find((p) => p.packageId === fw.id);
      expect(pkg).to.include({ targeted: 5, pending: 1, inProgress: 1, updated: 1, failed: 2 });
      expect(first.distribution.FIRMWARE).to.include({ QUEUED: 1, FAILED: 2 });
      const seen = s.events.length;
      await report(thermo[3]!, { fw_state: 'DOWNLOADING' }, T0 + 2000);
      const row = await s.next(rowOf(thermo[3]!.id, 'DOWNLOADING'), 'the row of thermo-3 DOWNLOADING', seen);
      expect(row.firmware).to.include({ state: 'DOWNLOADING', stateTs: T0 + 2000 });
      const after = await s.next(
        (ev) => ev.event === 'metrics' && (ev.data as LiveMetrics).packages.find((p) => p.packageId === fw.id && p.inProgress === 2),
        'metrics with two in progress',
        seen,
      );
      expect(after).to.include({ pending: 0, inProgress: 2 });
    });

    it('sends changes the pipeline makes without any report (a retry queued)', async () => {
      const s = await connect();
      await s.next((ev) => ev.event === 'metrics', 'first metrics');
      const seen = s.events.length;
      expect((await request('POST', `/api/ota/devices/${thermo[4]!.id}/retry`, { body: {} })).status).to.equal(200);
      const row = await s.next(rowOf(thermo[4]!.id, 'QUEUED'), 'the retried row', seen);
      expect(row.firmware.state).to.equal('QUEUED');
    });

    it("tells a tenant nothing of another tenant's fleet", async () => {
      const h = harness();
      const { tenant } = await h.engine.accounts.createTenant('Other tenant', 'other@example.com', 'other-password-1');
      const otherToken = (await h.engine.accounts.login('other@example.com', 'other-password-1')).token;
      const own = await h.device(await h.profile('other-profile', tenant.id), { name: 'other-device', tenantId: tenant.id });
      const s = await connect(otherToken);
      const m = await s.next((ev) => ev.event === 'metrics' && (ev.data as LiveMetrics), 'first metrics');
      expect(m.packages).to.deep.equal([]);
      await report(thermo[3]!, { fw_state: 'DOWNLOADING' }, T0 + 3000);
      await h.pipeline.tracker.handleUplink(h.report(own, { fw_state: 'DOWNLOADING' }, T0 + 3001));
      const first = await s.next((ev) => ev.event === 'devices' && (ev.data as { rows: DeviceRow[] }), 'a devices event');
      expect(first.rows.map((r) => r.name)).to.deep.equal(['other-device']);
    });
  });

  describe('GET /metrics', () => {
    const scrape = async (h = harness(), headers: Record<string, string> = {}) => {
      const res = await fetch(`${h.baseUrl}/metrics`, { headers });
      return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
    };
    const sample = (samples: ReturnType<typeof parseExposition>, name: string, labels: Record<string, string>): number | undefined =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    const HTTP_FW = { transport: 'HTTP', type: 'FIRMWARE' };
    /**
     * Scrapes until the HTTP firmware downloads counted reach `responses`: the device API reports a
     * download once its response has finished, which the client may see a moment before.
     */
    async function scrapeAfter(responses: number, h = harness()): Promise<ReturnType<typeof parseExposition>> {
      for (let i = 0; ; i++) {
        const samples = parseExposition((await scrape(h)).text);
        if ((sample(samples, 'ota_download_responses_total', HTTP_FW) ?? 0) >= responses || i === 100) return samples;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }

    it('exposes devices by state, queue depth, notifications, downloads and request errors', async () => {
      const h = harness();
      const tenant = h.tenantId;
      // A download of the whole package in one response, an unknown device, a call without login.
      const dl = await fetch(`${h.baseUrl}/api/v1/${thermo[3]!.accessToken}/firmware?title=thermo-fw&version=2.0&chunk=0&size=0`);
      expect(Buffer.from(await dl.arrayBuffer()).length).to.equal(image.length);
      await (await fetch(`${h.baseUrl}/api/v1/no-such-token/attributes`)).arrayBuffer();
      await get('/api/ota/devices', null);
      await h.pipeline.notifier.process(h.event(thermo[3]!, 'FIRMWARE', fw.id));

      const r = await scrape();
      expect(r.status).to.equal(200);
      expect(r.type).to.match(/^text\/plain; version=0\.0\.4/);
      expect(r.text).to.include('# TYPE ota_download_bytes_total counter');
      expect(r.text).to.include('# TYPE ota_devices gauge');
      const samples = await scrapeAfter(1);
      expect(sample(samples, 'ota_devices', { tenant, type: 'FIRMWARE', state: 'FAILED' })).to.equal(2);
      expect(sample(samples, 'ota_devices', { tenant, type: 'FIRMWARE', state: 'UPDATED' })).to.equal(1);
      expect(sample(samples, 'ota_devices', { tenant, type: 'FIRMWARE', state: 'INITIATED' })).to.equal(1);
      expect(sample(samples, 'ota_devices', { tenant, type: 'SOFTWARE', state: 'UPDATED' }), 'an untargeted device is not counted').to.equal(0);
      expect(sample(samples, 'ota_queue_depth', { tenant })).to.equal(5);
      expect(sample(samples, 'ota_notifications_sent_total', { tenant })).to.equal(1);
      expect(sample(samples, 'ota_notifications_dropped_total', { tenant })).to.equal(0);
      expect(sample(samples, 'ota_download_bytes_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(image.length);
      expect(sample(samples, 'ota_downloads_started_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(1);
      expect(sample(samples, 'ota_downloads_completed_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(1);
      expect(sample(samples, 'ota_download_bytes_total', { transport: 'MQTT', type: 'FIRMWARE' })).to.equal(0);
      expect(sample(samples, 'ota_http_request_errors_total', { family: 'device', code: '401' })).to.equal(1);
      expect(sample(samples, 'ota_http_request_errors_total', { family: 'ota', code: '401' })).to.equal(1);
    });

    it('counts downloads chunk by chunk: started at the first byte, completed at the last', async () => {
      const h = harness();
      for (let chunk = 0; chunk < 3; chunk++) {
        await (await fetch(`${h.baseUrl}/api/v1/${thermo[2]!.accessToken}/firmware?title=thermo-fw&version=2.0&chunk=${chunk}&size=2000`)).arrayBuffer();
      }
      const samples = await scrapeAfter(3);
      expect(sample(samples, 'ota_download_responses_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(3);
      expect(sample(samples, 'ota_download_bytes_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(image.length);
      expect(sample(samples, 'ota_downloads_started_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(1);
      expect(sample(samples, 'ota_downloads_completed_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(1);
    });

    it('keeps a registry per engine: a second engine in this process counts its own', async () => {
      await (await fetch(`${harness().baseUrl}/api/v1/${thermo[3]!.accessToken}/firmware?title=thermo-fw&version=2.0&chunk=0&size=0`)).arrayBuffer();
      const second = await PipelineHarness.open({ http: true });
      try {
        const mine = await scrapeAfter(1);
        const theirs = parseExposition((await scrape(second)).text);
        expect(sample(mine, 'ota_download_bytes_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(image.length);
        expect(sample(theirs, 'ota_download_bytes_total', { transport: 'HTTP', type: 'FIRMWARE' })).to.equal(0);
        expect(sample(theirs, 'ota_devices', { tenant: second.tenantId, type: 'FIRMWARE', state: 'FAILED' })).to.equal(0);
      } finally {
        await second.close();
      }
    });

    it('answers local scrapers only when no token is set, not a proxy forwarding others', async () => {
      const r = await scrape(harness(), { 'X-Forwarded-For': '203.0.113.9' });
      expect(r.status).to.equal(403);
      expect(r.text).to.match(/OTA_METRICS_TOKEN/);
    });

    it('wants the OTA_METRICS_TOKEN as a bearer token once one is set', async () => {
      process.env.OTA_METRICS_TOKEN = 'scrape-s3cret';
      const guarded = await PipelineHarness.open({ http: true });
      delete process.env.OTA_METRICS_TOKEN;
      try {
        const none = await scrape(guarded);
        expect(none.status).to.equal(401);
        expect((await scrape(guarded, { Authorization: 'Bearer wrong' })).status).to.equal(401);
        const ok = await scrape(guarded, { Authorization: 'Bearer scrape-s3cret', 'X-Forwarded-For': '203.0.113.9' });
        expect(ok.status).to.equal(200);
        expect(ok.text).to.include('ota_queue_depth');
      } finally {
        await guarded.close();
      }
    });
  });

  describe('the page', () => {
    it('serves the dashboard under /dashboard/ with a policy that loads nothing from elsewhere', async () => {
      const base = harness().baseUrl;
      const bare = await fetch(`${base}/dashboard`, { redirect: 'manual' });
      expect(bare.status).to.equal(301);
      expect(bare.headers.get('location')).to.equal('/dashboard/');
      const page = await fetch(`${base}/dashboard/`);
      expect(page.status).to.equal(200);
      expect(page.headers.get('content-type')).to.match(/^text\/html/);
      expect(page.headers.get('content-security-policy')).to.include("default-src 'self'");
      const html = await page.text();
      expect(html).to.include('<title>');
      // Every script and stylesheet is ours, relative to the page.
      for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) expect(m[1]).to.not.match(/^(https?:)?\/\//);
      const script = await fetch(`${base}/dashboard/js/app.js`);
      expect(script.status).to.equal(200);
      expect(script.headers.get('content-type')).to.match(/javascript/);
      expect((await fetch(`${base}/dashboard/nothing-here.js`)).status).to.equal(404);
    });
  });
});
