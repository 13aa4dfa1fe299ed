import { expect } from 'chai';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { OtaPackage } from '../../server/store/ota-packages';
import type { UplinkEvent } from '../../server/pipeline/uplink';
import { T0, useHarness } from './pipeline-support';
import { eventually } from '../support/eventually';

interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
  text: string;
}

/** ThingsBoard's HTTP device API (reference §4), over a real socket on 127.0.0.1. */
describe('HTTP device API', () => {
  const harness = useHarness({ http: true });
  const image = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
  let profile: DeviceProfile;
  let pkg: OtaPackage;
  let device: Device;
  let uplinks: UplinkEvent[];

  beforeEach(async () => {
    const h = harness();
    profile = await h.profile();
    pkg = await h.binaryPackage(profile, { title: 'thermo', version: '2.0.0', bytes: image, fileName: 'thermo-2.0.0.bin', contentType: 'application/x-firmware' });
    device = await h.device(profile, { firmwareId: pkg.id });
    uplinks = [];
    h.engine.events.on('uplink', (ev) => uplinks.push(ev));
  });

  async function call(path: string, init: RequestInit = {}, token = device.accessToken): Promise<Reply> {
    const res = await fetch(`${harness().baseUrl}/api/v1/${token}${path}`, init);
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headers: res.headers, body, text: body.toString('utf8') };
  }
  const post = (path: string, body: string, token?: string): Promise<Reply> => call(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body }, token);
  const json = (r: Reply): unknown => JSON.parse(r.text);
  const firmware = (query: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> => call(`/firmware?${query}`, { headers, method });
  const titled = 'title=thermo&version=2.0.0';

  describe('POST telemetry', () => {
    it('takes a flat object: 200 with an empty body, stored at the time received', async () => {
      const h = harness();
      const before = Date.now();
      const r = await post('/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING', temperature: 21.5 }));
      expect(r.status).to.equal(200);
      expect(r.body.length).to.equal(0);
      const latest = await h.pipeline.telemetry.latest(device.id);
      expect(latest.fw_state?.value).to.equal('DOWNLOADING');
      expect(latest.temperature?.value).to.equal(21.5);
      expect(latest.fw_state?.ts).to.be.within(before, Date.now());
    });

    it('takes {ts, values} with the device timestamp', async () => {
      const h = harness();
      // Later than the QUEUED the assignment wrote on the fake clock, earlier than the real one.
      const ts = T0 + 60_000;
      expect((await post('/telemetry', JSON.stringify({ ts, values: { fw_state: 'UPDATED' } }))).status).to.equal(200);
      expect((await h.pipeline.telemetry.latest(device.id)).fw_state).to.deep.equal({ ts, value: 'UPDATED' });
    });

    it('takes an array of either', async () => {
      const h = harness();
      const body = [{ ts: T0 + 1000, values: { fw_state: 'DOWNLOADING' } }, { ts: T0 + 1500, values: { fw_state: 'DOWNLOADED' } }, { current_fw_version: '2.0.0' }];
      expect((await post('/telemetry', JSON.stringify(body))).status).to.equal(200);
      const history = await h.pipeline.telemetry.history(device.id, ['fw_state', 'current_fw_version'], { startTs: 0, endTs: Date.now() + 1000, limit: 10, order: 'ASC' });
      expect(history.fw_state?.map((p) => p.value)).to.deep.equal(['QUEUED', 'DOWNLOADING', 'DOWNLOADED']);
      expect(history.current_fw_version?.map((p) => p.value)).to.deep.equal(['2.0.0']);
    });

    it('answers 400 to anything that is not an object, {ts, values} or an array of them', async () => {
      const before = await harness().pipeline.telemetry.latest(device.id);
      for (const body of ['42', '"DOWNLOADING"', '[1, 2]', '{"ts": "yesterday", "values": {}}', '{"ts": 1, "values": [1]}', '{not json']) {
        const r = await post('/telemetry', body);
        expect(r.status, body).to.equal(400);
        expect(r.body.length, body).to.equal(0);
      }
      expect(await harness().pipeline.telemetry.latest(device.id), 'nothing stored').to.deep.equal(before);
      expect(uplinks).to.deep.equal([]);
    });

    it('emits a telemetry uplink', async () => {
      await post('/telemetry', JSON.stringify({ ts: 5, values: { fw_state: 'FAILED', fw_error: 'boom' } }));
      expect(uplinks).to.have.length(1);
      expect(uplinks[0]).to.deep.include({
        tenantId: device.tenantId,
        deviceId: device.id,
        deviceName: device.name,
        transport: 'HTTP',
        kind: 'telemetry',
        entries: [{ ts: 5, values: { fw_state: 'FAILED', fw_error: 'boom' } }],
      });
    });
  });

  describe('POST attributes', () => {
    it('stores client attributes and emits an attributes uplink', async () => {
      const h = harness();
      const r = await post('/attributes', JSON.stringify({ model: 'T-1000', serial: 42 }));
      expect(r.status).to.equal(200);
      expect(r.body.length).to.equal(0);
      expect(await h.pipeline.attributes.get(device.id, 'CLIENT')).to.deep.equal({ model: 'T-1000', serial: 42 });
      expect(await h.pipeline.attributes.get(device.id, 'SHARED')).to.deep.equal({});
      expect(uplinks.map((u) => u.kind === 'attributes' && u.attributes)).to.deep.equal([{ model: 'T-1000', serial: 42 }]);
    });

    it('answers 400 to a body that is not an object', async () => {
      expect((await post('/attributes', '[1]')).status).to.equal(400);
      expect((await post('/attributes', '7')).status).to.equal(400);
      expect(uplinks).to.deep.equal([]);
    });
  });

  describe('GET attributes', () => {
    beforeEach(async () => {
      const h = harness();
      await h.pipeline.attributes.save(device.id, 'CLIENT', { model: 'T-1000', serial: 42 }, 1);
      await h.pipeline.attributes.save(device.id, 'SHARED', { fw_title: 'thermo', fw_version: '2.0.0', fw_size: 3000 }, 1);
    });

    it('answers all client and shared attributes when no keys are named', async () => {
      const r = await call('/attributes');
      expect(r.status).to.equal(200);
      expect(json(r)).to.deep.equal({ client: { model: 'T-1000', serial: 42 }, shared: { fw_title: 'thermo', fw_version: '2.0.0', fw_size: 3000 } });
    });

    it('takes comma-separated keys', async () => {
      expect(json(await call('/attributes?clientKeys=model&sharedKeys=fw_title,fw_size'))).to.deep.equal({
        client: { model: 'T-1000' },
        shared: { fw_title: 'thermo', fw_size: 3000 },
      });
    });

    it('takes repeated keys, as the Python SDK sends them', async () => {
      expect(json(await call('/attributes?sharedKeys=fw_title&sharedKeys=fw_version'))).to.deep.equal({ shared: { fw_title: 'thermo', fw_version: '2.0.0' } });
      expect(json(await call('/attributes?clientKeys=model&clientKeys=serial,nope'))).to.deep.equal({ client: { model: 'T-1000', serial: 42 } });
    });

    it('omits an empty section, and answers {} when nothing is found', async () => {
      expect(json(await call('/attributes?clientKeys=nope&sharedKeys=fw_title'))).to.deep.equal({ shared: { fw_title: 'thermo' } });
      expect(json(await call('/attributes?sharedKeys=fw_tag,fw_url'))).to.deep.equal({});
      const h = harness();
      const bare = await h.device(profile);
      const r = await call('/attributes', {}, bare.accessToken);
      expect(r.status).to.equal(200);
      expect(json(r)).to.deep.equal({});
    });

    it('treats empty key lists as absent: everything', async () => {
      const all = { client: { model: 'T-1000', serial: 42 }, shared: { fw_title: 'thermo', fw_version: '2.0.0', fw_size: 3000 } };
      expect(json(await call('/attributes?clientKeys=&sharedKeys='))).to.deep.equal(all);
      expect(json(await call('/attributes?sharedKeys='))).to.deep.equal(all);
    });
  });

  describe('GET attributes/updates (long poll)', () => {
    it('answers the update delivered while waiting: flat keys plus deleted', async () => {
      const h = harness();
      const poll = call('/attributes/updates?timeout=10000');
      await eventually(() => h.pipeline.httpSessions.waiting === 1, 'the poll to wait');
      expect(h.pipeline.httpSessions.deliver({ deviceId: device.id, attributes: { fw_title: 'thermo', fw_size: 3000 }, deleted: ['fw_url'] })).to.equal(1);
      const r = await poll;
      expect(r.status).to.equal(200);
      expect(json(r)).to.deep.equal({ fw_title: 'thermo', fw_size: 3000, deleted: ['fw_url'] });
      expect(h.pipeline.httpSessions.waiting).to.equal(0);
    });

    it('leaves out deleted when nothing was deleted, and wakes every poll of the device', async () => {
      const h = harness();
      const polls = [call('/attributes/updates?timeout=10000'), call('/attributes/updates?timeout=10000')];
      await eventually(() => h.pipeline.httpSessions.waiting === 2, 'both polls to wait');
      expect(h.pipeline.httpSessions.deliver({ deviceId: device.id, attributes: { fw_version: '2.0.0' }, deleted: [] })).to.equal(2);
      for (const r of await Promise.all(polls)) expect(json(r)).to.deep.equal({ fw_version: '2.0.0' });
    });

    it('does not wake the polls of another device', async () => {
      const h = harness();
      const other = await h.device(profile);
      const poll = call('/attributes/updates?timeout=200');
      await eventually(() => h.pipeline.httpSessions.waiting === 1, 'the poll to wait');
      expect(h.pipeline.httpSessions.deliver({ deviceId: other.id, attributes: { fw_title: 'x' }, deleted: [] })).to.equal(0);
      expect((await poll).status).to.equal(408);
    });

    it('answers 408 with an empty body on timeout', async () => {
      const started = Date.now();
      const r = await call('/attributes/updates?timeout=200');
      expect(r.status).to.equal(408);
      expect(r.body.length).to.equal(0);
      expect(Date.now() - started).to.be.at.least(150);
      expect(harness().pipeline.httpSessions.waiting).to.equal(0);
    });

    it('stops waiting when the device hangs up', async () => {
      const h = harness();
      const abort = new AbortController();
      const poll = fetch(`${h.baseUrl}/api/v1/${device.accessToken}/attributes/updates?timeout=10000`, { signal: abort.signal }).catch((err: Error) => err);
      await eventually(() => h.pipeline.httpSessions.waiting === 1, 'the poll to wait');
      abort.abort();
      expect(await poll).to.be.instanceOf(Error);
      await eventually(() => h.pipeline.httpSessions.waiting === 0, 'the wait to be cancelled');
    });

    it("answers 403 'Device was deleted!' when the device is deleted while waiting", async () => {
      const h = harness();
      const poll = call('/attributes/updates?timeout=10000');
      await eventually(() => h.pipeline.httpSessions.waiting === 1, 'the poll to wait');
      await h.engine.devices.delete(h.tenantId, device.id);
      const r = await poll;
      expect(r.status).to.equal(403);
      expect(r.text).to.equal('Device was deleted!');
      expect(h.pipeline.httpSessions.waiting).to.equal(0);
    });

    it('answers 401 to a poll made with a token the device no longer has (issue 10, item 1)', async () => {
      const h = harness();
      const poll = call('/attributes/updates?timeout=10000');
      await eventually(() => h.pipeline.httpSessions.waiting === 1, 'the poll to wait');
      await h.engine.devices.updateCredentials(h.tenantId, device.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'a-brand-new-token' });
      const r = await poll;
      expect(r.status).to.equal(401);
      expect(h.pipeline.httpSessions.waiting).to.equal(0);
    });
  });

  describe('GET firmware / software', () => {
    it('answers the whole file with its name, type and length', async () => {
      const r = await firmware(titled);
      expect(r.status).to.equal(200);
      expect(r.body.equals(image)).to.equal(true);
      expect(r.headers.get('content-disposition')).to.equal('attachment;filename=thermo-2.0.0.bin');
      expect(r.headers.get('x-filename')).to.equal('thermo-2.0.0.bin');
      expect(r.headers.get('content-type')).to.equal('application/x-firmware');
      expect(r.headers.get('content-length')).to.equal('3000');
    });

    it('requires title and version (400)', async () => {
      for (const q of ['', 'title=thermo', 'version=2.0.0']) {
        const r = await firmware(q);
        expect(r.status, q).to.equal(400);
        expect(r.body.length, q).to.equal(0);
      }
    });

    it('answers 400 when title or version is not the assigned package (case-sensitive)', async () => {
      for (const q of ['title=thermo&version=1.0.0', 'title=Thermo&version=2.0.0', 'title=other&version=2.0.0']) {
        const r = await firmware(q);
        expect(r.status, q).to.equal(400);
        expect(r.body.length, q).to.equal(0);
      }
    });

    it('answers 404 when nothing is assigned', async () => {
      const bare = await harness().device(profile);
      const r = await call(`/firmware?${titled}`, {}, bare.accessToken);
      expect(r.status).to.equal(404);
      expect(r.body.length).to.equal(0);
      expect((await call(`/software?${titled}`)).status, 'no software assigned').to.equal(404);
    });

    it('answers 404 for a URL-only package', async () => {
      const h = harness();
      const url = await h.urlPackage(profile, { title: 'cdn', version: '1' });
      await h.setDevicePackage(device, 'FIRMWARE', url.id);
      const r = await firmware('title=cdn&version=1');
      expect(r.status).to.equal(404);
      expect(r.body.length).to.equal(0);
    });

    it('serves the profile package to a device without its own', async () => {
      const h = harness();
      await h.setProfilePackage(profile, 'FIRMWARE', pkg.id);
      const inheriting = await h.device(profile);
      const r = await call(`/firmware?${titled}`, {}, inheriting.accessToken);
      expect(r.status).to.equal(200);
      expect(r.body.equals(image)).to.equal(true);
    });

    it('cuts chunk `chunk` of `size` bytes', async () => {
      const parts: Buffer[] = [];
      for (const chunk of [0, 1, 2]) {
        const r = await firmware(`${titled}&size=1024&chunk=${chunk}`);
        expect(r.status).to.equal(200);
        expect(r.headers.get('content-length')).to.equal(String(chunk < 2 ? 1024 : 952));
        parts.push(r.body);
      }
      expect(Buffer.concat(parts).equals(image)).to.equal(true);
      expect((await firmware(`${titled}&size=1000&chunk=1`)).body.equals(image.subarray(1000, 2000))).to.equal(true);
    });

    it('answers the whole file for size 0, whatever the chunk', async () => {
      for (const chunk of [0, 1, 7]) expect((await firmware(`${titled}&size=0&chunk=${chunk}`)).body.equals(image), `chunk ${chunk}`).to.equal(true);
    });

    it('answers a chunk past the end with 200 and Content-Length 0', async () => {
      for (const q of ['size=1024&chunk=3', 'size=1000&chunk=3', 'size=1&chunk=3000']) {
        const r = await firmware(`${titled}&${q}`);
        expect(r.status, q).to.equal(200);
        expect(r.headers.get('content-length'), q).to.equal('0');
        expect(r.body.length, q).to.equal(0);
      }
    });

    it('answers 400 to a negative or non-numeric size or chunk', async () => {
      for (const q of ['size=-1', 'chunk=-1', 'size=abc', 'chunk=1.5']) expect((await firmware(`${titled}&${q}`)).status, q).to.equal(400);
    });

    it('answers 400 to a size or chunk that is not plain decimal digits (issue 10, item 9)', async () => {
      for (const q of ['chunk=0x1', 'chunk=%20', 'size=1e3', 'size=%2B5', 'chunk=1&chunk=2', 'size=0b1', 'chunk=99999999999999999999']) {
        expect((await firmware(`${titled}&size=1024&${q}`)).status, q).to.equal(400);
      }
      // Absent or empty is ThingsBoard's default (`defaultValue = "0"`): the first chunk.
      expect((await firmware(`${titled}&size=1024&chunk=`)).body.equals(image.subarray(0, 1024))).to.equal(true);
    });

    it('answers alike whether the request is plain (answered before Express) or not (routed by Express)', async () => {
      const headers = (r: Reply) => ['content-length', 'content-type', 'etag', 'x-filename', 'content-disposition', 'accept-ranges'].map((k) => r.headers.get(k));
      const plain = await firmware(`${titled}&size=1000&chunk=1`);
      expect(plain.status).to.equal(200);
      expect(plain.body.equals(image.subarray(1000, 2000))).to.equal(true);
      // A bracketed key, another letter case or a trailing slash is Express's to route: the same answer.
      for (const r of [
        await firmware(`${titled}&size=1000&chunk=1&extra[]=1`),
        await call(`/FIRMWARE?${titled}&size=1000&chunk=1`),
        await call(`/firmware/?${titled}&size=1000&chunk=1`),
      ]) {
        expect(r.status).to.equal(200);
        expect(r.body.equals(plain.body)).to.equal(true);
        expect(headers(r)).to.deep.equal(headers(plain));
      }
      // Escapes and `+` are read as Express reads them; an escape that does not decode is kept as text.
      expect((await firmware('title=%74hermo&version=2.0.0&size=1000&chunk=1')).body.equals(plain.body)).to.equal(true);
      expect((await firmware('title=thermo&version=2.0.0+&size=1000&chunk=1')).status, 'version "2.0.0 "').to.equal(400);
      expect((await firmware('title=%zz&version=2.0.0')).status).to.equal(400);
      expect((await firmware(`${titled}&title=thermo`)).status, 'a repeated title').to.equal(400);
      // HEAD, Range and a body-less 401 on the plain path.
      const head = await firmware(`${titled}&size=1000&chunk=1`, {}, 'HEAD');
      expect(head.status).to.equal(200);
      expect(head.body.length).to.equal(0);
      expect(headers(head)).to.deep.equal(headers(plain));
      const ranged = await firmware(`${titled}&size=1000&chunk=1`, { Range: 'bytes=10-19' });
      expect(ranged.status).to.equal(206);
      expect(ranged.body.equals(image.subarray(1010, 1020))).to.equal(true);
      const unknown = await call(`/firmware?${titled}`, {}, 'no-such-token');
      expect(unknown.status).to.equal(401);
      expect(unknown.body.length).to.equal(0);
    });

    it('serves software on /software, by its own title and version', async () => {
      const h = harness();
      const appBytes = Buffer.from('software bytes '.repeat(20));
      const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'agent', version: '7', bytes: appBytes, fileName: 'agent.tar' });
      await h.setDevicePackage(device, 'SOFTWARE', sw.id);
      const r = await call('/software?title=agent&version=7&size=100&chunk=1');
      expect(r.status).to.equal(200);
      expect(r.body.equals(appBytes.subarray(100, 200))).to.equal(true);
      expect(r.headers.get('x-filename')).to.equal('agent.tar');
      expect((await call(`/software?${titled}`)).status, 'the firmware title is not the software').to.equal(400);
    });

    describe('ranges, ETag and HEAD', () => {
      it('answers a Range with 206 and Content-Range', async () => {
        const r = await firmware(titled, { Range: 'bytes=0-99' });
        expect(r.status).to.equal(206);
        expect(r.headers.get('content-range')).to.equal('bytes 0-99/3000');
        expect(r.headers.get('content-length')).to.equal('100');
        expect(r.body.equals(image.subarray(0, 100))).to.equal(true);
        const open = await firmware(titled, { Range: 'bytes=2900-' });
        expect(open.headers.get('content-range')).to.equal('bytes 2900-2999/3000');
        expect(open.body.equals(image.subarray(2900))).to.equal(true);
      });

      it('answers suffix ranges with the last bytes', async () => {
        const r = await firmware(titled, { Range: 'bytes=-100' });
        expect(r.status).to.equal(206);
        expect(r.headers.get('content-range')).to.equal('bytes 2900-2999/3000');
        expect(r.body.equals(image.subarray(2900))).to.equal(true);
        const longer = await firmware(titled, { Range: 'bytes=-5000' });
        expect(longer.headers.get('content-range')).to.equal('bytes 0-2999/3000');
        expect(longer.body.equals(image)).to.equal(true);
      });

      it('applies a Range inside a chunk', async () => {
        const r = await firmware(`${titled}&size=1024&chunk=1`, { Range: 'bytes=10-19' });
        expect(r.status).to.equal(206);
        expect(r.headers.get('content-range')).to.equal('bytes 10-19/1024');
        expect(r.body.equals(image.subarray(1034, 1044))).to.equal(true);
      });

      it('answers an unsatisfiable Range with 416 and bytes */length', async () => {
        for (const range of ['bytes=3000-', 'bytes=5000-6000', 'bytes=-0', 'bytes=20-10']) {
          const r = await firmware(titled, { Range: range });
          expect(r.status, range).to.equal(416);
          expect(r.headers.get('content-range'), range).to.equal('bytes */3000');
        }
      });

      it('serves the whole file for several ranges, another unit or a malformed Range (RFC 9110 §14.2)', async () => {
        for (const range of ['bytes=0-9,20-29', 'items=0-9', 'bytes=abc', 'bytes=1-2-3']) {
          const r = await firmware(titled, { Range: range });
          expect(r.status, range).to.equal(200);
          expect(r.body.equals(image), range).to.equal(true);
        }
        const merged = await firmware(titled, { Range: 'bytes=0-9,5-19' });
        expect(merged.status, 'overlapping ranges are one').to.equal(206);
        expect(merged.headers.get('content-range')).to.equal('bytes 0-19/3000');
      });

      it('gives an ETag from the checksum and answers If-None-Match with 304', async () => {
        const r = await firmware(titled);
        const etag = r.headers.get('etag') as string;
        expect(etag).to.equal(`"${pkg.checksum}"`);
        const cached = await firmware(titled, { 'If-None-Match': etag });
        expect(cached.status).to.equal(304);
        expect(cached.body.length).to.equal(0);
        expect((await firmware(titled, { 'If-None-Match': '*' })).status).to.equal(304);
        expect((await firmware(titled, { 'If-None-Match': '"something-else"' })).status).to.equal(200);
        const chunk = await firmware(`${titled}&size=1024&chunk=1`);
        expect(chunk.headers.get('etag')).to.not.equal(etag);
        expect((await firmware(`${titled}&size=1024&chunk=1`, { 'If-None-Match': etag })).status, 'a chunk is not the whole file').to.equal(200);
      });

      it('answers HEAD with the headers and no body', async () => {
        const r = await firmware(titled, {}, 'HEAD');
        expect(r.status).to.equal(200);
        expect(r.headers.get('content-length')).to.equal('3000');
        expect(r.headers.get('x-filename')).to.equal('thermo-2.0.0.bin');
        expect(r.body.length).to.equal(0);
        expect(uplinks, 'HEAD downloads nothing').to.deep.equal([]);
        expect((await firmware('title=nope&version=2.0.0', {}, 'HEAD')).status).to.equal(400);
      });
    });

    it('emits a download uplink with the bytes sent and where they started', async () => {
      await firmware(`${titled}&size=1024&chunk=2`);
      await eventually(() => uplinks.length === 1, 'the download uplink');
      expect(uplinks[0]).to.deep.include({ deviceId: device.id, transport: 'HTTP', kind: 'download', type: 'FIRMWARE', packageId: pkg.id, bytes: 952, offset: 2048, size: 3000 });
      await firmware(titled, { Range: 'bytes=-100' });
      await eventually(() => uplinks.length === 2, 'the range uplink');
      expect(uplinks[1]).to.deep.include({ bytes: 100, offset: 2900 });
      await firmware(`${titled}&size=1024&chunk=9`);
      await firmware(titled, { 'If-None-Match': '*' });
      expect(uplinks, 'nothing sent, nothing downloaded').to.have.length(2);
    });
  });

  describe('unknown token', () => {
    it('answers 401 with an empty body on every endpoint', async () => {
      const token = 'no-such-token';
      const replies: Array<[string, Reply]> = [
        ['POST telemetry', await post('/telemetry', '{"a":1}', token)],
        ['POST telemetry, bad body', await post('/telemetry', '{not json', token)],
        ['POST attributes', await post('/attributes', '{"a":1}', token)],
        ['GET attributes', await call('/attributes', {}, token)],
        ['GET attributes?keys', await call('/attributes?sharedKeys=fw_title', {}, token)],
        ['GET updates', await call('/attributes/updates?timeout=100', {}, token)],
        ['GET firmware', await call(`/firmware?${titled}`, {}, token)],
        ['HEAD firmware', await call(`/firmware?${titled}`, { method: 'HEAD' }, token)],
        ['GET software', await call(`/software?${titled}`, {}, token)],
      ];
      for (const [what, r] of replies) {
        expect(r.status, what).to.equal(401);
        expect(r.body.length, what).to.equal(0);
      }
      expect(uplinks).to.deep.equal([]);
    });
  });
});
