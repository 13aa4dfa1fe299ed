import { BlobReader } from '../../store/blob-reader';
import { createSocket, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { isIPv6, type AddressInfo } from 'node:net';
import { createServer, ObserveWriteStream, type IncomingMessage, type OutgoingMessage, type Server } from 'coap';
import type { OptionName } from 'coap-packet';
import { CoapDeviceApi, type ApiResult } from './device-api';
import { DatagramGate } from './datagram-gate';
import { Code, emptyMessage, encodeReply, reply, replyOptions, toRequest, type CoapRequest, type Peer, type Reply } from './messages';
import { Observations } from './observations';
import { isBlockSize } from './block-wise';
import type { DeviceContext } from '../device-context';
import type { Device } from '../../store/devices';
import { updateMessage } from '../http/http-transport';
import type { Notification } from '../../pipeline/notifier';
import { realTimers, type Timers } from '../../timers';
import type { UplinkEvent } from '../../pipeline/uplink';

export interface CoapOptions {
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Address to bind; an IPv6 address binds a udp6 socket. */
  host?: string;
  /** Largest Block2 block sent: 16 … 1024, a power of two. */
  blockSize?: number;
  /** How long a response may take before an empty ACK is sent and the response follows separately. */
  piggybackMs?: number;
  /** Transmission parameters of confirmable notifications [RFC 7252 §4.8]. */
  ackTimeoutMs?: number;
  ackRandomFactor?: number;
  maxRetransmit?: number;
  /** Largest request body taken block-wise (Block1), in bytes. */
  maxBodySize?: number;
  /** Bytes of sent responses the `coap` package keeps to answer retransmitted requests. */
  responseCacheBytes?: number;
}

/** Every default in one place. */
export const COAP_DEFAULTS = {
  port: 5683,
  host: '0.0.0.0',
  /** Californium's (ThingsBoard's) PREFERRED_BLOCK_SIZE and MAX_MESSAGE_SIZE (reference §5). */
  blockSize: 1024,
  /**
   * The `coap` package sends an empty ACK after 50 ms; ThingsBoard defers it too, so that most
   * responses are piggybacked and the device does not have to ACK a separate response.
   */
  piggybackMs: 500,
  /** RFC 7252 §4.8: ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4. */
  ackTimeoutMs: 2000,
  ackRandomFactor: 1.5,
  maxRetransmit: 4,
  /** As the HTTP device API's JSON limit. */
  maxBodySize: 1024 * 1024,
  /**
   * About 7,000 block responses: answers to retransmissions, bounded whatever the package size
   * (the package's own default is 32 MiB).
   */
  responseCacheBytes: 8 * 1024 * 1024,
  /** RFC 7252 §4.8.2 EXCHANGE_LIFETIME with the default parameters. */
  exchangeLifetimeMs: 247_000,
} as const;

export interface CoapTransportEvents {
  /** What a device sent: telemetry, attributes, a block of a download (also emitted on the engine's events). */
  uplink: [UplinkEvent];
  /** The number of observations changed. */
  observers: [count: number];
}

/**
 * ThingsBoard's CoAP device transport (reference §5) on the `coap` package's server: a UDP socket
 * of our own, a gate in front of the package's server (see datagram-gate.ts), the device API
 * behind it, and the Observe registry that carries notifications to devices.
 */
export class CoapTransport extends EventEmitter<CoapTransportEvents> {
  private readonly options: Required<CoapOptions>;
  private readonly observations: Observations;
  private readonly api: CoapDeviceApi;
  private readonly gate: DatagramGate;
  private socket: Socket | null = null;
  private server: Server | null = null;
  /** The package server's datagram entry, behind the gate. */
  private toServer: ((datagram: Buffer, rinfo: AddressInfo) => void) | null = null;
  private readonly pending = new Set<Promise<void>>();
  private readonly reader: BlobReader;
  private stopping: Promise<void> | null = null;
  private readonly onDeviceDeleted = ({ device }: { device: Device }): void => this.observations.deviceDeleted(device.id);

  constructor(
    private readonly ctx: DeviceContext,
    options: CoapOptions,
    private readonly timers: Timers = realTimers,
  ) {
    super();
    this.options = { ...COAP_DEFAULTS, ...stripUndefined(options) };
    const { blockSize, port } = this.options;
    if (!isBlockSize(blockSize)) throw new RangeError(`CoAP block size must be 16, 32, 64, 128, 256, 512 or 1024, not ${blockSize}`);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`CoAP port must be 0-65535, not ${port}`);
    const send = (bytes: Buffer, peer: Peer): void => this.send(bytes, peer);
    this.observations = new Observations(send, timers, this.options);
    this.observations.on('observers', (n) => this.emit('observers', n));
    this.gate = new DatagramGate({
      now: () => timers.now(),
      send,
      empty: (kind, peer, messageId) => this.observations.onEmpty(kind, peer, messageId),
      forward: (datagram, rinfo) => this.toServer?.(datagram, rinfo),
      maxBodySize: this.options.maxBodySize,
      exchangeLifetimeMs: COAP_DEFAULTS.exchangeLifetimeMs,
    });
    this.reader = new BlobReader((sha) => ctx.blobs.pathOf(sha));
    this.api = new CoapDeviceApi({
      ctx,
      reader: this.reader,
      blockSize,
      now: () => timers.now(),
      cancelObservation: (req) => this.observations.cancel(req.peer, req.token),
      uplink: (ev) => {
        ctx.events.emit('uplink', ev);
        this.emit('uplink', ev);
      },
    });
  }

  /** Binds the socket and serves; answers where it listens. */
  async start(): Promise<AddressInfo> {
    if (this.socket || this.stopping) throw new Error('a CoAP transport starts once; make a new one to listen again');
    const { host, port } = this.options;
    const type = isIPv6(host) ? 'udp6' : 'udp4';
    // No SO_REUSEADDR (the package sets it on sockets it makes): a port in use must be an error.
    const socket = createSocket({ type, reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    }).catch(async (err: unknown) => {
      await closeSocket(socket);
      throw err;
    });

    const server = createServer({
      type,
      piggybackReplyMs: this.options.piggybackMs,
      sendAcksForNonConfirmablePackets: true,
      cacheSize: this.options.responseCacheBytes,
    });
    server.on('request', (req: IncomingMessage, res: OutgoingMessage) => this.onRequest(req, res));
    server.on('error', (err: Error) => this.ctx.logger.warn(`CoAP: ${err.message}`));
    // The package answers a request it cannot take with 5.00, sent to the right port on the wrong
    // host (it gives no address). The gate keeps the known cases from it (unparsable messages,
    // Observe on a POST, FETCH, Block1); whatever else comes is the request's fault: 4.00, to the sender.
    server._sendError = (_payload, rsinfo, packet) => {
      if (!packet?.token) return;
      const confirmable = packet.confirmable === true;
      const { bytes } = encodeReply(reply(Code.BAD_REQUEST), {
        token: packet.token,
        type: confirmable ? 'ACK' : 'NON',
        ...(confirmable && packet.messageId !== undefined ? { messageId: packet.messageId } : {}),
      });
      this.send(bytes, rsinfo);
    };
    server.listen(socket);
    // The package listens on the socket we gave it; its listener moves behind the gate.
    socket.removeAllListeners('message');
    this.toServer = server.handleRequest();
    socket.on('message', (datagram, rinfo) => this.gate.receive(datagram, rinfo));
    socket.on('error', (err) => this.ctx.logger.warn(`CoAP socket: ${err.message}`));

    this.socket = socket;
    this.server = server;
    this.ctx.events.on('deviceDeleted', this.onDeviceDeleted);
    return socket.address();
  }

  /** Stops taking datagrams, finishes the requests under way, then closes the socket. Idempotent. */
  stop(): Promise<void> {
    if (!this.socket) return Promise.resolve();
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    const { socket, server } = this;
    this.gate.close();
    this.ctx.events.off('deviceDeleted', this.onDeviceDeleted);
    // Requests under way still answer: their replies go out before the socket closes.
    await Promise.allSettled([...this.pending]);
    this.observations.clear();
    await this.reader.close();
    // Clears the package's response cache, whose entries hold retransmission timers.
    server?.close();
    this.socket = null;
    this.server = null;
    this.toServer = null;
    if (socket) await closeSocket(socket);
  }

  /** Delivers a notification to every observer of its device; answers how many there were. */
  deliver(n: Pick<Notification, 'deviceId' | 'attributes' | 'deleted'>): number {
    return this.observations.notify(n.deviceId, updateMessage(n));
  }

  /** Devices observing their attributes right now. */
  get observers(): number {
    return this.observations.size;
  }

  /** Where the socket is bound, while started. */
  get address(): AddressInfo | null {
    return this.socket ? this.socket.address() : null;
  }

  private send(bytes: Buffer, peer: Peer): void {
    this.socket?.send(bytes, peer.port, peer.address, (err) => {
      if (err) this.ctx.logger.warn(`CoAP send to ${peer.address}:${peer.port}: ${err.message}`);
    });
  }

  private onRequest(req: IncomingMessage, res: OutgoingMessage): void {
    const packet = req._packet;
    const peer = { address: req.rsinfo.address, port: req.rsinfo.port };
    const messageId = packet.messageId ?? 0;
    // A separate response the device never acknowledges ends in an 'error' on the response.
    res.on('error', (err: Error) => this.ctx.logger.warn(`CoAP response to ${peer.address}:${peer.port}: ${err.message}`));
    this.gate.begin(peer, messageId);
    const request = toRequest(
      {
        code: packet.code ?? '0.00',
        options: packet.options ?? [],
        payload: packet.payload ?? Buffer.alloc(0),
        token: packet.token ?? Buffer.alloc(0),
        messageId,
        confirmable: packet.confirmable === true,
      },
      peer,
      req.payload,
    );
    const work = this.serve(request, res).finally(() => this.pending.delete(work));
    this.pending.add(work);
  }

  private async serve(request: CoapRequest, res: OutgoingMessage): Promise<void> {
    let result: ApiResult;
    try {
      result = await this.api.handle(request);
    } catch (err) {
      this.ctx.logger.error(`CoAP ${request.path.join('/')}: ${(err as Error).message}`);
      result = { reply: reply(Code.INTERNAL_SERVER_ERROR) };
    }
    const { peer, messageId } = request;
    // The last block of an upload is acknowledged in the response [RFC 7959 §2.3].
    const block1 = this.gate.lastBlockOf(peer, messageId);
    if (block1 && 'reply' in result) result = { reply: { ...result.reply, block1 } };
    if ('observe' in result) {
      const answer = this.observations.accept(request, result.observe.deviceId, result.observe.attributes);
      return this.gate.end(peer, messageId, answer);
    }
    // A GET with Observe 0 gets the package's Observe stream as its response, which numbers
    // from 1; resources that are not observable answer it plainly [RFC 7641 §3.1], sent by us.
    if ((res as unknown) instanceof ObserveWriteStream) {
      const type = request.confirmable ? 'ACK' : 'NON';
      const { bytes } = encodeReply(result.reply, { token: request.token, type, ...(request.confirmable ? { messageId } : {}) });
      this.send(bytes, peer);
      return this.gate.end(peer, messageId, bytes);
    }
    this.respond(res, result.reply);
    // After the empty ACK (piggybackMs passed), the package caches that ACK under a key its own
    // duplicate check does not use when the request has a token: keep it here instead.
    const separate = request.confirmable && !res._packet.ack;
    this.gate.end(peer, messageId, separate ? emptyMessage('ACK', messageId) : undefined);
  }

  /** Puts a reply on the package's response. The body goes in by `write`, which keeps the package's own Block2 slicing out of it. */
  private respond(res: OutgoingMessage, r: Reply): void {
    res.code = r.code;
    for (const o of replyOptions(r)) res.setOption(o.name as OptionName, o.value);
    if (r.payload?.length) res.write(r.payload);
    res.end();
  }
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
