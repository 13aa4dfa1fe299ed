/**
 * Block-wise transfers (RFC 7959): the Block1/Block2 option's encoding, and which bytes of a body
 * one response carries. A package may be 2 GB, so the device API plans each block here and reads
 * only those bytes.
 */

/** One Block2 (or Block1) option value [RFC 7959 §2.2]. */
export interface Block {
  /** Block number, from 0. */
  num: number;
  /** More blocks follow. */
  more: boolean;
  /** Block size in bytes: 16 … 1024, a power of two (SZX 0 … 6). */
  size: number;
}

/** The block sizes SZX can express [RFC 7959 §2.2]; SZX 7 is reserved. */
export const BLOCK_SIZES: readonly number[] = [16, 32, 64, 128, 256, 512, 1024];

export const isBlockSize = (n: number): boolean => BLOCK_SIZES.includes(n);

/** Block numbers fit in 20 bits (a 3-byte option value). */
const MAX_NUM = 0xfffff;

/**
 * Decodes a Block1/Block2 option value: `'malformed'` for a value longer than 3 bytes [RFC 7252
 * §5.4.3], `'reserved'` for SZX 7 [RFC 7959 §2.2: "MUST lead to a 4.00 Bad Request"].
 */
export function parseBlock(value: Buffer): Block | 'malformed' | 'reserved' {
  if (value.length > 3) return 'malformed';
  let n = 0;
  for (const byte of value) n = n * 256 + byte;
  const szx = n & 0x7;
  if (szx === 7) return 'reserved';
  return { num: n >>> 4, more: (n & 0x8) !== 0, size: 16 << szx };
}

/** Encodes a block option in the fewest bytes (0 bytes for num 0, M 0, SZX 0). */
export function encodeBlock(block: Block): Buffer {
  return uintBytes(blockValue(block));
}

/** A block option as the uint it is on the wire: `num << 4 | M << 3 | SZX` [RFC 7959 §2.2]. */
export function blockValue(block: Block): number {
  const szx = BLOCK_SIZES.indexOf(block.size);
  if (szx < 0) throw new RangeError(`not a block size: ${block.size}`);
  if (!Number.isInteger(block.num) || block.num < 0 || block.num > MAX_NUM) throw new RangeError(`block number out of range: ${block.num}`);
  return block.num * 16 + (block.more ? 8 : 0) + szx;
}

/** An unsigned integer option value in the fewest bytes [RFC 7252 §3.2]. */
export function uintBytes(n: number): Buffer {
  // Option uints are at most 4 bytes [RFC 7252 §3.2]; anything else would loop (Infinity) or lie.
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not an option uint: ${n}`);
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Buffer.from(out);
}

/** What one response carries of a body of `length` bytes. */
export type BlockPlan =
  /** The whole body, without a Block2 option. */
  | { whole: true }
  /** Bytes `[start, end)`, with `block` as the response's Block2 option. */
  | { whole: false; block: Block; start: number; end: number }
  /** The block asked for starts past the body's end. */
  | { outOfRange: true };

/**
 * Which bytes of a body to send, given the request's Block2 option (null when it had none) and the
 * largest block we send [RFC 7959 §2.4]:
 *
 * - no Block2 and a body that fits one block: the whole body, no Block2 option;
 * - no Block2 and a larger body: block 0 of `maxSize`, M set;
 * - a Block2 asking for a size ≤ ours: that block ("early negotiation" honoured);
 * - a Block2 asking for a larger size than ours: the block at the same byte offset in our smaller
 *   size, renumbered (the server may reduce the size; the offset num × size is what the client asked).
 */
export function planBlock(length: number, requested: Block | null, maxSize: number): BlockPlan {
  if (requested === null) {
    if (length <= maxSize) return { whole: true };
    return { whole: false, block: { num: 0, more: true, size: maxSize }, start: 0, end: maxSize };
  }
  const size = Math.min(requested.size, maxSize);
  const start = requested.num * requested.size;
  // Block 0 of an empty body is the empty body; any other block must start inside it.
  if (start >= length && !(start === 0 && length === 0)) return { outOfRange: true };
  const end = Math.min(start + size, length);
  return { whole: false, block: { num: start / size, more: end < length, size }, start, end };
}
