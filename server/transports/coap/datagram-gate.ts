import type { RemoteInfo } from 'node:dgram';
import { generate, parse, type ParsedPacket } from 'coap-packet';
import { Block1Assembly } from './block1-assembly';
import { parseBlock, type Block } from './block-wise';
import { Code, emptyMessage, encodeReply, peerKey, type Peer, type ResponseCode } from './messages';

/** What the gate hands datagrams to, and how it answers. */
export interface GateDeps {
  now(): number;
  send(bytes: Buffer, peer: Peer): void;
  /** An empty ACK or RST: true when it answered one of our own messages (a notification). */
  empty(kind: 'ACK' | 'RST', peer: Peer, messageId: number): boolean;
  /** Hands a checked datagram on to the `coap` package's server. */
  forward(datagram: Buffer, rinfo: RemoteInfo): void;
  /** Largest request body accepted block-wise (Block1), in bytes. */
  maxBodySize: number;
  /** How long an answer is kept for a retransmission of its request [RFC 7252 §4.8.2 EXCHANGE_LIFETIME]. */
  exchangeLifetimeMs: number;
}

/** Critical options we act on [RFC 7252 §5.10]; any other critical option is refused. */
const UNDERSTOOD_CRITICAL = new Set(['Uri-Host', 'Uri-Port', 'Uri-Path', 'Uri-Query', 'Accept', 'Block2', 'Block1']);
/** Options that may appear once, with their longest valid value in bytes. */
const SINGLE: ReadonlyMap<string, number> = new Map([
  ['Uri-Host', 255],
  ['Uri-Port', 2],
  ['Observe', 3],
  ['Content-Format', 2],
  ['Accept', 2],
  ['Block2', 3],
  ['Block1', 3],
  ['Size1', 4],
  ['Size2', 4],
]);
/** Answers kept for retransmitted requests; beyond this the oldest go first (the memory stays bounded). */
const MAX_REMEMBERED = 4096;

/**
 * Every datagram passes here before the `coap` package's server sees it. The gate:
 *
 * - answers what that server would mishandle: an unparsable message (it answers 5.00, and to the
 *   wrong address), an unknown critical option (it ignores those; RFC 7252 §5.4.1 says 4.02), Observe
 *   on a POST, FETCH, a Block1 upload over the size limit, a CoAP ping (it would run it as a request);
 * - takes the ACKs and RSTs of our notifications (the Observe registry sends those itself);
 * - drops a request that is a duplicate of one still being processed (same peer, same message id):
 *   the package caches an answer only once it is sent, so a retransmission arriving meanwhile would
 *   run the request twice [RFC 7252 §4.5];
 * - answers duplicates of exchanges the package has no answer cached for (Observe registrations,
 *   which we answer ourselves, and responses sent separately after an empty ACK);
 * - puts block-wise request bodies (Block1) back together, so the package sees whole requests
 *   (see block1-assembly.ts).
 */
export class DatagramGate {
  private readonly inFlight = new Set<string>();
  private readonly remembered = new Map<string, { bytes: Buffer; expires: number }>();
  /** The Block1 option for the response to an upload's last block, by exchange. */
  private readonly lastBlocks = new Map<string, Block>();
  /** Exchanges of uploads' last blocks, handed on whole: a retransmission is the package's to answer. */
  private readonly completed = new Map<string, number>();
  private readonly uploads: Block1Assembly;
  private closed = false;

  constructor(private readonly deps: GateDeps) {
    this.uploads = new Block1Assembly(deps.maxBodySize, () => deps.now(), deps.exchangeLifetimeMs);
  }

  receive(datagram: Buffer, rinfo: RemoteInfo): void {
    if (this.closed) return;
    const peer = { address: rinfo.address, port: rinfo.port };
    let packet: ParsedPacket;
    try {
      packet = parse(datagram);
    } catch {
      return this.unparsable(datagram, peer);
    }
    // Tokens are 0-8 bytes; coap-packet also reads RFC 8974's extended lengths, which we do not speak.
    if (packet.token.length > 8) return this.formatError(packet.confirmable, packet.messageId, peer);
    if (packet.code === '0.00') {
      if (packet.ack || packet.reset) {
        if (!this.deps.empty(packet.ack ? 'ACK' : 'RST', peer, packet.messageId)) this.deps.forward(datagram, rinfo);
      } else if (packet.confirmable) {
        // CoAP ping: a CON empty message is answered with a RST [RFC 7252 §4.3].
        this.deps.send(emptyMessage('RST', packet.messageId), peer);
      }
      return;
    }
    // We send no requests, so responses (and reserved code classes) are nothing to us.
    if (!packet.code.startsWith('0.') || packet.ack || packet.reset) return;

    const key = exchangeKey(peer, packet.messageId);
    if (this.inFlight.has(key)) return;
    const kept = this.remembered.get(key);
    if (kept && kept.expires > this.deps.now()) return this.deps.send(kept.bytes, peer);

    const refusal = this.check(packet);
    if (refusal) return this.answer(packet, peer, refusal);
    const block1 = packet.options.find((o) => o.name === 'Block1');
    if (block1) {
      const done = this.completed.get(key);
      if (done !== undefined && done > this.deps.now()) return this.deps.forward(datagram, rinfo);
      return this.upload(packet, peer, rinfo, parseBlock(block1.value) as Block);
    }
    this.deps.forward(datagram, rinfo);
  }

  /** One block of a request body: answered 2.31 until the last, then the whole request goes on. */
  private upload(packet: ParsedPacket, peer: Peer, rinfo: RemoteInfo, block: Block): void {
    const outcome = this.uploads.take(packet, peer, block);
    if ('refuse' in outcome) return this.answer(packet, peer, { code: outcome.refuse, ...(outcome.refuse === Code.REQUEST_ENTITY_TOO_LARGE ? { size1: this.deps.maxBodySize } : {}) });
    if ('continue' in outcome) {
      // 2.31 Continue, with the block acknowledged [RFC 7959 §2.3]; kept for a retransmission of that block.
      const { bytes } = encodeReply(
        { code: Code.CONTINUE, block1: outcome.continue },
        { token: packet.token, type: packet.confirmable ? 'ACK' : 'NON', ...(packet.confirmable ? { messageId: packet.messageId } : {}) },
      );
      this.remember(exchangeKey(peer, packet.messageId), bytes);
      return this.deps.send(bytes, peer);
    }
    const key = exchangeKey(peer, packet.messageId);
    this.lastBlocks.set(key, { ...block, more: false });
    // Taken when the request is served; one the package answers from its cache instead stays.
    if (this.lastBlocks.size > MAX_REMEMBERED) this.lastBlocks.delete(this.lastBlocks.keys().next().value as string);
    this.completed.set(key, this.deps.now() + this.deps.exchangeLifetimeMs);
    prune(this.completed, this.deps.now(), (expires) => expires);
    const whole = generate(
      {
        code: packet.code,
        confirmable: packet.confirmable,
        messageId: packet.messageId,
        token: packet.token,
        options: packet.options.filter((o) => o.name !== 'Block1' && o.name !== 'Size1'),
        payload: outcome.complete,
      },
      Number.MAX_SAFE_INTEGER,
    );
    this.deps.forward(whole, rinfo);
  }

  /** The Block1 option the response to `messageId` carries: the last block of an upload [RFC 7959 §2.3]. */
  lastBlockOf(peer: Peer, messageId: number): Block | undefined {
    const key = exchangeKey(peer, messageId);
    const block = this.lastBlocks.get(key);
    this.lastBlocks.delete(key);
    return block;
  }

  /** A request is being processed: its duplicates are dropped until `end`. */
  begin(peer: Peer, messageId: number): void {
    this.inFlight.add(exchangeKey(peer, messageId));
  }

  /**
   * The request is answered. `answer` is what to send again for a duplicate, when the `coap`
   * package does not hold it in its own cache.
   */
  end(peer: Peer, messageId: number, answer?: Buffer): void {
    const key = exchangeKey(peer, messageId);
    this.inFlight.delete(key);
    if (answer) this.remember(key, answer);
  }

  close(): void {
    this.closed = true;
    this.remembered.clear();
    this.lastBlocks.clear();
    this.completed.clear();
    this.uploads.clear();
  }

  private remember(key: string, bytes: Buffer): void {
    const now = this.deps.now();
    this.remembered.delete(key);
    this.remembered.set(key, { bytes, expires: now + this.deps.exchangeLifetimeMs });
    prune(this.remembered, now, (v) => v.expires);
  }

  /** Why a parsed request is refused, or null when the server can have it. */
  private check(packet: ParsedPacket): { code: ResponseCode; size1?: number } | null {
    // FETCH needs a body format we do not define; the package would answer 5.00 to the wrong address.
    if (packet.code === '0.05') return { code: Code.METHOD_NOT_ALLOWED };
    const seen = new Set<string>();
    for (const o of packet.options) {
      const name = String(o.name);
      if (/^\d+$/.test(name)) {
        // Odd option numbers are critical [RFC 7252 §5.4.6]: one we do not know must be refused.
        if (Number(name) % 2 === 1) return { code: Code.BAD_OPTION };
        continue;
      }
      if (name === 'Proxy-Uri' || name === 'Proxy-Scheme') return { code: Code.PROXYING_NOT_SUPPORTED };
      const critical = OPTION_NUMBER[name] !== undefined && (OPTION_NUMBER[name] as number) % 2 === 1;
      if (critical && !UNDERSTOOD_CRITICAL.has(name)) return { code: Code.BAD_OPTION };
      const max = SINGLE.get(name);
      if (max !== undefined) {
        if (seen.has(name) || o.value.length > max) return { code: Code.BAD_OPTION };
        seen.add(name);
      }
      if (name === 'Block1' || name === 'Block2') {
        const block = parseBlock(o.value);
        if (block === 'reserved') return { code: Code.BAD_REQUEST };
        if (block === 'malformed') return { code: Code.BAD_OPTION };
        // Uploads are put together in memory: refuse one that would pass the limit at once [RFC 7959 §2.9.3].
        if (name === 'Block1' && (block.num + 1) * block.size > this.deps.maxBodySize) return { code: Code.REQUEST_ENTITY_TOO_LARGE, size1: this.deps.maxBodySize };
      }
      // Observe belongs to GET [RFC 7641 §2]; the package answers it on anything else with 5.00.
      if (name === 'Observe' && packet.code !== '0.01') return { code: Code.BAD_OPTION };
    }
    return null;
  }

  private answer(packet: ParsedPacket, peer: Peer, refusal: { code: ResponseCode; size1?: number }): void {
    const type = packet.confirmable ? 'ACK' : 'NON';
    const { bytes } = encodeReply(
      { code: refusal.code, ...(refusal.size1 !== undefined ? { size1: refusal.size1 } : {}) },
      { token: packet.token, type, ...(packet.confirmable ? { messageId: packet.messageId } : {}) },
    );
    this.deps.send(bytes, peer);
  }

  /**
   * A datagram `coap-packet` could not parse. With a readable header (version 1, token length
   * 0-8), a request gets 4.02: the options after it are what is broken. Anything else confirmable
   * gets a RST [RFC 7252 §4.2]; the rest is dropped.
   */
  private unparsable(datagram: Buffer, peer: Peer): void {
    if (datagram.length < 4 || datagram[0] === undefined || datagram[0] >> 6 !== 1) return;
    const type = (datagram[0] >> 4) & 0x3;
    const tokenLength = datagram[0] & 0xf;
    const code = datagram[1] as number;
    const messageId = datagram.readUInt16BE(2);
    const confirmable = type === 0;
    const isRequest = code >> 5 === 0 && code !== 0;
    if (tokenLength <= 8 && datagram.length >= 4 + tokenLength && isRequest && (type === 0 || type === 1)) {
      const token = datagram.subarray(4, 4 + tokenLength);
      const { bytes } = encodeReply({ code: Code.BAD_OPTION }, { token, type: confirmable ? 'ACK' : 'NON', ...(confirmable ? { messageId } : {}) });
      return this.deps.send(bytes, peer);
    }
    this.formatError(confirmable, messageId, peer);
  }

  private formatError(confirmable: boolean, messageId: number, peer: Peer): void {
    if (confirmable) this.deps.send(emptyMessage('RST', messageId), peer);
  }
}

/** Option numbers of the names coap-packet gives known options [RFC 7252 §12.2, RFC 7959, RFC 7641, RFC 8613, RFC 9177]. */
const OPTION_NUMBER: Readonly<Record<string, number>> = {
  'If-Match': 1,
  'Uri-Host': 3,
  ETag: 4,
  'If-None-Match': 5,
  Observe: 6,
  'Uri-Port': 7,
  'Location-Path': 8,
  OSCORE: 9,
  'Uri-Path': 11,
  'Content-Format': 12,
  'Max-Age': 14,
  'Uri-Query': 15,
  'Hop-Limit': 16,
  Accept: 17,
  'Q-Block1': 19,
  'Location-Query': 20,
  Block2: 23,
  Block1: 27,
  Size2: 28,
  'Q-Block2': 31,
  'Proxy-Uri': 35,
  'Proxy-Scheme': 39,
  Size1: 60,
  'No-Response': 258,
};

const exchangeKey = (peer: Peer, messageId: number): string => `${peerKey(peer)}/${messageId}`;

/** Drops expired entries, and the oldest past MAX_REMEMBERED: entries go in by time, so both are at the front. */
function prune<V>(map: Map<string, V>, now: number, expiresOf: (v: V) => number): void {
  for (const [k, v] of map) {
    if (expiresOf(v) > now && map.size <= MAX_REMEMBERED) break;
    map.delete(k);
  }
}
