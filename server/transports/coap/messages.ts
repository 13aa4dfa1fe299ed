import { blockValue, parseBlock, type Block } from './block-wise';
import { encodeMessage, MessageType, type ReplyFields } from './reply-encoding';

/** Where a datagram came from; CoAP exchanges are matched per peer [RFC 7252 §4.5]. */
export interface Peer {
  address: string;
  port: number;
}

/** A peer as a map key. */
export const peerKey = (p: Peer): string => `${p.address}:${p.port}`;

/** The response codes this transport sends [RFC 7252 §12.1.2, RFC 7959 §2.9]. */
export const Code = {
  CREATED: '2.01',
  DELETED: '2.02',
  CHANGED: '2.04',
  CONTINUE: '2.31',
  CONTENT: '2.05',
  BAD_REQUEST: '4.00',
  UNAUTHORIZED: '4.01',
  BAD_OPTION: '4.02',
  FORBIDDEN: '4.03',
  NOT_FOUND: '4.04',
  METHOD_NOT_ALLOWED: '4.05',
  REQUEST_ENTITY_INCOMPLETE: '4.08',
  PRECONDITION_FAILED: '4.12',
  REQUEST_ENTITY_TOO_LARGE: '4.13',
  TOO_MANY_REQUESTS: '4.29',
  INTERNAL_SERVER_ERROR: '5.00',
  SERVICE_UNAVAILABLE: '5.03',
  PROXYING_NOT_SUPPORTED: '5.05',
} as const;
export type ResponseCode = (typeof Code)[keyof typeof Code];

/** Content-Format numbers [RFC 7252 §12.3]. */
export const ContentFormat = { TEXT_PLAIN: 0, JSON: 50, OCTET_STREAM: 42 } as const;

/** Request method codes [RFC 7252 §12.1.1]. */
export const Method = { GET: '0.01', POST: '0.02', PUT: '0.03', DELETE: '0.04', FETCH: '0.05' } as const;

/** A request as the device API sees it: the path and query split, the options it reads decoded. */
export interface CoapRequest {
  /** The method code, e.g. `0.01` for GET. */
  code: string;
  /** Uri-Path segments, UTF-8. */
  path: string[];
  /** Uri-Query options split at their first `=`; a key may repeat. */
  query: Map<string, string[]>;
  payload: Buffer;
  /** The Observe option's value, null when absent. */
  observe: number | null;
  /** The Block2 option, null when absent (malformed ones are answered before, request-checks.ts). */
  block2: Block | null;
  /** Every option as received, for what the fields above leave out (Content-Format, Accept…). */
  options: ReadonlyArray<{ name: string | number; value: Buffer }>;
  token: Buffer;
  messageId: number;
  confirmable: boolean;
  peer: Peer;
}

/** A response, before the endpoint puts it on the wire. */
export interface Reply {
  code: ResponseCode;
  payload?: Buffer;
  contentFormat?: number;
  observe?: number;
  block2?: Block;
  /** Block1 in a response: the block of the request body acknowledged [RFC 7959 §2.3]. */
  block1?: Block;
  /** Total size of the body that Block2 slices [RFC 7959 §4]. */
  size2?: number;
  /** With 4.13: the largest request body accepted [RFC 7959 §2.9.3]. */
  size1?: number;
  etag?: Buffer;
  /** Max-Age in seconds [RFC 7252 §5.10.5]: with 4.29 and 5.03, when to try again [RFC 8516 §3]. */
  maxAge?: number;
  /** Location-Path segments of a created resource [RFC 7252 §5.10.7], e.g. LwM2M's `rd/{id}`. */
  locationPath?: readonly string[];
  /**
   * Told, once the reply is on the wire, the id of the message it went out in when that message
   * was one of its own (a NON, or a CON after an empty ACK), null when it rode on the request's ACK:
   * an observation matches a RST to it [RFC 7641 §3.6].
   */
  sent?(messageId: number | null): void;
}

export const reply = (code: ResponseCode, payload?: Buffer, contentFormat?: number): Reply => ({
  code,
  ...(payload && payload.length ? { payload } : {}),
  ...(contentFormat !== undefined ? { contentFormat } : {}),
});

export const jsonReply = (code: ResponseCode, body: unknown): Reply => reply(code, Buffer.from(JSON.stringify(body)), ContentFormat.JSON);

/** The largest message we send: 1024 bytes of payload plus header, token and options [RFC 7252 §4.6]. */
export const MAX_MESSAGE_SIZE = 1152;

/**
 * Message ids of the messages we originate (requests, separate responses, notifications), one
 * counter for the process as `coap-packet` had: sequential from a random start, so that two in
 * flight to one peer never share an id within EXCHANGE_LIFETIME [RFC 7252 §4.4].
 */
let lastMessageId = Math.floor(Math.random() * 0x10000);
export function nextMessageId(): number {
  lastMessageId = (lastMessageId + 1) & 0xffff;
  return lastMessageId;
}

/**
 * Encodes a reply: a piggybacked ACK (`messageId` of the request), or a CON/NON message of its own
 * (no `messageId`: the next one of ours).
 */
export function encodeReply(r: Reply, to: { token: Buffer; type: 'ACK' | 'CON' | 'NON'; messageId?: number }): { bytes: Buffer; messageId: number } {
  const messageId = to.messageId ?? nextMessageId();
  const fields: ReplyFields = {
    code: r.code,
    payload: r.payload,
    etag: r.etag,
    observe: r.observe,
    locationPath: r.locationPath,
    contentFormat: r.contentFormat,
    maxAge: r.maxAge,
    block2: r.block2 && blockValue(r.block2),
    block1: r.block1 && blockValue(r.block1),
    size2: r.size2,
    size1: r.size1,
  };
  const bytes = encodeMessage(MessageType[to.type], messageId, to.token, fields, MAX_MESSAGE_SIZE + 64 * 1024);
  return { bytes, messageId };
}

const NO_TOKEN = Buffer.alloc(0);
const EMPTY = { code: '0.00' };

/** An empty ACK or RST for message `messageId` [RFC 7252 §4.2, §4.3]. */
export function emptyMessage(type: 'ACK' | 'RST', messageId: number): Buffer {
  return encodeMessage(MessageType[type], messageId, NO_TOKEN, EMPTY, 4);
}

/**
 * The options a server reads, from a packet already checked (request-checks.ts). `payload` is the
 * body when it differs from the packet's (a Block1 upload put back together).
 */
export function toRequest(
  packet: { code: string; options: ReadonlyArray<{ name: string | number; value: Buffer }>; payload: Buffer; token: Buffer; messageId: number; confirmable: boolean },
  peer: Peer,
  payload?: Buffer,
): CoapRequest {
  const path: string[] = [];
  const query = new Map<string, string[]>();
  let observe: number | null = null;
  let block2: Block | null = null;
  for (const o of packet.options) {
    const value = o.value;
    switch (o.name) {
      case 'Uri-Path':
        path.push(value.toString('utf8'));
        break;
      case 'Uri-Query': {
        const s = value.toString('utf8');
        const eq = s.indexOf('=');
        const key = eq < 0 ? s : s.slice(0, eq);
        const list = query.get(key) ?? [];
        list.push(eq < 0 ? '' : s.slice(eq + 1));
        query.set(key, list);
        break;
      }
      case 'Observe':
        observe = value.reduce((n, b) => n * 256 + b, 0);
        break;
      case 'Block2': {
        const b = parseBlock(value);
        if (typeof b === 'object') block2 = b;
        break;
      }
    }
  }
  return {
    code: packet.code,
    path,
    query,
    payload: payload ?? packet.payload,
    observe,
    block2,
    options: packet.options,
    token: packet.token,
    messageId: packet.messageId,
    confirmable: packet.confirmable,
    peer,
  };
}
