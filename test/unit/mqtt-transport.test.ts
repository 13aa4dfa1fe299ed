import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { generate, type IDisconnectPacket, type IPublishPacket, type ISubackPacket, type IUnsubackPacket } from 'mqtt-packet';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import { MqttTransport, type MqttOptions, type MqttTransportEvents } from '../../server/transports/mqtt/mqtt-transport';
import { MqttSession } from '../../server/transports/mqtt/session';
import type { Notification } from '../../server/pipeline/notifier';
import type { OtaPackage } from '../../server/store/ota-packages';
import type { UplinkEvent } from '../../server/pipeline/uplink';
import { MqttDevice, RawMqtt, sha256 } from '../support/mqtt-clients';
import { FakeTimers, useHarness, type PipelineHarness } from './pipeline-support';
import { eventually } from '../support/eventually';

const run = promisify(execFile);

/** ThingsBoard's device MQTT API (reference §3) on a real socket, with MQTT.js, raw and mosquitto clients. */
describe('MQTT transport', function () {
  this.timeout(30_000);
  const harness = useHarness();
  const image = randomBytes(150_000);
  let h: PipelineHarness;
  let profile: DeviceProfile;
  let pkg: OtaPackage;
  let device: Device;
  let transport: MqttTransport;
  let url: string;
  let port: number;
  let uplinks: UplinkEvent[];
  const clients: Array<{ end(): unknown }> = [];

  async function startTransport(options: MqttOptions = {}, timers?: FakeTimers): Promise<MqttTransport> {
    const t = new MqttTransport(h.engine.deviceContext, { port: 0, host: '127.0.0.1', ...options }, timers);
    const address = await t.start();
    port = address.port;
    url = `mqtt://127.0.0.1:${port}`;
    return t;
  }

  beforeEach(async () => {
    h = harness();
    profile = await h.profile();
    pkg = await h.binaryPackage(profile, { title: 'thermo-fw', version: '2.0.0', bytes: image });
    device = await h.device(profile, { name: 'thermo-1', firmwareId: pkg.id });
    uplinks = [];
    h.engine.events.on('uplink', (ev) => uplinks.push(ev));
    transport = await startTransport();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end();
    await transport.stop();
  });

  /** An MQTT.js device, ended after the test. */
  async function connect(token = device.accessToken, version: 4 | 5 = 4, options = {}): Promise<MqttDevice> {
    const d = await MqttDevice.connect(url, token, version, options);
    clients.push({ end: () => d.client.end(true) });
    return d;
  }

  async function raw(version: 3 | 4 | 5 = 4): Promise<RawMqtt> {
    const r = await RawMqtt.open(port, version);
    clients.push({ end: () => r.destroy() });
    return r;
  }

  /** Resolves with the next `event` the transport emits. */
  const nextEvent = <K extends keyof MqttTransportEvents>(t: MqttTransport, event: K): Promise<MqttTransportEvents[K][0]> =>
    new Promise((resolve) => t.once(event, ((arg: MqttTransportEvents[K][0]) => resolve(arg)) as never));

  /** The notification ota-notify would emit for `d` now (writes INITIATED and the fw_* shared attributes). */
  async function notify(d: Device = device): Promise<Notification> {
    const outcome = await h.pipeline.notifier.process(h.event(d, 'FIRMWARE', d.firmwareId));
    if (!('notification' in outcome)) throw new Error(`not notified: ${outcome.dropped}`);
    return outcome.notification;
  }

  const json = (m: { payload: Buffer }): unknown => JSON.parse(m.payload.toString('utf8'));

  for (const version of [4, 5] as const) {
    describe(`CONNECT at protocol version ${version}`, () => {
      it('accepts a device whose access token is the username', async () => {
        const r = await raw(version);
        const connack = await r.connect({ username: device.accessToken, clientId: 'any-client-id' });
        expect(connack.cmd).to.equal('connack');
        expect(version === 5 ? connack.reasonCode : connack.returnCode).to.equal(0);
        expect(connack.sessionPresent).to.equal(false);
        expect(transport.connections).to.equal(1);
      });

      const refusals: Array<{ what: string; fields: Record<string, unknown>; v4: number; v5: number }> = [
        { what: 'an unknown token as username', fields: { username: 'no-such-token', clientId: 'c1' }, v4: 5, v5: 0x86 },
        { what: 'an unknown token with a password', fields: { username: 'no-such-token', password: Buffer.from('pw'), clientId: 'c1' }, v4: 5, v5: 0x86 },
        { what: 'only a client id', fields: { clientId: 'c1' }, v4: 2, v5: 0x85 },
        { what: 'nothing at all', fields: { clientId: '' }, v4: 5, v5: 0x87 },
      ];
      for (const r of refusals) {
        it(`refuses ${r.what} with CONNACK ${version === 5 ? `0x${r.v5.toString(16)}` : r.v4}, then closes`, async () => {
          const client = await raw(version);
          const refused = nextEvent(transport, 'refused');
          const connack = await client.connect(r.fields);
          expect(version === 5 ? connack.reasonCode : connack.returnCode).to.equal(version === 5 ? r.v5 : r.v4);
          expect((await refused).code).to.equal(version === 5 ? r.v5 : r.v4);
          await client.closed;
          expect(client.packets.pending, 'nothing after the CONNACK').to.deep.equal([]);
          expect(transport.connections).to.equal(0);
        });
      }
    });
  }

  describe('connections', () => {
    it('accepts MQTT 3.1 (MQIsdp) clients', async () => {
      const r = await raw(3);
      const connack = await r.connect({ username: device.accessToken });
      expect(connack.returnCode).to.equal(0);
      r.send({ cmd: 'pingreq' });
      expect((await r.next()).cmd).to.equal('pingresp');
    });

    it('tells MQTT 5 clients that QoS 1 is the highest it grants', async () => {
      const r = await raw(5);
      expect((await r.connect({ username: device.accessToken })).properties?.maximumQoS).to.equal(1);
    });

    it('answers PINGREQ with PINGRESP', async () => {
      const r = await raw();
      await r.connect({ username: device.accessToken });
      r.send({ cmd: 'pingreq' });
      expect((await r.next()).cmd).to.equal('pingresp');
    });

    it('closes a connection whose first packet is not CONNECT', async () => {
      const r = await raw();
      r.send({ cmd: 'pingreq' });
      await r.closed;
      expect(r.packets.pending).to.deep.equal([]);
    });

    it('closes a connection whose first packet is a PUBACK', async () => {
      const r = await raw();
      r.send({ cmd: 'puback', messageId: 1 });
      await r.closed;
      expect(r.packets.pending).to.deep.equal([]);
    });

    it('takes PUBACKs alone, several in one segment, or split, and a packet whose last bytes look like one', async () => {
      // A session on a socket whose server end the test holds, so each write is read on its own.
      const listener = net.createServer();
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
      const r = await RawMqtt.open((listener.address() as net.AddressInfo).port);
      clients.push({ end: () => r.destroy() });
      const socket = await accepted;
      listener.close();
      new MqttSession(socket, transport);
      await r.connect({ username: device.accessToken });
      const write = async (bytes: Buffer): Promise<void> => {
        const read = socket.bytesRead + bytes.length;
        r.socket.write(bytes);
        await eventually(() => socket.bytesRead === read, 'the server read the segment');
      };
      const puback = Buffer.from([0x40, 0x02, 0x00, 0x07]);
      await write(puback);
      await write(Buffer.concat([puback, puback, puback]));
      await write(puback.subarray(0, 1));
      await write(puback.subarray(1));
      // A PUBLISH whose payload ends in a PUBACK's bytes, those in a segment of their own: still the PUBLISH's.
      const publish = generate({ cmd: 'publish', topic: 'sensors/kitchen', payload: puback, qos: 1, messageId: 9, dup: false, retain: false });
      await write(publish.subarray(0, publish.length - 4));
      await write(publish.subarray(publish.length - 4));
      expect(await r.next()).to.include({ cmd: 'puback', messageId: 9 });
      r.send({ cmd: 'pingreq' });
      expect((await r.next()).cmd).to.equal('pingresp');
      expect(r.packets.pending).to.deep.equal([]);
    });

    it('sets TCP_NODELAY on every device socket', async () => {
      // Node cannot read the option back: record the calls instead.
      const calls: Array<{ remotePort: number | undefined; noDelay: boolean | undefined }> = [];
      const original = net.Socket.prototype.setNoDelay;
      net.Socket.prototype.setNoDelay = function (this: net.Socket, noDelay?: boolean) {
        calls.push({ remotePort: this.remotePort, noDelay });
        return original.call(this, noDelay);
      };
      try {
        const r = await raw();
        await r.connect({ username: device.accessToken });
        expect(calls).to.deep.include({ remotePort: r.socket.localPort, noDelay: true });
      } finally {
        net.Socket.prototype.setNoDelay = original;
      }
    });

    it('reports a clean DISCONNECT and an unclean drop as such', async () => {
      const clean = await connect();
      const gone = nextEvent(transport, 'disconnect');
      await clean.end();
      expect(await gone).to.include({ deviceId: device.id, reason: 'client-disconnect' });
      const r = await raw();
      await r.connect({ username: device.accessToken });
      const dropped = nextEvent(transport, 'disconnect');
      r.destroy();
      expect(await dropped).to.include({ deviceId: device.id, reason: 'connection-lost' });
      expect(transport.connections).to.equal(0);
    });

    it("closes a device's older connection when it connects again (MQTT 5: DISCONNECT 0x8E)", async () => {
      const first = await connect(device.accessToken, 5);
      const second = await connect(device.accessToken, 5);
      await first.closed;
      expect((first.disconnect as IDisconnectPacket | null)?.reasonCode).to.equal(0x8e);
      expect(transport.connections).to.equal(1);
      expect(second.client.connected).to.equal(true);
    });

    it('keeps track of the newest of three connections of one device (issue 10, item 1)', async () => {
      const s1 = await connect(device.accessToken, 5);
      await s1.subscribe(['v1/devices/me/attributes']);
      const s2 = await connect(device.accessToken, 5);
      await s2.subscribe(['v1/devices/me/attributes']);
      await s1.closed;
      const s3 = await connect(device.accessToken, 5);
      await s3.subscribe(['v1/devices/me/attributes']);
      await s2.closed;
      expect((s2.disconnect as IDisconnectPacket | null)?.reasonCode).to.equal(0x8e);
      expect(transport.connections).to.equal(1);
      const got = s3.next('v1/devices/me/attributes');
      expect(transport.deliver(await notify())).to.equal(1);
      expect(JSON.parse((await got).payload.toString())).to.include({ fw_title: 'thermo-fw' });
      // A credentials change ends the one session left.
      const gone = nextEvent(transport, 'disconnect');
      await h.engine.devices.updateCredentials(h.tenantId, device.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'a-brand-new-token' });
      expect(await gone).to.include({ deviceId: device.id, reason: 'credentials-changed' });
      await s3.closed;
      expect(transport.connections).to.equal(0);
    });

    it('closes the connection of a device that is deleted (MQTT 5: DISCONNECT 0x98)', async () => {
      const a = await connect(device.accessToken, 5);
      const gone = nextEvent(transport, 'disconnect');
      await h.engine.devices.delete(h.tenantId, device.id);
      expect(await gone).to.include({ deviceId: device.id, reason: 'device-deleted' });
      await a.closed;
      expect((a.disconnect as IDisconnectPacket | null)?.reasonCode).to.equal(0x98);
      expect(transport.connections).to.equal(0);
    });

    it('closes the connections made with a token the device no longer has', async () => {
      const a = await connect(device.accessToken);
      const gone = nextEvent(transport, 'disconnect');
      // What a credentials change announces (the engine's updateAccessToken does not emit it yet).
      h.engine.events.emit('deviceSaved', { before: device, after: { ...device, accessToken: 'a-brand-new-token' } });
      expect(await gone).to.include({ deviceId: device.id, reason: 'credentials-changed' });
      await a.closed;
      expect(transport.connections).to.equal(0);
    });

    it('closes the connections of a device another instance deleted or re-keyed (deviceRevoked, heard on the cluster bus)', async () => {
      for (const reason of ['credentials-changed', 'device-deleted'] as const) {
        const a = await connect(device.accessToken, 5);
        const gone = nextEvent(transport, 'disconnect');
        h.engine.events.emit('deviceRevoked', { tenantId: device.tenantId, deviceId: device.id, reason });
        expect(await gone).to.include({ deviceId: device.id, reason });
        await a.closed;
        expect((a.disconnect as IDisconnectPacket | null)?.reasonCode).to.equal(0x98);
      }
      expect(transport.connections).to.equal(0);
    });

    it('keeps the connection of a device that is renamed, and reports the new name', async () => {
      const a = await connect();
      await h.updateDevice(device, { name: 'thermo-renamed' });
      await a.publish('v1/devices/me/telemetry', '{"t":1}');
      expect(uplinks.at(-1)).to.include({ deviceName: 'thermo-renamed' });
    });

    it('reads again a device another instance renamed (deviceChangedElsewhere, heard on the cluster bus), keeping the connection', async () => {
      const a = await connect();
      // Saved elsewhere: the row changes, no deviceSaved here.
      await h.engine.deviceContext.devices.update({ ...device, name: 'thermo-renamed-elsewhere', version: device.version + 1 });
      h.engine.events.emit('deviceChangedElsewhere', { tenantId: device.tenantId, deviceId: device.id });
      await eventually(async () => {
        await a.publish('v1/devices/me/telemetry', '{"t":1}');
        return uplinks.at(-1)?.deviceName === 'thermo-renamed-elsewhere';
      }, 'the new name in the uplink');
      expect(transport.connections).to.equal(1);
    });
  });

  describe('a change made while a CONNECT is read (after its device read, before its session is held)', () => {
    /** `change` runs once the next CONNECT's device is read and before its session is held. */
    function whileConnecting(change: () => Promise<unknown>): void {
      const authenticator = transport.authenticator;
      const read = authenticator.authenticate.bind(authenticator);
      authenticator.authenticate = async (c) => {
        Reflect.deleteProperty(authenticator, 'authenticate'); // the next CONNECT is read as usual
        const found = await read(c);
        await change();
        return found;
      };
    }

    const renamedTo = async (a: MqttDevice, name: string): Promise<void> => {
      await eventually(async () => {
        await a.publish('v1/devices/me/telemetry', '{"t":1}');
        return uplinks.at(-1)?.deviceName === name;
      }, `the name ${name} in the uplink`);
      expect(transport.connections).to.equal(1);
    };

    it('reports the name the device was given meanwhile, here', async () => {
      whileConnecting(() => h.updateDevice(device, { name: 'renamed-while-connecting' }));
      await renamedTo(await connect(), 'renamed-while-connecting');
    });

    it('reports the name the device was given meanwhile on another instance (deviceChangedElsewhere)', async () => {
      whileConnecting(async () => {
        await h.engine.deviceContext.devices.update({ ...device, name: 'renamed-elsewhere-while-connecting', version: device.version + 1 });
        h.engine.events.emit('deviceChangedElsewhere', { tenantId: device.tenantId, deviceId: device.id });
      });
      await renamedTo(await connect(), 'renamed-elsewhere-while-connecting');
    });

    it('closes the connection of a device deleted or re-keyed meanwhile', async () => {
      const changes = [
        { reason: 'device-deleted', change: () => h.engine.devices.delete(h.tenantId, device.id) },
        {
          reason: 'credentials-changed',
          change: () => h.engine.devices.updateCredentials(h.tenantId, device.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'a-token-given-meanwhile' }),
        },
      ];
      for (const { reason, change } of changes) {
        if (reason === 'credentials-changed') device = await h.device(profile, { name: 'thermo-2' });
        whileConnecting(change);
        const gone = nextEvent(transport, 'disconnect');
        const r = await raw(5);
        expect((await r.connect({ username: device.accessToken, clientId: reason })).reasonCode, 'accepted: the device was read before the change').to.equal(0);
        expect(await gone).to.include({ deviceId: device.id, reason });
        await r.closed;
        expect((r.packets.pending as IDisconnectPacket[]).map((p) => [p.cmd, p.reasonCode])).to.deep.equal([['disconnect', 0x98]]);
        expect(transport.connections).to.equal(0);
      }
    });
  });

  describe('keepalive', () => {
    let fake: FakeTimers;
    beforeEach(async () => {
      await transport.stop();
      fake = new FakeTimers();
      transport = await startTransport({}, fake);
    });

    it('closes a device silent for one and a half keepalive periods (MQTT 5: DISCONNECT 0x8D)', async () => {
      const r = await raw(5);
      await r.connect({ username: device.accessToken, keepalive: 2 });
      await fake.advance(2999);
      expect(r.open).to.equal(true);
      const gone = nextEvent(transport, 'disconnect');
      await fake.advance(1);
      expect(await gone).to.include({ reason: 'keepalive-timeout' });
      expect(((await r.next()) as IDisconnectPacket).reasonCode).to.equal(0x8d);
      await r.closed;
    });

    it('keeps a device that sends something within the period', async () => {
      const r = await raw(4);
      await r.connect({ username: device.accessToken, keepalive: 2 });
      await fake.advance(2000);
      r.send({ cmd: 'pingreq' });
      expect((await r.next()).cmd).to.equal('pingresp');
      await fake.advance(2000);
      expect(r.open, '1 s after the ping').to.equal(true);
      await fake.advance(1000);
      await r.closed;
    });

    it('leaves no timer behind when stopped', async () => {
      const r = await raw(5);
      await r.connect({ username: device.accessToken, keepalive: 60 });
      const waiting = await raw(4); // connected, never sent CONNECT: its connect timeout is pending
      await eventually(() => fake.pending === 2, 'the server to accept the second socket');
      await transport.stop();
      await Promise.all([r.closed, waiting.closed]);
      expect(fake.pending).to.equal(0);
    });
  });

  describe('SUBSCRIBE', () => {
    it('grants QoS 0 and 1, and 1 for QoS 2', async () => {
      const r = await raw(4);
      await r.connect({ username: device.accessToken });
      r.send({
        cmd: 'subscribe',
        messageId: 7,
        subscriptions: [
          { topic: 'v1/devices/me/attributes', qos: 0 },
          { topic: 'v1/devices/me/attributes/response/+', qos: 1 },
          { topic: 'v1/devices/me/rpc/request/+', qos: 2 },
        ],
      });
      const suback = (await r.next()) as ISubackPacket;
      expect(suback).to.include({ cmd: 'suback', messageId: 7 });
      expect(suback.granted).to.deep.equal([0, 1, 1]);
    });

    for (const version of [4, 5] as const) {
      it(`accepts exactly the four OTA filters and refuses the others with ${version === 5 ? '0x8F' : '0x80'}`, async () => {
        const d = await connect(device.accessToken, version);
        const refused = version === 5 ? 0x8f : 0x80;
        expect(await d.subscribe(['v2/fw/response/+/chunk/+', 'v2/fw/error', 'v2/sw/response/+/chunk/+', 'v2/sw/error'])).to.deep.equal([1, 1, 1, 1]);
        expect(await d.subscribe(['v2/fw/response/+', 'v2/fw/#', 'v2/sw/response/+', 'v2/fw/response/1/chunk/0', 'v2/+/error'])).to.deep.equal([
          refused,
          refused,
          refused,
          refused,
          refused,
        ]);
      });
    }

    it('accepts the attribute, response and RPC filters of every family, and refuses unrelated ones', async () => {
      const d = await connect();
      const ok = [
        'v1/devices/me/attributes',
        'v2/a',
        'v2/a/j',
        'v1/devices/me/attributes/response/+',
        'v2/a/res/+',
        'v2/a/res/j/+',
        'v1/devices/me/rpc/request/+',
        'v2/r/req/+',
        'v1/devices/me/rpc/response/+',
        'v2/r/res/+',
      ];
      expect(await d.subscribe(ok)).to.deep.equal(ok.map(() => 1));
      expect(await d.subscribe(['#', 'v1/devices/me/#', 'v1/devices/other/attributes', 'v1/gateway/attributes', 'v2/a/p', 'sensors/+/temp'])).to.deep.equal([
        128, 128, 128, 128, 128, 128,
      ]);
    });

    it('answers UNSUBSCRIBE, with reason codes in MQTT 5', async () => {
      const r = await raw(5);
      await r.connect({ username: device.accessToken });
      r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'v2/a', qos: 1 }] });
      await r.next();
      r.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['v2/a', 'v1/devices/me/attributes'] });
      const unsuback = (await r.next()) as IUnsubackPacket;
      expect(unsuback).to.include({ cmd: 'unsuback', messageId: 2 });
      expect(unsuback.granted).to.deep.equal([0x00, 0x11]);
    });
  });

  describe('client attributes and telemetry', () => {
    it('saves client attributes published on v1/devices/me/attributes and v2/a, and emits them', async () => {
      const d = await connect();
      await d.publish('v1/devices/me/attributes', JSON.stringify({ model: 'T-1000' }));
      await d.publish('v2/a', JSON.stringify({ serial: 'SN-1' }));
      await d.publish('v2/a/j', JSON.stringify({ batch: 7 }));
      expect(await h.pipeline.attributes.get(device.id, 'CLIENT')).to.deep.equal({ batch: 7, model: 'T-1000', serial: 'SN-1' });
      expect(uplinks.map((u) => (u.kind === 'attributes' ? u.attributes : null))).to.deep.equal([{ model: 'T-1000' }, { serial: 'SN-1' }, { batch: 7 }]);
      expect(uplinks[0]).to.include({ tenantId: device.tenantId, deviceId: device.id, deviceName: 'thermo-1', transport: 'MQTT', kind: 'attributes' });
    });

    it('saves telemetry as an object, as {ts, values} and as an array, on v1 and v2/t', async () => {
      const d = await connect();
      const ts = Date.now() - 60_000;
      await d.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING' }));
      await d.publish('v2/t', JSON.stringify({ ts, values: { temperature: 21.5 } }));
      await d.publish('v2/t/j', JSON.stringify([{ ts: ts + 1, values: { humidity: 40 } }, { current_fw_version: '1.0' }]));
      const latest = await h.pipeline.telemetry.latest(device.id);
      expect(latest.fw_state?.value).to.equal('DOWNLOADING');
      expect(latest.temperature).to.deep.equal({ ts, value: 21.5 });
      expect(latest.humidity).to.deep.equal({ ts: ts + 1, value: 40 });
      expect(latest.current_fw_version?.value).to.equal('1.0');
      const telemetry = uplinks.filter((u) => u.kind === 'telemetry');
      expect(telemetry).to.have.length(3);
      expect(telemetry[1]).to.deep.include({ transport: 'MQTT', entries: [{ ts, values: { temperature: 21.5 } }] });
    });

    it('closes a 3.1.1 connection that publishes telemetry that is not JSON, and stores nothing', async () => {
      const d = await connect(device.accessToken, 4);
      const before = await h.pipeline.telemetry.latest(device.id);
      d.send('v1/devices/me/telemetry', '{not json');
      await d.closed;
      expect(await h.pipeline.telemetry.latest(device.id)).to.deep.equal(before);
      expect(uplinks).to.deep.equal([]);
    });

    it('answers MQTT 5 QoS 1 telemetry that is not JSON with PUBACK 0x99 and keeps the connection', async () => {
      const r = await raw(5);
      await r.connect({ username: device.accessToken });
      r.send({ cmd: 'publish', topic: 'v1/devices/me/telemetry', payload: Buffer.from('[1, 2]'), qos: 1, messageId: 3, dup: false, retain: false });
      expect(await r.next()).to.include({ cmd: 'puback', messageId: 3, reasonCode: 0x99 });
      r.send({ cmd: 'pingreq' });
      expect((await r.next()).cmd).to.equal('pingresp');
    });

    it('acknowledges and ignores a topic it does not know (MQTT 5: PUBACK 0x90)', async () => {
      const r = await raw(5);
      await r.connect({ username: device.accessToken });
      r.send({ cmd: 'publish', topic: 'sensors/kitchen', payload: Buffer.from('21'), qos: 1, messageId: 9, dup: false, retain: false });
      expect(await r.next()).to.include({ cmd: 'puback', messageId: 9, reasonCode: 0x90 });
      expect(uplinks).to.deep.equal([]);
    });
  });

  describe('attribute requests', () => {
    beforeEach(async () => {
      await notify();
      await h.pipeline.attributes.save(device.id, 'CLIENT', { model: 'T-1000', serial: 'SN-1' }, Date.now());
    });

    it('answers v1/devices/me/attributes/request/{id} with comma-separated keys on .../response/{id}', async () => {
      const d = await connect();
      const reply = await d.ask(
        'v1/devices/me/attributes/request/1',
        JSON.stringify({ clientKeys: 'model,unknown', sharedKeys: 'fw_title,fw_version,fw_size' }),
        'v1/devices/me/attributes/response/1',
      );
      expect(json(reply)).to.deep.equal({ client: { model: 'T-1000' }, shared: { fw_title: 'thermo-fw', fw_version: '2.0.0', fw_size: image.length } });
    });

    it('answers v2/a/req/{id} on v2/a/res/{id}', async () => {
      const d = await connect(device.accessToken, 5);
      const reply = await d.ask('v2/a/req/42', JSON.stringify({ sharedKeys: 'fw_checksum_algorithm' }), 'v2/a/res/42');
      expect(json(reply)).to.deep.equal({ shared: { fw_checksum_algorithm: 'SHA256' } });
    });

    it('leaves out empty sections, so nothing found is {}', async () => {
      const d = await connect();
      expect(
        json(await d.ask('v1/devices/me/attributes/request/2', JSON.stringify({ clientKeys: 'nope', sharedKeys: 'nope' }), 'v1/devices/me/attributes/response/2')),
      ).to.deep.equal({});
      expect(json(await d.ask('v1/devices/me/attributes/request/3', JSON.stringify({ sharedKeys: 'fw_title' }), 'v1/devices/me/attributes/response/3'))).to.deep.equal({
        shared: { fw_title: 'thermo-fw' },
      });
    });

    it('answers everything when no keys are given', async () => {
      const d = await connect();
      const reply = json(await d.ask('v1/devices/me/attributes/request/4', '{}', 'v1/devices/me/attributes/response/4')) as { client: object; shared: object };
      expect(reply.client).to.deep.equal({ model: 'T-1000', serial: 'SN-1' });
      expect(reply.shared).to.include({ fw_title: 'thermo-fw', fw_checksum: pkg.checksum });
    });

    it('answers a device subscribed only to attribute updates, at QoS 1', async () => {
      const updatesOnly = await connect();
      await updatesOnly.subscribe(['v1/devices/me/attributes']);
      const reply = await updatesOnly.ask('v1/devices/me/attributes/request/5', JSON.stringify({ sharedKeys: 'fw_title' }), 'v1/devices/me/attributes/response/5');
      expect(reply.qos, 'QoS 1 without a matching subscription').to.equal(1);
      expect(json(reply)).to.deep.equal({ shared: { fw_title: 'thermo-fw' } });
    });

    it('answers at the QoS granted to the response subscription', async () => {
      const d = await connect();
      await d.subscribe(['v1/devices/me/attributes/response/+'], 0);
      expect((await d.ask('v1/devices/me/attributes/request/6', '{"sharedKeys":"fw_title"}', 'v1/devices/me/attributes/response/6')).qos).to.equal(0);
    });

    it('closes a 3.1.1 connection whose request id is not a number', async () => {
      const d = await connect();
      d.client.publish('v1/devices/me/attributes/request/abc', '{}', { qos: 1 });
      await d.closed;
    });
  });

  describe('notifications (deliver)', () => {
    it('delivers to a device subscribed to v1/devices/me/attributes, deleted keys included', async () => {
      const d = await connect();
      await d.subscribe(['v1/devices/me/attributes']);
      const n = await notify();
      expect(transport.deliver({ ...n, deleted: ['fw_url', 'fw_tag'] })).to.equal(1);
      const m = await d.next('v1/devices/me/attributes');
      expect(json(m)).to.deep.equal({ ...n.attributes, deleted: ['fw_url', 'fw_tag'] });
      expect(m.qos).to.equal(1);
    });

    it('delivers on v2/a to a device that subscribed there, at its granted QoS', async () => {
      const d = await connect(device.accessToken, 5);
      await d.subscribe(['v2/a'], 0);
      expect(transport.deliver({ tenantId: device.tenantId, deviceId: device.id, attributes: {}, deleted: ['fw_title'] })).to.equal(1);
      const m = await d.next('v2/a');
      expect(json(m)).to.deep.equal({ deleted: ['fw_title'] });
      expect(m.qos).to.equal(0);
    });

    it('delivers a batch (deliverAll), each device its own update, one JSON for the devices sharing an attribute map', async () => {
      const other = await h.device(profile, { name: 'thermo-2', firmwareId: pkg.id });
      const third = await h.device(profile, { name: 'thermo-3', firmwareId: pkg.id });
      const [a, b, c] = [await connect(device.accessToken), await connect(other.accessToken), await connect(third.accessToken, 5)];
      for (const d of [a, b, c]) await d.subscribe(['v1/devices/me/attributes']);
      const shared = (await notify(device)).attributes;
      const deleted = ['fw_url'];
      const batch = [
        { tenantId: device.tenantId, deviceId: device.id, attributes: shared, deleted },
        { tenantId: other.tenantId, deviceId: other.id, attributes: shared, deleted },
        { tenantId: device.tenantId, deviceId: 'not-connected' as Device['id'], attributes: shared, deleted },
        // Another map after the shared one: its own JSON, not the one before it.
        { tenantId: third.tenantId, deviceId: third.id, attributes: { ...shared, fw_version: '9.9' }, deleted: [] },
      ];
      expect(transport.deliverAll(batch)).to.equal(3);
      expect(json(await a.next('v1/devices/me/attributes'))).to.deep.equal({ ...shared, deleted: ['fw_url'] });
      expect(json(await b.next('v1/devices/me/attributes'))).to.deep.equal({ ...shared, deleted: ['fw_url'] });
      expect(json(await c.next('v1/devices/me/attributes'))).to.deep.equal({ ...shared, fw_version: '9.9' });
    });

    it("gives each device of a batch the update with its own next packet id, in its protocol's PUBLISH", async () => {
      const devices = [device, ...(await Promise.all([2, 3, 4].map((k) => h.device(profile, { name: `thermo-${k}`, firmwareId: pkg.id }))))];
      const clients = [await raw(4), await raw(4), await raw(5), await raw(5)];
      for (const [k, r] of clients.entries()) {
        await r.connect({ username: (devices[k] as Device).accessToken, clientId: `raw-${k}` });
        r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'v1/devices/me/attributes', qos: 1 }] });
        expect((await r.next()).cmd).to.equal('suback');
        if (k % 2 === 0) continue;
        // Packet id 1 goes to an answer first: this device's updates come one id later.
        r.send({ cmd: 'publish', topic: 'v1/devices/me/attributes/request/1', payload: Buffer.from('{}'), qos: 0, dup: false, retain: false });
        expect(await r.next()).to.include({ cmd: 'publish', topic: 'v1/devices/me/attributes/response/1', messageId: 1 });
      }
      const attributes = (await notify(device)).attributes;
      const deleted = ['fw_url'];
      const batch = devices.map((d) => ({ tenantId: d.tenantId, deviceId: d.id, attributes, deleted }));
      const payload = Buffer.from(JSON.stringify({ ...attributes, deleted: ['fw_url'] }));
      for (const expected of [
        [1, 2, 1, 2],
        [2, 3, 2, 3],
      ]) {
        expect(transport.deliverAll(batch)).to.equal(4);
        for (const [k, r] of clients.entries()) {
          const p = (await r.next()) as IPublishPacket;
          expect(p).to.include({ cmd: 'publish', topic: 'v1/devices/me/attributes', qos: 1, messageId: expected[k] });
          expect(Buffer.from(p.payload)).to.deep.equal(payload);
        }
      }
    });

    it('delivers nothing to a device that did not subscribe, or unsubscribed', async () => {
      const d = await connect();
      const n = await notify();
      expect(transport.deliver(n)).to.equal(0);
      await d.subscribe(['v1/devices/me/attributes']);
      await d.client.unsubscribeAsync('v1/devices/me/attributes');
      expect(transport.deliver(n)).to.equal(0);
      expect(transport.deliver({ ...n, deviceId: 'not-connected' as Device['id'] })).to.equal(0);
    });

    it("never lets a device see another device's messages", async () => {
      const other = await h.device(profile, { name: 'thermo-2', firmwareId: pkg.id });
      const a = await connect(device.accessToken);
      const b = await connect(other.accessToken);
      await a.subscribe(['v1/devices/me/attributes', 'v1/devices/me/attributes/response/+', 'v2/fw/response/+/chunk/+', 'v1/devices/me/rpc/response/+']);
      await b.subscribe(['v1/devices/me/attributes', 'v1/devices/me/attributes/response/+', 'v2/fw/response/+/chunk/+', 'v1/devices/me/rpc/response/+']);
      const n = await notify(device);
      expect(transport.deliver(n)).to.equal(1);
      await a.next('v1/devices/me/attributes');
      await a.ask('v1/devices/me/attributes/request/1', '{"sharedKeys":"fw_title"}', 'v1/devices/me/attributes/response/1');
      await a.ask('v2/fw/request/1/chunk/0', '1024', 'v2/fw/response/1/chunk/0');
      await a.ask('v1/devices/me/rpc/request/1', '{"method":"getSessionLimits"}', 'v1/devices/me/rpc/response/1');
      await a.publish('v1/devices/me/telemetry', '{"fw_state":"DOWNLOADING"}');
      // B asks something itself, so every message of A's would have reached it by its answer.
      const own = await b.ask('v1/devices/me/attributes/request/9', '{"sharedKeys":"fw_title"}', 'v1/devices/me/attributes/response/9');
      expect(json(own)).to.deep.equal({}); // B was not notified: no fw_title of its own yet
      expect(b.inbox.pending).to.deep.equal([]);
      expect((await h.pipeline.telemetry.latest(other.id, ['fw_state'])).fw_state?.value).to.equal('QUEUED');
      expect((await h.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.equal('DOWNLOADING');
    });
  });

  describe('firmware and software chunks', () => {
    it('serves a complete update in 4 KB chunks whose checksum verifies, as the SDK asks for it', async () => {
      const d = await connect(device.accessToken, 5);
      // The SDK subscribes to the refused v2/fw/response/+ and relies on chunks coming anyway.
      expect(await d.subscribe(['v1/devices/me/attributes', 'v1/devices/me/attributes/response/+', 'v2/fw/response/+'])).to.deep.equal([1, 1, 0x8f]);
      transport.deliver(await notify());
      const fw = json(await d.next('v1/devices/me/attributes')) as Record<string, string | number>;
      expect(fw).to.include({ fw_title: 'thermo-fw', fw_version: '2.0.0', fw_size: image.length, fw_checksum_algorithm: 'SHA256' });
      await d.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING' }));
      const data = await d.download(Number(fw.fw_size), 4096);
      expect(sha256(data)).to.equal(fw.fw_checksum);
      await d.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADED' }));
      const downloads = uplinks.filter((u) => u.kind === 'download');
      expect(downloads).to.have.length(Math.ceil(image.length / 4096));
      expect(downloads[1]).to.deep.include({ transport: 'MQTT', type: 'FIRMWARE', packageId: pkg.id, bytes: 4096, offset: 4096, size: image.length });
      expect(downloads.at(-1)).to.deep.include({ bytes: image.length % 4096, offset: image.length - (image.length % 4096) });
      expect((await h.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.equal('DOWNLOADED');
    });

    it('sends chunks at QoS 1 when no subscription matches, else at the granted QoS', async () => {
      const d = await connect();
      expect((await d.ask('v2/fw/request/1/chunk/0', '1024', 'v2/fw/response/1/chunk/0')).qos).to.equal(1);
      await d.subscribe(['v2/fw/response/+/chunk/+'], 0);
      expect((await d.ask('v2/fw/request/1/chunk/1', '1024', 'v2/fw/response/1/chunk/1')).qos).to.equal(0);
    });

    it('sends each chunk its own bytes while the device reads slowly and answers wait in the socket', async () => {
      // More than loopback's socket buffers hold: most answers wait in the server's socket while the
      // device reads nothing, so the windows they were cut from must not be read into again meanwhile.
      const bytes = randomBytes(16 * 1024 * 1024);
      const size = 64 * 1024;
      const n = bytes.length / size;
      const slowPkg = await h.binaryPackage(profile, { title: 'slow-fw', version: '1.0.0', bytes });
      const slow = await h.device(profile, { name: 'slow-reader', firmwareId: slowPkg.id });
      const r = await raw(4);
      await r.connect({ username: slow.accessToken });
      const answered = new Promise<void>((resolve) => {
        let sent = 0;
        const count = (ev: UplinkEvent): void => {
          if (ev.kind !== 'download' || ev.deviceId !== slow.id || ++sent < n) return;
          h.engine.events.off('uplink', count);
          resolve();
        };
        h.engine.events.on('uplink', count);
      });
      r.socket.pause();
      for (let i = 0; i < n; i++)
        r.send({ cmd: 'publish', topic: `v2/fw/request/1/chunk/${i}`, payload: Buffer.from(String(size)), qos: 1, messageId: i + 1, dup: false, retain: false });
      // Every answer written (most into the socket's queue), then read.
      await answered;
      r.socket.resume();
      for (let i = 0; i < n; i++) {
        const chunk = (await r.packets.next((p) => p.cmd === 'publish', 20_000, `chunk ${i}`)) as IPublishPacket;
        expect(chunk.topic).to.equal(`v2/fw/response/1/chunk/${i}`);
        expect(Buffer.from(chunk.payload).equals(bytes.subarray(i * size, (i + 1) * size)), `bytes of chunk ${i}`).to.equal(true);
      }
    });

    it('sends the PUBACK of a chunk request before the chunk', async () => {
      const r = await raw(4);
      await r.connect({ username: device.accessToken });
      r.send({ cmd: 'publish', topic: 'v2/fw/request/3/chunk/2', payload: Buffer.from('1000'), qos: 1, messageId: 11, dup: false, retain: false });
      expect(await r.next()).to.include({ cmd: 'puback', messageId: 11 });
      const chunk = (await r.next()) as IPublishPacket;
      expect(chunk).to.include({ cmd: 'publish', topic: 'v2/fw/response/3/chunk/2', qos: 1 });
      expect(Buffer.from(chunk.payload).equals(image.subarray(2000, 3000))).to.equal(true);
    });

    it('remembers the chunk size of a request id, and sends the whole file for an empty payload without one', async () => {
      const d = await connect();
      expect((await d.ask('v2/fw/request/1/chunk/0', '4096', 'v2/fw/response/1/chunk/0')).payload.length).to.equal(4096);
      expect((await d.ask('v2/fw/request/1/chunk/3', '', 'v2/fw/response/1/chunk/3')).payload.equals(image.subarray(3 * 4096, 4 * 4096))).to.equal(true);
      expect((await d.ask('v2/fw/request/2/chunk/5', '', 'v2/fw/response/2/chunk/5')).payload.equals(image)).to.equal(true);
    });

    it('sends the whole file for chunk size 0, whatever the index', async () => {
      const d = await connect();
      expect((await d.ask('v2/fw/request/1/chunk/0', '0', 'v2/fw/response/1/chunk/0')).payload.equals(image)).to.equal(true);
      expect((await d.ask('v2/fw/request/1/chunk/7', '0', 'v2/fw/response/1/chunk/7')).payload.equals(image)).to.equal(true);
    });

    it('streams a whole file larger than a MiB, and what else it sends waits until the file is through', async () => {
      const large = randomBytes(3 * 1024 * 1024 + 17);
      const big = await h.binaryPackage(profile, { title: 'thermo-big', version: '1', bytes: large });
      await h.setDevicePackage(device, 'FIRMWARE', big.id);
      const r = await raw(5);
      await r.connect({ username: device.accessToken });
      r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'v1/devices/me/attributes', qos: 1 }] });
      await r.next();
      r.send({ cmd: 'publish', topic: 'v2/fw/request/1/chunk/0', payload: Buffer.alloc(0), qos: 1, messageId: 2, dup: false, retain: false });
      expect(await r.next()).to.include({ cmd: 'puback', messageId: 2 });
      transport.deliver({ tenantId: device.tenantId, deviceId: device.id, attributes: { fw_title: 'thermo-big' }, deleted: [] });
      const whole = (await r.next()) as IPublishPacket;
      expect(whole.topic).to.equal('v2/fw/response/1/chunk/0');
      expect(Buffer.from(whole.payload).equals(large)).to.equal(true);
      const update = (await r.next()) as IPublishPacket;
      expect(update).to.include({ cmd: 'publish', topic: 'v1/devices/me/attributes' });
      expect(JSON.parse(Buffer.from(update.payload).toString())).to.deep.equal({ fw_title: 'thermo-big' });
    });

    it('answers NOT_FOUND when the package bound to a request id was deleted since', async () => {
      const other = await h.binaryPackage(profile, { title: 'thermo-gone', version: '1', bytes: randomBytes(10_000) });
      await h.setDevicePackage(device, 'FIRMWARE', other.id);
      const d = await connect();
      expect((await d.ask('v2/fw/request/1/chunk/0', '1000', 'v2/fw/response/1/chunk/0')).payload.length).to.equal(1000);
      await h.setDevicePackage(device, 'FIRMWARE', pkg.id);
      await h.engine.packages.delete(h.tenantId, other.id);
      d.send('v2/fw/request/1/chunk/1', '1000');
      expect((await d.next('v2/fw/error')).payload.toString()).to.equal('NOT_FOUND');
      await d.closed;
    });

    it('answers an index past the end with a zero-length payload, also after an exact multiple', async () => {
      const d = await connect();
      const last = Math.floor(image.length / 1000) - 1; // 150000 is 150 chunks of 1000
      expect((await d.ask(`v2/fw/request/1/chunk/${last}`, '1000', `v2/fw/response/1/chunk/${last}`)).payload.length).to.equal(1000);
      expect((await d.ask(`v2/fw/request/1/chunk/${last + 1}`, '1000', `v2/fw/response/1/chunk/${last + 1}`)).payload.length).to.equal(0);
      expect((await d.ask('v2/fw/request/1/chunk/999999', '', 'v2/fw/response/1/chunk/999999')).payload.length).to.equal(0);
    });

    it('writes the index of the answer topic as a number, the request id as sent', async () => {
      const d = await connect();
      expect((await d.ask('v2/fw/request/007/chunk/01', '10', 'v2/fw/response/007/chunk/1')).payload.equals(image.subarray(10, 20))).to.equal(true);
    });

    it('serves software on v2/sw/request/... and answers on v2/sw/response/...', async () => {
      const bytes = randomBytes(5000);
      const sw = await h.binaryPackage(profile, { type: 'SOFTWARE', title: 'thermo-app', version: '1.1', bytes });
      await h.setDevicePackage(device, 'SOFTWARE', sw.id);
      const d = await connect();
      const data = await d.download(bytes.length, 2048, { type: 'sw' });
      expect(data.equals(bytes)).to.equal(true);
      expect(uplinks.filter((u) => u.kind === 'download').at(-1)).to.deep.include({ type: 'SOFTWARE', packageId: sw.id });
    });

    it('keeps a request id on the package it started with after a reassignment; a new id gets the new one', async () => {
      const next = randomBytes(20_000);
      const v3 = await h.binaryPackage(profile, { title: 'thermo-fw', version: '3.0.0', bytes: next });
      const d = await connect();
      expect((await d.ask('v2/fw/request/1/chunk/0', '1000', 'v2/fw/response/1/chunk/0')).payload.equals(image.subarray(0, 1000))).to.equal(true);
      await h.setDevicePackage(device, 'FIRMWARE', v3.id);
      expect((await d.ask('v2/fw/request/1/chunk/1', '1000', 'v2/fw/response/1/chunk/1')).payload.equals(image.subarray(1000, 2000))).to.equal(true);
      expect((await d.ask('v2/fw/request/2/chunk/1', '1000', 'v2/fw/response/2/chunk/1')).payload.equals(next.subarray(1000, 2000))).to.equal(true);
      // A new connection starts with no ids bound.
      await d.end();
      const again = await connect();
      expect((await again.ask('v2/fw/request/1/chunk/1', '1000', 'v2/fw/response/1/chunk/1')).payload.equals(next.subarray(1000, 2000))).to.equal(true);
    });

    describe('errors, on v2/fw/error, then the connection closes', () => {
      for (const version of [4, 5] as const) {
        it(`NOT_FOUND when nothing is assigned (MQTT ${version})`, async () => {
          const bare = await h.device(profile, { name: 'no-firmware' });
          const d = await connect(bare.accessToken, version);
          d.send('v2/fw/request/1/chunk/0', '1024');
          expect((await d.next('v2/fw/error')).payload.toString()).to.equal('NOT_FOUND');
          await d.closed;
          if (version === 5) expect((d.disconnect as IDisconnectPacket | null)?.reasonCode).to.equal(0x83);
        });
      }

      it('NOT_FOUND on v2/fw/error for software too', async () => {
        const d = await connect();
        d.send('v2/sw/request/1/chunk/0', '1024');
        expect((await d.next('v2/fw/error')).payload.toString()).to.equal('NOT_FOUND');
        await d.closed;
      });

      it('FAILURE for a URL-only package', async () => {
        const url = await h.urlPackage(profile, { title: 'thermo-url', version: '9' });
        await h.setDevicePackage(device, 'FIRMWARE', url.id);
        const d = await connect();
        d.send('v2/fw/request/1/chunk/0', '1024');
        expect((await d.next('v2/fw/error')).payload.toString()).to.equal('FAILURE');
        await d.closed;
      });

      it('PAYLOAD_TOO_LARGE above 65536 bytes, with DISCONNECT 0x83 first in MQTT 5', async () => {
        const r = await raw(5);
        await r.connect({ username: device.accessToken });
        r.send({ cmd: 'publish', topic: 'v2/fw/request/1/chunk/0', payload: Buffer.from('65536'), qos: 1, messageId: 1, dup: false, retain: false });
        expect(await r.next()).to.include({ cmd: 'puback' });
        expect(((await r.next()) as IPublishPacket).payload.length).to.equal(65536);
        r.send({ cmd: 'publish', topic: 'v2/fw/request/1/chunk/1', payload: Buffer.from('65537'), qos: 1, messageId: 2, dup: false, retain: false });
        const error = (await r.next()) as IPublishPacket;
        expect(error).to.include({ cmd: 'publish', topic: 'v2/fw/error', qos: 1 });
        expect(Buffer.from(error.payload).toString('ascii')).to.equal('PAYLOAD_TOO_LARGE');
        const disconnect = (await r.next()) as IDisconnectPacket;
        expect(disconnect).to.include({ cmd: 'disconnect', reasonCode: 0x83 });
        expect(disconnect.properties?.reasonString).to.match(/^PAYLOAD_TOO_LARGE: chunk size 65537/);
        await r.closed;
      });

      it('PAYLOAD_TOO_LARGE above a configured maximum, at 3.1.1', async () => {
        await transport.stop();
        transport = await startTransport({ maxChunkSize: 4096 });
        const d = await connect();
        await d.subscribe(['v2/fw/error'], 0);
        d.send('v2/fw/request/1/chunk/0', '4097');
        const error = await d.next('v2/fw/error');
        expect(error.payload.toString()).to.equal('PAYLOAD_TOO_LARGE');
        expect(error.qos, 'at the granted QoS of v2/fw/error').to.equal(0);
        await d.closed;
      });

      it('FAILURE for a chunk size that is not a decimal number', async () => {
        const d = await connect();
        d.send('v2/fw/request/1/chunk/0', 'four kilobytes');
        expect((await d.next('v2/fw/error')).payload.toString()).to.equal('FAILURE');
        await d.closed;
      });
    });
  });

  describe('client-side RPC', () => {
    it('answers getSessionLimits on v1/devices/me/rpc/response/{id}', async () => {
      const d = await connect(device.accessToken, 5);
      await d.subscribe(['v1/devices/me/rpc/response/+']);
      const reply = await d.ask('v1/devices/me/rpc/request/1', JSON.stringify({ method: 'getSessionLimits', params: { timeout: 5000 } }), 'v1/devices/me/rpc/response/1');
      expect(json(reply)).to.deep.equal({ maxPayloadSize: 65536, maxInflightMessages: 100, rateLimits: { messages: null, telemetryMessages: null, telemetryDataPoints: null } });
    });

    it('answers other methods with an error on the response topic of their family', async () => {
      const d = await connect();
      const reply = await d.ask('v2/r/req/5', JSON.stringify({ method: 'reboot', params: {} }), 'v2/r/res/5');
      expect(json(reply)).to.deep.equal({ error: 'Unsupported RPC method: reboot' });
    });
  });

  describe('TLS', () => {
    let dir: string;
    let cert: string;
    let key: string;

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'mqtt-tls-'));
      // node:crypto cannot make certificates; openssl can.
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ]);
      cert = await readFile(path.join(dir, 'cert.pem'), 'utf8');
      key = await readFile(path.join(dir, 'key.pem'), 'utf8');
    });
    after(() => rm(dir, { recursive: true, force: true }));

    it('serves devices over TLS with a certificate and key, and nothing in the clear', async () => {
      await transport.stop();
      transport = await startTransport({ tls: { cert, key } });
      expect(transport.tls).to.equal(true);
      const d = await MqttDevice.connect(`mqtts://127.0.0.1:${port}`, device.accessToken, 5, { ca: cert, servername: 'localhost' });
      clients.push({ end: () => d.client.end(true) });
      expect((await d.ask('v2/fw/request/1/chunk/2', '4096', 'v2/fw/response/1/chunk/2')).payload.equals(image.subarray(8192, 12288))).to.equal(true);
      const r = await RawMqtt.open(port, 4, { ca: cert });
      clients.push({ end: () => r.destroy() });
      expect((await r.connect({ username: device.accessToken })).returnCode).to.equal(0);
      const plain = await RawMqtt.open(port, 4);
      plain.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'x', username: device.accessToken });
      await plain.closed;
      expect(plain.packets.pending).to.deep.equal([]);
    });
  });

  describe('many devices', () => {
    it('serves 500 concurrent devices each downloading a 1 MB package in 16 KB chunks', async function () {
      this.timeout(180_000);
      const big = randomBytes(1024 * 1024);
      const fleet = await h.profile('fleet');
      const fleetPkg = await h.binaryPackage(fleet, { title: 'fleet-fw', version: '1.0', bytes: big });
      await h.setProfilePackage(fleet, 'FIRMWARE', fleetPkg.id);
      h.insertDevices(fleet, 500, 'fleet');
      const devices = await Promise.all(Array.from({ length: 500 }, (_, i) => connect(`fleet-token-${i}`)));
      expect(transport.connections).to.equal(500);
      // Every round is 500 requests answered and read in this one process: on a loaded machine a
      // chunk took longer than the clients' usual 5 s; the test's own timeout bounds the whole.
      const digests = await Promise.all(devices.map(async (d) => sha256(await d.download(big.length, 16 * 1024, { chunkMs: 60_000 }))));
      expect(new Set(digests)).to.deep.equal(new Set([sha256(big)]));
      expect(uplinks.filter((u) => u.kind === 'download')).to.have.length(500 * 64);
    });
  });

  describe('with mosquitto clients', () => {
    const args = (...rest: string[]): string[] => ['-h', '127.0.0.1', '-p', String(port), '-u', device.accessToken, ...rest];
    const rr = async (...rest: string[]): Promise<Buffer> => (await run('mosquitto_rr', args('-W', '5', '-N', ...rest), { encoding: 'buffer' })).stdout;

    it('takes telemetry from mosquitto_pub at QoS 1', async () => {
      await run('mosquitto_pub', args('-q', '1', '-t', 'v1/devices/me/telemetry', '-m', '{"fw_state":"DOWNLOADING"}'));
      expect((await h.pipeline.telemetry.latest(device.id, ['fw_state'])).fw_state?.value).to.equal('DOWNLOADING');
      expect(uplinks[0]).to.deep.include({ kind: 'telemetry', transport: 'MQTT', deviceId: device.id });
    });

    it('refuses mosquitto_pub with an unknown token', async () => {
      const failed = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', 'wrong', '-V', 'mqttv311', '-t', 'v1/devices/me/telemetry', '-m', '{}']).catch(
        (err: Error & { stderr: string }) => err,
      );
      expect(failed).to.be.instanceOf(Error);
      expect((failed as Error & { stderr: string }).stderr).to.match(/not authori[sz]ed/i);
    });

    it('answers an attribute request of mosquitto_rr, at MQTT 5 and 3.1.1', async () => {
      await notify();
      for (const v of ['mqttv5', 'mqttv311']) {
        // mosquitto_rr takes no wildcard for -e, and ThingsBoard refuses .../response/1: it waits on an
        // accepted filter instead, and prints the answer, which comes without a subscription.
        const out = await rr('-V', v, '-t', 'v1/devices/me/attributes/request/1', '-e', 'v1/devices/me/attributes', '-m', '{"sharedKeys":"fw_title,fw_version"}');
        expect(JSON.parse(out.toString())).to.deep.equal({ shared: { fw_title: 'thermo-fw', fw_version: '2.0.0' } });
      }
    });

    it('serves a complete update in 4 KB chunks to mosquitto_rr, one process per chunk', async function () {
      this.timeout(60_000);
      const parts: Buffer[] = [];
      for (let i = 0, received = 0; received < image.length; i++) {
        // -e v2/fw/error: an accepted filter (v2/fw/response/1/chunk/0 is not); the chunk comes anyway.
        const part = await rr('-t', `v2/fw/request/1/chunk/${i}`, '-e', 'v2/fw/error', '-m', '4096');
        parts.push(part);
        received += part.length;
      }
      expect(sha256(Buffer.concat(parts))).to.equal(pkg.checksum);
    });

    it('tells mosquitto_rr PAYLOAD_TOO_LARGE on v2/fw/error', async () => {
      const out = await rr('-t', 'v2/fw/request/1/chunk/0', '-e', 'v2/fw/error', '-m', '70000');
      expect(out.toString()).to.equal('PAYLOAD_TOO_LARGE');
    });

    it('notifies mosquitto_sub subscribed to v1/devices/me/attributes', async () => {
      const connected = nextEvent(transport, 'connect');
      const sub = run('mosquitto_sub', args('-q', '1', '-t', 'v1/devices/me/attributes', '-C', '1', '-W', '5'));
      await connected;
      const n = await notify();
      // Delivered once the subscription is in (deliver counts subscribed connections only).
      while (transport.deliver(n) === 0) await new Promise((r) => setImmediate(r));
      expect(JSON.parse((await sub).stdout)).to.deep.equal({ ...n.attributes, ...(n.deleted.length ? { deleted: n.deleted } : {}) });
    });
  });
});
