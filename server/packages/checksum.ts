/**
 * Package checksums compatible with ThingsBoard's OTA package API.
 *
 * ThingsBoard lets an uploader choose one of its `ChecksumAlgorithm` values
 * and, when no checksum is supplied, computes it with Guava's `Hashing`
 * functions and stores `HashCode.toString()` — lower-case hex of the hash
 * *bytes*. Devices later compare against that exact string, so the encoding
 * matters as much as the algorithm (notably CRC32/MURMUR3_32 are written
 * little-endian, not as the conventional big-endian number).
 *
 * Everything here is streaming: packages can be several GB, so files are read
 * chunk by chunk through a single reused buffer and never held in memory.
 */

import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { Murmur3Hash128, Murmur3Hash32 } from './murmur3';

/** The algorithm names of ThingsBoard's `ChecksumAlgorithm` enum, spelled as ThingsBoard spells them. */
export type ChecksumAlgorithm = 'MD5' | 'SHA256' | 'SHA384' | 'SHA512' | 'CRC32' | 'MURMUR3_32' | 'MURMUR3_128';

/** All supported algorithms, in ThingsBoard's enum order (useful for validation messages and UIs). */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = Object.freeze(['MD5', 'SHA256', 'SHA384', 'SHA512', 'CRC32', 'MURMUR3_32', 'MURMUR3_128'] as const);

/**
 * Case-insensitive parse of an algorithm name as ThingsBoard accepts it
 * ("sha256" -> "SHA256"); undefined when unknown.
 *
 * ThingsBoard does `ChecksumAlgorithm.valueOf(name.toUpperCase())`, so only
 * the enum names are accepted (no "SHA-256", no surrounding whitespace).
 * Non-ASCII input is rejected up front because Unicode case mapping would
 * otherwise accept look-alikes (e.g. "ſha256" upper-cases to "SHA256").
 */
export function parseChecksumAlgorithm(name: string): ChecksumAlgorithm | undefined {
  if (!/^[A-Za-z0-9_]+$/.test(name)) return undefined;
  const upper = name.toUpperCase();
  return CHECKSUM_ALGORITHMS.find((a) => a === upper);
}

/**
 * An incremental checksum. `update` may be called any number of times with
 * chunks of any size and must not retain the chunk (callers reuse buffers).
 */
export interface Hasher {
  update(chunk: Buffer): void;
  /** lower-case hex in ThingsBoard's encoding */
  digest(): string;
}

/** MD5/SHA-*: Guava's HashCode bytes are the conventional digest bytes, so hex is identical. */
class CryptoHasher implements Hasher {
  private readonly hash: Hash;
  constructor(name: string) {
    this.hash = createHash(name);
  }
  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }
  digest(): string {
    // copy() keeps digest() repeatable like the other hashers (Hash.digest is one-shot).
    return this.hash.copy().digest('hex');
  }
}

/**
 * CRC32 (IEEE, as `java.util.zip.CRC32` / Guava `Hashing.crc32()`), using
 * Node's built-in incremental `zlib.crc32`. Guava builds the HashCode with
 * `HashCode.fromInt`, i.e. little-endian bytes: 0xCBF43926 -> "2639f4cb".
 */
class Crc32Hasher implements Hasher {
  private value = 0;
  update(chunk: Buffer): void {
    this.value = crc32(chunk, this.value);
  }
  digest(): string {
    const out = Buffer.alloc(4);
    out.writeUInt32LE(this.value >>> 0, 0);
    return out.toString('hex');
  }
}

/** Adapts a murmur3 class (which returns Guava-ordered bytes) to the hex Hasher interface. */
class MurmurHasher implements Hasher {
  constructor(private readonly impl: Murmur3Hash32 | Murmur3Hash128) {}
  update(chunk: Buffer): void {
    this.impl.update(chunk);
  }
  digest(): string {
    return this.impl.digest().toString('hex');
  }
}

/**
 * A fresh incremental hasher for `algorithm`. `digest()` does not reset or
 * finalise the state, so it may be called more than once.
 */
export function createHasher(algorithm: ChecksumAlgorithm): Hasher {
  switch (algorithm) {
    case 'MD5':
    case 'SHA256':
    case 'SHA384':
    case 'SHA512':
      // OpenSSL digest names are the lower-cased enum names ("sha256").
      return new CryptoHasher(algorithm.toLowerCase());
    case 'CRC32':
      return new Crc32Hasher();
    case 'MURMUR3_32':
      // Guava murmur3_32 and murmur3_32_fixed agree on byte input (they only
      // differ in hashString for non-BMP characters); seed 0 as ThingsBoard.
      return new MurmurHasher(new Murmur3Hash32(0));
    case 'MURMUR3_128':
      return new MurmurHasher(new Murmur3Hash128(0));
    default: {
      // Reached only from untyped callers (e.g. JSON input not run through parseChecksumAlgorithm).
      const unknown: never = algorithm;
      throw new Error(`Unsupported checksum algorithm: ${String(unknown)}`);
    }
  }
}

/** Checksum of an in-memory value; strings are hashed as their UTF-8 bytes (as Java's getBytes(UTF_8)). */
export function checksumOf(algorithm: ChecksumAlgorithm, data: Buffer | string): string {
  const hasher = createHasher(algorithm);
  hasher.update(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  return hasher.digest();
}

/**
 * Read size for checksumFile: large enough to amortise syscalls and per-update
 * overhead, small enough that memory stays bounded regardless of file size.
 */
const FILE_CHUNK_SIZE = 1024 * 1024;

/**
 * Checksum of a file, streamed: the file is read sequentially into one reused
 * 1 MiB buffer, so memory use is constant even for multi-GB packages.
 * (Safe because no Hasher retains the chunk passed to `update`.)
 */
export async function checksumFile(algorithm: ChecksumAlgorithm, filePath: string): Promise<string> {
  const hasher = createHasher(algorithm);
  const handle = await open(filePath, 'r');
  try {
    const buffer = Buffer.allocUnsafe(FILE_CHUNK_SIZE);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hasher.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hasher.digest();
}
