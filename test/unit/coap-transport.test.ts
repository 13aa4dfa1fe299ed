import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent } from 'coap';
import { CoapTransport, type CoapOptions } from '../../server/transports/coap/coap-transport';
import { encodeBlock, parseBlock } from '../../server/transports/coap/block-wise';
import type { DeviceContext } from '../../server/transports/device-context';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import type { Notification } from '../../server/pipeline/notifier';
import type { Timers } from '../../server/timers';
import type { OtaPackage } from '../../server/store/ota-packages';
import type { UplinkEvent } from '../../server/pipeline/uplink';
import { coapObserve, coapRequest, libcoap, optionOf, RawPeer, uintOf, uriOptions, type CoapResponse } from '../support/coap-clients';
import { useHarness } from './pipeline-support';
import { eventually } from '../support/eventually';

/** A package of `size` bytes that differ from block to block, so a block out of place shows. */
function image(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** ThingsBoard's CoAP device API (reference §5) over real UDP sockets on 127.0.0.1. */
describe('CoAP transport', function () {
  const harness = useHarness();
  const MB = 1024 * 1024;
  const firmwareBytes = image(MB);
  let profile: DeviceProfile;
  let pkg: OtaPackage;
  let device: Device;
  let transport: CoapTransport;
  let port: number;
  let agent: Agent;
  let agentSocket: Socket;
  let uplinks: UplinkEvent[];
  let peers: RawPeer[];

  async function startTransport(options: Partial<CoapOptions> = {}, timers?: Timers, ctx: DeviceContext = harness().engine.deviceContext): Promise<void> {
    await transport?.stop();
    transport = new CoapTransport(ctx, { port: 0, host: '127.0.0.1', ...options }, timers);
    port = (await transport.start()).port;
  }

  beforeEach(async () => {
    const h = harness();
    profile = await h.profile();
    pkg = await h.binaryPackage(profile, { title: 'thermo-fw', version: '3.1', bytes: firmwareBytes });
    device = await h.device(profile, { firmwareId: pkg.id });
    uplinks = [];
    h.engine.events.on('uplink', (ev) => uplinks.push(ev));
    peers = [];
    // The agent closes a socket of its own whenever no request is left, even under a live
    // observation (its close(true) then sends the deregistration on the closed socket): give it one.
    agentSocket = createSocket('udp4');
    agent = new Agent({ socket: agentSocket });
    await startTransport();
  });

  afterEach(async () => {
    agent.close();
    await new Promise<void>((resolve) => agentSocket.close(() => resolve()));
    for (const p of peers) await p.close();
    await transport.stop();
  });

  const get = (pathname: string, query?: string, extra: Record<string, unknown> = {}): Promise<CoapResponse> =>
    coapRequest(agent, port, { method: 'GET', pathname, ...(query ? { query } : {}), ...extra });
  const post = (pathname: string, payload: string, extra: Record<string, unknown> = {}): Promise<CoapResponse> =>
    coapRequest(agent, port, { method: 'POST', pathname, payload, ...extra });
  const api = (feature: string, token = device.accessToken): string => `/api/v1/${token}/${feature}`;
  const peer = async (): Promise<RawPeer> => {
    const p = await RawPeer.open(port);
    peers.push(p);
    return p;
  };
  /** A raw peer's GET with Observe on the device's attributes [RFC 7641 §3.1]; answers the bytes sent. */
  const observeAttributes = (p: RawPeer, token: Buffer, { confirmable = true, messageId = 1 }: { confirmable?: boolean; messageId?: number } = {}): Buffer =>
    p.send({ code: 'GET', confirmable, messageId, token, options: [{ name: 'Observe', value: Buffer.alloc(0) }, ...uriOptions(api('attributes'))] });
  /** Resolves when the transport reports `n` observers. */
  const observersBecome = (n: number): Promise<void> =>
    new Promise((resolve) => {
      if (transport.observers === n) return resolve();
      const on = (count: number): void => {
        if (count !== n) return;
        transport.off('observers', on);
        resolve();
      };
      transport.on('observers', on);
    });
  const notification = (attributes: Record<string, unknown>, deleted: string[] = []): Notification => ({
    tenantId: device.tenantId,
    deviceId: device.id,
    type: 'FIRMWARE',
    packageId: pkg.id,
    attributes: attributes as Notification['attributes'],
    deleted,
    ts: Date.now(),
  });

  describe('block-wise firmware download (RFC 7959)', function () {
    it('delivers a 1 MB package block by block to the coap package, checksum intact, reading one block per request', async () => {
      const res = await get(`/fw/${device.accessToken}`, 'title=thermo-fw&version=3.1');
      expect(res.code).to.equal('2.05');
      expect(res.payload.length).to.equal(MB);
      expect(sha256(res.payload)).to.equal(pkg.checksum);
      const downloads = uplinks.filter((u) => u.kind === 'download');
      expect(downloads).to.have.length(1024);
      expect(downloads.every((d) => d.kind === 'download' && d.bytes === 1024 && d.transport === 'COAP')).to.equal(true);
      expect(downloads.map((d) => (d.kind === 'download' ? d.offset : -1))).to.deep.equal(Array.from({ length: 1024 }, (_, i) => i * 1024));
    });

    it('delivers the same package to libcoap’s coap-client, checksum intact', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ota-coap-'));
      try {
        const out = path.join(dir, 'fw.bin');
        const run = await libcoap(['-m', 'get', '-o', out, `coap://127.0.0.1:${port}/fw/${device.accessToken}?title=thermo-fw&version=3.1`]);
        expect(run.stderr).to.equal('');
        expect(run.codes).to.have.length(1024);
        expect(new Set(run.codes)).to.deep.equal(new Set(['2.05']));
        expect(run.blocks[0]).to.equal('0/M/1024');
        expect(run.blocks.at(-1)).to.equal('1023/_/1024');
        expect(sha256(await readFile(out))).to.equal(pkg.checksum);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('honours a smaller block size the client asks for (libcoap -b 256)', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ota-coap-'));
      try {
        const out = path.join(dir, 'fw.bin');
        const run = await libcoap(['-m', 'get', '-b', '256', '-o', out, `coap://127.0.0.1:${port}/fw/${device.accessToken}`]);
        expect(run.codes).to.have.length(4096);
        expect(run.blocks[1]).to.equal('1/M/256');
        expect(run.blocks.at(-1)).to.equal('4095/_/256');
        expect(sha256(await readFile(out))).to.equal(pkg.checksum);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('honours a smaller block size asked by the coap package (Block2 SZX in the first request)', async () => {
      const res = await get(`/fw/${device.accessToken}`, undefined, { options: { Block2: encodeBlock({ num: 0, more: false, size: 256 }) } });
      expect(sha256(res.payload)).to.equal(pkg.checksum);
      const downloads = uplinks.filter((u) => u.kind === 'download');
      expect(downloads).to.have.length(4096);
      expect(downloads.every((d) => d.kind === 'download' && d.bytes === 256)).to.equal(true);
    });

    it('sends its own smaller block size when configured so, at the byte offset the client asked for', async () => {
      await startTransport({ blockSize: 256 });
      const p = await peer();
      p.send({
        code: 'GET',
        confirmable: true,
        messageId: 7,
        token: Buffer.from('b2'),
        options: [...uriOptions(`/fw/${device.accessToken}`), { name: 'Block2', value: encodeBlock({ num: 1, more: false, size: 1024 }) }],
      });
      const res = await p.next();
      expect(res.code).to.equal('2.05');
      expect(res.ack).to.equal(true);
      expect(parseBlock(optionOf(res, 'Block2') as Buffer)).to.deep.equal({ num: 4, more: true, size: 256 });
      expect(uintOf(optionOf(res, 'Size2'))).to.equal(MB);
      expect(res.payload).to.deep.equal(firmwareBytes.subarray(1024, 1280));
    });

    it('sends a body of one block without Block2', async () => {
      const res = await get(`/fw/${device.accessToken}`, 'size=1000&chunk=3');
      expect(res.payload).to.deep.equal(firmwareBytes.subarray(3000, 4000));
      expect(res.headers.Block2).to.equal(undefined);
    });

    it('cuts application chunks (size, chunk) as over HTTP, then Block2 within the chunk', async () => {
      const res = await get(`/fw/${device.accessToken}`, 'size=5000&chunk=2');
      expect(res.payload).to.deep.equal(firmwareBytes.subarray(10_000, 15_000));
      expect(uplinks.filter((u) => u.kind === 'download').map((d) => (d.kind === 'download' ? [d.offset, d.bytes] : []))).to.deep.equal([
        [10_000, 1024],
        [11_024, 1024],
        [12_048, 1024],
        [13_072, 1024],
        [14_096, 904],
      ]);
    });

    it('answers a chunk past the end with an empty 2.05 (ThingsBoard sends nothing at all)', async () => {
      const res = await get(`/fw/${device.accessToken}`, 'title=thermo-fw&version=3.1&size=1024&chunk=1024');
      expect(res.code).to.equal('2.05');
      expect(res.payload.length).to.equal(0);
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}/fw/${device.accessToken}?size=4096&chunk=256`]);
      expect(run.codes).to.deep.equal(['2.05']);
      expect(
        uplinks.filter((u) => u.kind === 'download'),
        'no bytes, no progress',
      ).to.deep.equal([]);
    });

    it('answers 4.02 to a Block2 number past the end', async () => {
      const res = await get(`/fw/${device.accessToken}`, 'size=100', { options: { Block2: encodeBlock({ num: 1, more: false, size: 128 }) } });
      expect(res.code).to.equal('4.02');
    });

    it('serves /api/v1/{token}/firmware and /software as /fw and /sw (ThingsBoard answers 4.00 there)', async () => {
      const h = harness();
      const softwareBytes = image(3000, 9);
      const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'app', version: '7', bytes: softwareBytes });
      await h.setDevicePackage(device, 'SOFTWARE', sw.id);
      const fw = await get(api('firmware'), 'title=thermo-fw&version=3.1&size=2048&chunk=1');
      expect(fw.code).to.equal('2.05');
      expect(fw.payload).to.deep.equal(firmwareBytes.subarray(2048, 4096));
      const software = await get(api('software'), 'title=app&version=7');
      expect(software.payload).to.deep.equal(softwareBytes);
      expect((await get(`/sw/${device.accessToken}`)).payload).to.deep.equal(softwareBytes);
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}${api('firmware')}?size=16&chunk=0`]);
      expect(run.codes).to.deep.equal(['2.05']);
    });

    it('serves non-confirmable requests, block by block', async () => {
      const res = await get(`/fw/${device.accessToken}`, 'size=4000&chunk=1', { confirmable: false });
      expect(res.code).to.equal('2.05');
      expect(res.payload).to.deep.equal(firmwareBytes.subarray(4000, 8000));
      const p = await peer();
      p.send({ code: 'GET', confirmable: false, messageId: 9, token: Buffer.from('n1'), options: uriOptions(`/fw/${device.accessToken}`, ['size=10']) });
      const answer = await p.next();
      expect(answer.confirmable || answer.ack, 'a NON answer').to.equal(false);
      expect(answer.token.toString()).to.equal('n1');
      expect(answer.payload).to.deep.equal(firmwareBytes.subarray(0, 10));
    });
  });

  describe('firmware errors', function () {
    it('answers 4.01 to an unknown token (and to /fw without exactly one token, as ThingsBoard)', async () => {
      expect((await get('/fw/not-a-token')).code).to.equal('4.01');
      expect((await get(`/fw/${device.accessToken}/extra`)).code).to.equal('4.01');
      expect((await get(api('firmware', 'nope'))).code).to.equal('4.01');
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}/fw/nobody`]);
      expect(run.codes).to.deep.equal(['4.01']);
    });

    it('answers 4.00 when a title or version is given and differs (case-sensitive), 4.00 to a bad size', async () => {
      expect((await get(`/fw/${device.accessToken}`, 'title=Thermo-fw&version=3.1')).code).to.equal('4.00');
      expect((await get(`/fw/${device.accessToken}`, 'version=3.2')).code).to.equal('4.00');
      expect((await get(`/fw/${device.accessToken}`, 'size=-1')).code).to.equal('4.00');
      expect((await get(`/fw/${device.accessToken}`, 'chunk=one')).code).to.equal('4.00');
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}/fw/${device.accessToken}?title=other&version=3.1`]);
      expect(run.codes).to.deep.equal(['4.00']);
      expect(uplinks).to.deep.equal([]);
    });

    it('answers 4.04 when nothing is assigned, or the package is URL-only', async () => {
      const h = harness();
      expect((await get(`/sw/${device.accessToken}`)).code).to.equal('4.04');
      const url = await h.urlPackage(profile, { title: 'far', version: '1' });
      await h.setDevicePackage(device, 'FIRMWARE', url.id);
      expect((await get(`/fw/${device.accessToken}`)).code).to.equal('4.04');
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}/fw/${device.accessToken}`]);
      expect(run.codes).to.deep.equal(['4.04']);
    });

    it('answers 4.05 to a POST on /fw, whatever the token', async () => {
      expect((await post(`/fw/${device.accessToken}`, 'x')).code).to.equal('4.05');
      expect((await post('/fw/nobody', 'x')).code).to.equal('4.05');
      const run = await libcoap(['-m', 'post', '-e', 'x', `coap://127.0.0.1:${port}/sw/${device.accessToken}`]);
      expect(run.codes).to.deep.equal(['4.05']);
    });
  });

  describe('telemetry and attributes', function () {
    it('stores telemetry: 2.01, and an uplink event with transport COAP', async () => {
      const res = await post(api('telemetry'), JSON.stringify({ fw_state: 'DOWNLOADING', temperature: 21 }));
      expect(res.code).to.equal('2.01');
      const latest = await harness().pipeline.telemetry.latest(device.id, ['fw_state', 'temperature']);
      expect(latest.fw_state?.value).to.equal('DOWNLOADING');
      expect(latest.temperature?.value).to.equal(21);
      expect(uplinks).to.have.length(1);
      expect(uplinks[0]).to.deep.include({ deviceId: device.id, deviceName: device.name, transport: 'COAP', kind: 'telemetry' });
    });

    it('stores telemetry sent by libcoap and non-confirmable telemetry', async () => {
      const run = await libcoap(['-m', 'post', '-e', '{"fw_state":"DOWNLOADED"}', `coap://127.0.0.1:${port}${api('telemetry')}`]);
      expect(run.codes).to.deep.equal(['2.01']);
      expect((await post(api('telemetry'), '{"fw_state":"VERIFIED"}', { confirmable: false })).code).to.equal('2.01');
      const history = await harness().pipeline.telemetry.history(device.id, ['fw_state'], { startTs: 0, endTs: Date.now() + 1000, limit: 10, order: 'ASC' });
      expect(history.fw_state?.map((p) => p.value).slice(-2)).to.deep.equal(['DOWNLOADED', 'VERIFIED']);
    });

    it('answers bad JSON and wrong shapes with 4.00 and stores nothing', async () => {
      const before = await harness().pipeline.telemetry.latest(device.id);
      for (const body of ['{not json', '42', '[1]', '']) expect((await post(api('telemetry'), body)).code, body).to.equal('4.00');
      for (const body of ['{not json', '[1]', '"x"']) expect((await post(api('attributes'), body)).code, body).to.equal('4.00');
      const run = await libcoap(['-m', 'post', '-e', '{oops', `coap://127.0.0.1:${port}${api('telemetry')}`]);
      expect(run.codes).to.deep.equal(['4.00']);
      expect(await harness().pipeline.telemetry.latest(device.id)).to.deep.equal(before);
      expect(await harness().pipeline.attributes.get(device.id, 'CLIENT')).to.deep.equal({});
      expect(uplinks).to.deep.equal([]);
    });

    it('answers 4.01 to telemetry with an unknown token, 4.00 to GET telemetry (as ThingsBoard), 4.05 to PUT', async () => {
      expect((await post(api('telemetry', 'nobody'), '{"a":1}')).code).to.equal('4.01');
      expect((await get(api('telemetry'))).code).to.equal('4.00');
      expect((await coapRequest(agent, port, { method: 'PUT', pathname: api('attributes'), payload: '{}' })).code).to.equal('4.05');
    });

    it('stores client attributes (2.01) and answers GET attributes with the keys asked for', async () => {
      const h = harness();
      expect((await post(api('attributes'), JSON.stringify({ model: 'T-1000', serial: 'A7' }))).code).to.equal('2.01');
      expect(uplinks.map((u) => u.kind)).to.deep.equal(['attributes']);
      await h.pipeline.attributes.save(device.id, 'SHARED', { fw_title: 'thermo-fw', fw_version: '3.1' }, 1);
      const all = await get(api('attributes'));
      expect(all.code).to.equal('2.05');
      expect(all.headers['Content-Format']).to.equal('application/json');
      expect(JSON.parse(all.payload.toString())).to.deep.equal({ client: { model: 'T-1000', serial: 'A7' }, shared: { fw_title: 'thermo-fw', fw_version: '3.1' } });
      const some = await get(api('attributes'), 'clientKeys=model&sharedKeys=fw_version,missing');
      expect(JSON.parse(some.payload.toString())).to.deep.equal({ client: { model: 'T-1000' }, shared: { fw_version: '3.1' } });
      const onlyShared = await get(api('attributes'), 'sharedKeys=fw_title');
      expect(JSON.parse(onlyShared.payload.toString())).to.deep.equal({ shared: { fw_title: 'thermo-fw' } });
    });

    it('answers 4.04 when no attribute asked for exists (HTTP answers {} there)', async () => {
      expect((await get(api('attributes'))).code).to.equal('4.04');
      expect((await get(api('attributes'), 'sharedKeys=fw_title')).code).to.equal('4.04');
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}${api('attributes')}?clientKeys=nothing`]);
      expect(run.codes).to.deep.equal(['4.04']);
    });

    it('sends attribute answers larger than a block with Block2', async () => {
      await startTransport({ blockSize: 64 });
      const shared = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key_${i}`, `value number ${i}`]));
      await harness().pipeline.attributes.save(device.id, 'SHARED', shared, 1);
      const res = await get(api('attributes'), 'sharedKeys=' + Object.keys(shared).join(','));
      expect(JSON.parse(res.payload.toString())).to.deep.equal({ shared });
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}${api('attributes')}`]);
      expect(run.blocks[0]).to.equal('0/M/64');
      expect(run.codes.length).to.be.greaterThan(5);
    });
  });

  describe('Observe on /api/v1/{token}/attributes (RFC 7641)', function () {
    it('answers the registration with every shared attribute, flat, then notifies the update of an assignment', async () => {
      const h = harness();
      // The notifier writes the shared attributes of the assignment and gives the notification.
      const outcome = await h.pipeline.notifier.process(h.event(device, 'FIRMWARE', pkg.id));
      if (!('notification' in outcome)) throw new Error(`dropped: ${outcome.dropped}`);
      await h.pipeline.attributes.save(device.id, 'SHARED', { other: true }, 1);
      const obs = await coapObserve(agent, port, { pathname: api('attributes') });
      expect(transport.observers).to.equal(1);
      expect(obs.first.code).to.equal('2.05');
      const shared = await h.pipeline.attributes.get(device.id, 'SHARED');
      expect(JSON.parse(obs.first.payload.toString())).to.deep.equal(shared);
      expect(shared).to.include({ fw_title: 'thermo-fw', fw_version: '3.1', fw_size: MB, other: true });

      expect(transport.deliver(outcome.notification)).to.equal(1);
      const update = await obs.next();
      // Nothing was deleted by this first assignment, so no `deleted` key (as ThingsBoard's update JSON).
      expect(outcome.notification.deleted).to.deep.equal([]);
      expect(JSON.parse(update.payload.toString())).to.deep.equal(outcome.notification.attributes);
      transport.deliver(notification({ fw_version: '3.2' }, ['fw_tag']));
      expect(JSON.parse((await obs.next()).payload.toString())).to.deep.equal({ fw_version: '3.2', deleted: ['fw_tag'] });
      transport.deliver(notification({}, ['fw_url']));
      expect(JSON.parse((await obs.next()).payload.toString())).to.deep.equal({ deleted: ['fw_url'] });
    });

    it('numbers notifications from 0 with the Observe option, confirmable as the registration was', async () => {
      const p = await peer();
      observeAttributes(p, Buffer.from('obs1'), { messageId: 100 });
      const first = await p.next();
      expect(first).to.deep.include({ code: '2.05', ack: true, messageId: 100 });
      expect(first.token.toString()).to.equal('obs1');
      expect(uintOf(optionOf(first, 'Observe'))).to.equal(0);
      expect(uintOf(optionOf(first, 'Content-Format'))).to.equal(50);
      expect(JSON.parse(first.payload.toString())).to.deep.equal({});
      for (const n of [1, 2]) {
        transport.deliver(notification({ fw_version: `3.${n}` }));
        const note = await p.next();
        expect(note).to.deep.include({ code: '2.05', confirmable: true });
        expect(note.token.toString()).to.equal('obs1');
        expect(uintOf(optionOf(note, 'Observe'))).to.equal(n);
        expect(JSON.parse(note.payload.toString())).to.deep.equal({ fw_version: `3.${n}` });
        p.send({ code: '0.00', ack: true, messageId: note.messageId });
      }
    });

    it('sends non-confirmable notifications to a non-confirmable registration', async () => {
      const p = await peer();
      observeAttributes(p, Buffer.from('non'), { confirmable: false, messageId: 5 });
      const first = await p.next();
      expect(first.confirmable || first.ack).to.equal(false);
      transport.deliver(notification({ fw_title: 'x' }));
      const note = await p.next();
      expect(note.confirmable || note.ack).to.equal(false);
      expect(uintOf(optionOf(note, 'Observe'))).to.equal(1);
    });

    it('is cancelled by a GET with Observe 1, which is then answered as a plain GET', async () => {
      await harness().pipeline.attributes.save(device.id, 'SHARED', { fw_title: 'thermo-fw' }, 1);
      const obs = await coapObserve(agent, port, { pathname: api('attributes') });
      expect(transport.observers).to.equal(1);
      const gone = observersBecome(0);
      obs.stream.close(true); // the coap package sends GET with Observe 1 and the same token
      await gone;
      expect(transport.deliver(notification({ fw_title: 'later' }))).to.equal(0);

      const p = await peer();
      const options = (observe: number) => [{ name: 'Observe' as const, value: Buffer.from(observe ? [observe] : []) }, ...uriOptions(api('attributes'))];
      p.send({ code: 'GET', confirmable: true, messageId: 1, token: Buffer.from('t'), options: options(0) });
      await p.next();
      expect(transport.observers).to.equal(1);
      p.send({ code: 'GET', confirmable: true, messageId: 2, token: Buffer.from('t'), options: options(1) });
      const answer = await p.next();
      expect(transport.observers).to.equal(0);
      expect(answer.code).to.equal('2.05');
      expect(optionOf(answer, 'Observe')).to.equal(undefined);
      expect(JSON.parse(answer.payload.toString())).to.deep.equal({ shared: { fw_title: 'thermo-fw' } });
    });

    it('is cancelled when the coap package answers a notification it no longer wants with a RST', async () => {
      const obs = await coapObserve(agent, port, { pathname: api('attributes') });
      obs.stream.close();
      const gone = observersBecome(0);
      transport.deliver(notification({ fw_title: 'x' }));
      await gone;
      expect(transport.deliver(notification({ fw_title: 'y' }))).to.equal(0);
    });

    it('is cancelled by a RST in answer to a notification, confirmable or not', async () => {
      for (const confirmable of [true, false]) {
        const p = await peer();
        observeAttributes(p, Buffer.from('rst'), { confirmable, messageId: 10 });
        await p.next();
        expect(transport.observers).to.equal(1);
        transport.deliver(notification({ fw_title: 'x' }));
        const note = await p.next();
        const gone = observersBecome(0);
        p.send({ code: '0.00', reset: true, messageId: note.messageId });
        await gone;
        expect(transport.deliver(notification({ fw_title: 'y' }))).to.equal(0);
      }
    });

    it('ends when the device stops answering confirmable notifications: 4 retransmissions, doubling, then gone', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 4 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('quiet'));
      await p.next();
      transport.deliver(notification({ fw_title: 'x' }));
      const sent = await p.next();
      const gone = observersBecome(0);
      for (const wait of [1000, 2000, 4000, 8000]) {
        await timers.advance(wait - 1);
        expect(p.queued, `nothing before ${wait} ms`).to.equal(0);
        await timers.advance(1);
        const again = await p.next();
        expect(again.messageId, 'the same message again').to.equal(sent.messageId);
        expect(again.payload).to.deep.equal(sent.payload);
      }
      expect(transport.observers, 'still waiting for the last one').to.equal(1);
      await timers.advance(16_000);
      await gone;
      expect(transport.deliver(notification({ fw_title: 'y' }))).to.equal(0);
    });

    it('checks on a non-confirmable observer not heard from for 24 hours with a confirmable notification', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 0 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('day'), { confirmable: false });
      await p.next();
      await timers.advance(24 * 3600_000 - 1);
      transport.deliver(notification({ n: 1 }));
      expect((await p.next()).confirmable, 'a day less 1 ms: still NON').to.equal(false);
      await timers.advance(1);
      transport.deliver(notification({ n: 2 }));
      const check = await p.next();
      expect(check.confirmable).to.equal(true);
      p.send({ code: '0.00', ack: true, messageId: check.messageId });
      transport.deliver(notification({ n: 3 }));
      expect((await p.next()).confirmable, 'heard from again: NON').to.equal(false);
      await timers.advance(24 * 3600_000);
      const gone = observersBecome(0);
      transport.deliver(notification({ n: 4 }));
      expect((await p.next()).confirmable).to.equal(true);
      await timers.advance(1000);
      await gone;
    });

    it('keeps an observer that acknowledges, sending queued notifications in order after each ACK', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 1 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('k'));
      await p.next();
      transport.deliver(notification({ n: 1 }));
      transport.deliver(notification({ n: 2 }));
      const one = await p.next();
      expect(JSON.parse(one.payload.toString())).to.deep.equal({ n: 1 });
      p.send({ code: '0.00', ack: true, messageId: one.messageId });
      const two = await p.next();
      expect(JSON.parse(two.payload.toString())).to.deep.equal({ n: 2 });
      p.send({ code: '0.00', ack: true, messageId: two.messageId });
      const acked = p.send({ code: 'GET', confirmable: true, messageId: 2, token: Buffer.from('probe'), options: uriOptions(api('nothing')) });
      expect(acked.length).to.be.greaterThan(0);
      expect((await p.next()).code, 'both ACKs were taken before this answer').to.equal('4.04');
      await timers.advance(60_000);
      expect(transport.observers).to.equal(1);
    });

    it("retransmits confirmable notifications through the endpoint's message layer, one in flight per observer", async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 4 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('core'));
      await p.next();
      expect(transport.load.retransmitting).to.equal(0);
      transport.deliver(notification({ a: 1 }));
      transport.deliver(notification({ b: 2 }));
      transport.deliver(notification({ c: 3 }));
      const one = await p.next();
      expect(transport.load.retransmitting, "the first one, in the core's retransmission").to.equal(1);
      expect(p.queued, 'the others wait behind it').to.equal(0);
      p.send({ code: '0.00', ack: true, messageId: one.messageId });
      const two = await p.next();
      expect(JSON.parse(two.payload.toString()), 'the two waiting, as one').to.deep.equal({ b: 2, c: 3 });
      expect(transport.load.retransmitting).to.equal(1);
      p.send({ code: '0.00', ack: true, messageId: two.messageId });
      await eventually(() => transport.load.retransmitting === 0, 'the ACK taken');
      expect(p.queued).to.equal(0);
    });

    it('replaces an unacknowledged notification at its retransmission by a newer one carrying both updates, which takes over its counter and timeout [RFC 7641 §4.5.2]', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 4 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('new'));
      await p.next();
      transport.deliver(notification({ fw_title: 'a', fw_version: '1' }));
      const old = await p.next();
      await timers.advance(1000);
      const again = await p.next();
      expect(again.messageId, 'nothing newer yet: the same message again').to.equal(old.messageId);
      transport.deliver(notification({ fw_version: '2', fw_size: 10 }));
      transport.deliver(notification({}, ['fw_size']));
      expect(p.queued, 'nothing before the retransmission is due').to.equal(0);
      await timers.advance(1999);
      expect(p.queued).to.equal(0);
      await timers.advance(1);
      const newer = await p.next();
      expect(newer.messageId, 'a message of its own').to.not.equal(old.messageId);
      expect(uintOf(optionOf(newer, 'Observe'))).to.be.greaterThan(uintOf(optionOf(old, 'Observe')) as number);
      expect(JSON.parse(newer.payload.toString()), 'the replaced keys and every change since').to.deep.equal({ fw_title: 'a', fw_version: '2', deleted: ['fw_size'] });
      // The old message is not sent again; the newer one is, on the old one's schedule (4 s, then 8 s).
      await timers.advance(3999);
      expect(p.queued).to.equal(0);
      await timers.advance(1);
      expect((await p.next()).messageId).to.equal(newer.messageId);
      p.send({ code: '0.00', ack: true, messageId: old.messageId });
      await timers.advance(7999);
      expect(p.queued, 'an ACK of the replaced message ends nothing').to.equal(0);
      p.send({ code: '0.00', ack: true, messageId: newer.messageId });
      await eventually(() => transport.load.retransmitting === 0, 'the ACK taken');
      await timers.advance(60_000);
      expect(p.queued).to.equal(0);
      expect(transport.observers).to.equal(1);
    });

    it('ends the observation when a notification and its replacements go unanswered MAX_RETRANSMIT times in all', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 2 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('gone'));
      await p.next();
      transport.deliver(notification({ n: 1 }));
      const first = await p.next();
      transport.deliver(notification({ n: 2 }));
      await timers.advance(1000);
      const second = await p.next();
      expect(second.messageId).to.not.equal(first.messageId);
      transport.deliver(notification({ n: 3 }));
      await timers.advance(2000);
      const third = await p.next();
      expect(JSON.parse(third.payload.toString())).to.deep.equal({ n: 3 });
      const gone = observersBecome(0);
      await timers.advance(4000);
      await gone;
      expect(transport.load.retransmitting).to.equal(0);
    });

    it('is cancelled by a RST to the replacement notification', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 4 }, timers);
      const p = await peer();
      observeAttributes(p, Buffer.from('rst2'));
      await p.next();
      transport.deliver(notification({ n: 1 }));
      await p.next();
      transport.deliver(notification({ n: 2 }));
      await timers.advance(1000);
      const newer = await p.next();
      const gone = observersBecome(0);
      p.send({ code: '0.00', reset: true, messageId: newer.messageId });
      await gone;
      expect(transport.load.retransmitting).to.equal(0);
    });

    it('stops retransmitting the notification of an observation cancelled meanwhile', async () => {
      const timers = harness().timers;
      await startTransport({ ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 4 }, timers);
      const p = await peer();
      const token = Buffer.from('bye');
      observeAttributes(p, token);
      await p.next();
      transport.deliver(notification({ n: 1 }));
      await p.next();
      expect(transport.load.retransmitting).to.equal(1);
      p.send({ code: 'GET', confirmable: true, messageId: 2, token, options: [{ name: 'Observe', value: Buffer.from([1]) }, ...uriOptions(api('attributes'))] });
      await p.next();
      expect(transport.observers).to.equal(0);
      expect(transport.load.retransmitting).to.equal(0);
      await timers.advance(60_000);
      expect(p.queued).to.equal(0);
    });

    it('ends observations of a deleted device with a 4.04 notification, without Observe [RFC 7641 §3.2]', async () => {
      const h = harness();
      const p = await peer();
      observeAttributes(p, Buffer.from('del'), { confirmable: false, messageId: 12 });
      await p.next();
      const gone = observersBecome(0);
      await h.engine.devices.delete(h.tenantId, device.id);
      const last = await p.next();
      expect(last.code).to.equal('4.04');
      expect(last.token.toString()).to.equal('del');
      expect(optionOf(last, 'Observe')).to.equal(undefined);
      await gone;
    });

    it('ends observations of a device another instance deleted or re-keyed (deviceRevoked, heard on the cluster bus)', async () => {
      const h = harness();
      const p = await peer();
      observeAttributes(p, Buffer.from('rev'), { confirmable: false, messageId: 13 });
      await p.next();
      const gone = observersBecome(0);
      h.engine.events.emit('deviceRevoked', { tenantId: h.tenantId, deviceId: device.id, reason: 'credentials-changed' });
      const last = await p.next();
      expect(last.token.toString()).to.equal('rev');
      expect(optionOf(last, 'Observe')).to.equal(undefined);
      await gone;
    });

    it('ends an observation whose device was deleted or re-keyed after its registration read it, before it was held', async () => {
      const h = harness();
      const ctx = h.engine.deviceContext;
      for (const [i, change] of [
        () => h.engine.devices.updateCredentials(h.tenantId, device.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'a-token-given-meanwhile' }),
        () => h.engine.devices.delete(h.tenantId, device.id),
      ].entries()) {
        const token = device.accessToken;
        let pending: (() => Promise<unknown>) | null = change;
        // The change runs once the registration's device is read, as a save committed just then would.
        const deviceByToken = async (t: string): Promise<Device | null> => {
          const found = await ctx.lookups.deviceByToken(t);
          const run = pending;
          pending = null;
          await run?.();
          return found;
        };
        const lookups = new Proxy(ctx.lookups, {
          get: (target, key) => (key === 'deviceByToken' ? deviceByToken : (Reflect.get(target, key) as unknown)),
        });
        await startTransport({}, undefined, { ...ctx, lookups });
        const p = await peer();
        p.send({
          code: 'GET',
          confirmable: false,
          messageId: 20 + i,
          token: Buffer.from(`mid-${i}`),
          options: [{ name: 'Observe', value: Buffer.alloc(0) }, ...uriOptions(api('attributes', token))],
        });
        expect((await p.next()).code, 'registered: the device was read before the change').to.equal('2.05');
        const last = await p.next();
        expect(last.code).to.equal('4.04');
        expect(last.token.toString()).to.equal(`mid-${i}`);
        expect(optionOf(last, 'Observe')).to.equal(undefined);
        expect(transport.observers).to.equal(0);
        device = await h.device(profile, { name: `thermo-${i + 2}` });
      }
    });

    it('answers 4.01 to a registration with an unknown token, registering nothing', async () => {
      const p = await peer();
      p.send({
        code: 'GET',
        confirmable: true,
        messageId: 3,
        token: Buffer.from('u'),
        options: [{ name: 'Observe', value: Buffer.alloc(0) }, ...uriOptions(api('attributes', 'nobody'))],
      });
      const answer = await p.next();
      expect(answer.code).to.equal('4.01');
      expect(optionOf(answer, 'Observe')).to.equal(undefined);
      expect(transport.observers).to.equal(0);
    });
  });

  describe('messages (RFC 7252)', function () {
    const telemetryPost = (messageId: number, confirmable = true) => ({
      code: 'POST',
      confirmable,
      messageId,
      token: Buffer.from([1, 2, 3, 4]),
      options: uriOptions(api('telemetry')),
      payload: Buffer.from(JSON.stringify({ fw_state: 'DOWNLOADING' })),
    });
    const stateHistory = async (): Promise<unknown[]> =>
      ((await harness().pipeline.telemetry.history(device.id, ['fw_state'], { startTs: 0, endTs: Date.now() + 10_000, limit: 100, order: 'ASC' })).fw_state ?? []).map(
        (p) => p.value,
      );

    it('answers a retransmitted request from the cache, processing it once (sent back to back, and again after the answer)', async () => {
      const before = (await stateHistory()).length;
      const p = await peer();
      const bytes = p.send(telemetryPost(4242));
      p.send(bytes);
      const first = await p.next();
      expect(first).to.deep.include({ code: '2.01', ack: true, messageId: 4242 });
      p.send(bytes);
      const again = await p.next();
      expect(again).to.deep.include({ code: '2.01', ack: true, messageId: 4242 });
      expect(p.queued, 'the back-to-back duplicate got no second answer').to.equal(0);
      expect((await stateHistory()).length - before).to.equal(1);
      expect(uplinks.filter((u) => u.kind === 'telemetry')).to.have.length(1);
    });

    it('drops a duplicate that arrives while its request is still being processed (a block read from disk)', async () => {
      const p = await peer();
      const bytes = p.send({
        code: 'GET',
        confirmable: true,
        messageId: 900,
        token: Buffer.from('dup'),
        options: uriOptions(`/fw/${device.accessToken}`, ['size=100', 'chunk=5']),
      });
      p.send(bytes);
      p.send(bytes);
      const answer = await p.next();
      expect(answer).to.deep.include({ code: '2.05', ack: true, messageId: 900 });
      expect(answer.payload).to.deep.equal(firmwareBytes.subarray(500, 600));
      // One more round trip, so that any second answer would have arrived before it.
      p.send({ code: 'GET', confirmable: true, messageId: 901, token: Buffer.from('x'), options: uriOptions('/nowhere') });
      expect((await p.next()).messageId).to.equal(901);
      expect(p.queued).to.equal(0);
      expect(uplinks.filter((u) => u.kind === 'download')).to.have.length(1);
    });

    it('sends a slow response separately after an empty ACK, and answers a retransmission with that ACK', async () => {
      // Telemetry that is saved only when the test says so: the request outlasts piggybackMs.
      const real = harness().engine.deviceContext;
      let release = (): void => undefined;
      const released = new Promise<void>((resolve) => (release = resolve));
      const telemetry: DeviceContext['telemetry'] = {
        save: async (id, entries) => {
          await released;
          return real.telemetry.save(id, entries);
        },
        saveAll: (batch) => real.telemetry.saveAll(batch),
        latest: (id, keys) => real.telemetry.latest(id, keys),
        history: (id, keys, range) => real.telemetry.history(id, keys, range),
      };
      await startTransport({ piggybackMs: 5 }, undefined, { ...real, telemetry });
      const before = (await stateHistory()).length;
      const p = await peer();
      const bytes = p.send(telemetryPost(950));
      expect(await p.next()).to.deep.include({ code: '0.00', ack: true, messageId: 950 });
      p.send(bytes); // still processing: dropped
      release();
      const response = await p.next();
      expect(response).to.deep.include({ code: '2.01', confirmable: true });
      expect(response.token).to.deep.equal(Buffer.from([1, 2, 3, 4]));
      p.send({ code: '0.00', ack: true, messageId: response.messageId });
      p.send(bytes); // answered: the empty ACK again, not a second run
      expect(await p.next()).to.deep.include({ code: '0.00', ack: true, messageId: 950 });
      expect((await stateHistory()).length - before).to.equal(1);
    });

    it('processes a duplicated non-confirmable request once', async () => {
      const before = (await stateHistory()).length;
      const p = await peer();
      const bytes = p.send(telemetryPost(777, false));
      expect((await p.next()).code).to.equal('2.01');
      p.send(bytes);
      expect((await p.next()).code).to.equal('2.01');
      expect((await stateHistory()).length - before).to.equal(1);
    });

    it('processes the same message id from another peer as a new request', async () => {
      const before = (await stateHistory()).length;
      const [a, b] = [await peer(), await peer()];
      a.send(telemetryPost(1000));
      b.send(telemetryPost(1000));
      expect((await a.next()).code).to.equal('2.01');
      expect((await b.next()).code).to.equal('2.01');
      expect((await stateHistory()).length - before).to.equal(2);
    });

    it('answers an Observe registration retransmitted after its answer with the same answer, registering once', async () => {
      const p = await peer();
      const bytes = observeAttributes(p, Buffer.from('r'), { messageId: 31 });
      const first = await p.next();
      p.send(bytes);
      const again = await p.next();
      expect(again.messageId).to.equal(first.messageId);
      expect(uintOf(optionOf(again, 'Observe'))).to.equal(0);
      expect(transport.observers).to.equal(1);
    });

    it('answers malformed options with 4.02 and unknown paths with 4.04, changing nothing', async () => {
      const before = await harness().pipeline.telemetry.latest(device.id);
      const p = await peer();
      // A CON POST whose first option byte has delta 15 but is not the payload marker.
      const header = Buffer.from([0x41, 0x02, 0x12, 0x34, 0x7a]);
      p.send(Buffer.concat([header, Buffer.from([0xf1, 0x00])]));
      const bad = await p.next();
      expect(bad).to.deep.include({ code: '4.02', ack: true, messageId: 0x1234 });
      expect(bad.token).to.deep.equal(Buffer.from([0x7a]));
      // An unknown critical option (number 2049 would be elective; 65001 is odd, critical).
      p.send({ ...telemetryPost(2), options: [...uriOptions(api('telemetry')), { name: '65001', value: Buffer.from('x') }] });
      expect((await p.next()).code).to.equal('4.02');
      // If-Match: known, critical, not supported.
      p.send({ ...telemetryPost(3), options: [{ name: 'If-Match', value: Buffer.from('e') }, ...uriOptions(api('telemetry'))] });
      expect((await p.next()).code).to.equal('4.02');
      // Block2 with the reserved SZX 7.
      p.send({
        code: 'GET',
        confirmable: true,
        messageId: 4,
        token: Buffer.from('z'),
        options: [...uriOptions(`/fw/${device.accessToken}`), { name: 'Block2', value: Buffer.from([0x07]) }],
      });
      expect((await p.next()).code).to.equal('4.00');
      // Observe on a POST (the coap package would answer 5.00, to the wrong address), and FETCH.
      p.send({ ...telemetryPost(5), options: [{ name: 'Observe', value: Buffer.alloc(0) }, ...uriOptions(api('telemetry'))] });
      expect((await p.next()).code).to.equal('4.02');
      p.send({ ...telemetryPost(6), code: '0.05' });
      expect((await p.next()).code).to.equal('4.05');
      for (const pathname of ['/', '/api', '/api/v1', `/api/v1/${device.accessToken}`, api('rpc'), `/api/v2/${device.accessToken}/telemetry`, '/.well-known/core']) {
        expect((await post(pathname, '{"fw_state":"FAILED"}')).code, pathname).to.equal('4.04');
      }
      const run = await libcoap(['-m', 'get', `coap://127.0.0.1:${port}/nowhere`]);
      expect(run.codes).to.deep.equal(['4.04']);
      expect(await harness().pipeline.telemetry.latest(device.id)).to.deep.equal(before);
      expect(uplinks).to.deep.equal([]);
    });

    it('answers a CoAP ping (an empty CON) with a RST', async () => {
      const p = await peer();
      p.send({ code: '0.00', confirmable: true, messageId: 55 });
      const rst = await p.next();
      expect(rst).to.deep.include({ code: '0.00', reset: true, messageId: 55 });
    });

    it('takes telemetry sent block-wise by libcoap, which gives each block a new token (Block1)', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ota-coap-'));
      try {
        const values = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`sensor_${i}`, i]));
        const file = path.join(dir, 'telemetry.json');
        await writeFile(file, JSON.stringify(values));
        const run = await libcoap(['-m', 'post', '-b', '256', '-f', file, `coap://127.0.0.1:${port}${api('telemetry')}`]);
        expect(run.stderr).to.equal('');
        expect(run.codes.at(-1)).to.equal('2.01');
        const latest = await harness().pipeline.telemetry.latest(device.id);
        expect(Object.fromEntries(Object.entries(latest).map(([k, p]) => [k, p.value]))).to.deep.include(values);
        expect(uplinks.filter((u) => u.kind === 'telemetry')).to.have.length(1);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('answers each block of an upload 2.31, the last one with the response, a block out of order 4.08', async () => {
      const body = Buffer.from(JSON.stringify({ fw_state: 'DOWNLOADED', note: 'x'.repeat(300) }));
      const p = await peer();
      const block = (num: number, messageId: number, token: string) => {
        const more = (num + 1) * 128 < body.length;
        return {
          code: 'POST',
          confirmable: true,
          messageId,
          token: Buffer.from(token),
          options: [...uriOptions(api('telemetry')), { name: 'Block1' as const, value: encodeBlock({ num, more, size: 128 }) }],
          payload: body.subarray(num * 128, (num + 1) * 128),
        };
      };
      p.send(block(0, 60, 'a'));
      const first = await p.next();
      expect(first.code).to.equal('2.31');
      expect(parseBlock(optionOf(first, 'Block1') as Buffer)).to.deep.equal({ num: 0, more: true, size: 128 });
      p.send(block(2, 61, 'b'));
      expect((await p.next()).code, 'block 1 is missing').to.equal('4.08');

      const before = (await stateHistory()).length;
      p.send(block(0, 70, 'c'));
      expect((await p.next()).code).to.equal('2.31');
      p.send(block(1, 71, 'd'));
      expect((await p.next()).code).to.equal('2.31');
      const last = p.send(block(2, 72, 'e'));
      const done = await p.next();
      expect(done).to.deep.include({ code: '2.01', messageId: 72 });
      expect(parseBlock(optionOf(done, 'Block1') as Buffer)).to.deep.equal({ num: 2, more: false, size: 128 });
      p.send(last);
      expect(await p.next()).to.deep.include({ code: '2.01', messageId: 72 });
      expect((await stateHistory()).length - before, 'stored once').to.equal(1);
      expect((await harness().pipeline.telemetry.latest(device.id, ['note'])).note?.value).to.equal('x'.repeat(300));
    });

    it('refuses a Block1 upload larger than its body limit with 4.13 and Size1', async () => {
      await startTransport({ maxBodySize: 4096 });
      const p = await peer();
      p.send({ ...telemetryPost(8), options: [...uriOptions(api('telemetry')), { name: 'Block1', value: encodeBlock({ num: 4, more: true, size: 1024 }) }] });
      const answer = await p.next();
      expect(answer.code).to.equal('4.13');
      expect(uintOf(optionOf(answer, 'Size1'))).to.equal(4096);
    });

    it('frees its UDP port when stopped', async () => {
      await transport.stop();
      const socket = createSocket('udp4');
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(port, '127.0.0.1', resolve);
      });
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    });

    it('fails to start on a port in use', async () => {
      const other = new CoapTransport(harness().engine.deviceContext, { port, host: '127.0.0.1' });
      let error: unknown;
      await other.start().catch((err: unknown) => (error = err));
      expect((error as NodeJS.ErrnoException)?.code).to.equal('EADDRINUSE');
      await other.stop();
    });
  });
});
