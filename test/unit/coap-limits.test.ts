import { expect } from 'chai';
import { CoapTransport, type CoapOptions } from '../../server/transports/coap/coap-transport';
import { encodeBlock } from '../../server/transports/coap/block-wise';
import type { DeviceContext } from '../../server/transports/device-context';
import type { Device } from '../../server/store/devices';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { OtaPackage } from '../../server/store/ota-packages';
import { optionOf, RawPeer, uintOf, uriOptions } from '../support/coap-clients';
import { useHarness } from './pipeline-support';

/** Counts the calls of one method of a repository, forwarding them. */
function counting<T extends object>(target: T, method: keyof T, counter: { n: number }): T {
  return new Proxy(target, {
    get(t, key) {
      const value = Reflect.get(t, key, t) as unknown;
      if (typeof value !== 'function') return value;
      if (key !== method) return value.bind(t) as unknown;
      return (...args: unknown[]) => {
        counter.n += 1;
        return (value as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}

/** What a peer can make the CoAP transport hold is bounded; a block of a download costs no lookup. */
describe('CoAP transport: limits and the block path', function () {
  const harness = useHarness();
  let profile: DeviceProfile;
  let pkg: OtaPackage;
  let device: Device;
  let transport: CoapTransport;
  let port: number;
  const peers: RawPeer[] = [];
  const firmware = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 31 + (i >> 10)) & 0xff));

  async function start(options: Partial<CoapOptions> = {}, ctx: DeviceContext = harness().engine.deviceContext): Promise<void> {
    transport = new CoapTransport(ctx, { port: 0, host: '127.0.0.1', ...options });
    port = (await transport.start()).port;
  }
  const peer = async (): Promise<RawPeer> => {
    const p = await RawPeer.open(port);
    peers.push(p);
    return p;
  };
  const register = (p: RawPeer, token: string, id: number, messageId: number): void => {
    void p.send({
      code: 'GET',
      confirmable: false,
      messageId,
      token: Buffer.from(id.toString(16).padStart(8, '0'), 'hex'),
      options: [{ name: 'Observe', value: Buffer.alloc(0) }, ...uriOptions(`/api/v1/${token}/attributes`)],
    });
  };

  beforeEach(async () => {
    const h = harness();
    profile = await h.profile();
    pkg = await h.binaryPackage(profile, { title: 'fw', version: '1', bytes: firmware });
    device = await h.device(profile, { firmwareId: pkg.id });
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close();
    await transport.stop();
  });

  it('keeps at most maxObservationsPerDevice observations of one device: 50,000 registrations from one token get 4.29 past it', async function () {
    this.timeout(300_000);
    await start();
    const p = await peer();
    const codes = new Map<string, number>();
    const total = 50_000;
    // In windows of 16, the requests in progress one peer may have (maxExchangesPerPeer).
    for (let sent = 0; sent < total; sent += 16) {
      const n = Math.min(16, total - sent);
      for (let i = 0; i < n; i++) register(p, device.accessToken, sent + i, (sent + i) & 0xffff);
      for (let i = 0; i < n; i++) {
        const code = (await p.next()).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(codes)).to.deep.equal({ '2.05': 4, '4.29': total - 4 });
    expect(transport.observers).to.equal(4);
    const load = transport.load;
    expect(load.dedup).to.be.at.most(4096);
    expect(load.exchanges).to.equal(0);
  });

  it('makes room for a device registering from a new address or port past its limit (a restart): its stalest observation goes', async () => {
    await start({ maxObservationsPerDevice: 2 });
    const first = await peer();
    const second = await peer();
    const third = await peer();
    register(first, device.accessToken, 1, 1);
    expect((await first.next()).code).to.equal('2.05');
    register(second, device.accessToken, 2, 2);
    expect((await second.next()).code).to.equal('2.05');
    register(third, device.accessToken, 3, 3);
    expect((await third.next()).code).to.equal('2.05');
    expect(transport.observers).to.equal(2);
    // The first peer's observation went: a notification reaches the second and third only.
    transport.deliver({ deviceId: device.id, attributes: { fw_title: 'x' }, deleted: [] });
    expect((await second.next()).code).to.equal('2.05');
    expect((await third.next()).code).to.equal('2.05');
    // One more round trip to the first peer, so that a notification to it would have come before.
    first.send({ code: 'GET', confirmable: true, messageId: 77, token: Buffer.from('z'), options: uriOptions('/nowhere') });
    expect((await first.next()).messageId).to.equal(77);
    expect(first.queued).to.equal(0);
  });

  it('answers 5.03 with Max-Age past maxObservations in all, registering nothing', async () => {
    await start({ maxObservations: 2 });
    const other = await harness().device(profile);
    const p = await peer();
    register(p, device.accessToken, 1, 1);
    register(p, device.accessToken, 2, 2);
    expect((await p.next()).code).to.equal('2.05');
    expect((await p.next()).code).to.equal('2.05');
    register(p, other.accessToken, 3, 3);
    const refused = await p.next();
    expect(refused.code).to.equal('5.03');
    expect(uintOf(optionOf(refused, 'Max-Age'))).to.be.greaterThan(0);
    expect(optionOf(refused, 'Observe')).to.equal(undefined);
    expect(transport.observers).to.equal(2);
  });

  it("ends a device's observations with a 4.04 when its access token changes", async () => {
    await start();
    const p = await peer();
    register(p, device.accessToken, 9, 9);
    expect((await p.next()).code).to.equal('2.05');
    await harness().engine.devices.updateCredentials(device.tenantId, device.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'a-new-token' });
    const last = await p.next();
    expect(last.code).to.equal('4.04');
    expect(optionOf(last, 'Observe')).to.equal(undefined);
    expect(transport.observers).to.equal(0);
  });

  it('serves the blocks after the first of a download without a token lookup, and looks again once the token changed', async () => {
    const lookups = { n: 0 };
    const profileReads = { n: 0 };
    const real = harness().engine.deviceContext;
    // The transport finds a token's device and its package through the instance's lookups (device-lookups.ts).
    const counted = counting(counting(real.lookups, 'deviceByToken', lookups), 'packageOf', profileReads);
    await start({}, { ...real, lookups: counted });
    const p = await peer();
    const get = (num: number, messageId: number): Buffer =>
      p.send({
        code: 'GET',
        confirmable: true,
        messageId,
        token: Buffer.from([num & 0xff]),
        options: [...uriOptions(`/fw/${device.accessToken}`, ['title=fw', 'version=1']), { name: 'Block2', value: encodeBlock({ num, more: false, size: 1024 }) }],
      });
    const parts: Buffer[] = [];
    for (let num = 0; num < 64; num++) {
      get(num, 100 + num);
      const answer = await p.next();
      expect(answer.code).to.equal('2.05');
      parts.push(answer.payload);
    }
    expect(Buffer.concat(parts).equals(firmware)).to.equal(true);
    expect(lookups.n, 'one token lookup, for block 0').to.equal(1);
    expect(profileReads.n, 'one package lookup (profile read), for block 0').to.equal(1);

    await harness().engine.devices.updateCredentials(device.tenantId, device.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'rotated-token' });
    get(1, 300);
    expect((await p.next()).code, 'the old token is refused at once').to.equal('4.01');
  });
});
