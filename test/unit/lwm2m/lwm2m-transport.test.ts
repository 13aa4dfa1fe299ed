import { expect } from 'chai';
import { once } from 'node:events';
import { createSocket, type Socket } from 'node:dgram';
import { generate, parse, type ParsedPacket } from 'coap-packet';
import { Agent } from 'coap';
import { Lwm2mTransport, type RegistrationEvent } from '../../../server/transports/lwm2m/lwm2m-transport';
import { packageAttributes } from '../../../server/pipeline/ota-keys';
import type { UplinkEvent } from '../../../server/pipeline/uplink';
import type { DeviceProfile } from '../../../server/store/device-profiles';
import type { Device } from '../../../server/store/devices';
import type { OtaPackage } from '../../../server/store/ota-packages';
import { coapRequest } from '../../support/coap-clients';
import { Lwm2mTestClient } from '../../support/lwm2m-client';
import { useHarness } from '../pipeline-support';

const lwm2mCredentials = (endpoint: string) => ({
  credentialsType: 'LWM2M_CREDENTIALS',
  credentialsId: endpoint,
  credentialsValue: {
    client: { endpoint, securityConfigClientMode: 'NO_SEC' },
    bootstrap: { bootstrapServer: { securityMode: 'NO_SEC' }, lwm2mServer: { securityMode: 'NO_SEC' } },
  },
});

function image(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + (i >> 8)) & 0xff;
  return b;
}

/** One raw CoAP request from a socket of its own; resolves with the answer. */
async function raw(port: number, packet: Parameters<typeof generate>[0] | Buffer): Promise<ParsedPacket | null> {
  const socket: Socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  try {
    const answer = once(socket, 'message').then(([m]) => parse(m as Buffer));
    socket.send(Buffer.isBuffer(packet) ? packet : generate(packet), port, '127.0.0.1');
    // A datagram that is not CoAP gets no answer: give the endpoint the time of a round trip to say nothing.
    const quiet = new Promise<null>((r) => setTimeout(() => r(null), 300));
    return await Promise.race([answer, quiet]);
  } finally {
    socket.close();
  }
}

const path = (p: string) =>
  p
    .split('/')
    .filter(Boolean)
    .map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) }));
const query = (...q: string[]) => q.map((s) => ({ name: 'Uri-Query' as const, value: Buffer.from(s) }));

/**
 * A minimal LwM2M device written for this test, byte by byte with coap-packet: registers with
 * Objects 3 and 5, answers Reads (text/plain), Observes of /5/0/3, a block-wise Write of /5/0/0
 * (2.31 Continue per block, RFC 7959 §2.3) and an Execute of /5/0/2.
 */
class RawLwm2mDevice {
  readonly socket: Socket = createSocket('udp4');
  pushed: Promise<Buffer>;
  executed: Promise<string>;
  private resolvePush!: (b: Buffer) => void;
  private resolveExecute!: (p: string) => void;
  private parts: Buffer[] = [];
  private stateObserver: { token: Buffer; peer: { port: number; address: string } } | null = null;
  private mid = 100;
  private registered: ((code: string) => void) | null = null;

  private constructor() {
    this.pushed = new Promise((r) => (this.resolvePush = r));
    this.executed = new Promise((r) => (this.resolveExecute = r));
  }

  static async start(): Promise<RawLwm2mDevice> {
    const d = new RawLwm2mDevice();
    await new Promise<void>((r) => d.socket.bind(0, '127.0.0.1', r));
    d.socket.on('message', (m, rinfo) => d.onMessage(parse(m), rinfo));
    return d;
  }

  register(port: number, ep: string): Promise<string> {
    return new Promise((resolve) => {
      this.registered = resolve;
      this.send(
        {
          messageId: this.mid++,
          token: Buffer.from('reg1'),
          confirmable: true,
          code: '0.02',
          options: [...path('/rd'), ...query(`ep=${ep}`, 'lt=300', 'lwm2m=1.1', 'b=U')],
          payload: Buffer.from('</1/0>,</3/0>,</5/0>'),
        },
        { port, address: '127.0.0.1' },
      );
    });
  }

  notifyState(state: number): void {
    const o = this.stateObserver;
    if (!o) throw new Error('nobody observes /5/0/3');
    this.send(
      { messageId: this.mid++, token: o.token, confirmable: false, code: '2.05', options: [{ name: 'Observe', value: Buffer.from([2]) }], payload: Buffer.from(String(state)) },
      o.peer,
    );
  }

  close(): void {
    this.socket.close();
  }

  private onMessage(p: ParsedPacket, peer: { port: number; address: string }): void {
    if (p.ack && this.registered && p.token.toString() === 'reg1') {
      this.registered(p.code);
      this.registered = null;
      return;
    }
    if (!p.code.startsWith('0.') || p.code === '0.00') return;
    const uri = p.options
      .filter((o) => o.name === 'Uri-Path')
      .map((o) => o.value.toString())
      .join('/');
    const answer = (code: string, payload = '', options: Array<{ name: string; value: Buffer }> = []): void =>
      this.send({ messageId: p.messageId, token: p.token, ack: true, code, options: options as never, payload: Buffer.from(payload) }, peer);
    const values: Record<string, string> = { '3/0/3': '1.0', '5/0/6': 'fw', '5/0/7': '1.0', '5/0/9': '1', '5/0/3': '0', '5/0/5': '0' };
    if (p.code === '0.01') {
      const observe = p.options.find((o) => o.name === 'Observe');
      if (observe && uri === '5/0/3') this.stateObserver = { token: p.token, peer };
      return answer(values[uri] === undefined ? '4.04' : '2.05', values[uri] ?? '', observe ? [{ name: 'Observe', value: Buffer.from([1]) }] : []);
    }
    if (p.code === '0.03' && uri === '5/0/0') {
      const block1 = p.options.find((o) => o.name === 'Block1')?.value;
      if (!block1) {
        answer('2.04');
        return this.resolvePush(p.payload);
      }
      const n = block1.reduce((a, b) => a * 256 + b, 0);
      this.parts.push(p.payload);
      if (n & 0x08) return answer('2.31', '', [{ name: 'Block1', value: block1 }]);
      answer('2.04', '', [{ name: 'Block1', value: block1 }]);
      return this.resolvePush(Buffer.concat(this.parts));
    }
    if (p.code === '0.02' && uri === '5/0/2') {
      answer('2.04');
      return this.resolveExecute(uri);
    }
    answer('4.04');
  }

  private send(packet: Parameters<typeof generate>[0], to: { port: number; address: string }): void {
    this.socket.send(generate(packet), to.port, to.address);
  }
}

/** The LwM2M transport (reference §6) with lwm2m-node-lib as the device, over 127.0.0.1. */
describe('LwM2M transport', function () {
  this.timeout(20_000);
  const harness = useHarness();
  const firmware = image(40_000);
  let profile: DeviceProfile;
  let pkg: OtaPackage;
  let device: Device;
  let endpoint: string;
  let transport: Lwm2mTransport;
  let port: number;
  let client: Lwm2mTestClient | null;
  let uplinks: UplinkEvent[];
  let registrations: RegistrationEvent[];

  beforeEach(async () => {
    const h = harness();
    profile = await h.profile();
    pkg = await h.binaryPackage(profile, { title: 'fw', version: '2.0', bytes: firmware });
    endpoint = `ep-${Math.random().toString(36).slice(2)}`;
    device = await h.engine.devices.saveWithCredentials(
      h.tenantId,
      { name: endpoint, deviceProfileId: { id: profile.id }, firmwareId: { id: pkg.id } },
      lwm2mCredentials(endpoint),
    );
    uplinks = [];
    registrations = [];
    transport = new Lwm2mTransport(h.engine.deviceContext, { port: 0, host: '127.0.0.1', ackTimeoutMs: 300, requestTimeoutMs: 5000 });
    transport.on('uplink', (ev) => uplinks.push(ev));
    transport.on('registration', (ev) => registrations.push(ev));
    port = (await transport.start()).port;
    client = null;
  });

  afterEach(async () => {
    await client?.deregister().catch(() => undefined);
    await transport?.stop();
  });

  const states = (): string[] => uplinks.flatMap((u) => (u.kind === 'telemetry' ? [String(u.entries[0]?.values.fw_state)] : []));
  const stateReached = (state: string): Promise<void> =>
    new Promise((resolve) => {
      if (states().includes(state)) return resolve();
      const check = (): void => {
        if (!states().includes(state)) return;
        transport.off('uplink', check);
        resolve();
      };
      transport.on('uplink', check);
    });
  const notify = (): boolean => transport.deliver({ tenantId: device.tenantId, deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id, attributes: packageAttributes(pkg).set });
  const register = async (resources: Record<string, string | number> = {}): Promise<Lwm2mTestClient> => {
    client = await Lwm2mTestClient.create({ endpoint, resources });
    const registered = once(transport, 'registration');
    await client.register('127.0.0.1', port);
    await registered;
    return client;
  };

  it('registers a device with LwM2M credentials: 2.01 with Location-Path rd/{id}', async () => {
    const c = await register();
    const reg = transport.registrationOf(endpoint);
    expect(reg?.version).to.equal('1.1');
    expect(c).to.not.equal(null);
    expect(registrations.map((r) => [r.event, r.deviceId])).to.deep.equal([['registered', device.id]]);
    expect(transport.registered).to.equal(1);
  });

  it('ends the registration of a device deleted after its Register read it, before it was known', async () => {
    const h = harness();
    const ctx = h.engine.deviceContext;
    await transport.stop();
    // The deletion commits once the Register's device is read, as one made just then would.
    const findByLwm2mEndpoint = async (ep: string): Promise<Device | null> => {
      const found = await ctx.devices.findByLwm2mEndpoint(ep);
      await h.engine.devices.delete(h.tenantId, device.id);
      return found;
    };
    const devices = new Proxy(ctx.devices, { get: (target, key) => (key === 'findByLwm2mEndpoint' ? findByLwm2mEndpoint : (Reflect.get(target, key) as unknown)) });
    transport = new Lwm2mTransport({ ...ctx, devices }, { port: 0, host: '127.0.0.1', ackTimeoutMs: 300, requestTimeoutMs: 5000 });
    transport.on('registration', (ev) => registrations.push(ev));
    port = (await transport.start()).port;
    const ended = new Promise<void>((resolve) => transport.on('registration', (ev) => ev.event !== 'registered' && resolve()));
    await register();
    await ended;
    expect(registrations.map((r) => [r.event, r.deviceId])).to.deep.equal([
      ['registered', device.id],
      ['deregistered', device.id],
    ]);
    expect(transport.registered).to.equal(0);
  });

  it('refuses an unknown endpoint with 4.03 and keeps nothing', async () => {
    const answer = await raw(port, {
      messageId: 7,
      token: Buffer.from('ab'),
      confirmable: true,
      code: '0.02',
      options: [...path('/rd'), ...query('ep=nobody', 'lt=300', 'lwm2m=1.1')],
      payload: Buffer.from('</3/0>,</5/0>'),
    });
    expect(answer?.code).to.equal('4.03');
    expect(transport.registered).to.equal(0);
    expect(registrations).to.deep.equal([]);
  });

  it('answers bad input with 4.xx and changes nothing', async () => {
    const ok = { messageId: 1, token: Buffer.from('t1'), confirmable: true };
    expect((await raw(port, { ...ok, code: '0.02', options: [...path('/rd'), ...query('lt=300')], payload: Buffer.from('</3/0>') }))?.code, 'no ep').to.equal('4.00');
    expect(
      (await raw(port, { ...ok, code: '0.02', options: [...path('/rd'), ...query(`ep=${endpoint}`, 'lt=300')], payload: Buffer.from('</3/0,</5/0>') }))?.code,
      'bad link format',
    ).to.equal('4.00');
    expect(
      (await raw(port, { ...ok, code: '0.02', options: [...path('/rd'), ...query(`ep=${endpoint}`, 'lwm2m=9.9')], payload: Buffer.from('</3/0>') }))?.code,
      'version',
    ).to.equal('4.12');
    expect((await raw(port, { ...ok, code: '0.02', options: [...path('/rd'), ...query(`ep=${endpoint}`, 'lt=1')], payload: Buffer.from('</3/0>') }))?.code, 'lifetime').to.equal(
      '4.00',
    );
    expect((await raw(port, { ...ok, code: '0.01', options: path('/rd') }))?.code, 'GET /rd').to.equal('4.05');
    expect((await raw(port, { ...ok, code: '0.02', options: path('/rd/nope') }))?.code, 'update unknown').to.equal('4.04');
    expect((await raw(port, { ...ok, code: '0.04', options: path('/rd/nope') }))?.code, 'delete unknown').to.equal('4.04');
    expect((await raw(port, { ...ok, code: '0.01', options: path('/elsewhere') }))?.code, 'unknown path').to.equal('4.04');
    expect((await raw(port, { ...ok, code: '0.01', options: path(`/tbfw/${pkg.id}`) }))?.code, 'package no device pulls').to.equal('4.04');
    expect(await raw(port, Buffer.from('garbage that is no CoAP')), 'garbage').to.equal(null);
    expect(transport.registered).to.equal(0);
    expect(registrations).to.deep.equal([]);
  });

  it('de-registers: DELETE /rd/{id} answers 2.02 and ends the registration', async () => {
    const c = await register();
    const removed = once(transport, 'registration');
    await c.deregister();
    const [ev] = (await removed) as [RegistrationEvent];
    expect(ev.event).to.equal('deregistered');
    expect(transport.registered).to.equal(0);
  });

  it('ends a registration whose device stays silent past its lifetime', async () => {
    const h = harness();
    const t = new Lwm2mTransport(h.engine.deviceContext, { port: 0, host: '127.0.0.1', minLifetimeS: 1 });
    const p = (await t.start()).port;
    try {
      const events: RegistrationEvent[] = [];
      t.on('registration', (ev) => events.push(ev));
      const answer = await raw(p, {
        messageId: 3,
        token: Buffer.from('t3'),
        confirmable: true,
        code: '0.02',
        options: [...path('/rd'), ...query(`ep=${endpoint}`, 'lt=1', 'lwm2m=1.1')],
        payload: Buffer.from('</3/0>'),
      });
      expect(answer?.code).to.equal('2.01');
      expect(answer?.options.filter((o) => o.name === 'Location-Path').map((o) => o.value.toString())[0]).to.equal('rd');
      await new Promise<void>((resolve) => t.on('registration', (ev) => ev.event === 'expired' && resolve()));
      expect(events.map((e) => e.event)).to.deep.equal(['registered', 'expired']);
      expect(t.registered).to.equal(0);
    } finally {
      await t.stop();
    }
  });

  it('updates a registration: POST /rd/{id} answers 2.04 and takes the new lifetime; a bad query is 4.00 and changes nothing', async () => {
    const first = await raw(port, {
      messageId: 4,
      token: Buffer.from('t4'),
      confirmable: true,
      code: '0.02',
      options: [...path('/rd'), ...query(`ep=${endpoint}`, 'lt=300', 'lwm2m=1.1')],
      payload: Buffer.from('</3/0>'),
    });
    const location = (first?.options ?? []).filter((o) => o.name === 'Location-Path').map((o) => o.value.toString());
    expect(location[0]).to.equal('rd');
    const updated = await raw(port, { messageId: 5, token: Buffer.from('t5'), confirmable: true, code: '0.02', options: [...path(`/${location.join('/')}`), ...query('lt=600')] });
    expect(updated?.code).to.equal('2.04');
    expect(transport.registrationOf(endpoint)?.lifetimeS).to.equal(600);
    const bad = await raw(port, { messageId: 6, token: Buffer.from('t6'), confirmable: true, code: '0.02', options: [...path(`/${location.join('/')}`), ...query('ep=other')] });
    expect(bad?.code).to.equal('4.00');
    expect(transport.registrationOf(endpoint)?.lifetimeS).to.equal(600);
    expect(registrations.map((r) => r.event)).to.deep.equal(['registered', 'updated']);
  });

  it('updates software through Object 9: pushes to /9/0/2, Installs (/9/0/4) on Delivered, UPDATED on Result 2', async () => {
    const h = harness();
    const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'app', version: '2.0', bytes: Buffer.from('software 2.0') });
    client = await Lwm2mTestClient.create({ endpoint, software: true });
    const registered = once(transport, 'registration');
    await client.register('127.0.0.1', port);
    await registered;
    const swStates = (): string[] => uplinks.flatMap((u) => (u.kind === 'telemetry' && u.entries[0]?.values.sw_state ? [String(u.entries[0].values.sw_state)] : []));
    transport.deliver({ tenantId: device.tenantId, deviceId: device.id, type: 'SOFTWARE', packageId: sw.id, attributes: packageAttributes(sw).set });
    const write = await client.next('write', '/9/0/2');
    expect(write.value).to.equal('software 2.0');
    await client.set('/9/0/7', 3);
    await client.next('execute', '/9/0/4');
    await client.set('/9/0/9', 2);
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (!swStates().includes('UPDATED')) return;
        transport.off('uplink', check);
        resolve();
      };
      transport.on('uplink', check);
      check();
    });
    expect(swStates()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATED']);
  });

  it('pulls over CoAP: writes <resource>/tbfw/{id} to /5/0/1, serves it block-wise, executes /5/0/2 on Downloaded', async () => {
    const c = await register({ '/5/0/9': 0 });
    expect(notify()).to.equal(true);
    const write = await c.next('write', '/5/0/1');
    expect(write.value).to.equal(`coap://127.0.0.1:${port}/tbfw/${pkg.id}`);
    const agent = new Agent({ type: 'udp4' });
    const got = await coapRequest(agent, port, { method: 'GET', pathname: `/tbfw/${pkg.id}` });
    agent.close();
    expect(got.code).to.equal('2.05');
    expect(got.payload.equals(firmware)).to.equal(true);
    const downloaded = uplinks.filter((u) => u.kind === 'download').reduce((n, u) => n + (u.kind === 'download' ? u.bytes : 0), 0);
    expect(downloaded).to.equal(firmware.length);
    await c.set('/5/0/3', 1);
    await stateReached('DOWNLOADING');
    await c.set('/5/0/3', 2);
    await c.next('execute', '/5/0/2');
    await c.set('/5/0/3', 3);
    await stateReached('UPDATING');
    await c.set('/5/0/5', 1);
    await stateReached('UPDATED');
    expect(states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
    const latest = await harness().engine.deviceContext.telemetry.latest(device.id, ['fw_state', 'current_fw_version']);
    expect(latest.fw_state?.value).to.equal('UPDATED');
    expect(latest.current_fw_version?.value).to.equal('2.0');
  });

  it('pushes to lwm2m-node-lib: a Write of /5/0/0 in opaque blocks (it reads only the first: no Block1 in its CoAP stack)', async () => {
    const c = await register({ '/5/0/9': 1 });
    notify();
    const write = await c.next('write', '/5/0/0');
    expect(write.value.length).to.be.within(1, 1024);
    await stateReached('DOWNLOADING');
  });

  it('pushes the whole package block-wise (Block1) to a device that takes it, then Executes Update on Downloaded', async () => {
    const device = await RawLwm2mDevice.start();
    try {
      expect(await device.register(port, endpoint)).to.equal('2.01');
      notify();
      const body = await device.pushed;
      expect(body.equals(firmware)).to.equal(true);
      device.notifyState(2);
      await stateReached('DOWNLOADED');
      expect(await device.executed).to.equal('5/0/2');
      const pushedBytes = uplinks.filter((u) => u.kind === 'download').map((u) => (u.kind === 'download' ? u.bytes : 0));
      expect(pushedBytes.at(-1)).to.equal(firmware.length);
    } finally {
      device.close();
    }
  });

  it('a failure Result ends FAILED with fw_error', async () => {
    const c = await register({ '/5/0/9': 0 });
    notify();
    await c.next('write', '/5/0/1');
    await c.set('/5/0/3', 1);
    await stateReached('DOWNLOADING');
    await c.set('/5/0/5', 6);
    await stateReached('FAILED');
    const latest = await harness().engine.deviceContext.telemetry.latest(device.id, ['fw_state', 'fw_error']);
    expect(latest.fw_state?.value).to.equal('FAILED');
    expect(String(latest.fw_error?.value)).to.match(/Update Result 6/);
  });

  it('starts the update at registration when the device was notified before (shared fw_* attributes)', async () => {
    const h = harness();
    await h.engine.deviceContext.attributes.save(device.id, 'SHARED', packageAttributes(pkg).set, Date.now());
    const c = await register({ '/5/0/9': 0 });
    const write = await c.next('write', '/5/0/1');
    expect(write.value).to.contain(`/tbfw/${pkg.id}`);
  });

  it('a device that de-registers mid-download ends FAILED, not DOWNLOADING', async () => {
    const c = await register({ '/5/0/9': 0 });
    notify();
    await c.next('write', '/5/0/1');
    await c.set('/5/0/3', 1);
    await stateReached('DOWNLOADING');
    await c.deregister();
    client = null;
    await stateReached('FAILED');
    const latest = await harness().engine.deviceContext.telemetry.latest(device.id, ['fw_state', 'fw_error']);
    expect(String(latest.fw_error?.value)).to.match(/de-registered/);
  });
});
