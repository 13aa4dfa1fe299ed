import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import protobuf from 'protobufjs';
import { checksumOf } from '../../server/packages/checksum';
import { createSocket, type Socket } from 'node:dgram';
import { Agent } from 'coap';
import { coapObserve, coapRequest } from '../support/coap-clients';
import { eventually } from '../support/eventually';
import { MqttDevice, sha256 } from '../support/mqtt-clients';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

interface Ref {
  id: { id: string };
}
type Json = Record<string, unknown>;

/** The device's side of ThingsBoard's messages (queue.proto, transport.proto), written out as a device would. */
const TB = protobuf.parse(
  `syntax = "proto3";
  enum KeyValueType { BOOLEAN_V = 0; LONG_V = 1; DOUBLE_V = 2; STRING_V = 3; JSON_V = 4; }
  message KeyValueProto { string key = 1; KeyValueType type = 2; bool bool_v = 3; int64 long_v = 4; double double_v = 5; string string_v = 6; string json_v = 7; }
  message TsKvProto { int64 ts = 1; KeyValueProto kv = 2; }
  message AttributeUpdateNotificationMsg { repeated TsKvProto sharedUpdated = 1; repeated string sharedDeleted = 2; }
  message GetAttributeResponseMsg { int32 requestId = 1; repeated TsKvProto clientAttributeList = 2; repeated TsKvProto sharedAttributeList = 3; }
  message AttributesRequest { string clientKeys = 1; string sharedKeys = 2; }`,
  { keepCase: true },
).root;

/** The profile's own schemas: what this fleet's firmware sends. */
const TELEMETRY_SCHEMA = `syntax = "proto3";
package ota;

message OtaTelemetry {
  optional string fw_state = 1;
  optional string current_fw_title = 2;
  optional string current_fw_version = 3;
  optional double battery_level = 4;
}`;
const ATTRIBUTES_SCHEMA = `syntax = "proto3";
package ota;

message OtaAttributes {
  optional string model = 1;
}`;
const OtaTelemetry = protobuf.parse(TELEMETRY_SCHEMA, { keepCase: true }).root.lookupType('ota.OtaTelemetry');
const OtaAttributes = protobuf.parse(ATTRIBUTES_SCHEMA, { keepCase: true }).root.lookupType('ota.OtaAttributes');

const encode = (type: protobuf.Type, value: Json): Buffer => Buffer.from(type.encode(type.fromObject(value)).finish());
const decode = (name: string, payload: Buffer): Json => TB.lookupType(name).toObject(TB.lookupType(name).decode(payload), { longs: Number, enums: String }) as Json;

/** A KeyValueProto's value by its type. */
function valueOf(kv: Json): unknown {
  switch (kv.type) {
    case 'BOOLEAN_V':
      return kv.bool_v ?? false;
    case 'LONG_V':
      return kv.long_v ?? 0;
    case 'DOUBLE_V':
      return kv.double_v ?? 0;
    case 'JSON_V':
      return JSON.parse(kv.json_v as string) as unknown;
    default:
      return kv.string_v ?? '';
  }
}
const flat = (list: unknown): Json => Object.fromEntries(((list as Json[] | undefined) ?? []).map((t) => [(t.kv as Json).key, valueOf(t.kv as Json)]));

/**
 * A device on a protobuf profile (ThingsBoard's ProtoTransportPayloadConfiguration), through the
 * example flow of `npm start`: it is told of its firmware in an AttributeUpdateNotificationMsg,
 * asks for the attributes in an AttributesRequest, downloads, and reports its state in its own
 * telemetry message, until UPDATED.
 */
describe('protobuf payloads (example flow, npm start)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let mqttUrl: string;
  let profileId: string;
  let bareProfileId: string;
  let coapPort: number;
  let coapProfileId: string;
  let socket: Socket;
  let agent: Agent;
  const firmware = randomBytes(30_000);

  const protoProfile = (name: string, extra: Json = {}) => ({
    name,
    transportType: 'MQTT',
    profileData: {
      configuration: { type: 'DEFAULT' },
      transportConfiguration: {
        type: 'MQTT',
        deviceTelemetryTopic: 'v1/devices/me/telemetry',
        deviceAttributesTopic: 'v1/devices/me/attributes',
        deviceAttributesSubscribeTopic: 'v1/devices/me/attributes',
        transportPayloadTypeConfiguration: {
          transportPayloadType: 'PROTOBUF',
          deviceTelemetryProtoSchema: TELEMETRY_SCHEMA,
          deviceAttributesProtoSchema: ATTRIBUTES_SCHEMA,
          ...extra,
        },
      },
    },
  });

  async function newDevice(name: string, profile = profileId): Promise<{ id: string; token: string }> {
    const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profile, entityType: 'DEVICE_PROFILE' } });
    const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    return { id: d.id.id, token };
  }

  const latest = async (deviceId: string, keys: string): Promise<Record<string, Array<{ value: unknown }>>> =>
    admin.request<Record<string, Array<{ value: unknown }>>>('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=${keys}`);

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-proto-e2e-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
    const endpoint = await admin.endpoint('MQTT');
    mqttUrl = `mqtt://127.0.0.1:${endpoint.port}`;
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', protoProfile('proto-fleet'))).id.id;
    coapPort = (await admin.endpoint('COAP')).port;
    const payloadType = protoProfile('').profileData.transportConfiguration.transportPayloadTypeConfiguration;
    coapProfileId = (
      await admin.request<Ref>('POST', '/deviceProfile', {
        name: 'proto-coap',
        transportType: 'COAP',
        profileData: {
          configuration: { type: 'DEFAULT' },
          transportConfiguration: { type: 'COAP', coapDeviceTypeConfiguration: { coapDeviceType: 'DEFAULT', transportPayloadTypeConfiguration: payloadType } },
        },
      })
    ).id.id;
    socket = createSocket('udp4');
    agent = new Agent({ socket });
    // No package: nothing but what the devices send is written.
    bareProfileId = (await admin.request<Ref>('POST', '/deviceProfile', protoProfile('proto-bare'))).id.id;
  });

  after(async () => {
    agent?.close();
    await new Promise<void>((resolve) => (socket ? socket.close(() => resolve()) : resolve()));
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('updates an MQTT device on a protobuf profile: notification, attribute request, download, states in its own schema', async () => {
    const { id, token } = await newDevice('proto-1');
    const device = await MqttDevice.connect(mqttUrl, token, 4);
    try {
      await device.subscribe(['v1/devices/me/attributes', 'v1/devices/me/attributes/response/+']);
      await device.publish('v1/devices/me/attributes', encode(OtaAttributes, { model: 'pb-42' }));
      const notified = device.next('v1/devices/me/attributes', 30_000);
      const info = await admin.firmware(profileId, 'pb-fw', '2.0.0', firmware);
      await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });

      // The update is ThingsBoard's AttributeUpdateNotificationMsg, typed values (fw_size a LONG_V).
      const update = decode('AttributeUpdateNotificationMsg', (await notified).payload);
      expect(flat(update.sharedUpdated)).to.include({ fw_title: 'pb-fw', fw_version: '2.0.0', fw_size: firmware.length, fw_checksum_algorithm: 'SHA256' });
      const sizeKv = (update.sharedUpdated as Json[]).map((t) => t.kv as Json).find((kv) => kv.key === 'fw_size');
      expect(sizeKv?.type).to.equal('LONG_V');

      // An AttributesRequest is answered with a GetAttributeResponseMsg carrying the request id.
      const reply = await device.ask(
        'v1/devices/me/attributes/request/7',
        encode(TB.lookupType('AttributesRequest'), { clientKeys: 'model', sharedKeys: 'fw_title,fw_version,fw_checksum' }),
        'v1/devices/me/attributes/response/7',
      );
      const answer = decode('GetAttributeResponseMsg', reply.payload);
      expect(answer.requestId).to.equal(7);
      expect(flat(answer.clientAttributeList)).to.deep.equal({ model: 'pb-42' });
      const shared = flat(answer.sharedAttributeList);
      expect(shared).to.include({ fw_title: 'pb-fw', fw_version: '2.0.0' });

      await device.publish('v1/devices/me/telemetry', encode(OtaTelemetry, { fw_state: 'DOWNLOADING', battery_level: 3.5 }));
      const data = await device.download(firmware.length, 4096, { requestId: 1 });
      expect(sha256(data)).to.equal(sha256(firmware));
      expect(checksumOf('SHA256', data)).to.equal(shared.fw_checksum);
      for (const state of ['DOWNLOADED', 'VERIFIED', 'UPDATING']) await device.publish('v1/devices/me/telemetry', encode(OtaTelemetry, { fw_state: state }));
      // The short topic carries the profile's format too.
      await device.publish('v2/t', encode(OtaTelemetry, { fw_state: 'UPDATED', current_fw_title: 'pb-fw', current_fw_version: '2.0.0' }));
    } finally {
      await device.end();
    }
    await eventually(async () => (await latest(id, 'fw_state')).fw_state?.[0]?.value === 'UPDATED', 'the protobuf device UPDATED', { everyMs: 50 });
    const t = await latest(id, 'current_fw_version,batteryLevel');
    expect(t.current_fw_version?.[0]?.value).to.equal('2.0.0');
    // Other fields are named as ThingsBoard's JsonFormat prints them (protobuf's JSON names).
    expect(Number(t.batteryLevel?.[0]?.value)).to.equal(3.5);
  });

  it("refuses a profile whose schema does not compile (400, ThingsBoard's [Transport Configuration] message), saving nothing", async () => {
    for (const schema of ['syntax = "proto3"; message {', 'syntax = "proto2"; message A { optional string a = 1; }', 'syntax = "proto3";']) {
      const body = protoProfile('proto-broken');
      (body.profileData.transportConfiguration.transportPayloadTypeConfiguration as Json).deviceTelemetryProtoSchema = schema;
      const err = await admin.request('POST', '/deviceProfile', body).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).to.match(/: 400 .*\[Transport Configuration\]/);
    }
    const names = (await admin.request<{ data: Array<{ name: string }> }>('GET', '/deviceProfiles?pageSize=100&page=0')).data.map((p) => p.name);
    expect(names).to.not.include('proto-broken');
  });

  it('closes an MQTT 3.1.1 connection that sends a malformed protobuf message, storing nothing', async () => {
    const { id, token } = await newDevice('proto-bad-311', bareProfileId);
    const device = await MqttDevice.connect(mqttUrl, token, 4);
    // ThingsBoard's own test sends this string as its malformed payload.
    device.send('v1/devices/me/telemetry', 'invalid proto payload str');
    await device.closed;
    expect(await latest(id, 'fw_state')).to.not.have.property('fw_state');
  });

  it('refuses a malformed protobuf message in MQTT 5 with PUBACK 0x99, the connection kept and nothing stored', async () => {
    const { id, token } = await newDevice('proto-bad-5', bareProfileId);
    const device = await MqttDevice.connect(mqttUrl, token, 5);
    try {
      const err = await device.publish('v1/devices/me/telemetry', 'invalid proto payload str').then(
        () => null,
        (e: Error & { code?: number }) => e,
      );
      expect(err?.code).to.equal(0x99);
      // JSON is not protobuf either, unless the profile allows it (enableCompatibilityWithJsonPayloadFormat).
      const json = await device.publish('v1/devices/me/attributes', '{"model":"json"}').then(
        () => null,
        (e: Error & { code?: number }) => e,
      );
      expect(json?.code).to.equal(0x99);
      // The force-JSON topics are JSON whatever the profile.
      await device.publish('v2/t/j', JSON.stringify({ fw_state: 'IDLE' }));
      const stored = await device.ask('v2/a/req/j/1', JSON.stringify({ clientKeys: 'model' }), 'v2/a/res/j/1');
      expect(JSON.parse(stored.payload.toString())).to.deep.equal({});
    } finally {
      await device.end();
    }
    expect((await latest(id, 'fw_state')).fw_state?.[0]?.value).to.equal('IDLE');
  });

  it('takes JSON too when the profile enables compatibility, and then answers JSON on the v1 topics if asked to', async () => {
    const compat = (
      await admin.request<Ref>(
        'POST',
        '/deviceProfile',
        protoProfile('proto-compat', { enableCompatibilityWithJsonPayloadFormat: true, useJsonPayloadFormatForDefaultDownlinkTopics: true }),
      )
    ).id.id;
    const { id, token } = await newDevice('proto-compat-1', compat);
    const device = await MqttDevice.connect(mqttUrl, token, 4);
    try {
      await device.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'IDLE' }));
      await device.publish('v1/devices/me/attributes', encode(OtaAttributes, { model: 'both' }));
      const reply = await device.ask('v1/devices/me/attributes/request/1', JSON.stringify({ clientKeys: 'model' }), 'v1/devices/me/attributes/response/1');
      expect(JSON.parse(reply.payload.toString())).to.deep.equal({ client: { model: 'both' } });
      // The short topics keep the profile's format: protobuf.
      const short = await device.ask('v2/a/req/2', encode(TB.lookupType('AttributesRequest'), { clientKeys: 'model' }), 'v2/a/res/2');
      expect(flat(decode('GetAttributeResponseMsg', short.payload).clientAttributeList)).to.deep.equal({ model: 'both' });
    } finally {
      await device.end();
    }
    expect((await latest(id, 'fw_state')).fw_state?.[0]?.value).to.equal('IDLE');
  });

  it("updates a CoAP device on a protobuf profile: notifications and answers in ThingsBoard's messages, states in its schema", async () => {
    const { id, token } = await newDevice('proto-coap-1', coapProfileId);
    const obs = await coapObserve(agent, coapPort, { pathname: `/api/v1/${token}/attributes` });
    try {
      expect(obs.first.code).to.equal('2.05');
      expect(obs.first.headers['Content-Format']).to.equal('application/octet-stream');
      expect(decode('AttributeUpdateNotificationMsg', obs.first.payload).sharedUpdated ?? []).to.deep.equal([]);
      const info = await admin.firmware(coapProfileId, 'pb-coap', '3.0.0', firmware);
      await admin.request('POST', `/deviceProfile/${coapProfileId}`, { firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });
      let update: Json = {};
      while (update.fw_title === undefined) update = flat(decode('AttributeUpdateNotificationMsg', (await obs.next()).payload).sharedUpdated);
      expect(update).to.include({ fw_title: 'pb-coap', fw_version: '3.0.0', fw_size: firmware.length });
    } finally {
      obs.stream.close();
    }
    const post = (feature: string, payload: Buffer) => coapRequest(agent, coapPort, { pathname: `/api/v1/${token}/${feature}`, method: 'POST', payload });
    expect((await post('attributes', encode(OtaAttributes, { model: 'coap-pb' }))).code).to.equal('2.01');
    const got = await coapRequest(agent, coapPort, { pathname: `/api/v1/${token}/attributes`, query: 'clientKeys=model&sharedKeys=fw_checksum' });
    expect(got.code).to.equal('2.05');
    const answer = decode('GetAttributeResponseMsg', got.payload);
    expect(flat(answer.clientAttributeList)).to.deep.equal({ model: 'coap-pb' });
    const checksum = flat(answer.sharedAttributeList).fw_checksum;

    expect((await post('telemetry', encode(OtaTelemetry, { fw_state: 'DOWNLOADING' }))).code).to.equal('2.01');
    const res = await coapRequest(agent, coapPort, { pathname: `/fw/${token}`, query: 'title=pb-coap&version=3.0.0' });
    expect(checksumOf('SHA256', res.payload)).to.equal(checksum);
    for (const state of ['DOWNLOADED', 'VERIFIED', 'UPDATING']) await post('telemetry', encode(OtaTelemetry, { fw_state: state }));
    await post('telemetry', encode(OtaTelemetry, { fw_state: 'UPDATED', current_fw_title: 'pb-coap', current_fw_version: '3.0.0' }));
    await eventually(async () => (await latest(id, 'fw_state')).fw_state?.[0]?.value === 'UPDATED', 'the CoAP protobuf device UPDATED', { everyMs: 50 });
  });

  it('answers a malformed protobuf message over CoAP 4.00, storing nothing', async () => {
    const { id, token } = await newDevice('proto-coap-bad', coapProfileId);
    for (const feature of ['telemetry', 'attributes']) {
      const res = await coapRequest(agent, coapPort, { pathname: `/api/v1/${token}/${feature}`, method: 'POST', payload: 'invalid proto payload str' });
      expect(res.code).to.equal('4.00');
    }
    expect(await latest(id, 'batteryLevel')).to.deep.equal({});
    expect((await coapRequest(agent, coapPort, { pathname: `/api/v1/${token}/attributes`, query: 'clientKeys=model' })).code).to.equal('4.04');
  });
});
