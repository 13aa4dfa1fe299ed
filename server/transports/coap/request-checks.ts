import type { ParsedPacket } from 'coap-packet';
import { parseBlock } from './block-wise';
import { Code, type ResponseCode } from './messages';

/** Why a request is refused before it is served. */
export interface Refusal {
  code: ResponseCode;
  /** With 4.13: the largest request body accepted [RFC 7959 §2.9.3]. */
  size1?: number;
}

/** Critical options we act on [RFC 7252 §5.10]; any other critical option is refused. */
const UNDERSTOOD_CRITICAL = new Set(['Uri-Host', 'Uri-Port', 'Uri-Path', 'Uri-Query', 'Accept', 'Block2', 'Block1']);
/** Options that may appear once, with their longest valid value in bytes. */
const SINGLE: ReadonlyMap<string, number> = new Map([
  ['Uri-Host', 255],
  ['Uri-Port', 2],
  ['Observe', 3],
  ['Content-Format', 2],
  // A longer uint decodes past 2^53 (a 201-byte one to Infinity): refused, never decoded [RFC 7252 §3.2].
  ['Max-Age', 4],
  ['Accept', 2],
  ['Block2', 3],
  ['Block1', 3],
  ['Size1', 4],
  ['Size2', 4],
]);

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

/**
 * Why a parsed request cannot be served, or null when it can: FETCH (we define no body format for
 * it), an unknown critical option [RFC 7252 §5.4.1: 4.02], a proxy option [§5.7.2: 5.05], an option
 * repeated or too long [§5.4.5], a reserved or malformed block option [RFC 7959 §2.2], a Block1
 * upload past `maxBodySize` [RFC 7959 §2.9.3], Observe on anything but GET [RFC 7641 §2].
 */
export function checkRequest(packet: ParsedPacket, maxBodySize: number): Refusal | null {
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
    const number = OPTION_NUMBER[name];
    if (number !== undefined && number % 2 === 1 && !UNDERSTOOD_CRITICAL.has(name)) return { code: Code.BAD_OPTION };
    const max = SINGLE.get(name);
    if (max !== undefined) {
      if (seen.has(name) || o.value.length > max) return { code: Code.BAD_OPTION };
      seen.add(name);
    }
    if (name === 'Block1' || name === 'Block2') {
      const block = parseBlock(o.value);
      if (block === 'reserved') return { code: Code.BAD_REQUEST };
      if (block === 'malformed') return { code: Code.BAD_OPTION };
      // Uploads are put together in memory: refuse one that would pass the limit at once.
      if (name === 'Block1' && (block.num + 1) * block.size > maxBodySize) return { code: Code.REQUEST_ENTITY_TOO_LARGE, size1: maxBodySize };
    }
    if (name === 'Observe' && packet.code !== '0.01') return { code: Code.BAD_OPTION };
  }
  return null;
}

/** What to answer a datagram `coap-packet` could not parse. */
export type Unparsable = { request: { token: Buffer; messageId: number; confirmable: boolean } } | { reset: number } | null;

/**
 * A datagram `coap-packet` could not parse. With a readable header (version 1, token length 0-8),
 * a request gets 4.02: the options after it are what is broken. Anything else confirmable gets a
 * RST [RFC 7252 §4.2]; the rest is dropped (null).
 */
export function unparsable(datagram: Buffer): Unparsable {
  const first = datagram[0];
  if (datagram.length < 4 || first === undefined || first >> 6 !== 1) return null;
  const type = (first >> 4) & 0x3;
  const tokenLength = first & 0xf;
  const code = datagram[1] as number;
  const messageId = datagram.readUInt16BE(2);
  const isRequest = code >> 5 === 0 && code !== 0;
  if (tokenLength <= 8 && datagram.length >= 4 + tokenLength && isRequest && type <= 1) {
    return { request: { token: datagram.subarray(4, 4 + tokenLength), messageId, confirmable: type === 0 } };
  }
  return type === 0 ? { reset: messageId } : null;
}
