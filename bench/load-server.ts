/**
 * The serving side of the load run (load.ts), in its own process so its memory is its own: the
 * OTA engine (REST + device HTTP API) with its MQTT and CoAP transports on 127.0.0.1, `devices`
 * devices `load-<i>` of a profile whose firmware is a `packageMb` MB package. Driven over IPC:
 *
 *   → {ports, title, version, sha256}            once listening
 *   ← {notify: n}   → {notified, mqtt, coap, ms}  notifies devices 0..n-1 (writes INITIATED and the
 *                                                 fw_* attributes) and delivers to their sessions
 *   ← {memory: true} → {rss, heap, mqtt, coap}    what the process holds now
 *
 *   node load-server.js <dataDir> <devices> <packageMb>
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { OtaEngine } from '../server/engine';
import type { DeviceId, TenantId } from '../server/ids';
import { openDatabase } from '../server/store/sqlite/database';
import { CoapTransport } from '../server/transports/coap/coap-transport';
import { MqttTransport } from '../server/transports/mqtt/mqtt-transport';
import { benchLogger, createProfileWithPackage, MB } from './lib';

type Command = { notify: number } | { memory: true };
const send = (msg: unknown): void => void process.send?.(msg);
const loadToken = (i: number): string => `load-${i}`;

async function main(): Promise<void> {
  const [dataDir, devicesArg, mbArg] = process.argv.slice(2);
  const devices = Number(devicesArg);
  const packageMb = Number(mbArg);
  if (!dataDir || !Number.isInteger(devices) || !(packageMb > 0)) throw new Error('usage: load-server.js <dataDir> <devices> <packageMb>');
  const file = path.join(dataDir, 'package.bin');
  const hash = createHash('sha256');
  await pipeline(
    Readable.from(
      (function* () {
        for (let left = packageMb * MB; left > 0; left -= MB) {
          const part = randomBytes(Math.min(MB, left));
          hash.update(part);
          yield part;
        }
      })(),
    ),
    createWriteStream(file),
  );
  const engine = await OtaEngine.open({
    dataDir,
    http: { port: 0, host: '127.0.0.1' },
    admin: { password: randomUUID() },
    logger: benchLogger(),
    // Every client of the load run comes from this machine: room for all of them.
    httpLimits: { maxConnections: 20_000 },
  });
  const tenantId = engine.bootstrap.admin.tenantId;
  const { profileId, pkg } = await createProfileWithPackage(engine, tenantId, { profileName: 'load', title: 'load-fw', version: '1.0', source: createReadStream(file) });
  const ids: DeviceId[] = [];
  const db = openDatabase(path.join(dataDir, 'ota.sqlite'));
  try {
    // Inserted directly: 10,000 saves through the service would be a benchmark of their own.
    const insert = db.prepare(
      'INSERT INTO devices (id, tenant_id, name, device_profile_id, firmware_id, access_token, credentials_id, created_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    db.transaction(() => {
      for (let i = 0; i < devices; i++) {
        const id = randomUUID() as DeviceId;
        insert.run(id, tenantId, `load-${i}`, profileId, pkg.id, loadToken(i), randomUUID(), Date.now());
        ids.push(id);
      }
    })();
  } finally {
    db.close();
  }
  const mqtt = new MqttTransport(engine.deviceContext, { port: 0, host: '127.0.0.1', maxSessionsPerDevice: 1 });
  const coap = new CoapTransport(engine.deviceContext, { port: 0, host: '127.0.0.1' });
  const ports = { http: engine.httpAddress?.port, mqtt: (await mqtt.start()).port, coap: (await coap.start()).port };

  process.on('message', (cmd: Command) => {
    if ('memory' in cmd) {
      const m = process.memoryUsage();
      return send({ rss: m.rss, heap: m.heapUsed, mqtt: mqtt.connections, coap: coap.observers });
    }
    void (async () => {
      const started = process.hrtime.bigint();
      let notified = 0;
      let toMqtt = 0;
      let toCoap = 0;
      for (let i = 0; i < Math.min(cmd.notify, ids.length); i++) {
        const outcome = await engine.pipeline.notifier.process({
          tenantId: tenantId as TenantId,
          deviceId: ids[i] as DeviceId,
          type: 'FIRMWARE',
          packageId: pkg.id,
          ts: Date.now(),
        });
        if (!('notification' in outcome)) continue;
        notified += 1;
        toMqtt += mqtt.deliver(outcome.notification);
        toCoap += coap.deliver(outcome.notification);
      }
      send({ notified, mqtt: toMqtt, coap: toCoap, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    })().catch((err: Error) => send({ error: err.message }));
  });
  send({ ports, title: pkg.title, version: pkg.version, sha256: hash.digest('hex'), size: packageMb * MB });
  const stop = (): void => {
    void Promise.all([mqtt.stop(), coap.stop()])
      .then(() => engine.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
