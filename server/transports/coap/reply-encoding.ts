/**
 * Our replies on the wire [RFC 7252 §3], written here rather than by `coap-packet`'s `generate`:
 * a block of a download is one reply per datagram, tens of thousands per package, and `generate`
 * spends more on it than the socket does (an option buffer each, a sort, the whole payload
 * decoded to a string to see whether it is empty). A reply has at most the nine options below,
 * written in option-number order with their uint values in place: one exact-size buffer per
 * message, the payload copied once. `coap-packet` still parses everything, and encodes our requests.
 */

/** Option numbers [RFC 7252 §5.10, RFC 7641 §2, RFC 7959 §2.1, §4]. */
const Option = { ETAG: 4, OBSERVE: 6, LOCATION_PATH: 8, CONTENT_FORMAT: 12, MAX_AGE: 14, BLOCK2: 23, BLOCK1: 27, SIZE2: 28, SIZE1: 60 } as const;

/** The fields of a reply that become options; uint options as numbers, the block options already in their uint form. */
export interface ReplyFields {
  code: string;
  payload?: Buffer;
  etag?: Buffer;
  observe?: number;
  locationPath?: readonly string[];
  contentFormat?: number;
  maxAge?: number;
  /** Block2 and Block1 as `num << 4 | M << 3 | SZX` [RFC 7959 §2.2]. */
  block2?: number;
  block1?: number;
  size2?: number;
  size1?: number;
}

/** Message types [RFC 7252 §3]. */
export const MessageType = { CON: 0, NON: 1, ACK: 2, RST: 3 } as const;

/** `c.dd` as the code byte [RFC 7252 §3]: class in the top 3 bits, detail in the low 5. */
const codeBytes = new Map<string, number>();
export function codeByte(code: string): number {
  let b = codeBytes.get(code);
  if (b === undefined) {
    const [cls, detail] = code.split('.').map(Number) as [number, number];
    if (!(cls >= 0 && cls <= 7 && detail >= 0 && detail <= 31) || !/^\d\.\d\d$/.test(code)) throw new RangeError(`not a CoAP code: ${code}`);
    codeBytes.set(code, (b = (cls << 5) | detail));
  }
  return b;
}

/** Bytes of an option uint in its shortest form [RFC 7252 §3.2]: 0 is the empty value. */
function uintLength(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not an option uint: ${n}`);
  return n === 0 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
}

/** Extra bytes an option delta or length takes past its 4-bit nibble [RFC 7252 §3.1]. */
const extended = (n: number): number => (n < 13 ? 0 : n < 269 ? 1 : 2);

/**
 * Writes options in increasing number order; each call writes one. Measures first when `buf` is
 * null, so the message is allocated once at its exact size.
 */
class OptionWriter {
  pos: number;
  private last = 0;

  constructor(
    private readonly buf: Buffer | null,
    start: number,
  ) {
    this.pos = start;
  }

  uint(number: number, value: number): void {
    const length = uintLength(value);
    this.head(number, length);
    if (this.buf && length) this.buf.writeUIntBE(value, this.pos, length);
    this.pos += length;
  }

  bytes(number: number, value: Buffer | string): void {
    const length = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
    this.head(number, length);
    if (this.buf) {
      if (typeof value === 'string') this.buf.write(value, this.pos, 'utf8');
      else value.copy(this.buf, this.pos);
    }
    this.pos += length;
  }

  private head(number: number, length: number): void {
    const delta = number - this.last;
    this.last = number;
    if (this.buf) {
      const b = this.buf;
      b[this.pos] = (nibble(delta) << 4) | nibble(length);
      let o = this.pos + 1;
      o = writeExtended(b, o, delta);
      writeExtended(b, o, length);
    }
    this.pos += 1 + extended(delta) + extended(length);
  }
}

const nibble = (n: number): number => (n < 13 ? n : n < 269 ? 13 : 14);

function writeExtended(b: Buffer, o: number, n: number): number {
  if (n < 13) return o;
  if (n < 269) {
    b[o] = n - 13;
    return o + 1;
  }
  b.writeUInt16BE(n - 269, o);
  return o + 2;
}

function writeOptions(w: OptionWriter, r: ReplyFields): void {
  if (r.etag) w.bytes(Option.ETAG, r.etag);
  // Observe 0 is the empty value [RFC 7641 §2, RFC 7252 §3.2].
  if (r.observe !== undefined) w.uint(Option.OBSERVE, r.observe);
  for (const segment of r.locationPath ?? []) w.bytes(Option.LOCATION_PATH, segment);
  if (r.contentFormat !== undefined) w.uint(Option.CONTENT_FORMAT, r.contentFormat);
  if (r.maxAge !== undefined) w.uint(Option.MAX_AGE, r.maxAge);
  if (r.block2 !== undefined) w.uint(Option.BLOCK2, r.block2);
  if (r.block1 !== undefined) w.uint(Option.BLOCK1, r.block1);
  if (r.size2 !== undefined) w.uint(Option.SIZE2, r.size2);
  if (r.size1 !== undefined) w.uint(Option.SIZE1, r.size1);
}

/**
 * One message: the 4-byte header, the token (0-8 bytes), the options, and the payload after its
 * 0xFF marker when there is one [RFC 7252 §3]. Throws past `maxLength` bytes.
 */
export function encodeMessage(type: number, messageId: number, token: Buffer, r: ReplyFields, maxLength: number): Buffer {
  if (token.length > 8) throw new RangeError(`a token has at most 8 bytes, not ${token.length}`);
  const head = 4 + token.length;
  const measure = new OptionWriter(null, head);
  writeOptions(measure, r);
  const payloadLength = r.payload?.length ?? 0;
  const length = measure.pos + (payloadLength ? 1 + payloadLength : 0);
  if (length > maxLength) throw new RangeError(`Max packet size is ${maxLength}: current is ${length}`);
  const buf = Buffer.allocUnsafe(length);
  // Version 1, the type, the token length [RFC 7252 §3].
  buf[0] = 0x40 | (type << 4) | token.length;
  buf[1] = codeByte(r.code);
  buf.writeUInt16BE(messageId, 2);
  token.copy(buf, 4);
  const w = new OptionWriter(buf, head);
  writeOptions(w, r);
  if (payloadLength) {
    buf[w.pos] = 0xff;
    (r.payload as Buffer).copy(buf, w.pos + 1);
  }
  return buf;
}
