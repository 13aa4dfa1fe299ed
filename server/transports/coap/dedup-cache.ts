import type { Timers } from '../../timers';

/** An exchange being answered (`null`: still being processed) or answered, with when it expires. */
interface Entry {
  bytes: Buffer | null;
  expires: number;
}

/**
 * Message deduplication [RFC 7252 §4.5]: the answers to requests we took, by peer and message id,
 * for EXCHANGE_LIFETIME (CON) or NON_LIFETIME (NON) [§4.8.2], so that a retransmitted request is
 * answered again and processed once; a duplicate arriving while its request is still being
 * processed is dropped (its answer will cover it).
 *
 * Bounded: at most `max` entries (OTA_COAP_DEDUP_ENTRIES), the oldest dropped first. Entries go in
 * in time order and are re-inserted when they change, so the expired and the oldest are at the
 * front and one pass from the front prunes both.
 */
export class DedupCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly timers: Pick<Timers, 'now'>,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** `undefined`: a new exchange; `null`: being processed; bytes: the answer to send again. */
  lookup(key: string): Buffer | null | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.timers.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.bytes;
  }

  /** A request is being processed. */
  begin(key: string, lifetimeMs: number): void {
    this.set(key, null, lifetimeMs);
  }

  /** What to send again for a duplicate of `key`. */
  answer(key: string, bytes: Buffer, lifetimeMs: number): void {
    this.set(key, bytes, lifetimeMs);
  }

  /** Forgets an exchange (its request was refused before processing, say). */
  forget(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  private set(key: string, bytes: Buffer | null, lifetimeMs: number): void {
    const now = this.timers.now();
    this.entries.delete(key);
    this.entries.set(key, { bytes, expires: now + lifetimeMs });
    for (const [k, e] of this.entries) {
      if (e.expires > now && this.entries.size <= this.max) break;
      this.entries.delete(k);
    }
  }
}
