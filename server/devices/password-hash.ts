import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * MQTT basic passwords, stored as scrypt hashes (ThingsBoard stores them in plain text; we do
 * not). A stored hash reads `$scrypt$N=16384,r=8,p=1$<salt b64>$<hash b64>`, so its cost can
 * change later without breaking stored ones.
 *
 * One scrypt costs ~30-50 ms of a libuv thread, too much for a storm of devices reconnecting at
 * once. Verified (stored hash, password) pairs are therefore remembered in a bounded LRU keyed by
 * SHA-256 of both (never the password itself): a reconnect costs one SHA-256. A changed password
 * has a new salt, so its old entries never match again and age out.
 */

const PREFIX = '$scrypt$';
const COST = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

/** Verified pairs kept by default (`OTA_MQTT_AUTH_CACHE_SIZE`). */
export const DEFAULT_VERIFIED_CACHE_SIZE = 10_000;

const derive = (password: string, salt: Buffer, cost: ScryptOptions, length: number): Promise<Buffer> =>
  new Promise((resolve, reject) => scrypt(password, salt, length, { ...cost, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))));

export const isPasswordHash = (value: unknown): value is string => typeof value === 'string' && value.startsWith(PREFIX);

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, COST, KEY_LENGTH);
  return `${PREFIX}N=${COST.N},r=${COST.r},p=${COST.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export class PasswordVerifier {
  private readonly verified = new Map<string, true>();

  constructor(private readonly cacheSize: number = DEFAULT_VERIFIED_CACHE_SIZE) {}

  /** Whether `password` is the one `stored` was made from; a malformed `stored` matches nothing. */
  async verify(stored: string, password: string): Promise<boolean> {
    const key = createHash('sha256').update(stored).update('\0').update(password).digest('base64');
    if (this.verified.has(key)) {
      // Map order is insertion order: re-inserting makes it the most recently used.
      this.verified.delete(key);
      this.verified.set(key, true);
      return true;
    }
    const parts = parseHash(stored);
    if (!parts) return false;
    const actual = await derive(password, parts.salt, parts.cost, parts.hash.length);
    if (!timingSafeEqual(actual, parts.hash)) return false;
    if (this.cacheSize > 0) {
      this.verified.set(key, true);
      if (this.verified.size > this.cacheSize) this.verified.delete(this.verified.keys().next().value as string);
    }
    return true;
  }
}

function parseHash(stored: string): { cost: ScryptOptions; salt: Buffer; hash: Buffer } | null {
  if (!stored.startsWith(PREFIX)) return null;
  const [params, salt, hash] = stored.slice(PREFIX.length).split('$');
  const m = /^N=(\d+),r=(\d+),p=(\d+)$/.exec(params ?? '');
  if (!m || !salt || !hash) return null;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Bounds: a stored value is ours, but a corrupted one must not make us allocate gigabytes.
  if (N > 1 << 17 || r > 16 || p > 4) return null;
  return { cost: { N, r, p }, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
}
