import { generate, type Option } from 'coap-packet';
import { encodeBlock, parseBlock, uintBytes, type Block } from './block-wise';

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

/** A reply's options in wire form, for `coap-packet` (which sorts them)  */
export function replyOptions(r: Reply): Option[] {
  const out: Option[] = [];
  // Observe 0 is the empty value [RFC 7641 §2, RFC 7252 §3.2].
  if (r.observe !== undefined) out.push({ name: 'Observe', value: uintBytes(r.observe) });
  if (r.etag) out.push({ name: 'ETag', value: r.etag });
  for (const segment of r.locationPath ?? []) out.push({ name: 'Location-Path', value: Buffer.from(segment) });
  if (r.contentFormat !== undefined) out.push({ name: 'Content-Format', value: uintBytes(r.contentFormat) });
  if (r.block2) out.push({ name: 'Block2', value: encodeBlock(r.block2) });
  if (r.block1) out.push({ name: 'Block1', value: encodeBlock(r.block1) });
  if (r.size2 !== undefined) out.push({ name: 'Size2', value: uintBytes(r.size2) });
  if (r.size1 !== undefined) out.push({ name: 'Size1', value: uintBytes(r.size1) });
  if (r.maxAge !== undefined) out.push({ name: 'Max-Age', value: uintBytes(r.maxAge) });
  return out;
}

/** The largest message we send: 1024 bytes of payload plus header, token and options [RFC 7252 §4.6]. */
export const MAX_MESSAGE_SIZE = 1152;

/**
 * Encodes a reply: a piggybacked ACK (`messageId` of the request), or a CON/NON message of its own
 * (no `messageId`: `coap-packet` takes the next one from its counter).
 */
export function encodeReply(r: Reply, to: { token: Buffer; type: 'ACK' | 'CON' | 'NON'; messageId?: number }): { bytes: Buffer; messageId: number } {
  const packet = {
    code: r.code,
    token: to.token,
    confirmable: to.type === 'CON',
    ack: to.type === 'ACK',
    options: replyOptions(r),
    payload: r.payload ?? Buffer.alloc(0),
    ...(to.messageId !== undefined ? { messageId: to.messageId } : {}),
  };
  const bytes = generate(packet, MAX_MESSAGE_SIZE + 64 * 1024);
  return { bytes, messageId: bytes.readUInt16BE(2) };
}

/** An empty ACK or RST for message `messageId` [RFC 7252 §4.2, §4.3]. */
export function emptyMessage(type: 'ACK' | 'RST', messageId: number): Buffer {
  return generate({ code: '0.00', messageId, ack: type === 'ACK', reset: type === 'RST', confirmable: false });
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
