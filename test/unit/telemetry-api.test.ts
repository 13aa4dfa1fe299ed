import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import { ADMIN_PASSWORD, ADMIN_USER, T0, settle, useHarness } from './pipeline-support';

interface Reply {
  status: number;
  body: unknown;
}

/** ThingsBoard's telemetry read API for a device, and our fleet metrics, over a real socket. */
describe('telemetry API and fleet metrics', () => {
  const harness = useHarness({ http: true });
  let token: string;
  let profile: DeviceProfile;
  let device: Device;

  beforeEach(async () => {
    const h = harness();
    token = (await h.engine.accounts.login(ADMIN_USER, ADMIN_PASSWORD)).token;
    profile = await h.profile();
    device = await h.device(profile);
  });

  async function get(path: string, bearer: string | null = token): Promise<Reply> {
    const res = await fetch(`${harness().baseUrl}/api${path}`, { headers: bearer ? { 'X-Authorization': `Bearer ${bearer}` } : {} });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
  }
  const timeseries = (query: string, id: string = device.id): Promise<Reply> => get(`/plugins/telemetry/DEVICE/${id}/values/timeseries${query}`);

  describe('latest values', () => {
    beforeEach(async () => {
      await harness().pipeline.telemetry.save(device.id, [{ ts: T0 + 10, values: { fw_state: 'UPDATED', temperature: 21.5, ok: true, info: { a: 1 }, nothing: null } }]);
    });

    it('answers strings by default, as ThingsBoard does', async () => {
      const r = await timeseries('?keys=fw_state,temperature,ok,info');
      expect(r.status).to.equal(200);
      expect(r.body).to.deep.equal({
        fw_state: [{ ts: T0 + 10, value: 'UPDATED' }],
        temperature: [{ ts: T0 + 10, value: '21.5' }],
        ok: [{ ts: T0 + 10, value: 'true' }],
        info: [{ ts: T0 + 10, value: '{"a":1}' }],
      });
    });

    it('answers typed values with useStrictDataTypes=true', async () => {
      const r = await timeseries('?keys=fw_state,temperature,ok,info,nothing&useStrictDataTypes=true');
      expect(r.body).to.deep.equal({
        fw_state: [{ ts: T0 + 10, value: 'UPDATED' }],
        temperature: [{ ts: T0 + 10, value: 21.5 }],
        ok: [{ ts: T0 + 10, value: true }],
        info: [{ ts: T0 + 10, value: { a: 1 } }],
        nothing: [{ ts: T0 + 10, value: null }],
      });
    });

    it('reads repeated keys parameters as one list (issue 10, item 9)', async () => {
      const r = await timeseries('?keys=fw_state&keys=ok');
      expect(r.body).to.deep.equal({ fw_state: [{ ts: T0 + 10, value: 'UPDATED' }], ok: [{ ts: T0 + 10, value: 'true' }] });
      expect((await timeseries('?keys[a]=fw_state')).status).to.equal(400);
    });

    it('answers every key without keys, and leaves out keys it does not have', async () => {
      expect(Object.keys((await timeseries('')).body as object)).to.have.members(['fw_state', 'temperature', 'ok', 'info', 'nothing']);
      expect((await timeseries('?keys=fw_state,sw_state')).body).to.deep.equal({ fw_state: [{ ts: T0 + 10, value: 'UPDATED' }] });
    });
  });

  describe('history', () => {
    beforeEach(async () => {
      const states = ['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'UPDATED'];
      await harness().pipeline.telemetry.save(
        device.id,
        states.map((s, i) => ({ ts: T0 + i + 1, values: { fw_state: s, temperature: i } })),
      );
    });

    const states = (r: Reply): unknown[] => ((r.body as Record<string, Array<{ value: unknown }>>).fw_state ?? []).map((p) => p.value);

    it('answers the points between startTs and endTs, newest first by default', async () => {
      const r = await timeseries(`?keys=fw_state&startTs=${T0 + 2}&endTs=${T0 + 4}`);
      expect(r.status).to.equal(200);
      expect(r.body).to.deep.equal({
        fw_state: [
          { ts: T0 + 4, value: 'DOWNLOADED' },
          { ts: T0 + 3, value: 'DOWNLOADING' },
          { ts: T0 + 2, value: 'INITIATED' },
        ],
      });
    });

    it('orders with orderBy and cuts with limit', async () => {
      expect(states(await timeseries(`?keys=fw_state&startTs=0&endTs=${T0 * 2}&orderBy=ASC`))).to.deep.equal(['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'UPDATED']);
      expect(states(await timeseries(`?keys=fw_state&startTs=0&endTs=${T0 * 2}&limit=2`))).to.deep.equal(['UPDATED', 'DOWNLOADED']);
      expect(states(await timeseries(`?keys=fw_state&startTs=0&endTs=${T0 * 2}&limit=2&orderBy=ASC`))).to.deep.equal(['QUEUED', 'INITIATED']);
    });

    it('keeps history for the OTA keys only', async () => {
      expect((await timeseries(`?keys=fw_state,temperature&startTs=0&endTs=${T0 * 2}`)).body).to.have.all.keys('fw_state');
    });

    it('answers 400 without keys or with a bad range', async () => {
      expect((await timeseries(`?startTs=0&endTs=${T0 * 2}`)).status).to.equal(400);
      const bad = await timeseries('?keys=fw_state&startTs=yesterday&endTs=now');
      expect(bad.status).to.equal(400);
      expect(bad.body).to.include({ status: 400, errorCode: 31 });
    });
  });

  describe('access', () => {
    it("answers 403 for another tenant's device and 404 for an unknown one", async () => {
      const h = harness();
      const other = await h.engine.accounts.createTenant('Other', 'other@example.com', 'x-other-password');
      const theirProfile = await h.profile('theirs', other.tenant.id);
      const theirs = await h.device(theirProfile, { tenantId: other.tenant.id });
      await h.pipeline.telemetry.save(theirs.id, [{ ts: T0, values: { fw_state: 'UPDATED' } }]);
      const forbidden = await timeseries('?keys=fw_state', theirs.id);
      expect(forbidden.status).to.equal(403);
      expect(forbidden.body).to.include({ status: 403, errorCode: 20, message: "You don't have permission to perform this operation!" });
      const unknown = await timeseries('?keys=fw_state', randomUUID());
      expect(unknown.status).to.equal(404);
      expect(unknown.body).to.include({ status: 404, errorCode: 32 });
    });

    it('answers 401 without a token', async () => {
      const r = await get(`/plugins/telemetry/DEVICE/${device.id}/values/timeseries?keys=fw_state`, null);
      expect(r.status).to.equal(401);
      expect((await get('/ota/metrics', null)).status).to.equal(401);
    });
  });

  describe('GET /api/ota/metrics', () => {
    it('answers per package and per profile counts, the queue and the notifications of the tenant', async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile, { title: 'fleet-fw', version: '3' });
      const a = await h.device(profile, { firmwareId: pkg.id });
      await h.device(profile, { firmwareId: pkg.id });
      await settle();
      await h.pipeline.notifier.process(h.event(a, 'FIRMWARE', pkg.id));
      await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', pkg.id));

      const r = await get('/ota/metrics');
      expect(r.status).to.equal(200);
      expect(r.body).to.deep.equal({
        ts: h.timers.now(),
        packages: [
          { packageId: pkg.id, title: 'fleet-fw', version: '3', type: 'FIRMWARE', targeted: 2, pending: 2, inProgress: 0, updated: 0, failed: 0, onTarget: 0, coverage: 0 },
        ],
        profiles: [{ deviceProfileId: profile.id, name: profile.name, type: 'FIRMWARE', targeted: 2, pending: 2, inProgress: 0, updated: 0, failed: 0, onTarget: 0, coverage: 0 }],
        queue: { depth: 2, paused: false },
        notifications: { sent: 1, dropped: 1 },
      });
    });

    it("shows another tenant's admin none of it", async () => {
      const h = harness();
      const pkg = await h.binaryPackage(profile);
      await h.device(profile, { firmwareId: pkg.id });
      await settle();
      h.pipeline.queue.pause();
      await h.engine.accounts.createTenant('Other', 'other@example.com', 'x-other-password');
      const theirToken = (await h.engine.accounts.login('other@example.com', 'x-other-password')).token;
      expect((await get('/ota/metrics', theirToken)).body).to.deep.equal({
        ts: h.timers.now(),
        packages: [],
        profiles: [],
        queue: { depth: 0, paused: true },
        notifications: { sent: 0, dropped: 0 },
      });
      expect(((await get('/ota/metrics')).body as { queue: unknown }).queue).to.deep.equal({ depth: 1, paused: true });
    });
  });
});
