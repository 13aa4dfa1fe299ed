import { expect } from 'chai';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { generate, parse, type NamedOption, type ParsedPacket } from 'coap-packet';
import { parseObjectLinks } from '../../../server/transports/lwm2m/object-links';
import { Registrations, type Registration } from '../../../server/transports/lwm2m/registrations';
import { REGISTRATION_DEFAULTS } from '../../../server/transports/lwm2m/registration-limits';
import { realTimers } from '../../../server/timers';
import { Lwm2mTestClient } from '../../support/lwm2m-client';
import { ContentFormat, decodeValue, encodeContent } from '../../../server/transports/lwm2m/content-formats';
import { Lwm2mRequestError, type Lwm2mDeviceClient, type OpaqueSource } from '../../../server/transports/lwm2m/device-client';
import { Lwm2mDeviceOta } from '../../../server/transports/lwm2m/device-ota';
import { LWM2M_PROFILE_DEFAULTS } from '../../../server/transports/lwm2m/profile-settings';
import { parsePath } from '../../../server/transports/lwm2m/paths';
import type { Lwm2mValue } from '../../../server/transports/lwm2m/resource-types';
import { Reports } from './fake-device';

const strings = (p: ParsedPacket, name: string): string[] => p.options.filter((o) => o.name === name).map((o) => o.value.toString('utf8'));

/**
 * A registration-only LwM2M server on 127.0.0.1 (port 0), written for this test: answers Register
 * and De-register with our Registrations model, and sends the client Write, Execute and Observe
 * requests of its own, matched to responses by token.
 */
class TinyServer {
  readonly socket: Socket = createSocket('udp4');
  readonly registrations = new Registrations(REGISTRATION_DEFAULTS, realTimers, { removed: (r) => this.removed.push(r) });
  readonly removed: Registration[] = [];
  peer: RemoteInfo | null = null;
  private waiting = new Map<string, (p: ParsedPacket) => void>();
  private observers = new Map<string, (p: ParsedPacket) => void>();
  private registered: Array<(r: Registration) => void> = [];
  private mid = 1;

  async start(): Promise<number> {
    this.socket.on('message', (msg, rinfo) => this.onMessage(parse(msg), rinfo));
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    return this.socket.address().port;
  }

  nextRegistration(): Promise<Registration> {
    return new Promise((resolve) => this.registered.push(resolve));
  }

  private onMessage(p: ParsedPacket, rinfo: RemoteInfo): void {
    const key = p.token.toString('hex');
    const path = strings(p, 'Uri-Path');
    if (p.code === '0.02' && path[0] === 'rd' && path.length === 1) {
      const r = this.registrations.register(strings(p, 'Uri-Query'), p.payload.toString('utf8'), { address: rinfo.address, port: rinfo.port });
      this.peer = rinfo;
      this.reply(p, rinfo, '2.01', [
        { name: 'Location-Path', value: Buffer.from('rd') },
        { name: 'Location-Path', value: Buffer.from(r.id) },
      ]);
      for (const f of this.registered.splice(0)) f(r);
      return;
    }
    if (p.code === '0.04' && path[0] === 'rd') {
      this.registrations.deregister(path[1] ?? '');
      this.reply(p, rinfo, '2.02');
      return;
    }
    if (p.code.startsWith('2.') || p.code.startsWith('4.') || p.code.startsWith('5.')) {
      if (p.confirmable) this.send({ messageId: p.messageId, ack: true, code: '0.00' }, rinfo);
      const once = this.waiting.get(key);
      if (once) {
        this.waiting.delete(key);
        once(p);
      } else this.observers.get(key)?.(p);
    }
  }

  private reply(p: ParsedPacket, rinfo: RemoteInfo, code: string, options: NamedOption[] = []): void {
    this.send({ messageId: p.messageId, token: p.token, ack: true, code, options }, rinfo);
  }

  private send(packet: Parameters<typeof generate>[0], to: RemoteInfo): void {
    this.socket.send(generate(packet), to.port, to.address);
  }

  /** A confirmable request to the registered client; resolves with its response. */
  request(code: string, path: string, opts: { payload?: string | Buffer; format?: number; observe?: (p: ParsedPacket) => void } = {}): Promise<ParsedPacket> {
    const peer = this.peer;
    if (!peer) throw new Error('no client registered');
    const token = randomBytes(4);
    const options: NamedOption[] = [];
    if (opts.observe) options.push({ name: 'Observe', value: Buffer.alloc(0) });
    for (const seg of path.split('/').filter(Boolean)) options.push({ name: 'Uri-Path', value: Buffer.from(seg) });
    if (opts.payload !== undefined) options.push({ name: 'Content-Format', value: uint(opts.format ?? 0) });
    if (opts.observe) this.observers.set(token.toString('hex'), opts.observe);
    const response = new Promise<ParsedPacket>((resolve) => this.waiting.set(token.toString('hex'), resolve));
    this.send({ messageId: this.mid++, token, confirmable: true, code, options, payload: Buffer.isBuffer(opts.payload) ? opts.payload : Buffer.from(opts.payload ?? '') }, peer);
    return response;
  }

  close(): void {
    this.registrations.clear();
    this.socket.close();
  }
}

function uint(n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  const b = Buffer.alloc(n > 0xff ? 2 : 1);
  b.writeUIntBE(n, 0, b.length);
  return b;
}

/** The content format of a response; none given is text/plain, as lwm2m-node-lib answers. */
function formatOf(p: ParsedPacket): number {
  const o = p.options.find((x) => x.name === 'Content-Format');
  return o && o.value.length ? o.value.readUIntBE(0, o.value.length) : ContentFormat.TEXT;
}

/** Lwm2mDeviceClient over the TinyServer's raw CoAP requests: what the CoAP core will do for real. */
class TinyServerClient implements Lwm2mDeviceClient {
  constructor(private readonly server: TinyServer) {}

  private async ok(p: Promise<ParsedPacket>, what: string): Promise<ParsedPacket> {
    const res = await p;
    if (!res.code.startsWith('2.')) throw new Lwm2mRequestError('response', `${what}: ${res.code}`, res.code);
    return res;
  }

  async read(path: string): Promise<Lwm2mValue | undefined> {
    const res = await this.ok(this.server.request('0.01', path), `Read ${path}`);
    return decodeValue(formatOf(res), res.payload, parsePath(path));
  }

  async write(path: string, value: Lwm2mValue | OpaqueSource, format: ContentFormat): Promise<void> {
    if (typeof value === 'object' && !Buffer.isBuffer(value) && 'open' in value) throw new Error('no Block1 in this test server');
    await this.ok(this.server.request('0.03', path, { payload: encodeContent(format, parsePath(path), value), format }), `Write ${path}`);
  }

  async execute(path: string, args?: string): Promise<void> {
    await this.ok(this.server.request('0.02', path, args === undefined ? {} : { payload: args }), `Execute ${path}`);
  }

  async observe(path: string, onValue: (value: Lwm2mValue) => void): Promise<Lwm2mValue | undefined> {
    const res = await this.ok(
      this.server.request('0.01', path, {
        observe: (p) => {
          const v = decodeValue(formatOf(p), p.payload, parsePath(path));
          if (v !== undefined) onValue(v);
        },
      }),
      `Observe ${path}`,
    );
    return decodeValue(formatOf(res), res.payload, parsePath(path));
  }

  async cancel(): Promise<void> {
    /* not needed here */
  }
}

describe('third-party LwM2M client (lwm2m-node-lib) against a registration-only server', function () {
  let server: TinyServer;
  let client: Lwm2mTestClient;

  beforeEach(async () => {
    server = new TinyServer();
    client = await Lwm2mTestClient.create({ endpoint: `urn:dev:${randomBytes(3).toString('hex')}`, lifetimeS: 120 });
  });
  afterEach(async () => {
    await client.deregister().catch(() => undefined);
    server.close();
  });

  it('registers with its endpoint, lifetime, version and Objects 3 and 5', async () => {
    const port = await server.start();
    const registered = server.nextRegistration();
    const result = await client.register('127.0.0.1', port);
    const r = await registered;
    expect(result.location).to.equal(`rd/${r.id}`);
    expect(r).to.include({ endpoint: client.options.endpoint, lifetimeS: 120, version: '1.1', binding: 'U' });
    expect(r.objects.objects.map((o) => [o.objectId, o.instanceIds])).to.deep.equal([
      [3, [0]],
      [5, [0]],
    ]);
    expect(parseObjectLinks('</3/0>,</5/0>', { maxLinks: 10 }).objects).to.deep.equal(r.objects.objects);
  });

  it('also exposes Object 9 when asked', async () => {
    const port = await server.start();
    client = await Lwm2mTestClient.create({ endpoint: client.options.endpoint, software: true });
    const registered = server.nextRegistration();
    await client.register('127.0.0.1', port);
    expect((await registered).objects.objects.map((o) => o.objectId)).to.deep.equal([3, 5, 9]);
    expect((await server.request('0.01', '/9/0/0')).payload.toString()).to.equal('app');
  });

  it('records a Write to /5/0/1 and an Execute of /5/0/2, answering 2.04', async () => {
    await client.register('127.0.0.1', await server.start());
    const uri = 'coap://127.0.0.1:5685/tbfw/0b7c1f3e-4b2a-4c8e-9a55-3d1f6c2b9e10';
    expect((await server.request('0.03', '/5/0/1', { payload: uri })).code).to.equal('2.04');
    expect((await server.request('0.02', '/5/0/2')).code).to.equal('2.04');
    expect(client.writes).to.deep.equal([{ path: '/5/0/1', value: uri }]);
    expect(client.executes.map((e) => e.path)).to.deep.equal(['/5/0/2']);
  });

  it('answers a Read, and notifies an observer when it reports a new State', async () => {
    await client.register('127.0.0.1', await server.start());
    expect((await server.request('0.01', '/5/0/7')).payload.toString()).to.equal('1.0');
    let notify: (p: ParsedPacket) => void = () => undefined;
    const notified = new Promise<ParsedPacket>((resolve) => (notify = resolve));
    const first = await server.request('0.01', '/5/0/3', { observe: (p) => notify(p) });
    expect(first.options.some((o) => o.name === 'Observe')).to.equal(true);
    expect(first.payload.toString()).to.equal('0');
    await client.set('/5/0/3', 1);
    expect((await notified).payload.toString()).to.equal('1');
  });

  it('de-registers: the server drops the registration', async () => {
    await client.register('127.0.0.1', await server.start());
    await client.deregister();
    expect(server.removed.map((r) => r.endpoint)).to.deep.equal([client.options.endpoint]);
    expect(server.registrations.size).to.equal(0);
  });

  it('is updated end to end by the OTA logic over CoAP: pull, Execute, UPDATED', async () => {
    const port = await server.start();
    client = await Lwm2mTestClient.create({ endpoint: client.options.endpoint });
    // The device downloads what it is given and applies it when told, reporting as Object 5 says.
    client.onWrite = async (call) => {
      if (call.path !== '/5/0/1') return;
      setImmediate(() => void client.set('/5/0/3', 1).then(() => client.set('/5/0/3', 2)));
    };
    client.onExecute = async () => {
      setImmediate(
        () =>
          void client
            .set('/5/0/3', 3)
            .then(() => client.set('/5/0/7', '2.0'))
            .then(() => client.set('/5/0/5', 1)),
      );
    };
    const registered = server.nextRegistration();
    await client.register('127.0.0.1', port);
    const registration = await registered;

    const reports = new Reports();
    const ota = new Lwm2mDeviceOta('device-1', { report: reports.push, packageSource: async () => null });
    await ota.attach({
      client: new TinyServerClient(server),
      objects: registration.objects,
      version: registration.version,
      settings: { ...LWM2M_PROFILE_DEFAULTS, fwUpdateStrategy: 2, fwUpdateResource: `coap://127.0.0.1:${port}` },
    });
    ota.setTarget('FIRMWARE', { packageId: '0b7c1f3e-4b2a-4c8e-9a55-3d1f6c2b9e10', title: 'fw', version: '2.0', tag: null, url: null }, { notified: true });
    await reports.until('UPDATED');
    expect(client.writes).to.deep.equal([{ path: '/5/0/1', value: `coap://127.0.0.1:${port}/tbfw/0b7c1f3e-4b2a-4c8e-9a55-3d1f6c2b9e10` }]);
    expect(client.executes.map((e) => e.path)).to.deep.equal(['/5/0/2']);
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
  });
});
