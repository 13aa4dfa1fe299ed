/**
 * The cheapest MQTT client that does the job, for the MQTT benchmark: mqtt-packet over a socket,
 * TCP_NODELAY, PUBACK for every QoS 1 message received, nothing else. Thousands fit in one
 * process, so the client side of a fan-out costs little beside the server it measures.
 */
import net from 'node:net';
import { generate, parser, type IPublishPacket, type ISubackPacket, type Packet } from 'mqtt-packet';

export class WireClient {
  /** Called for each PUBLISH received (after its PUBACK is sent). */
  onMessage: (topic: string, payload: Buffer) => void = () => undefined;
  private nextId = 0;
  private readonly subacks = new Map<number, (granted: number[]) => void>();
  private connack: ((code: number) => void) | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    const p = parser({ protocolVersion: 4 });
    p.on('packet', (packet: Packet) => this.receive(packet));
    socket.on('data', (data: Buffer) => p.parse(data));
    socket.on('error', () => undefined);
  }

  /** Connects and waits for a successful CONNACK. */
  static connect(port: number, opts: { clientId: string; username?: string; keepalive?: number }): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once('connect', () => {
        const client = new WireClient(socket);
        client.connack = (code) => (code === 0 ? resolve(client) : reject(new Error(`CONNACK ${code} for ${opts.clientId}`)));
        client.send({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: true,
          keepalive: opts.keepalive ?? 0,
          clientId: opts.clientId,
          ...(opts.username ? { username: opts.username } : {}),
        });
      });
    });
  }

  subscribe(topic: string, qos: 0 | 1): Promise<number[]> {
    const messageId = this.id();
    return new Promise((resolve) => {
      this.subacks.set(messageId, resolve);
      this.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
    });
  }

  publish(topic: string, payload: Buffer, qos: 0 | 1): void {
    this.send({ cmd: 'publish', topic, payload, qos, dup: false, retain: false, ...(qos ? { messageId: this.id() } : {}) });
  }

  /** PINGREQ: what a client sends within its keepalive period. */
  ping(): void {
    this.send({ cmd: 'pingreq' });
  }

  /** Called when the connection closes. */
  onClose(fn: () => void): void {
    this.socket.once('close', fn);
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(packet: Packet): void {
    if (packet.cmd === 'publish') {
      const p = packet as IPublishPacket;
      if (p.qos > 0) this.send({ cmd: 'puback', messageId: p.messageId ?? 0 });
      this.onMessage(p.topic, typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload);
    } else if (packet.cmd === 'connack') {
      this.connack?.(packet.returnCode ?? 0);
      this.connack = null;
    } else if (packet.cmd === 'suback') {
      const s = packet as ISubackPacket;
      this.subacks.get(s.messageId ?? 0)?.(s.granted as number[]);
      this.subacks.delete(s.messageId ?? 0);
    }
  }

  private send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: 4 }));
  }

  private id(): number {
    this.nextId = (this.nextId % 0xffff) + 1;
    return this.nextId;
  }
}
