import { randomBytes } from 'node:crypto';
import { generate, type Option, type ParsedPacket } from 'coap-packet';
import type { Timers } from '../../timers';
import { encodeBlock, isBlockSize, parseBlock, uintBytes, type Block } from './block-wise';
import { Method, nextMessageId, type Peer } from './messages';
import { messageKey, type Retransmission } from './retransmission';

/** A request our endpoint sends to a peer (the client role, used by LwM2M for Read/Write/Execute/Observe). */
export interface OutgoingRequest {
  method: keyof typeof Method;
  /** `/a/b/c` or its segments; each segment is one Uri-Path option. */
  path?: string | readonly string[];
  /** Each item one Uri-Query option, e.g. `ep=node-1`. */
  query?: readonly string[];
  payload?: Buffer;
  contentFormat?: number;
  accept?: number;
  /** Any other option, as coap-packet names or numbers them. */
  options?: readonly Option[];
  /** CON (default), retransmitted until acknowledged; NON is sent once. */
  confirmable?: boolean;
}

export interface ClientOptions {
  /**
   * Block size for a payload sent block-wise (Block1), and the size asked for a response in blocks
   * (Block2, "early negotiation" [RFC 7959 §2.4]): 16 … 1024. Default 1024; a payload up to it goes whole.
   */
  blockSize?: number;
  /** How long to wait for a response once the request is acknowledged (or sent, for NON). */
  timeoutMs?: number;
  /** Told the payload bytes of each Block2 block as it arrives (a download's progress). */
  onBlock?: (bytes: number) => void;
}

/** A response (or notification), its body whole when it came in blocks. */
export interface CoapResponse {
  /** `2.05`, `4.04`… */
  code: string;
  payload: Buffer;
  /** The options of the (first) response message. */
  options: ReadonlyArray<{ name: string | number; value: Buffer }>;
  contentFormat: number | null;
  /** The Observe option's value, null when absent. */
  observe: number | null;
}

export type ObserveListener = (notification: CoapResponse) => void;

/** An observation we hold on a peer's resource [RFC 7641 §3]. */
export interface CoapObservation {
  /** The registration's answer. When it has no Observe option, the resource is not observable and the observation is over. */
  readonly first: CoapResponse;
  /** False once cancelled, ended by the server (a notification that is not 2.xx, or without Observe, §3.2), or the endpoint stopped. */
  readonly active: boolean;
  /** Deregisters with a GET carrying Observe 1 [RFC 7641 §3.6]; resolves with its answer (null when the observation had ended already). */
  cancel(): Promise<CoapResponse | null>;
}

/** Why a request of ours failed. */
export class CoapRequestError extends Error {
  constructor(
    readonly reason: 'reset' | 'timeout' | 'stopped' | 'etag-changed',
    message: string,
  ) {
    super(message);
    this.name = 'CoapRequestError';
  }
}

/** What the client sends through: the endpoint's socket and its retransmission of CON messages. */
export interface ClientDeps {
  send(bytes: Buffer, peer: Peer): void;
  retransmission: Retransmission;
  timers: Timers;
  responseTimeoutMs: number;
}

/** A token waiting for responses: one for a request, every notification for an observation. */
interface Waiter {
  messageId: number;
  onPacket(packet: ParsedPacket): void;
  fail(err: CoapRequestError): void;
}

/** Notifications older than this are no longer compared by sequence number [RFC 7641 §3.4]. */
const OBSERVE_REORDER_WINDOW_MS = 128_000;

/**
 * The client role of the endpoint [RFC 7252 §5]: requests matched to responses by peer and token,
 * Block1 uploads and Block2 downloads [RFC 7959 §2.3, §2.4] done here so that a caller sends and
 * receives whole bodies, and observations [RFC 7641 §3].
 */
export class CoapClient {
  private readonly waiters = new Map<string, Waiter>();
  /** Token key by message id, for a RST (which names the message, not the token). */
  private readonly byMessage = new Map<string, string>();

  constructor(private readonly deps: ClientDeps) {}

  async request(peer: Peer, req: OutgoingRequest, options: ClientOptions = {}): Promise<CoapResponse> {
    const blockSize = this.blockSize(options);
    const token = randomBytes(4);
    const payload = req.payload ?? Buffer.alloc(0);
    let first: ParsedPacket;
    if (payload.length > blockSize) first = await this.upload(peer, req, payload, blockSize, token, options);
    else first = await this.exchange(peer, this.packet(req, token, payload, []), req.confirmable !== false, options);
    return this.whole(peer, req, first, options);
  }

  async observe(peer: Peer, req: OutgoingRequest, listener: ObserveListener, options: ClientOptions = {}): Promise<CoapObservation> {
    const token = randomBytes(4);
    const key = tokenKey(peer, token);
    let last: { sequence: number; at: number } | null = null;
    let active = true;
    const end = (): void => {
      if (!active) return;
      active = false;
      this.waiters.delete(key);
    };
    // Later notifications arrive on the registration's token [RFC 7641 §3.2].
    const onNotification = (packet: ParsedPacket): void => {
      const observe = optionUint(packet, 'Observe');
      const now = this.deps.timers.now();
      // §3.4: a notification is fresh when its sequence number is newer (modulo 2^24), or 128 s passed.
      if (observe !== null && last !== null && !isNewer(last.sequence, observe) && now <= last.at + OBSERVE_REORDER_WINDOW_MS) return;
      if (observe !== null) last = { sequence: observe, at: now };
      if (observe === null || !packet.code.startsWith('2.')) end();
      void this.whole(peer, { ...req, method: 'GET', payload: Buffer.alloc(0) }, packet, options).then(listener, () => undefined);
    };
    const registration = this.packet(req, token, req.payload ?? Buffer.alloc(0), [{ name: 'Observe', value: Buffer.alloc(0) }]);
    const firstPacket = await this.exchange(peer, registration, req.confirmable !== false, options, onNotification);
    const firstObserve = optionUint(firstPacket, 'Observe');
    if (firstObserve !== null && firstPacket.code.startsWith('2.')) last = { sequence: firstObserve, at: this.deps.timers.now() };
    else end();
    const first = await this.whole(peer, { ...req, method: 'GET', payload: Buffer.alloc(0) }, firstPacket, options);
    return {
      first,
      get active() {
        return active;
      },
      cancel: async () => {
        if (!active) return null;
        end();
        const cancel = this.packet({ ...req, method: 'GET', payload: Buffer.alloc(0) }, token, Buffer.alloc(0), [{ name: 'Observe', value: uintBytes(1) }]);
        const answer = await this.exchange(peer, cancel, req.confirmable !== false, options);
        return this.whole(peer, { ...req, method: 'GET', payload: Buffer.alloc(0) }, answer, options);
      },
    };
  }

  /** A response to one of our tokens: true when it was awaited. */
  onResponse(packet: ParsedPacket, peer: Peer): boolean {
    const waiter = this.waiters.get(tokenKey(peer, packet.token));
    if (!waiter) return false;
    waiter.onPacket(packet);
    return true;
  }

  /** A RST to one of our messages ends its exchange [RFC 7252 §4.2]. */
  reset(peer: Peer, messageId: number): void {
    const key = this.byMessage.get(messageKey(peer, messageId));
    if (key === undefined) return;
    this.waiters.get(key)?.fail(new CoapRequestError('reset', `${peer.address}:${peer.port} reset the request`));
  }

  /** Fails every exchange under way (the endpoint stops). */
  clear(): void {
    for (const w of [...this.waiters.values()]) w.fail(new CoapRequestError('stopped', 'the CoAP endpoint stopped'));
    this.waiters.clear();
    this.byMessage.clear();
  }

  private blockSize(options: ClientOptions): number {
    const size = options.blockSize ?? 1024;
    if (!isBlockSize(size)) throw new RangeError(`CoAP block size must be 16, 32, 64, 128, 256, 512 or 1024, not ${size}`);
    return size;
  }

  /**
   * Sends the payload in Block1 blocks, each waiting for its 2.31 [RFC 7959 §2.3]; a server asking
   * for smaller blocks in its answer gets them from the next one on (late negotiation, §2.5). All
   * blocks carry the same token. Resolves with the answer to the last block, or the first that is
   * not 2.31 (the server refused the body).
   */
  private async upload(peer: Peer, req: OutgoingRequest, payload: Buffer, blockSize: number, token: Buffer, options: ClientOptions): Promise<ParsedPacket> {
    let size = blockSize;
    let offset = 0;
    for (;;) {
      const end = Math.min(offset + size, payload.length);
      const block: Block = { num: offset / size, more: end < payload.length, size };
      const extra: Option[] = [{ name: 'Block1', value: encodeBlock(block) }];
      // Size1 tells the server the whole body's size up front [RFC 7959 §4].
      if (offset === 0) extra.push({ name: 'Size1', value: uintBytes(payload.length) });
      const answer = await this.exchange(peer, this.packet(req, token, payload.subarray(offset, end), extra), req.confirmable !== false, options);
      if (!block.more || answer.code !== '2.31') return answer;
      const acked = blockOf(answer, 'Block1');
      offset = end;
      if (acked && acked.size < size && offset % acked.size === 0) size = acked.size;
    }
  }

  /** The whole body of a response that came in Block2 blocks: the rest fetched one block at a time [RFC 7959 §2.4, §3.4]. */
  private async whole(peer: Peer, req: OutgoingRequest, first: ParsedPacket, options: ClientOptions): Promise<CoapResponse> {
    const response = (body: Buffer): CoapResponse => ({
      code: first.code,
      payload: body,
      options: first.options,
      contentFormat: optionUint(first, 'Content-Format'),
      observe: optionUint(first, 'Observe'),
    });
    let block = blockOf(first, 'Block2');
    if (block && first.payload.length) options.onBlock?.(first.payload.length);
    if (!block?.more || !first.code.startsWith('2.')) return response(first.payload);
    const etag = first.options.find((o) => o.name === 'ETag')?.value;
    const parts = [first.payload];
    let offset = first.payload.length;
    while (block?.more) {
      const next: Block = { num: offset / block.size, more: false, size: block.size };
      const packet = this.packet({ ...req, payload: Buffer.alloc(0) }, randomBytes(4), Buffer.alloc(0), [{ name: 'Block2', value: encodeBlock(next) }]);
      const answer = await this.exchange(peer, packet, req.confirmable !== false, options);
      if (!answer.code.startsWith('2.')) return { ...response(answer.payload), code: answer.code };
      const tag = answer.options.find((o) => o.name === 'ETag')?.value;
      // Blocks of another representation must not be mixed in [RFC 7959 §2.4].
      if (etag && tag && !etag.equals(tag)) throw new CoapRequestError('etag-changed', 'the resource changed during a block-wise transfer');
      parts.push(answer.payload);
      offset += answer.payload.length;
      if (answer.payload.length) options.onBlock?.(answer.payload.length);
      block = blockOf(answer, 'Block2');
      if (answer.payload.length === 0) break;
    }
    return response(Buffer.concat(parts));
  }

  private packet(req: OutgoingRequest, token: Buffer, payload: Buffer, extra: readonly Option[]): { code: string; token: Buffer; options: Option[]; payload: Buffer } {
    const options: Option[] = [...(req.options ?? []), ...extra];
    const path = typeof req.path === 'string' ? req.path.split('/').filter((s) => s !== '') : (req.path ?? []);
    for (const segment of path) options.push({ name: 'Uri-Path', value: Buffer.from(segment, 'utf8') });
    for (const q of req.query ?? []) options.push({ name: 'Uri-Query', value: Buffer.from(q, 'utf8') });
    if (req.contentFormat !== undefined && payload.length) options.push({ name: 'Content-Format', value: uintBytes(req.contentFormat) });
    if (req.accept !== undefined) options.push({ name: 'Accept', value: uintBytes(req.accept) });
    return { code: Method[req.method], token, options, payload };
  }

  /**
   * One request message and its response, matched by token [RFC 7252 §5.3.2]. A CON request is
   * retransmitted until acknowledged; an empty ACK means the response follows separately (§5.2.2).
   * `onLater` keeps the token open after the first response (an observation's notifications).
   */
  private exchange(
    peer: Peer,
    packet: { code: string; token: Buffer; options: Option[]; payload: Buffer },
    confirmable: boolean,
    options: ClientOptions,
    onLater?: (packet: ParsedPacket) => void,
  ): Promise<ParsedPacket> {
    const messageId = nextMessageId();
    const bytes = generate({ ...packet, confirmable, messageId }, 64 * 1024);
    const key = tokenKey(peer, packet.token);
    const mkey = messageKey(peer, messageId);
    const timeoutMs = options.timeoutMs ?? this.deps.responseTimeoutMs;
    return new Promise<ParsedPacket>((resolve, reject) => {
      let timer: unknown = null;
      let settled = false;
      const finish = (): void => {
        settled = true;
        if (timer !== null) this.deps.timers.clearTimeout(timer);
        this.byMessage.delete(mkey);
        if (this.waiters.get(key) === waiter && !onLater) this.waiters.delete(key);
      };
      const waitForResponse = (): void => {
        if (settled || timer !== null) return;
        timer = this.deps.timers.setTimeout(() => waiter.fail(new CoapRequestError('timeout', `no response from ${peer.address}:${peer.port} in ${timeoutMs} ms`)), timeoutMs);
      };
      const waiter: Waiter = {
        messageId,
        onPacket: (p) => {
          if (settled) return onLater?.(p);
          // A piggybacked response acknowledges the request too.
          if (p.ack) this.deps.retransmission.answered(peer, messageId, 'ack');
          finish();
          resolve(p);
        },
        fail: (err) => {
          if (this.waiters.get(key) === waiter) this.waiters.delete(key);
          if (settled) return;
          finish();
          reject(err);
        },
      };
      this.waiters.set(key, waiter);
      this.byMessage.set(mkey, key);
      if (!confirmable) {
        this.deps.send(bytes, peer);
        return waitForResponse();
      }
      void this.deps.retransmission.sendConfirmable(bytes, peer, messageId).then((outcome) => {
        if (outcome === 'ack') return waitForResponse();
        if (outcome === 'reset') return waiter.fail(new CoapRequestError('reset', `${peer.address}:${peer.port} reset the request`));
        waiter.fail(new CoapRequestError('timeout', `${peer.address}:${peer.port} did not acknowledge the request`));
      });
    });
  }
}

const tokenKey = (peer: Peer, token: Buffer): string => `${peer.address}:${peer.port}#${token.toString('hex')}`;

/** An unsigned integer option's value, null when absent. */
function optionUint(packet: ParsedPacket, name: string): number | null {
  const o = packet.options.find((x) => x.name === name);
  // A uint option is at most 4 bytes [RFC 7252 §3.2]: a longer one from a peer is ignored.
  return o && o.value.length <= 4 ? o.value.reduce((n, b) => n * 256 + b, 0) : null;
}

function blockOf(packet: ParsedPacket, name: 'Block1' | 'Block2'): Block | null {
  const o = packet.options.find((x) => x.name === name);
  if (!o) return null;
  const b = parseBlock(o.value);
  return typeof b === 'object' ? b : null;
}

/** V2 is newer than V1 in 24-bit serial arithmetic [RFC 7641 §3.4]. */
function isNewer(v1: number, v2: number): boolean {
  const half = 1 << 23;
  return (v1 < v2 && v2 - v1 < half) || (v1 > v2 && v1 - v2 > half);
}
