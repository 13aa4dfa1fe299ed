/**
 * The serving side of the MQTT benchmark, in its own process (its own core, its own event loop),
 * driven by the parent over IPC.
 *
 *   node mqtt-child.js endpoint <dataDir>           the OTA engine's MQTT transport on 127.0.0.1:0;
 *                                                   sends {port}, then on {deliver: payload-fields}
 *                                                   delivers one batch to every connected device,
 *                                                   as ota-mqtt does (transport.deliverAll), and
 *                                                   answers {delivered, ms}
 *   node mqtt-child.js responder <port> <file>      the reference's answering side: a client of the
 *                                                   broker on <port> that answers every
 *                                                   v2/fw/request/{id}/chunk/{n} from <file>, as
 *                                                   the transport does (chunk size in the payload,
 *                                                   read from disk per request); sends {ready}
 *   node mqtt-child.js bare <file>                  the second reference: the least an MQTT server
 *                                                   answering chunk requests can do, on mqtt-packet
 *                                                   as ours: CONNACK to any CONNECT, then PUBACK and
 *                                                   the chunk from <file> held in memory, no token,
 *                                                   no database, no disk; sends {port}
 *
 * Every mode answers {cpu: true} with {cpu: process.cpuUsage()}.
 * Exits on SIGTERM, and when the IPC channel closes (the parent died).
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import { generate, parser, type Packet } from 'mqtt-packet';
import { OtaEngine } from '../server/engine';
import { chunkRange } from '../server/transports/firmware-download';
import type { DeviceId, TenantId } from '../server/ids';
import { MqttTransport } from '../server/transports/mqtt/mqtt-transport';
import { benchLogger } from './lib';
import { WireClient } from './mqtt-wire';

type Command = { deliver: { attributes: Record<string, string | number>; deleted: string[] } };

const send = (msg: unknown): void => {
  process.send?.(msg);
};

async function endpoint(dataDir: string): Promise<() => Promise<void>> {
  const engine = await OtaEngine.open({ dataDir, http: false, logger: benchLogger() });
  const transport = new MqttTransport(engine.deviceContext, { port: 0, host: '127.0.0.1' });
  const connected = new Map<DeviceId, TenantId>();
  transport.on('connect', (s) => connected.set(s.deviceId, s.tenantId));
  transport.on('disconnect', (s) => connected.delete(s.deviceId));
  const { port } = await transport.start();
  process.on('message', (cmd: Command) => {
    if (!cmd.deliver) return;
    const start = process.hrtime.bigint();
    // The devices of a batch share one attribute map and deleted list, as the Notifier makes them.
    const delivered = transport.deliverAll([...connected].map(([deviceId, tenantId]) => ({ tenantId, deviceId, ...cmd.deliver })));
    send({ delivered, ms: Number(process.hrtime.bigint() - start) / 1e6 });
  });
  send({ port });
  return async () => {
    await transport.stop();
    await engine.close();
  };
}

async function responder(port: number, file: string): Promise<() => Promise<void>> {
  const size = (await stat(file)).size;
  const sizes = new Map<string, number>();
  const client = await WireClient.connect(port, { clientId: 'bench-responder' });
  client.onMessage = (topic, payload) => {
    const m = /^v2\/fw\/request\/(\d+)\/chunk\/(\d+)$/.exec(topic);
    if (!m) return;
    const requestId = m[1] as string;
    const asked = Number(payload.toString() || 0);
    if (asked > 0) sizes.set(requestId, asked);
    const { start, end } = chunkRange(size, sizes.get(requestId) ?? 0, Number(m[2]));
    const reply = `v2/fw/response/${requestId}/chunk/${Number(m[2])}`;
    if (end === start) return client.publish(reply, Buffer.alloc(0), 1);
    // Read per request from disk, as the transport reads the blob store.
    const parts: Buffer[] = [];
    createReadStream(file, { start, end: end - 1 })
      .on('data', (part) => parts.push(part as Buffer))
      .on('end', () => client.publish(reply, Buffer.concat(parts), 1))
      .on('error', (err) => console.error(`[responder] ${err.message}`));
  };
  await client.subscribe('v2/fw/request/+/chunk/+', 1);
  send({ ready: true });
  return async () => client.end();
}

async function bare(file: string): Promise<() => Promise<void>> {
  const data = await readFile(file);
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const sizes = new Map<string, number>();
    const p = parser({ protocolVersion: 4 });
    let nextId = 0;
    const send = (packet: Packet): void => void socket.write(generate(packet));
    p.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') return send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      if (packet.cmd !== 'publish') return;
      const m = /^v2\/fw\/request\/(\d+)\/chunk\/(\d+)$/.exec(packet.topic);
      if (!m) return;
      const requestId = m[1] as string;
      const asked = Number(packet.payload.toString() || 0);
      if (asked > 0) sizes.set(requestId, asked);
      const { start, end } = chunkRange(data.length, sizes.get(requestId) ?? 0, Number(m[2]));
      socket.cork();
      if (packet.qos) send({ cmd: 'puback', messageId: packet.messageId ?? 0 });
      nextId = (nextId % 0xffff) + 1;
      send({
        cmd: 'publish',
        topic: `v2/fw/response/${requestId}/chunk/${Number(m[2])}`,
        payload: data.subarray(start, end),
        qos: 1,
        messageId: nextId,
        dup: false,
        retain: false,
      });
      socket.uncork();
    });
    socket.on('data', (d: Buffer) => p.parse(d));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  send({ port: (server.address() as net.AddressInfo).port });
  return () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

async function main(): Promise<void> {
  const [mode, a, b] = process.argv.slice(2);
  const stop = mode === 'endpoint' && a ? await endpoint(a) : mode === 'responder' && a && b ? await responder(Number(a), b) : mode === 'bare' && a ? await bare(a) : null;
  if (!stop) throw new Error(`usage: mqtt-child.js endpoint <dataDir> | responder <port> <file> | bare <file>, not ${process.argv.slice(2).join(' ')}`);
  const exit = (): void => {
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', exit);
  process.once('disconnect', exit);
  // The parent reads this process's CPU time around a timed run (CPU per request: less sensitive to load than wall time).
  process.on('message', (cmd: { cpu?: boolean }) => {
    if (cmd.cpu) send({ cpu: process.cpuUsage() });
  });
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
