/**
 * Incremental (streaming) MurmurHash3, byte-for-byte compatible with Guava's
 * `Hashing.murmur3_32_fixed()` / `Hashing.murmur3_32()` (for byte input) and
 * `Hashing.murmur3_128()`, which is what ThingsBoard uses for the MURMUR3_32
 * and MURMUR3_128 package checksum algorithms. Both use seed 0 by default.
 *
 * Why hand-written: Node has no built-in MurmurHash3, and ThingsBoard
 * packages can be several GB, so the hash must be computed chunk by chunk in
 * bounded memory with chunks of arbitrary size (a partial block is carried
 * between `update` calls).
 *
 * Why no BigInt: the x64_128 variant needs 64-bit multiply/rotate. BigInt
 * arithmetic allocates on every operation and runs at a few MB/s, which is
 * useless for multi-GB files. Instead every 64-bit value is held as a pair of
 * signed 32-bit halves (hi, lo); multiplication uses `Math.imul` for the low
 * 32 bits of each partial product plus a 16-bit split to recover the high 32
 * bits of `lo * lo`. The per-block loops below are manually inlined, keep all
 * state in local number variables and allocate nothing.
 */

/* ------------------------------------------------------------------------ */
/* MurmurHash3 x86_32                                                        */
/* ------------------------------------------------------------------------ */

const C1_32 = 0xcc9e2d51 | 0;
const C2_32 = 0x1b873593 | 0;

/** fmix32 — the final avalanche of MurmurHash3 (Guava `Murmur3_32HashFunction.fmix`). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b | 0);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35 | 0);
  h ^= h >>> 16;
  return h;
}

/**
 * Mixes all complete 4-byte blocks of `buf[start, end)` into `h1` and returns
 * the new `h1`. `end - start` must be a multiple of 4.
 */
function blocks32(h1: number, buf: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i += 4) {
    // Guava reads each block as a little-endian int (Ints.fromBytes reversed).
    let k1 = buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
    k1 = Math.imul(k1, C1_32);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, C2_32);
    h1 ^= k1;
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + (0xe6546b64 | 0)) | 0;
  }
  return h1;
}

/**
 * Streaming MurmurHash3 x86_32. `digest()` returns the 4-byte hash in Guava's
 * byte order (`HashCode.fromInt` → little-endian), so its hex equals
 * Guava's `HashCode.toString()`.
 */
export class Murmur3Hash32 {
  private h1: number;
  /** Bytes of an incomplete 4-byte block carried over to the next update. */
  private readonly tail = new Uint8Array(4);
  private tailLength = 0;
  /** Total bytes hashed. Only its low 32 bits matter (Guava XORs an int). */
  private length = 0;

  constructor(seed = 0) {
    this.h1 = seed | 0;
  }

  /**
   * Adds `chunk` to the hash. Chunks may have any size; the chunk is not
   * retained, so callers may reuse their buffer afterwards.
   */
  update(chunk: Uint8Array): this {
    const n = chunk.length;
    this.length += n;
    let pos = 0;
    let h1 = this.h1;
    if (this.tailLength > 0) {
      const take = Math.min(4 - this.tailLength, n);
      for (let j = 0; j < take; j++) this.tail[this.tailLength + j] = chunk[j];
      this.tailLength += take;
      pos = take;
      if (this.tailLength < 4) return this;
      h1 = blocks32(h1, this.tail, 0, 4);
      this.tailLength = 0;
    }
    const blockEnd = pos + ((n - pos) & ~3);
    h1 = blocks32(h1, chunk, pos, blockEnd);
    this.h1 = h1;
    for (let j = blockEnd; j < n; j++) this.tail[this.tailLength++] = chunk[j];
    return this;
  }

  /** The hash value as a signed 32-bit integer (Guava `HashCode.asInt()`). Does not reset the state. */
  digestInt(): number {
    let h1 = this.h1;
    const rem = this.tailLength;
    if (rem > 0) {
      // Tail handling as in Guava's Murmur3_32Hasher / the reference C code:
      // the remaining 1..3 bytes (unsigned, `& 0xff`) are packed little-endian
      // into k1, which is mixed into h1 without the rotate/multiply-add step.
      let k1 = 0;
      for (let j = 0; j < rem; j++) k1 |= this.tail[j] << (8 * j);
      k1 = Math.imul(k1, C1_32);
      k1 = (k1 << 15) | (k1 >>> 17);
      k1 = Math.imul(k1, C2_32);
      h1 ^= k1;
    }
    // Guava: fmix(h1, length) with length as a Java int (wraps past 2^31).
    h1 ^= this.length | 0;
    return fmix32(h1);
  }

  /** The 4-byte hash, little-endian (Guava byte order). Does not reset the state. */
  digest(): Buffer {
    const out = Buffer.alloc(4);
    out.writeInt32LE(this.digestInt(), 0);
    return out;
  }
}

/* ------------------------------------------------------------------------ */
/* MurmurHash3 x64_128                                                       */
/* ------------------------------------------------------------------------ */

// 64-bit constants split into signed 32-bit halves, and the low half further
// split into 16-bit halves for the high-word computation of lo * lo.
// c1 = 0x87c37b91114253d5, c2 = 0x4cf5ad432745937f
const C1_HI = 0x87c37b91 | 0;
const C1_LO = 0x114253d5 | 0;
const C1_LO_L = C1_LO & 0xffff;
const C1_LO_H = C1_LO >>> 16;
const C2_HI = 0x4cf5ad43 | 0;
const C2_LO = 0x2745937f | 0;
const C2_LO_L = C2_LO & 0xffff;
const C2_LO_H = C2_LO >>> 16;

const TWO_POW_32 = 4294967296;

/**
 * Scratch output for the non-hot-path 64-bit helpers (finalisation and tail):
 * [hi, lo]. A module-level typed array avoids allocating result objects.
 */
const scratch = new Int32Array(2);

/** (ah,al) * (bh,bl) mod 2^64 → scratch. Same arithmetic as the inlined hot loop. */
function mul64(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  // High 32 bits of the unsigned 32x32 product al*bl, from 16-bit partials.
  // Each partial is < 2^32, so Math.imul(...) >>> 0 is exact.
  const p00 = Math.imul(a0, b0) >>> 0;
  const p01 = Math.imul(a0, b1) >>> 0;
  const p10 = Math.imul(a1, b0) >>> 0;
  const p11 = Math.imul(a1, b1) >>> 0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const carry = p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
  scratch[0] = (carry + Math.imul(ah, bl) + Math.imul(al, bh)) | 0;
  scratch[1] = Math.imul(al, bl);
}

/** fmix64 — Guava `Murmur3_128HashFunction.fmix64` (reference `fmix64`) → scratch. */
function fmix64(hi: number, lo: number): void {
  // k ^= k >>> 33 : only the high half shifted right by 1 lands in the low half.
  lo ^= hi >>> 1;
  mul64(hi, lo, 0xff51afd7 | 0, 0xed558ccd | 0); // k *= 0xff51afd7ed558ccdL
  hi = scratch[0];
  lo = scratch[1];
  lo ^= hi >>> 1;
  mul64(hi, lo, 0xc4ceb9fe | 0, 0x1a85ec53 | 0); // k *= 0xc4ceb9fe1a85ec53L
  hi = scratch[0];
  lo = scratch[1];
  lo ^= hi >>> 1;
  scratch[0] = hi;
  scratch[1] = lo;
}

/** 64-bit add (ah,al) + (bh,bl) → scratch. */
function add64(ah: number, al: number, bh: number, bl: number): void {
  const lo = (al + bl) | 0;
  // Carry out of bit 31 of the unsigned low-word sum.
  const c = ((al & bl) | ((al | bl) & ~lo)) >>> 31;
  scratch[0] = (ah + bh + c) | 0;
  scratch[1] = lo;
}

/**
 * Mixes all complete 16-byte blocks of `buf[start, end)` into the state
 * `s = [h1hi, h1lo, h2hi, h2lo]`. `end - start` must be a multiple of 16.
 *
 * This is Guava's `Murmur3_128Hasher.bmix64` (identical to the reference
 * MurmurHash3_x64_128 body), hand-inlined on 32-bit halves so that the loop
 * performs no calls and no allocation.
 */
function blocks128(s: Int32Array, buf: Uint8Array, start: number, end: number): void {
  let h1h = s[0];
  let h1l = s[1];
  let h2h = s[2];
  let h2l = s[3];
  let k1h: number, k1l: number, k2h: number, k2l: number;
  let x0: number, x1: number, p00: number, p01: number, p10: number, p11: number, mid: number, t: number;

  for (let i = start; i < end; i += 16) {
    // k1 = bb.getLong() (little-endian), k2 = bb.getLong()
    k1l = buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
    k1h = buf[i + 4] | (buf[i + 5] << 8) | (buf[i + 6] << 16) | (buf[i + 7] << 24);
    k2l = buf[i + 8] | (buf[i + 9] << 8) | (buf[i + 10] << 16) | (buf[i + 11] << 24);
    k2h = buf[i + 12] | (buf[i + 13] << 8) | (buf[i + 14] << 16) | (buf[i + 15] << 24);

    // --- k1 *= c1 ---
    x0 = k1l & 0xffff;
    x1 = k1l >>> 16;
    p00 = Math.imul(x0, C1_LO_L) >>> 0;
    p01 = Math.imul(x0, C1_LO_H) >>> 0;
    p10 = Math.imul(x1, C1_LO_L) >>> 0;
    p11 = Math.imul(x1, C1_LO_H) >>> 0;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    k1h = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(k1h, C1_LO) + Math.imul(k1l, C1_HI)) | 0;
    k1l = Math.imul(k1l, C1_LO);
    // --- k1 = rotl64(k1, 31) ---
    t = k1h;
    k1h = (k1h << 31) | (k1l >>> 1);
    k1l = (k1l << 31) | (t >>> 1);
    // --- k1 *= c2 ---
    x0 = k1l & 0xffff;
    x1 = k1l >>> 16;
    p00 = Math.imul(x0, C2_LO_L) >>> 0;
    p01 = Math.imul(x0, C2_LO_H) >>> 0;
    p10 = Math.imul(x1, C2_LO_L) >>> 0;
    p11 = Math.imul(x1, C2_LO_H) >>> 0;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    k1h = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(k1h, C2_LO) + Math.imul(k1l, C2_HI)) | 0;
    k1l = Math.imul(k1l, C2_LO);
    // --- h1 ^= k1 ---
    h1h ^= k1h;
    h1l ^= k1l;
    // --- h1 = rotl64(h1, 27) ---
    t = h1h;
    h1h = (h1h << 27) | (h1l >>> 5);
    h1l = (h1l << 27) | (t >>> 5);
    // --- h1 += h2 ---
    t = (h1l + h2l) | 0;
    h1h = (h1h + h2h + (((h1l & h2l) | ((h1l | h2l) & ~t)) >>> 31)) | 0;
    h1l = t;
    // --- h1 = h1 * 5 + 0x52dce729 ---
    // h1l * 5 < 2^35 is exact as a double; its upper bits are the carry.
    t = (h1l >>> 0) * 5 + 0x52dce729;
    h1l = t | 0;
    h1h = (Math.imul(h1h, 5) + ((t / TWO_POW_32) | 0)) | 0;

    // --- k2 *= c2 ---
    x0 = k2l & 0xffff;
    x1 = k2l >>> 16;
    p00 = Math.imul(x0, C2_LO_L) >>> 0;
    p01 = Math.imul(x0, C2_LO_H) >>> 0;
    p10 = Math.imul(x1, C2_LO_L) >>> 0;
    p11 = Math.imul(x1, C2_LO_H) >>> 0;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    k2h = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(k2h, C2_LO) + Math.imul(k2l, C2_HI)) | 0;
    k2l = Math.imul(k2l, C2_LO);
    // --- k2 = rotl64(k2, 33) == swap halves, then rotate left by 1 ---
    t = k2h;
    k2h = (k2l << 1) | (t >>> 31);
    k2l = (t << 1) | (k2l >>> 31);
    // --- k2 *= c1 ---
    x0 = k2l & 0xffff;
    x1 = k2l >>> 16;
    p00 = Math.imul(x0, C1_LO_L) >>> 0;
    p01 = Math.imul(x0, C1_LO_H) >>> 0;
    p10 = Math.imul(x1, C1_LO_L) >>> 0;
    p11 = Math.imul(x1, C1_LO_H) >>> 0;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    k2h = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(k2h, C1_LO) + Math.imul(k2l, C1_HI)) | 0;
    k2l = Math.imul(k2l, C1_LO);
    // --- h2 ^= k2 ---
    h2h ^= k2h;
    h2l ^= k2l;
    // --- h2 = rotl64(h2, 31) ---
    t = h2h;
    h2h = (h2h << 31) | (h2l >>> 1);
    h2l = (h2l << 31) | (t >>> 1);
    // --- h2 += h1 ---
    t = (h2l + h1l) | 0;
    h2h = (h2h + h1h + (((h2l & h1l) | ((h2l | h1l) & ~t)) >>> 31)) | 0;
    h2l = t;
    // --- h2 = h2 * 5 + 0x38495ab5 ---
    t = (h2l >>> 0) * 5 + 0x38495ab5;
    h2l = t | 0;
    h2h = (Math.imul(h2h, 5) + ((t / TWO_POW_32) | 0)) | 0;
  }

  s[0] = h1h;
  s[1] = h1l;
  s[2] = h2h;
  s[3] = h2l;
}

/** Reads up to 4 bytes of `buf` from `offset` (bounded by `limit`) as a little-endian int; missing bytes are 0. */
function partialLE32(buf: Uint8Array, offset: number, limit: number): number {
  let v = 0;
  for (let j = 0; j < 4 && offset + j < limit; j++) v |= buf[offset + j] << (8 * j);
  return v;
}

/**
 * Streaming MurmurHash3 x64_128 (Guava `Hashing.murmur3_128()`).
 * `digest()` returns 16 bytes: h1 little-endian then h2 little-endian, exactly
 * as Guava's `Murmur3_128Hasher.makeHash()` writes them, so the hex equals
 * Guava's `HashCode.toString()`.
 */
export class Murmur3Hash128 {
  /** [h1hi, h1lo, h2hi, h2lo] as signed 32-bit halves. */
  private readonly state = new Int32Array(4);
  /** Bytes of an incomplete 16-byte block carried over to the next update. */
  private readonly tail = new Uint8Array(16);
  private tailLength = 0;
  /** Total bytes hashed (exact up to 2^53, i.e. far beyond any real file). */
  private length = 0;

  constructor(seed = 0) {
    // Guava: h1 = h2 = seed (an int, sign-extended to long).
    const hi = seed < 0 ? -1 : 0;
    this.state[0] = hi;
    this.state[1] = seed | 0;
    this.state[2] = hi;
    this.state[3] = seed | 0;
  }

  /**
   * Adds `chunk` to the hash. Chunks may have any size; the chunk is not
   * retained, so callers may reuse their buffer afterwards.
   */
  update(chunk: Uint8Array): this {
    const n = chunk.length;
    this.length += n;
    let pos = 0;
    if (this.tailLength > 0) {
      const take = Math.min(16 - this.tailLength, n);
      this.tail.set(chunk.subarray(0, take), this.tailLength);
      this.tailLength += take;
      pos = take;
      if (this.tailLength < 16) return this;
      blocks128(this.state, this.tail, 0, 16);
      this.tailLength = 0;
    }
    const blockEnd = pos + ((n - pos) & ~15);
    if (blockEnd > pos) blocks128(this.state, chunk, pos, blockEnd);
    if (blockEnd < n) {
      this.tail.set(chunk.subarray(blockEnd, n), 0);
      this.tailLength = n - blockEnd;
    }
    return this;
  }

  /** The 16-byte hash in Guava byte order (h1 LE, h2 LE). Does not reset the state. */
  digest(): Buffer {
    let h1h = this.state[0];
    let h1l = this.state[1];
    let h2h = this.state[2];
    let h2l = this.state[3];
    const rem = this.tailLength;

    if (rem > 0) {
      // Tail as in Guava's Murmur3_128Hasher.processRemaining (and the
      // reference code): bytes 0..7 form k1 and bytes 8..15 form k2, both
      // little-endian with unsigned bytes (UnsignedBytes.toInt); the missing
      // high bytes are zero. Then h1 ^= mixK1(k1); h2 ^= mixK2(k2) — no
      // rotate/multiply-add of h1/h2 for the tail. (mixK2(0) == 0, so
      // mixing k2 only when rem > 8 is equivalent.)
      const t = this.tail;
      const k1l = partialLE32(t, 0, rem);
      const k1h = partialLE32(t, 4, rem);
      if (rem > 8) {
        const k2l = partialLE32(t, 8, rem);
        const k2h = partialLE32(t, 12, rem);
        // mixK2: k2 *= c2; k2 = rotl(k2, 33); k2 *= c1
        mul64(k2h, k2l, C2_HI, C2_LO);
        let hi = scratch[0];
        let lo = scratch[1];
        const swapped = hi;
        hi = (lo << 1) | (swapped >>> 31);
        lo = (swapped << 1) | (lo >>> 31);
        mul64(hi, lo, C1_HI, C1_LO);
        h2h ^= scratch[0];
        h2l ^= scratch[1];
      }
      // mixK1: k1 *= c1; k1 = rotl(k1, 31); k1 *= c2
      mul64(k1h, k1l, C1_HI, C1_LO);
      let hi = scratch[0];
      let lo = scratch[1];
      const old = hi;
      hi = (hi << 31) | (lo >>> 1);
      lo = (lo << 31) | (old >>> 1);
      mul64(hi, lo, C2_HI, C2_LO);
      h1h ^= scratch[0];
      h1l ^= scratch[1];
    }

    // Guava makeHash(): h1 ^= length; h2 ^= length; h1 += h2; h2 += h1;
    // h1 = fmix64(h1); h2 = fmix64(h2); h1 += h2; h2 += h1.
    const lenLo = this.length | 0; // ToInt32 wraps modulo 2^32: the low word.
    const lenHi = Math.floor(this.length / TWO_POW_32) | 0;
    h1h ^= lenHi;
    h1l ^= lenLo;
    h2h ^= lenHi;
    h2l ^= lenLo;
    add64(h1h, h1l, h2h, h2l);
    h1h = scratch[0];
    h1l = scratch[1];
    add64(h2h, h2l, h1h, h1l);
    h2h = scratch[0];
    h2l = scratch[1];
    fmix64(h1h, h1l);
    h1h = scratch[0];
    h1l = scratch[1];
    fmix64(h2h, h2l);
    h2h = scratch[0];
    h2l = scratch[1];
    add64(h1h, h1l, h2h, h2l);
    h1h = scratch[0];
    h1l = scratch[1];
    add64(h2h, h2l, h1h, h1l);
    h2h = scratch[0];
    h2l = scratch[1];

    // ByteBuffer.wrap(new byte[16]).order(LITTLE_ENDIAN).putLong(h1).putLong(h2)
    const out = Buffer.alloc(16);
    out.writeInt32LE(h1l, 0);
    out.writeInt32LE(h1h, 4);
    out.writeInt32LE(h2l, 8);
    out.writeInt32LE(h2h, 12);
    return out;
  }
}
