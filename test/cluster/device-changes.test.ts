/**
 * What a session holds of its device and profile follows a change made through another instance:
 * two `npm start` instances on one PostgreSQL database, each with its own data directory, devices
 * connected to B (MQTT 5, a CoAP observation), their profile or the device itself saved through A's
 * REST API. B's sessions speak the payload type and schemas the profile now has within a second,
 * without reconnecting (ThingsBoard's `onDeviceProfileUpdate`). Runs in the PostgreSQL run only
 * (.mocharc.postgres.json).
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Agent } from 'coap';
import protobuf from 'protobufjs';
import { coapObserve } from '../support/coap-clients';
import { eventually } from '../support/eventually';
import { MqttDevice } from '../support/mqtt-clients';
import type { Admin } from '../support/standalone';
import { TwoInstances } from '../support/cluster';

interface Ref {
  id: { id: string };
}
type Json = Record<string, unknown>;

/** The fleet's telemetry message, then the same with a field renamed: what a schema change looks like. */
const schema = (batteryField: string): string => `syntax = "proto3";
package ota;

message OtaTelemetry {
  optional string fw_state = 1;
  optional double ${batteryField} = 2;
}`;
const ATTRIBUTES_SCHEMA = `syntax = "proto3";
package ota;

message OtaAttributes {
  optional string model = 1;
}`;
const encode = (text: string, value: Json): Buffer => {
  const type = protobuf.parse(text, { keepCase: true }).root.lookupType('ota.OtaTelemetry');
  return Buffer.from(type.encode(type.fromObject(value)).finish());
};

/** ThingsBoard's profile body with a transport configuration for MQTT or CoAP, JSON or protobuf payloads. */
function profileBody(name: string, transport: 'MQTT' | 'COAP', payloads: 'JSON' | { telemetry: string }): Json {
  const payloadType =
    payloads === 'JSON'
      ? { transportPayloadType: 'JSON' }
      : { transportPayloadType: 'PROTOBUF', deviceTelemetryProtoSchema: payloads.telemetry, deviceAttributesProtoSchema: ATTRIBUTES_SCHEMA };
  const transportConfiguration =
    transport === 'MQTT'
      ? { type: 'MQTT', transportPayloadTypeConfiguration: payloadType }
      : { type: 'COAP', coapDeviceTypeConfiguration: { coapDeviceType: 'DEFAULT', transportPayloadTypeConfiguration: payloadType } };
  return { name, transportType: transport, profileData: { configuration: { type: 'DEFAULT' }, transportConfiguration } };
}

describe('two instances on one PostgreSQL: sessions follow device and profile changes (npm start twice)', function () {
  this.timeout(120_000);
  const cluster = new TwoInstances('ota-cluster-changes');
  let adminA: Admin;
  let mqttB: string;
  let coapB: number;
  let socket: Socket;
  let agent: Agent;
  const clients: MqttDevice[] = [];

  async function device(profileId: string, name: string): Promise<{ id: string; token: string }> {
    const d = await adminA.request<Ref>('POST', '/device', { name: `${name}-${randomUUID().slice(0, 8)}`, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
    const token = (await adminA.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    return { id: d.id.id, token };
  }

  async function connectB(token: string): Promise<MqttDevice> {
    const d = await MqttDevice.connect(mqttB, token, 5);
    clients.push(d);
    return d;
  }

  /** The reason code B answers a QoS 1 telemetry PUBLISH with (0 when stored). */
  const puback = (d: MqttDevice, payload: string | Buffer): Promise<number> =>
    d.publish('v1/devices/me/telemetry', payload).then(
      () => 0,
      (err: Error & { code?: number }) => err.code ?? -1,
    );

  const latest = async (deviceId: string, keys: string): Promise<Record<string, Array<{ value: unknown }>>> =>
    adminA.request('GET', `/plugins/telemetry/DEVICE/${deviceId}/values/timeseries?keys=${keys}`);

  /** Gives a profile other payloads through A as the editor does: the row as read, with the new transport configuration. */
  async function saveProfile(id: string, body: Json): Promise<void> {
    const current = await adminA.request<Json>('GET', `/deviceProfile/${id}`);
    await adminA.request('POST', '/deviceProfile', { ...current, transportType: body.transportType, profileData: body.profileData });
  }

  before(async () => {
    let adminB: Admin;
    ({ adminA, adminB } = await cluster.start());
    mqttB = `mqtt://127.0.0.1:${(await adminB.endpoint('MQTT')).port}`;
    coapB = (await adminB.endpoint('COAP')).port;
    socket = createSocket('udp4');
    agent = new Agent({ socket });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.client.endAsync(true).catch(() => undefined)));
  });

  after(async () => {
    agent?.close();
    await new Promise<void>((resolve) => (socket ? socket.close(() => resolve()) : resolve()));
    await cluster.stop();
  });

  it("switches B's MQTT session to protobuf within a second of the profile's change through A, then to the profile's new schema", async () => {
    const profileId = (await adminA.request<Ref>('POST', '/deviceProfile', profileBody(`changes-mqtt-${randomUUID().slice(0, 8)}`, 'MQTT', 'JSON'))).id.id;
    const d = await device(profileId, 'mqtt');
    const session = await connectB(d.token);
    expect(await puback(session, JSON.stringify({ fw_state: 'IDLE' })), 'JSON while the profile is JSON').to.equal(0);

    await saveProfile(profileId, profileBody('', 'MQTT', { telemetry: schema('battery_level') }));
    // JSON is no protobuf: MQTT 5 PUBACK 0x99 (payload format invalid), the session kept.
    await eventually(async () => (await puback(session, JSON.stringify({ fw_state: 'IDLE' }))) === 0x99, 'B refusing JSON', { timeoutMs: 1000, everyMs: 20 });
    expect(await puback(session, encode(schema('battery_level'), { fw_state: 'DOWNLOADING', battery_level: 3.5 }))).to.equal(0);

    // The schema changes (field 2 renamed): B decodes with the new one, still on the same connection.
    await saveProfile(profileId, profileBody('', 'MQTT', { telemetry: schema('voltage') }));
    await eventually(
      async () => (await puback(session, encode(schema('voltage'), { voltage: 4.25 }))) === 0 && Number((await latest(d.id, 'voltage')).voltage?.[0]?.value) === 4.25,
      'B decoding with the new schema',
      { timeoutMs: 1000, everyMs: 20 },
    );
    expect(session.disconnect, 'the session was never closed').to.equal(null);
  });

  it('switches the MQTT session on B of a device moved through A to a protobuf profile, within a second', async () => {
    const json = (await adminA.request<Ref>('POST', '/deviceProfile', profileBody(`changes-json-${randomUUID().slice(0, 8)}`, 'MQTT', 'JSON'))).id.id;
    const proto = (await adminA.request<Ref>('POST', '/deviceProfile', profileBody(`changes-proto-${randomUUID().slice(0, 8)}`, 'MQTT', { telemetry: schema('battery_level') }))).id
      .id;
    const d = await device(json, 'moved');
    const session = await connectB(d.token);
    expect(await puback(session, JSON.stringify({ fw_state: 'IDLE' }))).to.equal(0);
    const saved = await adminA.request<Json>('GET', `/device/${d.id}`);
    await adminA.request('POST', '/device', { ...saved, name: `${String(saved.name)}-renamed`, deviceProfileId: { id: proto, entityType: 'DEVICE_PROFILE' } });
    await eventually(async () => (await puback(session, JSON.stringify({ fw_state: 'IDLE' }))) === 0x99, 'B refusing JSON from the moved device', { timeoutMs: 1000, everyMs: 20 });
    expect(await puback(session, encode(schema('battery_level'), { battery_level: 2.5 }))).to.equal(0);
    expect(session.disconnect).to.equal(null);
  });

  it("sends B's CoAP observer its next notification in the payload type the profile was given through A", async () => {
    const profileId = (await adminA.request<Ref>('POST', '/deviceProfile', profileBody(`changes-coap-${randomUUID().slice(0, 8)}`, 'COAP', 'JSON'))).id.id;
    const d = await device(profileId, 'coap');
    const obs = await coapObserve(agent, coapB, { pathname: `/api/v1/${d.token}/attributes` });
    try {
      expect(obs.first.code).to.equal('2.05');
      expect(obs.first.headers['Content-Format']).to.equal('application/json');
      await saveProfile(profileId, profileBody('', 'COAP', { telemetry: schema('battery_level') }));
      // A package assigned through A then notifies the observer on B (the notification crosses the bus too).
      const info = await adminA.firmware(profileId, 'changes-fw', '1.0', randomBytes(1000));
      const current = await adminA.request<Json>('GET', `/device/${d.id}`);
      await adminA.request('POST', '/device', { ...current, firmwareId: { id: info.id.id, entityType: 'OTA_PACKAGE' } });
      const update = await obs.next();
      expect(update.code).to.equal('2.05');
      // ThingsBoard's AttributeUpdateNotificationMsg, octet-stream: no longer JSON.
      expect(update.headers['Content-Format']).to.equal('application/octet-stream');
      expect(update.payload.toString('latin1')).to.include('fw_title').and.include('changes-fw');
    } finally {
      obs.stream.close();
    }
  });
});
