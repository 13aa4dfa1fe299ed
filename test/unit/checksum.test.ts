import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm, checksumFile, checksumOf, createHasher, parseChecksumAlgorithm } from '../../server/packages/checksum';
import { Murmur3Hash128, Murmur3Hash32 } from '../../server/packages/murmur3';

/* ------------------------------------------------------------------------ */
/* Slow but obviously-correct BigInt reference implementations, written      */
/* straight from the reference MurmurHash3.cpp, so the fast 32-bit-pair code */
/* is checked against something independent rather than against itself.     */
/* ------------------------------------------------------------------------ */

const MASK32 = 0xffffffffn;
const MASK64 = 0xffffffffffffffffn;

function rotl32(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (32n - r))) & MASK32;
}

function refMurmur3x86_32(data: Uint8Array, seed = 0n): Buffer {
  const c1 = 0xcc9e2d51n;
  const c2 = 0x1b873593n;
  let h1 = seed & MASK32;
  const nblocks = Math.floor(data.length / 4);
  for (let b = 0; b < nblocks; b++) {
    let k1 = 0n;
    for (let j = 3; j >= 0; j--) k1 = (k1 << 8n) | BigInt(data[b * 4 + j]);
    k1 = (k1 * c1) & MASK32;
    k1 = rotl32(k1, 15n);
    k1 = (k1 * c2) & MASK32;
    h1 ^= k1;
    h1 = rotl32(h1, 13n);
    h1 = (h1 * 5n + 0xe6546b64n) & MASK32;
  }
  const rem = data.length & 3;
  if (rem > 0) {
    let k1 = 0n;
    for (let j = rem - 1; j >= 0; j--) k1 = (k1 << 8n) | BigInt(data[nblocks * 4 + j]);
    k1 = (k1 * c1) & MASK32;
    k1 = rotl32(k1, 15n);
    k1 = (k1 * c2) & MASK32;
    h1 ^= k1;
  }
  h1 ^= BigInt(data.length) & MASK32;
  h1 ^= h1 >> 16n;
  h1 = (h1 * 0x85ebca6bn) & MASK32;
  h1 ^= h1 >> 13n;
  h1 = (h1 * 0xc2b2ae35n) & MASK32;
  h1 ^= h1 >> 16n;
  const out = Buffer.alloc(4);
  out.writeUInt32LE(Number(h1), 0); // Guava HashCode.fromInt: little-endian
  return out;
}

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

function refFmix64(k: bigint): bigint {
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & MASK64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & MASK64;
  k ^= k >> 33n;
  return k;
}

function readLE(data: Uint8Array, offset: number, count: number): bigint {
  let v = 0n;
  for (let j = count - 1; j >= 0; j--) v = (v << 8n) | BigInt(data[offset + j]);
  return v;
}

function refMurmur3x64_128(data: Uint8Array, seed = 0n): Buffer {
  const c1 = 0x87c37b91114253d5n;
  const c2 = 0x4cf5ad432745937fn;
  let h1 = seed & MASK64;
  let h2 = seed & MASK64;
  const nblocks = Math.floor(data.length / 16);
  for (let b = 0; b < nblocks; b++) {
    let k1 = readLE(data, b * 16, 8);
    let k2 = readLE(data, b * 16 + 8, 8);
    k1 = (k1 * c1) & MASK64;
    k1 = rotl64(k1, 31n);
    k1 = (k1 * c2) & MASK64;
    h1 ^= k1;
    h1 = rotl64(h1, 27n);
    h1 = (h1 + h2) & MASK64;
    h1 = (h1 * 5n + 0x52dce729n) & MASK64;
    k2 = (k2 * c2) & MASK64;
    k2 = rotl64(k2, 33n);
    k2 = (k2 * c1) & MASK64;
    h2 ^= k2;
    h2 = rotl64(h2, 31n);
    h2 = (h2 + h1) & MASK64;
    h2 = (h2 * 5n + 0x38495ab5n) & MASK64;
  }
  const rem = data.length & 15;
  const tail = nblocks * 16;
  if (rem > 8) {
    let k2 = readLE(data, tail + 8, rem - 8);
    k2 = (k2 * c2) & MASK64;
    k2 = rotl64(k2, 33n);
    k2 = (k2 * c1) & MASK64;
    h2 ^= k2;
  }
  if (rem > 0) {
    let k1 = readLE(data, tail, Math.min(rem, 8));
    k1 = (k1 * c1) & MASK64;
    k1 = rotl64(k1, 31n);
    k1 = (k1 * c2) & MASK64;
    h1 ^= k1;
  }
  const len = BigInt(data.length);
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  h1 = refFmix64(h1);
  h2 = refFmix64(h2);
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  const out = Buffer.alloc(16);
  out.writeBigUInt64LE(h1, 0); // Guava: putLong(h1).putLong(h2) in LITTLE_ENDIAN order
  out.writeBigUInt64LE(h2, 8);
  return out;
}

/** Deterministic "random-ish" bytes (xorshift32), so failures are reproducible. */
function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed | 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Feeds `data` to a fresh hasher in pieces of `split` bytes. */
function digestInPieces(algorithm: ChecksumAlgorithm, data: Buffer, split: number): string {
  const hasher = createHasher(algorithm);
  for (let i = 0; i < data.length; i += split) hasher.update(data.subarray(i, i + split));
  return hasher.digest();
}

const CHECK_INPUT = '123456789';
const FOX = 'The quick brown fox jumps over the lazy dog';

function nodeDigest(name: string, data: string): string {
  return createHash(name).update(data, 'utf8').digest('hex');
}

describe('checksum', () => {
  describe('CHECKSUM_ALGORITHMS', () => {
    it('lists exactly the seven ThingsBoard ChecksumAlgorithm names in enum order', () => {
      expect(CHECKSUM_ALGORITHMS).to.deep.equal(['MD5', 'SHA256', 'SHA384', 'SHA512', 'CRC32', 'MURMUR3_32', 'MURMUR3_128']);
    });
  });

  describe('parseChecksumAlgorithm', () => {
    it('accepts every algorithm name in upper, lower and mixed case', () => {
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        expect(parseChecksumAlgorithm(algorithm)).to.equal(algorithm);
        expect(parseChecksumAlgorithm(algorithm.toLowerCase())).to.equal(algorithm);
        const mixed = [...algorithm].map((ch, i) => (i % 2 === 0 ? ch.toLowerCase() : ch)).join('');
        expect(parseChecksumAlgorithm(mixed)).to.equal(algorithm);
      }
    });

    it('parses "sha256" as SHA256 and "murmur3_128" as MURMUR3_128', () => {
      expect(parseChecksumAlgorithm('sha256')).to.equal('SHA256');
      expect(parseChecksumAlgorithm('murmur3_128')).to.equal('MURMUR3_128');
    });

    it('returns undefined for SHA1, which ThingsBoard does not support', () => {
      expect(parseChecksumAlgorithm('SHA1')).to.equal(undefined);
      expect(parseChecksumAlgorithm('sha1')).to.equal(undefined);
    });

    it('returns undefined for spellings ThingsBoard would reject (empty, hyphenated, padded, Unicode look-alikes, prototype keys)', () => {
      for (const name of ['', 'SHA-256', ' SHA256', 'SHA256 ', 'MURMUR3', 'ſha256', 'constructor', 'toString']) {
        expect(parseChecksumAlgorithm(name), JSON.stringify(name)).to.equal(undefined);
      }
    });
  });

  describe('known vectors for "123456789"', () => {
    it('gives MD5 25f9e794323b453885f5181f1b624d0b', () => {
      expect(checksumOf('MD5', CHECK_INPUT)).to.equal('25f9e794323b453885f5181f1b624d0b');
    });

    it('gives SHA256 15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225', () => {
      expect(checksumOf('SHA256', CHECK_INPUT)).to.equal('15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225');
    });

    it('gives SHA384 equal to the conventional hex digest', () => {
      expect(checksumOf('SHA384', CHECK_INPUT)).to.equal(nodeDigest('sha384', CHECK_INPUT));
    });

    it('gives SHA512 equal to the conventional hex digest', () => {
      expect(checksumOf('SHA512', CHECK_INPUT)).to.equal(nodeDigest('sha512', CHECK_INPUT));
    });

    it('encodes CRC32 of "123456789" (0xCBF43926) little-endian as 2639f4cb', () => {
      expect(checksumOf('CRC32', CHECK_INPUT)).to.equal('2639f4cb');
    });

    it('encodes MURMUR3_32 of "123456789" little-endian as 82f3feb4', () => {
      expect(checksumOf('MURMUR3_32', CHECK_INPUT)).to.equal('82f3feb4');
    });

    it('encodes MURMUR3_128 of "123456789" as h1 then h2, each little-endian: a4cc66db5e64843c05a11e3ac7faf899', () => {
      expect(checksumOf('MURMUR3_128', CHECK_INPUT)).to.equal('a4cc66db5e64843c05a11e3ac7faf899');
    });
  });

  describe('known vectors for the empty input', () => {
    const expected: Record<ChecksumAlgorithm, string> = {
      MD5: 'd41d8cd98f00b204e9800998ecf8427e',
      SHA256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      SHA384: nodeDigest('sha384', ''),
      SHA512: nodeDigest('sha512', ''),
      CRC32: '00000000',
      MURMUR3_32: '00000000',
      MURMUR3_128: '00000000000000000000000000000000',
    };
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      it(`gives ${algorithm} ${expected[algorithm]} for no bytes at all`, () => {
        expect(checksumOf(algorithm, '')).to.equal(expected[algorithm]);
        expect(checksumOf(algorithm, Buffer.alloc(0))).to.equal(expected[algorithm]);
        expect(createHasher(algorithm).digest()).to.equal(expected[algorithm]);
      });
    }
  });

  describe('murmur3 against the canonical reference', () => {
    it('gives MURMUR3_32 23f74f2e for the quick brown fox (canonical 0x2e4ff723, little-endian)', () => {
      expect(refMurmur3x86_32(Buffer.from(FOX)).toString('hex')).to.equal('23f74f2e');
      expect(checksumOf('MURMUR3_32', FOX)).to.equal('23f74f2e');
    });

    it('gives MURMUR3_128 6c1b07bc7bbc4be347939ac4a93c437a for the quick brown fox (h1=0xe34bbc7bbc071b6c, h2=0x7a433ca9c49a9347)', () => {
      expect(refMurmur3x64_128(Buffer.from(FOX)).toString('hex')).to.equal('6c1b07bc7bbc4be347939ac4a93c437a');
      expect(checksumOf('MURMUR3_128', FOX)).to.equal('6c1b07bc7bbc4be347939ac4a93c437a');
    });

    it('agrees with the BigInt reference on the "123456789" vectors', () => {
      expect(refMurmur3x86_32(Buffer.from(CHECK_INPUT)).toString('hex')).to.equal('82f3feb4');
      expect(refMurmur3x64_128(Buffer.from(CHECK_INPUT)).toString('hex')).to.equal('a4cc66db5e64843c05a11e3ac7faf899');
    });

    it('matches the BigInt reference x86_32 on pseudo-random inputs of every length 0..64', () => {
      for (let length = 0; length <= 64; length++) {
        for (let seed = 1; seed <= 4; seed++) {
          const data = pseudoRandomBytes(length, length * 7919 + seed);
          const expected = refMurmur3x86_32(data).toString('hex');
          expect(new Murmur3Hash32().update(data).digest().toString('hex'), `length ${length}`).to.equal(expected);
          expect(checksumOf('MURMUR3_32', data), `length ${length}`).to.equal(expected);
        }
      }
    });

    it('matches the BigInt reference x64_128 on pseudo-random inputs of every length 0..64', () => {
      for (let length = 0; length <= 64; length++) {
        for (let seed = 1; seed <= 4; seed++) {
          const data = pseudoRandomBytes(length, length * 7919 + seed);
          const expected = refMurmur3x64_128(data).toString('hex');
          expect(new Murmur3Hash128().update(data).digest().toString('hex'), `length ${length}`).to.equal(expected);
          expect(checksumOf('MURMUR3_128', data), `length ${length}`).to.equal(expected);
        }
      }
    });

    it('matches the BigInt reference on inputs whose bytes are all 0xff (unsigned tail bytes, carries in 64-bit adds)', () => {
      for (let length = 0; length <= 40; length++) {
        const data = Buffer.alloc(length, 0xff);
        expect(checksumOf('MURMUR3_32', data), `length ${length}`).to.equal(refMurmur3x86_32(data).toString('hex'));
        expect(checksumOf('MURMUR3_128', data), `length ${length}`).to.equal(refMurmur3x64_128(data).toString('hex'));
      }
    });

    it('matches the BigInt reference on a 100 000-byte input', () => {
      const data = pseudoRandomBytes(100_000, 12345);
      expect(checksumOf('MURMUR3_32', data)).to.equal(refMurmur3x86_32(data).toString('hex'));
      expect(checksumOf('MURMUR3_128', data)).to.equal(refMurmur3x64_128(data).toString('hex'));
    });

    it('honours a non-zero seed like the reference (including a negative int seed, sign-extended for x64_128)', () => {
      const data = pseudoRandomBytes(37, 99);
      expect(new Murmur3Hash32(42).update(data).digest().toString('hex')).to.equal(refMurmur3x86_32(data, 42n).toString('hex'));
      expect(new Murmur3Hash128(42).update(data).digest().toString('hex')).to.equal(refMurmur3x64_128(data, 42n).toString('hex'));
      expect(new Murmur3Hash128(-7).update(data).digest().toString('hex')).to.equal(refMurmur3x64_128(data, -7n).toString('hex'));
    });
  });

  describe('streaming', () => {
    const data = pseudoRandomBytes(10_000, 0x5eed);
    const splits = [...Array.from({ length: 40 }, (_, i) => i + 1), 63, 64, 65, 1000, 4096, 9999, 10_000, 20_000];

    for (const algorithm of CHECKSUM_ALGORITHMS) {
      it(`gives the same ${algorithm} digest for 10 000 bytes fed in pieces of 1..40 bytes (and large pieces) as in one update`, () => {
        const whole = checksumOf(algorithm, data);
        for (const split of splits) {
          expect(digestInPieces(algorithm, data, split), `split ${split}`).to.equal(whole);
        }
      });
    }

    it('gives the same digest when chunk sizes vary irregularly, including empty chunks', () => {
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        const hasher = createHasher(algorithm);
        let pos = 0;
        let step = 0;
        while (pos < data.length) {
          const size = (step * 7 + 3) % 23; // 3, 10, 17, 1, 8, 15, 22, 6, ... 0 included
          hasher.update(data.subarray(pos, pos + size));
          pos += size;
          step++;
        }
        expect(hasher.digest(), algorithm).to.equal(checksumOf(algorithm, data));
      }
    });

    it('does not retain the chunk: overwriting a buffer after update does not change the digest', () => {
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        const hasher = createHasher(algorithm);
        const reused = Buffer.alloc(13);
        for (let i = 0; i < data.length; i += 13) {
          const n = data.copy(reused, 0, i, i + 13);
          hasher.update(reused.subarray(0, n));
          reused.fill(0xaa);
        }
        expect(hasher.digest(), algorithm).to.equal(checksumOf(algorithm, data));
      }
    });

    it('lets digest() be called repeatedly and continue after more updates', () => {
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        const hasher = createHasher(algorithm);
        hasher.update(data.subarray(0, 5001));
        const first = hasher.digest();
        expect(hasher.digest(), algorithm).to.equal(first);
        expect(first, algorithm).to.equal(checksumOf(algorithm, data.subarray(0, 5001)));
        hasher.update(data.subarray(5001));
        expect(hasher.digest(), algorithm).to.equal(checksumOf(algorithm, data));
      }
    });

    it('hashes strings as their UTF-8 bytes', () => {
      const text = 'Grüße, 世界 🚀';
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        expect(checksumOf(algorithm, text), algorithm).to.equal(checksumOf(algorithm, Buffer.from(text, 'utf8')));
      }
    });
  });

  describe('checksumFile', () => {
    let dir = '';

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'ota-checksum-test-'));
    });

    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('equals checksumOf of the same bytes for every algorithm, across read-chunk boundaries', async () => {
      // Larger than the 1 MiB read buffer and not a multiple of 4 or 16.
      const content = pseudoRandomBytes(2 * 1024 * 1024 + 12_345, 777);
      const file = join(dir, 'package.bin');
      await writeFile(file, content);
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        expect(await checksumFile(algorithm, file), algorithm).to.equal(checksumOf(algorithm, content));
      }
    });

    it('equals the empty-input checksum for an empty file', async () => {
      const file = join(dir, 'empty.bin');
      await writeFile(file, Buffer.alloc(0));
      for (const algorithm of CHECKSUM_ALGORITHMS) {
        expect(await checksumFile(algorithm, file), algorithm).to.equal(checksumOf(algorithm, ''));
      }
    });

    it('rejects with ENOENT for a missing file', async () => {
      let error: unknown;
      try {
        await checksumFile('SHA256', join(dir, 'missing.bin'));
      } catch (e) {
        error = e;
      }
      expect(error).to.be.instanceOf(Error);
      expect((error as NodeJS.ErrnoException).code).to.equal('ENOENT');
    });
  });
});
