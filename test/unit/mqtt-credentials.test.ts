import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import tls from 'node:tls';
import { connectAsync } from 'mqtt';
import { generate } from 'mqtt-packet';
import type { DeviceProfile } from '../../server/store/device-profiles';
import type { Device } from '../../server/store/devices';
import { MqttTransport, type MqttOptions, type MqttTransportEvents } from '../../server/transports/mqtt/mqtt-transport';
import { MqttDevice, RawMqtt } from '../support/mqtt-clients';
import { useHarness, type PipelineHarness } from './pipeline-support';

const run = promisify(execFile);

/** MQTT basic credentials and X.509 client certificates at CONNECT, as ThingsBoard matches them (reference §3.1). */
describe('MQTT device credentials', function () {
  this.timeout(30_000);
  const harness = useHarness();
  let h: PipelineHarness;
  let profile: DeviceProfile;
  let transport: MqttTransport;
  let port: number;
  const clients: Array<{ end(): unknown }> = [];

  async function startTransport(options: MqttOptions = {}): Promise<void> {
    transport = new MqttTransport(h.engine.deviceContext, { port: 0, host: '127.0.0.1', ...options });
    port = (await transport.start()).port;
  }

  beforeEach(async () => {
    h = harness();
    profile = await h.profile();
    await startTransport();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end();
    await transport.stop();
  });

  /** A device with MQTT_BASIC credentials made through the device service, as the REST API makes them. */
  async function basicDevice(value: { clientId?: string; userName?: string; password?: string }): Promise<Device> {
    const d = await h.device(profile);
    return h.engine.devices.updateCredentials(h.tenantId, d.id, { credentialsType: 'MQTT_BASIC', credentialsValue: JSON.stringify(value) });
  }

  async function raw(version: 4 | 5, fields: { clientId?: string; username?: string; password?: string }): Promise<{ code: number | undefined; client: RawMqtt }> {
    const client = await RawMqtt.open(port, version);
    clients.push({ end: () => client.destroy() });
    const connack = await client.connect({
      clientId: fields.clientId ?? '',
      username: fields.username,
      password: fields.password === undefined ? undefined : Buffer.from(fields.password),
    });
    return { code: version === 5 ? connack.reasonCode : connack.returnCode, client };
  }

  const nextEvent = <K extends keyof MqttTransportEvents>(event: K): Promise<MqttTransportEvents[K][0]> =>
    new Promise((resolve) => transport.once(event, ((arg: MqttTransportEvents[K][0]) => resolve(arg)) as never));

  describe('MQTT_BASIC', () => {
    it('stores the password as a scrypt hash, never in the clear', async () => {
      const d = await basicDevice({ clientId: 'c-hash', userName: 'u-hash', password: 'very-secret' });
      expect(d.credentialsType).to.equal('MQTT_BASIC');
      expect(d.credentialsValue).to.not.include('very-secret');
      expect(JSON.parse(d.credentialsValue ?? '{}')).to.deep.include({ clientId: 'c-hash', userName: 'u-hash' });
      expect(JSON.parse(d.credentialsValue ?? '{}').password).to.match(/^\$scrypt\$N=16384,r=8,p=1\$/);
    });

    for (const version of [4, 5] as const) {
      describe(`at protocol version ${version}`, () => {
        const refusedPassword = version === 5 ? 0x86 : 5;

        it('accepts client id, user name and password, and knows the device', async () => {
          const d = await basicDevice({ clientId: `c${version}`, userName: `u${version}`, password: 'pw' });
          const connected = nextEvent('connect');
          expect((await raw(version, { clientId: `c${version}`, username: `u${version}`, password: 'pw' })).code).to.equal(0);
          expect((await connected).deviceId).to.equal(d.id);
        });

        it(`refuses a wrong password with ${version === 5 ? '0x86' : '5'}, without trying the user name as a token`, async () => {
          await basicDevice({ clientId: `cw${version}`, userName: `uw${version}`, password: 'right' });
          const { code, client } = await raw(version, { clientId: `cw${version}`, username: `uw${version}`, password: 'wrong' });
          expect(code).to.equal(refusedPassword);
          await client.closed;
          expect(transport.connections).to.equal(0);
        });

        it('refuses a missing password when one is stored', async () => {
          await basicDevice({ clientId: `cm${version}`, userName: `um${version}`, password: 'right' });
          expect((await raw(version, { clientId: `cm${version}`, username: `um${version}` })).code).to.equal(version === 5 ? 0x86 : 5);
        });

        it('matches credentials made of a client id alone by the client id, with no user name', async () => {
          const d = await basicDevice({ clientId: `only-client-${version}` });
          const connected = nextEvent('connect');
          expect((await raw(version, { clientId: `only-client-${version}` })).code).to.equal(0);
          expect((await connected).deviceId).to.equal(d.id);
          expect((await raw(version, { clientId: `other-client-${version}` })).code).to.equal(version === 5 ? 0x85 : 2);
        });

        it('matches credentials made of a user name and password from any client id (the user-name fallback)', async () => {
          const d = await basicDevice({ userName: `only-user-${version}`, password: 'pw' });
          const connected = nextEvent('connect');
          expect((await raw(version, { clientId: 'whatever', username: `only-user-${version}`, password: 'pw' })).code).to.equal(0);
          expect((await connected).deviceId).to.equal(d.id);
          expect((await raw(version, { clientId: 'whatever', username: `only-user-${version}`, password: 'nope' })).code).to.equal(refusedPassword);
        });

        it('falls back to the user name as an access token when client id and user name match no basic credentials', async () => {
          await basicDevice({ clientId: `cf${version}`, userName: `uf${version}`, password: 'pw' });
          const tokenDevice = await h.device(profile);
          const connected = nextEvent('connect');
          expect((await raw(version, { clientId: `cf${version}`, username: tokenDevice.accessToken, password: 'ignored' })).code).to.equal(0);
          expect((await connected).deviceId).to.equal(tokenDevice.id);
        });

        it('refuses a client id that differs from the stored one, user name and password right', async () => {
          await basicDevice({ clientId: `cx${version}`, userName: `ux${version}`, password: 'pw' });
          expect((await raw(version, { clientId: 'someone-else', username: `ux${version}`, password: 'pw' })).code).to.equal(refusedPassword);
        });

        it('connects MQTT.js, which then talks to the device API', async () => {
          const d = await basicDevice({ clientId: `js${version}`, userName: `jsu${version}`, password: 'js-pw' });
          const device = await MqttDevice.connect(`mqtt://127.0.0.1:${port}`, `jsu${version}`, version, { clientId: `js${version}`, password: 'js-pw' });
          clients.push({ end: () => device.client.end(true) });
          await device.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING' }));
          expect((await h.pipeline.telemetry.latest(d.id, ['fw_state'])).fw_state?.value).to.equal('DOWNLOADING');
        });
      });
    }

    it('refuses MQTT.js with a wrong password: not authorized', async () => {
      await basicDevice({ clientId: 'js-bad', userName: 'js-bad-u', password: 'right' });
      const failed = await connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'js-bad', username: 'js-bad-u', password: 'wrong', reconnectPeriod: 0 }).catch((e: Error) => e);
      expect(failed).to.be.instanceOf(Error);
      expect((failed as Error).message).to.match(/Not authorized|Bad User Name or Password/i);
    });

    it('accepts mosquitto_pub with -i, -u and -P, and refuses a wrong -P', async () => {
      const d = await basicDevice({ clientId: 'mosq-c', userName: 'mosq-u', password: 'mosq-pw' });
      const base = ['-h', '127.0.0.1', '-p', String(port), '-i', 'mosq-c', '-u', 'mosq-u', '-q', '1', '-t', 'v1/devices/me/telemetry', '-m', '{"fw_state":"DOWNLOADED"}'];
      await run('mosquitto_pub', [...base, '-P', 'mosq-pw']);
      expect((await h.pipeline.telemetry.latest(d.id, ['fw_state'])).fw_state?.value).to.equal('DOWNLOADED');
      const failed = await run('mosquitto_pub', [...base, '-P', 'bad', '-V', 'mqttv311']).catch((err: Error & { stderr: string }) => err);
      expect((failed as Error & { stderr: string }).stderr).to.match(/not authori[sz]ed/i);
    });

    it('closes the sessions of a device whose password changes, and refuses the old password afterwards', async () => {
      const d = await basicDevice({ clientId: 'rot-c', userName: 'rot-u', password: 'old' });
      const { client } = await raw(4, { clientId: 'rot-c', username: 'rot-u', password: 'old' });
      await h.engine.devices.updateCredentials(h.tenantId, d.id, {
        credentialsType: 'MQTT_BASIC',
        credentialsValue: JSON.stringify({ clientId: 'rot-c', userName: 'rot-u', password: 'new' }),
      });
      await client.closed;
      expect((await raw(4, { clientId: 'rot-c', username: 'rot-u', password: 'old' })).code).to.equal(5);
      expect((await raw(4, { clientId: 'rot-c', username: 'rot-u', password: 'new' })).code).to.equal(0);
    });

    it('keeps the password when the stored value (with its hash) is posted back unchanged', async () => {
      const d = await basicDevice({ clientId: 'keep-c', userName: 'keep-u', password: 'kept' });
      const again = await h.engine.devices.updateCredentials(h.tenantId, d.id, { credentialsType: 'MQTT_BASIC', credentialsValue: d.credentialsValue });
      expect(again.credentialsValue).to.equal(d.credentialsValue);
      expect((await raw(4, { clientId: 'keep-c', username: 'keep-u', password: 'kept' })).code).to.equal(0);
    });
  });

  describe('X509_CERTIFICATE over TLS', () => {
    let dir: string;
    const pem: Record<string, string> = {};
    const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });

    before(async function () {
      this.timeout(60_000);
      dir = await mkdtemp(path.join(tmpdir(), 'mqtt-x509-'));
      // A CA, a server certificate, two device certificates it signs, and one it does not.
      await openssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-days',
        '1',
        '-subj',
        '/CN=Test device CA',
      );
      await openssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'server.key',
        '-out',
        'server.pem',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      );
      for (const name of ['dev1', 'dev2']) {
        await openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
        await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1');
      }
      await openssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'rogue.key',
        '-out',
        'rogue.pem',
        '-days',
        '1',
        '-subj',
        '/CN=dev1',
      );
      for (const f of ['ca.pem', 'server.pem', 'server.key', 'dev1.pem', 'dev1.key', 'dev2.pem', 'dev2.key', 'rogue.pem', 'rogue.key'])
        pem[f] = await readFile(path.join(dir, f), 'utf8');
    });
    after(() => rm(dir, { recursive: true, force: true }));

    beforeEach(async () => {
      await transport.stop();
      await startTransport({ tls: { cert: pem['server.pem'] as string, key: pem['server.key'] as string, ca: pem['ca.pem'] } });
    });

    async function x509Device(certificate: string): Promise<Device> {
      const d = await h.device(profile);
      return h.engine.devices.updateCredentials(h.tenantId, d.id, { credentialsType: 'X509_CERTIFICATE', credentialsValue: certificate });
    }

    const tlsOptions = (name: string) => ({ ca: pem['server.pem'], cert: pem[`${name}.pem`], key: pem[`${name}.key`], servername: 'localhost' });

    for (const version of [4, 5] as const) {
      it(`knows a device by the certificate it presents (MQTT.js, version ${version}), whatever the user name`, async () => {
        const d = await x509Device(pem['dev1.pem'] as string);
        const connected = nextEvent('connect');
        const device = await MqttDevice.connect(`mqtts://127.0.0.1:${port}`, 'not-a-token', version, tlsOptions('dev1'));
        clients.push({ end: () => device.client.end(true) });
        expect((await connected).deviceId).to.equal(d.id);
        await device.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'VERIFIED' }));
        expect((await h.pipeline.telemetry.latest(d.id, ['fw_state'])).fw_state?.value).to.equal('VERIFIED');
      });
    }

    it('stores the certificate as ThingsBoard does: its base64 body, id = SHA3-256 of it', async () => {
      const d = await x509Device(pem['dev1.pem'] as string);
      const body = (pem['dev1.pem'] as string).replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '');
      expect(d.credentialsValue).to.equal(body);
      const { createHash } = await import('node:crypto');
      expect(d.accessToken).to.equal(createHash('sha3-256').update(body).digest('hex'));
    });

    it('refuses a certificate that chains to the CA but belongs to no device with CONNACK 5', async () => {
      await x509Device(pem['dev1.pem'] as string);
      const failed = await connectAsync(`mqtts://127.0.0.1:${port}`, { ...tlsOptions('dev2'), username: 'x', reconnectPeriod: 0, protocolVersion: 4 }).catch(
        (e: Error & { code?: number }) => e,
      );
      expect((failed as Error & { code?: number }).code).to.equal(5);
      expect(transport.connections).to.equal(0);
    });

    it('cuts a certificate not chaining to the CA before any MQTT, even one registered to a device', async () => {
      await x509Device(pem['rogue.pem'] as string);
      // A bare TLS socket: MQTT.js without reconnects never settles when the socket just closes.
      const socket = tls.connect({ host: '127.0.0.1', port, ...tlsOptions('rogue') });
      const received: Buffer[] = [];
      socket.on('data', (b: Buffer) => received.push(b));
      socket.on('error', () => undefined);
      socket.once('secureConnect', () =>
        socket.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'rogue', username: 'x' })),
      );
      await new Promise((resolve) => socket.once('close', resolve));
      expect(Buffer.concat(received).length, 'no CONNACK').to.equal(0);
      expect(transport.connections).to.equal(0);
    });

    it('still takes access tokens and basic credentials on the TLS port from clients without a certificate', async () => {
      const tokenDevice = await h.device(profile);
      const device = await MqttDevice.connect(`mqtts://127.0.0.1:${port}`, tokenDevice.accessToken, 4, { ca: pem['server.pem'], servername: 'localhost' });
      clients.push({ end: () => device.client.end(true) });
      await basicDevice({ clientId: 'tls-c', userName: 'tls-u', password: 'pw' });
      const basic = await MqttDevice.connect(`mqtts://127.0.0.1:${port}`, 'tls-u', 5, { ca: pem['server.pem'], servername: 'localhost', clientId: 'tls-c', password: 'pw' });
      clients.push({ end: () => basic.client.end(true) });
      expect(transport.connections).to.equal(2);
    });

    it('refuses a credentials value that is no certificate, and keeps the old credentials', async () => {
      const d = await h.device(profile);
      const failed = await h.engine.devices
        .updateCredentials(h.tenantId, d.id, { credentialsType: 'X509_CERTIFICATE', credentialsValue: 'not a certificate' })
        .catch((e: Error) => e);
      expect((failed as Error).message).to.match(/X509 certificate/);
      expect((await h.engine.devices.get(h.tenantId, d.id)).accessToken).to.equal(d.accessToken);
    });
  });
});
