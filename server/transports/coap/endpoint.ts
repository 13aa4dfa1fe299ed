import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup, type LookupOneOptions } from 'node:dns';
import { isIP, isIPv6, type AddressInfo } from 'node:net';
import { parse, type ParsedPacket } from 'coap-packet';
import { realTimers, type Timers } from '../../timers';
import { Block1Assembly } from './block1-assembly';
import { parseBlock, type Block } from './block-wise';
import { CoapClient, type ClientOptions, type CoapObservation, type CoapResponse, type ObserveListener, type OutgoingRequest } from './client';
import { DedupCache } from './dedup-cache';
import { Code, emptyMessage, encodeReply, Method, toRequest, type CoapRequest, type Peer, type Reply } from './messages';
import { checkRequest, unparsable, type Refusal } from './request-checks';
import { messageKey, Retransmission, type Delivery, type Replacement, type TransmissionParams } from './retransmission';

/**
 * Serves a request: answers the reply (the endpoint encodes, sends and remembers it). A reply
 * answered at once, not as a promise, goes out in the same turn of the event loop: no timer for
 * the piggyback deadline, no exchange to track (the block path of a download).
 */
export type RequestHandler = (req: CoapRequest) => Reply | Promise<Reply>;

export interface EndpointOptions extends TransmissionParams {
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Address to bind; an IPv6 address binds a udp6 socket. */
  host: string;
  /** How long a response may take before an empty ACK is sent and the response follows separately [RFC 7252 §5.2.2]. */
  piggybackMs: number;
  /** Largest request body taken block-wise (Block1), in bytes. */
  maxBodySize: number;
  /** Answers kept for retransmitted requests (OTA_COAP_DEDUP_ENTRIES); the oldest go first. */
  dedupEntries: number;
  /** Requests of one peer processed at once (OTA_COAP_MAX_EXCHANGES_PER_PEER); past it, 4.29. */
  maxExchangesPerPeer: number;
  /** Bytes of Block1 uploads in progress held in all (OTA_COAP_UPLOAD_BYTES); past it a block gets 5.03. */
  uploadBytes: number;
  /** How long a request of ours waits for its response once acknowledged (client role). */
  responseTimeoutMs: number;
}

/** RFC 7252 §4.8: ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4, and the lifetimes derived in §4.8.2. */
export const ENDPOINT_DEFAULTS: Omit<EndpointOptions, 'port' | 'host'> = {
  ackTimeoutMs: 2000,
  ackRandomFactor: 1.5,
  maxRetransmit: 4,
  /**
   * ThingsBoard (Californium) defers the empty ACK too, so that most responses are piggybacked
   * and the device does not have to acknowledge a separate response.
   */
  piggybackMs: 500,
  /** As the HTTP device API's JSON limit. */
  maxBodySize: 1024 * 1024,
  /** About 4.5 MB of answers at 1,100 bytes (a 1024-byte block and its header). */
  dedupEntries: 4096,
  /** A device does one thing at a time; a few overlapping retries of telemetry fit. */
  maxExchangesPerPeer: 16,
  /** Sixteen uploads of the largest body at once. */
  uploadBytes: 16 * 1024 * 1024,
  /** MAX_TRANSMIT_WAIT [RFC 7252 §4.8.2]: a separate response later than this is not coming. */
  responseTimeoutMs: 93_000,
};

/** EXCHANGE_LIFETIME and NON_LIFETIME with the default transmission parameters [RFC 7252 §4.8.2]. */
const EXCHANGE_LIFETIME_MS = 247_000;
const NON_LIFETIME_MS = 145_000;
/** Max-Age of a 4.29: when a peer over its limit may try again [RFC 8516 §3]. */
const RETRY_AFTER_S = 2;

/** How the endpoint reports trouble it handled (a send failing, a handler throwing). */
export type Warn = (message: string) => void;

/**
 * One CoAP endpoint on one UDP socket [RFC 7252], in both roles:
 *
 * - message layer (§4): parses each datagram once; matches ACKs and RSTs to our confirmable
 *   messages, which it retransmits with exponential back-off (retransmission.ts); answers a CoAP
 *   ping with a RST (§4.3); deduplicates requests by peer and message id (dedup-cache.ts, §4.5);
 * - server (§5): checks a request's options (request-checks.ts), puts Block1 uploads back together
 *   [RFC 7959 §2.3], hands the request to the handler and sends its reply piggybacked on the ACK,
 *   or after an empty ACK as a confirmable response of its own when the handler takes longer than
 *   `piggybackMs` (§5.2.2); a peer with `maxExchangesPerPeer` requests in progress gets 4.29;
 * - client: `request()` and `observe()` (client.ts), with Block1/Block2 and Observe.
 *
 * What a request means (paths, Observe registrations, Block2 slicing of a resource) is the
 * handler's: the endpoint knows messages and exchanges, not resources.
 */
export class CoapEndpoint {
  readonly options: EndpointOptions;
  private socket: Socket | null = null;
  private closed = false;
  private readonly dedup: DedupCache;
  private readonly retransmission: Retransmission;
  private readonly uploads: Block1Assembly;
  private readonly client: CoapClient;
  /** Requests being processed, per peer. */
  private readonly busy = new Map<string, number>();
  private readonly pending = new Set<Promise<void>>();
  /**
   * A RST to a message of ours: matched to a message in retransmission or not, the handler may
   * know it (an observation ends on a RST to any notification, confirmable or not [RFC 7641 §3.6]).
   */
  onReset: ((peer: Peer, messageId: number) => void) | null = null;

  constructor(
    options: Partial<EndpointOptions> & Pick<EndpointOptions, 'port' | 'host'>,
    private readonly handler: RequestHandler | null,
    private readonly timers: Timers = realTimers,
    private readonly warn: Warn = () => undefined,
    random: () => number = Math.random,
  ) {
    this.options = { ...ENDPOINT_DEFAULTS, ...options };
    const send = (bytes: Buffer, peer: Peer): void => this.send(bytes, peer);
    this.dedup = new DedupCache(timers, this.options.dedupEntries);
    this.retransmission = new Retransmission(send, timers, this.options, random);
    this.uploads = new Block1Assembly(this.options.maxBodySize, () => timers.now(), EXCHANGE_LIFETIME_MS, this.options.uploadBytes);
    this.client = new CoapClient({ send, retransmission: this.retransmission, timers, responseTimeoutMs: this.options.responseTimeoutMs });
  }

  /** Binds the socket; answers where it listens. */
  async start(): Promise<AddressInfo> {
    if (this.socket || this.closed) throw new Error('a CoAP endpoint starts once; make a new one to listen again');
    const { host, port } = this.options;
    // No SO_REUSEADDR: a port in use must be an error.
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false, lookup: literalLookup });
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
    socket.on('message', (datagram, rinfo) => this.receive(datagram, rinfo));
    socket.on('error', (err) => this.warn(`CoAP socket: ${err.message}`));
    this.socket = socket;
    return socket.address();
  }

  /** Stops taking datagrams, lets the requests under way answer, then closes the socket. Idempotent. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.pending]);
    this.client.clear();
    this.retransmission.clear();
    this.dedup.clear();
    this.uploads.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) await closeSocket(socket);
  }

  /** Where the socket is bound, while started. */
  get address(): AddressInfo | null {
    return this.socket ? this.socket.address() : null;
  }

  /**
   * Sends a request to `peer` and resolves with its response: confirmable by default (retransmitted
   * until acknowledged), a payload larger than `blockSize` sent block-wise (Block1), a response in
   * blocks (Block2) fetched whole. Rejects on a RST, or when no response comes in time.
   */
  request(peer: Peer, req: OutgoingRequest, options?: ClientOptions): Promise<CoapResponse> {
    return this.client.request(peer, req, options);
  }

  /**
   * Observes a resource of `peer` [RFC 7641]: `listener` gets each notification, in order (late
   * ones dropped, §3.4). Resolves once the first response came; `cancel()` deregisters (§3.6).
   */
  observe(peer: Peer, req: OutgoingRequest, listener: ObserveListener, options?: ClientOptions): Promise<CoapObservation> {
    return this.client.observe(peer, req, listener, options);
  }

  /**
   * Sends a message of ours; confirmable ones go through `sendConfirmable`. Without a callback: a
   * failed send is reported on the socket's 'error' event (logged), and the block path saves a
   * callback from C++ per datagram.
   */
  send(bytes: Buffer, peer: Peer): void {
    this.socket?.send(bytes, peer.port, peer.address);
  }

  /**
   * Sends a confirmable message of ours, retransmitted until acknowledged [RFC 7252 §4.2]; `newer`
   * may give, at each retransmission, a message that replaces it (retransmission.ts).
   */
  sendConfirmable(bytes: Buffer, peer: Peer, newer?: () => Replacement | undefined): Promise<Delivery> {
    return this.retransmission.sendConfirmable(bytes, peer, bytes.readUInt16BE(2), newer);
  }

  /** Stops retransmitting a confirmable message of ours. */
  giveUp(peer: Peer, messageId: number): void {
    this.retransmission.giveUp(peer, messageId);
  }

  /** Entries in each bounded table, for tests and /metrics. */
  get load(): { dedup: number; retransmitting: number; exchanges: number; uploadBytes: number } {
    let exchanges = 0;
    for (const n of this.busy.values()) exchanges += n;
    return { dedup: this.dedup.size, retransmitting: this.retransmission.size, exchanges, uploadBytes: this.uploads.size };
  }

  /** One datagram from the socket (public so that tests can feed one without a socket). */
  receive(datagram: Buffer, rinfo: Pick<RemoteInfo, 'address' | 'port'>): void {
    if (this.closed) return;
    const peer = { address: rinfo.address, port: rinfo.port };
    let packet: ParsedPacket;
    try {
      packet = parse(datagram);
    } catch {
      const what = unparsable(datagram);
      if (!what) return;
      if ('reset' in what) return this.send(emptyMessage('RST', what.reset), peer);
      return this.refuse(what.request, peer, { code: Code.BAD_OPTION });
    }
    // Tokens are 0-8 bytes [RFC 7252 §3]; coap-packet also reads RFC 8974's extended lengths, which we do not speak.
    if (packet.token.length > 8) {
      if (packet.confirmable) this.send(emptyMessage('RST', packet.messageId), peer);
      return;
    }
    if (packet.code === '0.00') return this.empty(packet, peer);
    const codeClass = packet.code.charCodeAt(0) - 48;
    if (codeClass >= 2 && codeClass <= 5) return this.response(packet, peer);
    // Requests come as CON or NON; a request in an ACK or RST, or a reserved class, is dropped [§4.2, §4.3].
    if (codeClass === 0 && !packet.ack && !packet.reset) this.incomingRequest(packet, peer);
  }

  private empty(packet: ParsedPacket, peer: Peer): void {
    if (packet.ack) {
      this.retransmission.answered(peer, packet.messageId, 'ack');
      return;
    }
    if (packet.reset) {
      this.retransmission.answered(peer, packet.messageId, 'reset');
      this.onReset?.(peer, packet.messageId);
      this.client.reset(peer, packet.messageId);
      return;
    }
    // CoAP ping: a CON empty message is answered with a RST [RFC 7252 §4.3].
    if (packet.confirmable) this.send(emptyMessage('RST', packet.messageId), peer);
  }

  /** A response to a request of ours: piggybacked on an ACK, or a CON/NON of its own [RFC 7252 §5.2]. */
  private response(packet: ParsedPacket, peer: Peer): void {
    if (packet.ack) {
      this.retransmission.answered(peer, packet.messageId, 'ack');
      this.client.onResponse(packet, peer);
      return;
    }
    if (packet.reset) return;
    const key = messageKey(peer, packet.messageId);
    // A retransmitted CON response is acknowledged again, and delivered once [§4.5].
    const kept = packet.confirmable ? this.dedup.lookup(key) : undefined;
    if (kept) return this.send(kept, peer);
    const wanted = this.client.onResponse(packet, peer);
    // A response nobody waits for is rejected with a RST, which also ends an observation at a server [RFC 7641 §3.6].
    const answer = emptyMessage(wanted ? 'ACK' : 'RST', packet.messageId);
    if (packet.confirmable) {
      this.dedup.answer(key, answer, EXCHANGE_LIFETIME_MS);
      this.send(answer, peer);
    } else if (!wanted) this.send(answer, peer);
  }

  private incomingRequest(packet: ParsedPacket, peer: Peer): void {
    const key = messageKey(peer, packet.messageId);
    const kept = this.dedup.lookup(key);
    if (kept === null) return; // still being processed: its answer will cover the duplicate
    if (kept) return this.send(kept, peer);
    const lifetime = packet.confirmable ? EXCHANGE_LIFETIME_MS : NON_LIFETIME_MS;
    if (!this.handler) return this.refuse(packet, peer, { code: Code.NOT_FOUND });
    const refusal = checkRequest(packet, this.options.maxBodySize);
    if (refusal) return this.refuse(packet, peer, refusal);
    const who = `${peer.address}:${peer.port}`;
    const busy = this.busy.get(who) ?? 0;
    if (busy >= this.options.maxExchangesPerPeer) return this.refuse(packet, peer, { code: Code.TOO_MANY_REQUESTS });

    let payload: Buffer | undefined;
    let block1: Block | undefined;
    const block1Option = packet.options.find((o) => o.name === 'Block1');
    if (block1Option) {
      const block = parseBlock(block1Option.value) as Block; // checked by checkRequest
      const outcome = this.uploads.take(packet, peer, block);
      if ('refuse' in outcome)
        return this.refuse(packet, peer, { code: outcome.refuse, ...(outcome.refuse === Code.REQUEST_ENTITY_TOO_LARGE ? { size1: this.options.maxBodySize } : {}) });
      if ('continue' in outcome) {
        // 2.31 Continue, with the block acknowledged [RFC 7959 §2.3]; kept for a retransmission of that block.
        const { bytes } = encodeReply({ code: Code.CONTINUE, block1: outcome.continue }, answerTo(packet));
        this.dedup.answer(key, bytes, lifetime);
        return this.send(bytes, peer);
      }
      payload = outcome.complete;
      // The last block is acknowledged in the response [RFC 7959 §2.3].
      block1 = { ...block, more: false };
    }

    const request = toRequest(packet, peer, payload);
    const now = this.serveNow(request);
    if (!(now instanceof Promise)) {
      const r = block1 ? { ...now, block1 } : now;
      const { bytes, messageId } = encodeReply(r, answerTo(packet));
      // A GET may be served again rather than remembered [RFC 7252 §4.5: "a server might relax the
      // requirement to answer all retransmissions of an idempotent request with the same response"]:
      // a download's blocks would otherwise push every other answer out of the cache.
      if (packet.code !== Method.GET) this.dedup.answer(key, bytes, lifetime);
      this.send(bytes, peer);
      r.sent?.(packet.confirmable ? null : messageId);
      return;
    }
    this.dedup.begin(key, lifetime);
    this.busy.set(who, busy + 1);
    let separate = false;
    const timer = packet.confirmable
      ? this.timers.setTimeout(() => {
          separate = true;
          const ack = emptyMessage('ACK', packet.messageId);
          this.dedup.answer(key, ack, lifetime);
          this.send(ack, peer);
        }, this.options.piggybackMs)
      : null;
    const work = this.settle(request, now)
      .then((reply) => {
        if (timer !== null) this.timers.clearTimeout(timer);
        const r = block1 ? { ...reply, block1 } : reply;
        if (separate) {
          // A separate response is confirmable here; the duplicate of the request still gets the empty ACK [RFC 7252 §5.2.2].
          const { bytes, messageId } = encodeReply(r, { token: packet.token, type: 'CON' });
          void this.retransmission.sendConfirmable(bytes, peer, messageId);
          r.sent?.(messageId);
          return;
        }
        const { bytes, messageId } = encodeReply(r, answerTo(packet));
        this.dedup.answer(key, bytes, lifetime);
        this.send(bytes, peer);
        r.sent?.(packet.confirmable ? null : messageId);
      })
      .finally(() => {
        const n = (this.busy.get(who) ?? 1) - 1;
        if (n > 0) this.busy.set(who, n);
        else this.busy.delete(who);
        this.pending.delete(work);
      });
    this.pending.add(work);
  }

  /** The handler's reply, or its promise; a handler that throws is a 5.00. */
  private serveNow(req: CoapRequest): Reply | Promise<Reply> {
    try {
      return (this.handler as RequestHandler)(req);
    } catch (err) {
      return this.failed(req, err);
    }
  }

  private async settle(req: CoapRequest, reply: Promise<Reply>): Promise<Reply> {
    try {
      return await reply;
    } catch (err) {
      return this.failed(req, err);
    }
  }

  private failed(req: CoapRequest, err: unknown): Reply {
    this.warn(`CoAP ${req.path.join('/')}: ${(err as Error).message}`);
    return { code: Code.INTERNAL_SERVER_ERROR };
  }

  /** Answers a request that is not served (not remembered: refusing again is as cheap). */
  private refuse(packet: { token: Buffer; messageId: number; confirmable: boolean }, peer: Peer, refusal: Refusal): void {
    const r: Reply = { code: refusal.code };
    if (refusal.size1 !== undefined) r.size1 = refusal.size1;
    if (refusal.code === Code.TOO_MANY_REQUESTS) r.maxAge = RETRY_AFTER_S;
    this.send(encodeReply(r, answerTo(packet)).bytes, peer);
  }
}

/** The message type of an answer: an ACK for a CON request (piggybacked), a NON for a NON [RFC 7252 §5.2]. */
function answerTo(packet: { token: Buffer; messageId: number; confirmable: boolean }): { token: Buffer; type: 'ACK' | 'NON'; messageId?: number } {
  return packet.confirmable ? { token: packet.token, type: 'ACK', messageId: packet.messageId } : { token: packet.token, type: 'NON' };
}

/**
 * The socket's resolver. We send to the addresses datagrams came from, which are IP literals, and
 * dgram resolves the address of every datagram it sends: `dns.lookup` answers a literal only on
 * the next tick, a deferral per block of a download. A literal is answered at once here; a name
 * (a client request to a host name) still goes to `dns.lookup`.
 */
function literalLookup(address: string, options: LookupOneOptions | number, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = isIP(address);
  if (family) return callback(null, address, family);
  if (typeof options === 'number') lookup(address, options, callback);
  else lookup(address, options, callback);
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
