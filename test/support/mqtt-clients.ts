import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { generate, parser, type IConnackPacket, type IConnectPacket, type Packet } from 'mqtt-packet';

/**
 * MQTT clients for the transport's specs: MQTT.js devices with an inbox of what they received,
 * and a raw client (mqtt-packet over a socket) for what MQTT.js hides: return codes, packet order,
 * DISCONNECT reason codes, a client that stops pinging.
 */

/** Items in arrival order, taken one at a time by whoever waits, with a time limit. */
export class Inbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: Array<{ match: (t: T) => boolean; resolve: (t: T) => void }> = [];

  push(item: T): void {
    const i = this.waiters.findIndex((w) => w.match(item));
    if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(item);
    else this.items.push(item);
  }

  /** The first item (received or to come) that `match` accepts; rejects after `ms`. */
  next(match: (t: T) => boolean = () => true, ms = 5000, what = 'a message'): Promise<T> {
    const i = this.items.findIndex(match);
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0] as T);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (t: T) => {
          clearTimeout(timer);
          resolve(t);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no ${what} within ${ms} ms`));
      }, ms);
      this.waiters.push(waiter);
    });
  }

  /** What arrived and was not taken. */
  get pending(): readonly T[] {
    return this.items;
  }
}

export interface Received {
  topic: string;
  payload: Buffer;
  qos: number;
}

/** An MQTT.js client of one device, recording every message it receives. */
export class MqttDevice {
  readonly inbox = new Inbox<Received>();
  /** Resolves when the connection closes, whoever closed it. */
  readonly closed: Promise<void>;
  /** The DISCONNECT the server sent (MQTT 5), if any. */
  disconnect: Packet | null = null;

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => this.inbox.push({ topic, payload, qos: packet.qos }));
    client.on('disconnect', (packet) => (this.disconnect = packet));
    this.closed = new Promise((resolve) => client.once('close', () => resolve()));
  }

  static async connect(url: string, token: string, protocolVersion: 4 | 5 = 4, options: IClientOptions = {}): Promise<MqttDevice> {
    const client = await connectAsync(url, { username: token, protocolVersion, reconnectPeriod: 0, connectTimeout: 5000, ...options });
    // As a device should: a PUBACK followed by the next request would otherwise wait ~40 ms for
    // the server's delayed ACK (Nagle's algorithm).
    (client.stream as Partial<net.Socket>).setNoDelay?.(true);
    return new MqttDevice(client);
  }

  /** The next message on `topic` (exact). */
  next(topic: string, ms?: number): Promise<Received> {
    return this.inbox.next((m) => m.topic === topic, ms, `message on ${topic}`);
  }

  async publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos });
  }

  /** Publishes without waiting for the PUBACK (which an OTA error never gets). */
  send(topic: string, payload: string | Buffer, qos: 0 | 1 = 1): void {
    this.client.publish(topic, payload, { qos });
  }

  /** Publishes `payload` on `topic` and answers the next message on `answer` (within `ms`, the inbox's default if not given). */
  async ask(topic: string, payload: string | Buffer, answer: string, ms?: number): Promise<Received> {
    const reply = this.next(answer, ms);
    await this.publish(topic, payload);
    return reply;
  }

  /** Subscribes; answers the granted QoS (or refusal code) of each filter, refusals included. */
  subscribe(filters: string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
    return new Promise((resolve, reject) => {
      this.client.subscribe(filters, { qos }, (err, granted) => {
        // MQTT.js reports a refused filter as an error carrying the SUBACK (and `granted` as asked).
        const packet = (err as (Error & { packet?: { granted?: number[] } }) | null)?.packet;
        if (packet?.granted) return resolve(packet.granted);
        if (!err && granted) return resolve(granted.map((g) => g.qos));
        reject(err ?? new Error('no SUBACK'));
      });
    });
  }

  /** Chunks of `chunkSize` on request id `requestId` until `size` bytes came (the SDK's loop), each within `chunkMs`. */
  async download(size: number, chunkSize: number, opts: { requestId?: number; type?: 'fw' | 'sw'; chunkMs?: number } = {}): Promise<Buffer> {
    const type = opts.type ?? 'fw';
    const requestId = opts.requestId ?? 1;
    const parts: Buffer[] = [];
    let received = 0;
    for (let i = 0; received < size; i++) {
      const { payload } = await this.ask(`v2/${type}/request/${requestId}/chunk/${i}`, String(chunkSize), `v2/${type}/response/${requestId}/chunk/${i}`, opts.chunkMs);
      if (payload.length === 0) throw new Error(`empty chunk ${i} after ${received} of ${size} bytes`);
      parts.push(payload);
      received += payload.length;
    }
    return Buffer.concat(parts);
  }

  async end(): Promise<void> {
    await this.client.endAsync();
  }
}

export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** mqtt-packet over a bare socket: every packet the server sends, in order. */
export class RawMqtt {
  readonly packets = new Inbox<Packet>();
  readonly closed: Promise<void>;
  private readonly parse;

  private constructor(
    readonly socket: net.Socket,
    readonly version: 3 | 4 | 5,
  ) {
    const p = parser({ protocolVersion: version });
    p.on('packet', (packet: Packet) => this.packets.push(packet));
    this.parse = (data: Buffer) => p.parse(data);
    socket.on('data', this.parse);
    socket.on('error', () => undefined);
    // A server that ends the connection is answered by closing ours, as clients do.
    socket.on('end', () => socket.destroy());
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static open(port: number, version: 3 | 4 | 5 = 4, secure?: { ca: string | Buffer }): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const socket = secure ? tls.connect({ host: '127.0.0.1', port, ca: secure.ca, servername: 'localhost' }) : net.connect(port, '127.0.0.1');
      socket.once(secure ? 'secureConnect' : 'connect', () => resolve(new RawMqtt(socket, version)));
      socket.once('error', reject);
    });
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: this.version }));
  }

  /** Sends CONNECT and answers the CONNACK. */
  async connect(fields: Partial<IConnectPacket> = {}): Promise<IConnackPacket> {
    this.send({
      cmd: 'connect',
      protocolId: this.version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: this.version,
      clean: true,
      keepalive: 0,
      clientId: 'raw-client',
      ...fields,
    });
    return (await this.packets.next(undefined, 5000, 'CONNACK')) as IConnackPacket;
  }

  /** The next packet the server sends. */
  next(ms?: number): Promise<Packet> {
    return this.packets.next(undefined, ms, 'packet');
  }

  /** Whether the connection is still open. */
  get open(): boolean {
    return !this.socket.destroyed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
