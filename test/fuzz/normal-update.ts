/**
 * After fuzzing, the server must still serve a normal update end to end, on fresh fixtures made
 * through the REST API (the fuzzer may have deleted or changed its own): the admin uploads a
 * package and assigns it; an HTTP device downloads it in chunks, verifies it and reports every
 * state; an MQTT device gets its chunks; a CoAP device is answered.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { generate, parse } from 'coap-packet';
import { ApiClient, ok, ref, unique, type PackageInfo } from '../support/api-harness';
import { HttpDevice } from '../support/http-device';
import { MqttDevice } from '../support/mqtt-clients';
import type { FuzzTarget } from './target';

export async function normalUpdate(t: FuzzTarget): Promise<void> {
  const admin = new ApiClient(t.httpBase, t.token);
  const image = randomBytes(50_000);
  const profile = await admin.createProfile(unique('after-fuzz'));
  const pkg: PackageInfo = await admin.createPackageWithData({ deviceProfileId: profile.id.id, title: unique('fw'), version: '2.0' }, image);
  const token = unique('after-fuzz-token');
  const device = await admin.createDevice({ name: unique('after-fuzz'), deviceProfileId: ref('DEVICE_PROFILE', profile.id.id), firmwareId: ref('OTA_PACKAGE', pkg.id.id) }, token);

  // HTTP: the whole update, every state reported.
  const http = new HttpDevice(t.httpBase, token);
  const fw = {
    fw_title: pkg.title,
    fw_version: pkg.version,
    fw_size: image.length,
    fw_checksum_algorithm: 'SHA256',
    fw_checksum: createHash('sha256').update(image).digest('hex'),
  };
  const got = await http.update(fw, { chunkSize: 4096 });
  if (!got.equals(image)) throw new Error('the HTTP download after fuzzing differs from the package');
  const latest = ok<Record<string, Array<{ value: string }>>>(await admin.get(`/api/plugins/telemetry/DEVICE/${device.id.id}/values/timeseries?keys=fw_state`));
  if (latest.fw_state?.[0]?.value !== 'UPDATED') throw new Error(`fw_state after fuzzing is ${JSON.stringify(latest.fw_state)}, not UPDATED`);

  // MQTT: a chunk of the package.
  const mqtt = await MqttDevice.connect(`mqtt://127.0.0.1:${t.mqttPort}`, token);
  try {
    const chunk = await mqtt.ask('v2/fw/request/1/chunk/1', '1024', 'v2/fw/response/1/chunk/1');
    if (!chunk.payload.equals(image.subarray(1024, 2048))) throw new Error('the MQTT chunk after fuzzing differs from the package');
  } finally {
    mqtt.client.end(true);
  }

  // CoAP: the device's firmware, first block.
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const answer = new Promise<string>((resolve) => socket.on('message', (m) => resolve(parse(m).code)));
    socket.send(
      generate({
        code: '0.01',
        confirmable: true,
        messageId: 77,
        token: Buffer.from([7, 7]),
        options: [
          ...['api', 'v1', token, 'firmware'].map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) })),
          { name: 'Uri-Query', value: Buffer.from(`title=${pkg.title}`) },
          { name: 'Uri-Query', value: Buffer.from('version=2.0') },
        ],
      }),
      t.coapPort,
      '127.0.0.1',
    );
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([answer, new Promise<string>((resolve) => (timer = setTimeout(() => resolve('none'), 5000)))]);
    clearTimeout(timer);
    if (code !== '2.05') throw new Error(`CoAP firmware after fuzzing answered ${code}, not 2.05`);
  } finally {
    socket.close();
  }
}
