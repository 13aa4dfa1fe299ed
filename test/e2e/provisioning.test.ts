import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { checksumOf } from '../../server/packages/checksum';
import { createSocket, type Socket } from 'node:dgram';
import { Agent } from 'coap';
import protobuf from 'protobufjs';
import { coapRequest } from '../support/coap-clients';
import { eventually } from '../support/eventually';
import { MqttDevice, sha256 } from '../support/mqtt-clients';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

interface Ref {
  id: { id: string };
}
type Answer = Record<string, unknown>;

/** ThingsBoard's provisioning messages (queue.proto), as a device writes them. */
const tb = protobuf.parse(
  `syntax = "proto3";
  enum ResponseStatus { UNKNOWN = 0; SUCCESS = 1; NOT_FOUND = 2; FAILURE = 3; }
  enum CredentialsType { ACCESS_TOKEN = 0; X509_CERTIFICATE = 1; MQTT_BASIC = 2; LWM2M_CREDENTIALS = 3; }
  message ProvisionDeviceCredentialsMsg { string provisionDeviceKey = 1; string provisionDeviceSecret = 2; }
  message ValidateBasicMqttCredRequestMsg { string clientId = 1; string userName = 2; string password = 3; }
  message CredentialsDataProto { ValidateBasicMqttCredRequestMsg validateBasicMqttCredRequestMsg = 3; }
  message ProvisionDeviceRequestMsg { string deviceName = 1; CredentialsType credentialsType = 2; ProvisionDeviceCredentialsMsg provisionDeviceCredentialsMsg = 3; CredentialsDataProto credentialsDataProto = 4; }
  message ProvisionDeviceResponseMsg { ResponseStatus status = 1; CredentialsType credentialsType = 2; string credentialsValue = 3; }`,
).root;
const ProvisionRequestMsg = tb.lookupType('ProvisionDeviceRequestMsg');
const ProvisionResponseMsg = tb.lookupType('ProvisionDeviceResponseMsg');

/**
 * Device self-provisioning as ThingsBoard's devices do it (HTTP `POST /api/v1/provision`, MQTT
 * user name `provision`, CoAP `POST /api/v1/provision`), through the example flow of `npm start`: a provisioned device of a
 * profile with a package is updated by the normal pipeline.
 */
describe('device provisioning (example flow, npm start)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let mqttUrl: string;
  let profileId: string;
  let preProfileId: string;
  const firmware = randomBytes(40_000);
  let packageId: string;
  let coapPort: number;
  let socket: Socket;
  let agent: Agent;

  const provisionProfile = (name: string, type: string, key: string, secret: string) => ({
    name,
    provisionType: type,
    provisionDeviceKey: key,
    profileData: { configuration: { type: 'DEFAULT' }, transportConfiguration: { type: 'DEFAULT' }, provisionConfiguration: { type, provisionDeviceSecret: secret } },
  });

  async function httpProvision(body: unknown): Promise<{ status: number; answer: Answer }> {
    const res = await fetch(`${server.api}/api/v1/provision`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, answer: (await res.json()) as Answer };
  }

  async function mqttProvision(body: unknown, version: 4 | 5 = 4): Promise<Answer> {
    const device = await MqttDevice.connect(mqttUrl, 'provision', version, { clientId: `prov-${Math.random()}` });
    try {
      await device.subscribe(['/provision/response']);
      return JSON.parse((await device.ask('/provision/request', JSON.stringify(body), '/provision/response')).payload.toString()) as Answer;
    } finally {
      await device.end();
    }
  }

  const coapProvision = (payload: string | Buffer, method: 'POST' | 'GET' = 'POST') => coapRequest(agent, coapPort, { pathname: '/api/v1/provision', method, payload });

  const deviceNamed = async (name: string): Promise<Ref | null> => admin.request<Ref>('GET', `/tenant/devices?deviceName=${encodeURIComponent(name)}`).catch(() => null);

  /** What ThingsBoard's SDK does on connect: ask the fw_* attributes, download, verify, report UPDATED. */
  async function updateOnConnect(device: MqttDevice): Promise<void> {
    const keys = 'fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm';
    const fw = await eventually(
      async () => {
        const reply = await device.ask('v1/devices/me/attributes/request/1', JSON.stringify({ sharedKeys: keys }), 'v1/devices/me/attributes/response/1');
        const shared = (JSON.parse(reply.payload.toString()) as { shared?: Answer }).shared;
        return shared?.fw_title ? shared : undefined;
      },
      'the fw_* attributes of the provisioned device',
      { everyMs: 100 },
    );
    expect(fw).to.include({ fw_title: 'prov-fw', fw_version: '1.0.0', fw_size: firmware.length });
    await device.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADING' }));
    const data = await device.download(firmware.length, 8192, { requestId: 3 });
    expect(sha256(data)).to.equal(sha256(firmware));
    expect(checksumOf('SHA256', data)).to.equal(fw.fw_checksum);
    for (const state of ['DOWNLOADED', 'VERIFIED', 'UPDATING']) await device.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: state }));
    await device.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'UPDATED', current_fw_title: 'prov-fw', current_fw_version: '1.0.0' }));
  }

  const stateOf = async (deviceId: string): Promise<string | undefined> =>
    (await admin.request<Record<string, Array<{ value: string }>>>('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=fw_state`)).fw_state?.[0]?.value;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-provision-e2e-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
    const endpoint = await admin.endpoint('MQTT');
    mqttUrl = `mqtt://127.0.0.1:${endpoint.port}`;
    coapPort = (await admin.endpoint('COAP')).port;
    socket = createSocket('udp4');
    agent = new Agent({ socket });
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', provisionProfile('provisioned-fleet', 'ALLOW_CREATE_NEW_DEVICES', 'fleet-key', 'fleet-secret'))).id.id;
    preProfileId = (await admin.request<Ref>('POST', '/deviceProfile', provisionProfile('pre-provisioned', 'CHECK_PRE_PROVISIONED_DEVICES', 'pre-key', 'pre-secret'))).id.id;
    const info = await admin.firmware(profileId, 'prov-fw', '1.0.0', firmware);
    packageId = info.id.id;
    await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });
  });

  after(async () => {
    agent?.close();
    await new Promise<void>((resolve) => (socket ? socket.close(() => resolve()) : resolve()));
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('provisions a device over HTTP with a generated access token; the device is then updated', async () => {
    const { status, answer } = await httpProvision({ deviceName: 'http-born', provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'fleet-secret' });
    expect(status).to.equal(200);
    expect(answer).to.include({ status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN' });
    expect(answer.credentialsValue).to.match(/^[A-Za-z0-9]{20}$/);
    const created = await deviceNamed('http-born');
    expect(created).to.not.equal(null);
    const device = await MqttDevice.connect(mqttUrl, String(answer.credentialsValue), 4);
    try {
      await updateOnConnect(device);
    } finally {
      await device.end();
    }
    await eventually(async () => (await stateOf((created as Ref).id.id)) === 'UPDATED', 'the HTTP-provisioned device UPDATED', { everyMs: 50 });
    // The dashboard's device view says it provisioned itself, and how it authenticates: types, never secrets.
    const listed = await admin.request<{ data: Array<Record<string, unknown>> }>('GET', '/ota/devices?pageSize=10&page=0&textSearch=http-born');
    expect(listed.data.map((r) => [r.name, r.credentialsType, r.provisioned])).to.deep.equal([['http-born', 'ACCESS_TOKEN', true]]);
    expect(JSON.stringify(listed)).to.not.include(String(answer.credentialsValue));
    const made = await admin.request<Ref>('POST', '/device', { name: 'made-by-admin', deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
    const other = await admin.request<{ data: Array<Record<string, unknown>> }>('GET', '/ota/devices?pageSize=10&page=0&textSearch=made-by-admin');
    expect(other.data.map((r) => [r.name, r.provisioned])).to.deep.equal([['made-by-admin', false]]);
    await admin.request('DELETE', `/device/${made.id.id}`);
  });

  it('provisions a device over MQTT with the basic credentials it asks for; it connects with them and is updated', async () => {
    const answer = await mqttProvision(
      {
        deviceName: 'mqtt-born',
        provisionDeviceKey: 'fleet-key',
        provisionDeviceSecret: 'fleet-secret',
        credentialsType: 'MQTT_BASIC',
        clientId: 'born-c',
        username: 'born-u',
        password: 'born-pw',
      },
      5,
    );
    expect(answer).to.deep.equal({ status: 'SUCCESS', credentialsType: 'MQTT_BASIC', credentialsValue: { clientId: 'born-c', userName: 'born-u', password: 'born-pw' } });
    const device = await MqttDevice.connect(mqttUrl, 'born-u', 4, { clientId: 'born-c', password: 'born-pw' });
    try {
      await updateOnConnect(device);
    } finally {
      await device.end();
    }
    const created = (await deviceNamed('mqtt-born')) as Ref;
    await eventually(async () => (await stateOf(created.id.id)) === 'UPDATED', 'the MQTT-provisioned device UPDATED', { everyMs: 50 });
  });

  it('provisions over MQTT with a token the device chose', async () => {
    const answer = await mqttProvision({
      deviceName: 'token-born',
      provisionDeviceKey: 'fleet-key',
      provisionDeviceSecret: 'fleet-secret',
      credentialsType: 'ACCESS_TOKEN',
      token: 'my-own-token-1',
    });
    expect(answer).to.deep.equal({ status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: 'my-own-token-1' });
  });

  it('answers a wrong secret or an unknown key NOT_FOUND and creates nothing', async () => {
    for (const body of [
      { deviceName: 'intruder', provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'guess' },
      { deviceName: 'intruder', provisionDeviceKey: 'no-such-key', provisionDeviceSecret: 'fleet-secret' },
      { deviceName: 'intruder', provisionDeviceKey: 'fleet-key' },
      // The secret is compared as sent, not trimmed.
      { deviceName: 'intruder', provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'fleet-secret ' },
    ]) {
      expect((await httpProvision(body)).answer).to.deep.equal({ status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' });
      expect(await mqttProvision(body)).to.deep.equal({ status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' });
    }
    expect(await deviceNamed('intruder')).to.equal(null);
  });

  it('answers FAILURE for a name that exists already, and for credentials another device holds', async () => {
    const body = { deviceName: 'http-twice', provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'fleet-secret' };
    expect((await httpProvision(body)).answer.status).to.equal('SUCCESS');
    expect((await httpProvision(body)).answer).to.deep.equal({ status: 'FAILURE', errorMsg: 'Failed to provision device!' });
    expect((await httpProvision({ ...body, deviceName: 'token-thief', credentialsType: 'ACCESS_TOKEN', token: 'my-own-token-1' })).answer.status).to.equal('FAILURE');
    expect(await deviceNamed('token-thief')).to.equal(null);
  });

  it('hands a pre-provisioned device its own token once (CHECK_PRE_PROVISIONED_DEVICES), and nothing to others', async () => {
    const d = await admin.request<Ref>('POST', '/device', { name: 'pre-made', deviceProfileId: { id: preProfileId, entityType: 'DEVICE_PROFILE' } });
    const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    const body = { deviceName: 'pre-made', provisionDeviceKey: 'pre-key', provisionDeviceSecret: 'pre-secret' };
    expect(await mqttProvision(body)).to.deep.equal({ status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: token });
    expect((await httpProvision(body)).answer.status).to.equal('FAILURE');
    expect((await httpProvision({ ...body, deviceName: 'not-made' })).answer.status).to.equal('FAILURE');
    expect(await deviceNamed('not-made')).to.equal(null);
  });

  it('hands a pre-provisioned device out once when several ask at the same time, over HTTP, MQTT and CoAP', async () => {
    await admin.request<Ref>('POST', '/device', { name: 'pre-raced', deviceProfileId: { id: preProfileId, entityType: 'DEVICE_PROFILE' } });
    const body = { deviceName: 'pre-raced', provisionDeviceKey: 'pre-key', provisionDeviceSecret: 'pre-secret' };
    const answers = await Promise.all([
      ...Array.from({ length: 4 }, async () => (await httpProvision(body)).answer.status),
      ...Array.from({ length: 2 }, async () => (await mqttProvision(body)).status),
      ...Array.from({ length: 2 }, async () => (JSON.parse((await coapProvision(JSON.stringify(body))).payload.toString()) as Answer).status),
    ]);
    expect(answers.filter((s) => s === 'SUCCESS')).to.have.length(1);
    expect(answers.filter((s) => s === 'FAILURE')).to.have.length(answers.length - 1);
  });

  it('answers a provisioning request that is no JSON with an empty 400, creating nothing', async () => {
    const res = await fetch(`${server.api}/api/v1/provision`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"deviceName":' });
    expect(res.status).to.equal(400);
    expect(await res.text()).to.equal('');
  });

  it('closes a provisioning session that publishes anywhere else, or sends no JSON', async () => {
    for (const [topic, payload] of [
      ['v1/devices/me/telemetry', '{}'],
      ['/provision/request', 'not json'],
    ]) {
      const device = await MqttDevice.connect(mqttUrl, 'provision', 4);
      device.send(topic as string, payload as string);
      await device.closed;
    }
  });

  it('provisions a device over CoAP (2.01 and the JSON answer); the device then updates over CoAP', async () => {
    const res = await coapProvision(JSON.stringify({ deviceName: 'coap-born', provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'fleet-secret' }));
    expect(res.code).to.equal('2.01');
    const answer = JSON.parse(res.payload.toString()) as Answer;
    expect(answer).to.include({ status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN' });
    const token = String(answer.credentialsValue);
    // The new device is queued and notified by the pipeline: its fw_* attributes appear shortly.
    const shared = await eventually(
      async () => {
        const got = await coapRequest(agent, coapPort, { pathname: `/api/v1/${token}/attributes`, query: 'sharedKeys=fw_title,fw_version,fw_checksum' });
        return got.code === '2.05' ? (JSON.parse(got.payload.toString()) as { shared: Answer }).shared : undefined;
      },
      'the fw_* attributes of the CoAP-provisioned device',
      { everyMs: 100 },
    );
    expect(shared).to.include({ fw_title: 'prov-fw', fw_version: '1.0.0' });
    const report = (state: string, extra: Answer = {}) =>
      coapRequest(agent, coapPort, { pathname: `/api/v1/${token}/telemetry`, method: 'POST', payload: JSON.stringify({ fw_state: state, ...extra }) });
    await report('DOWNLOADING');
    const data = await coapRequest(agent, coapPort, { pathname: `/fw/${token}`, query: 'title=prov-fw&version=1.0.0' });
    expect(sha256(data.payload)).to.equal(sha256(firmware));
    expect(checksumOf('SHA256', data.payload)).to.equal(shared.fw_checksum);
    for (const state of ['DOWNLOADED', 'VERIFIED', 'UPDATING']) await report(state);
    await report('UPDATED', { current_fw_title: 'prov-fw', current_fw_version: '1.0.0' });
    const created = (await deviceNamed('coap-born')) as Ref;
    await eventually(async () => (await stateOf(created.id.id)) === 'UPDATED', 'the CoAP-provisioned device UPDATED', { everyMs: 50 });
  });

  it('refuses over CoAP as ThingsBoard does: 4.00 with the status for a wrong secret, an empty 4.00 for a body that is neither JSON nor protobuf, 4.00 for GET', async () => {
    const wrong = await coapProvision(JSON.stringify({ deviceName: 'coap-intruder', provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'guess' }));
    expect(wrong.code).to.equal('4.00');
    expect(JSON.parse(wrong.payload.toString())).to.deep.equal({ status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' });
    const garbage = await coapProvision('{"deviceName":');
    expect(garbage.code).to.equal('4.00');
    expect(garbage.payload.length).to.equal(0);
    expect((await coapProvision('', 'GET')).code).to.equal('4.00');
    expect(await deviceNamed('coap-intruder')).to.equal(null);
  });

  it('provisions over MQTT with a protobuf ProvisionDeviceRequestMsg, answering a ProvisionDeviceResponseMsg', async () => {
    const device = await MqttDevice.connect(mqttUrl, 'provision', 4, { clientId: `prov-${Math.random()}` });
    try {
      await device.subscribe(['/provision/response']);
      const body = ProvisionRequestMsg.encode(
        ProvisionRequestMsg.fromObject({ deviceName: 'mqtt-pb-born', provisionDeviceCredentialsMsg: { provisionDeviceKey: 'fleet-key', provisionDeviceSecret: 'fleet-secret' } }),
      ).finish();
      const reply = await device.ask('/provision/request', Buffer.from(body), '/provision/response');
      const answer = ProvisionResponseMsg.toObject(ProvisionResponseMsg.decode(reply.payload), { enums: String, defaults: true }) as Answer;
      expect(answer).to.include({ status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN' });
      expect(answer.credentialsValue).to.match(/^[A-Za-z0-9]{20}$/);
    } finally {
      await device.end();
    }
    expect(await deviceNamed('mqtt-pb-born')).to.not.equal(null);
  });

  it('provisions over CoAP with a protobuf ProvisionDeviceRequestMsg, answering a ProvisionDeviceResponseMsg', async () => {
    const ask = async (secret: string) => {
      const body = ProvisionRequestMsg.encode(
        ProvisionRequestMsg.fromObject({
          deviceName: 'coap-pb-born',
          credentialsType: 'MQTT_BASIC',
          provisionDeviceCredentialsMsg: { provisionDeviceKey: 'fleet-key', provisionDeviceSecret: secret },
          credentialsDataProto: { validateBasicMqttCredRequestMsg: { clientId: 'pb-c', userName: 'pb-u', password: 'pb-pw' } },
        }),
      ).finish();
      const res = await coapProvision(Buffer.from(body));
      return { code: res.code, answer: ProvisionResponseMsg.toObject(ProvisionResponseMsg.decode(res.payload), { enums: String }) as Answer };
    };
    expect(await ask('guess')).to.deep.equal({ code: '4.00', answer: { status: 'NOT_FOUND' } });
    const ok = await ask('fleet-secret');
    expect(ok.code).to.equal('2.01');
    expect(ok.answer).to.include({ status: 'SUCCESS', credentialsType: 'MQTT_BASIC' });
    expect(JSON.parse(String(ok.answer.credentialsValue))).to.deep.equal({ clientId: 'pb-c', userName: 'pb-u', password: 'pb-pw' });
    const device = await MqttDevice.connect(mqttUrl, 'pb-u', 5, { clientId: 'pb-c', password: 'pb-pw' });
    await device.end();
  });
});
