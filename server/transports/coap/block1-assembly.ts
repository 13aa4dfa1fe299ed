import type { ParsedPacket } from 'coap-packet';
import type { Block } from './block-wise';
import { Code, peerKey, type Peer, type ResponseCode } from './messages';

/** Uploads in progress at once; past this the oldest is dropped (a client that went away). */
const MAX_UPLOADS = 1024;

/** What one block of an upload comes to. */
export type BlockOutcome = { continue: Block } | { complete: Buffer } | { refuse: ResponseCode };

type Upload = { parts: Buffer[]; bytes: number; expires: number };

/**
 * Request bodies sent block-wise (Block1, RFC 7959 §2.3), put back together by the endpoint before
 * the request is served. Blocks are matched by peer, method, URI and Request-Tag (RFC 9175 §3) and
 * by byte offset, not by token: libcoap's client sends each block with a new token, which RFC 7959
 * allows.
 */
export class Block1Assembly {
  private readonly uploads = new Map<string, Upload>();
  /** Bytes held by every upload in progress. */
  private held = 0;

  constructor(
    private readonly maxBodySize: number,
    private readonly now: () => number,
    private readonly lifetimeMs: number,
    /** Bytes held by all uploads in progress at most (OTA_COAP_UPLOAD_BYTES); past it a block gets 5.03. */
    private readonly maxHeldBytes = Number.MAX_SAFE_INTEGER,
  ) {}

  /** Bytes held now. */
  get size(): number {
    return this.held;
  }

  take(packet: ParsedPacket, peer: Peer, block: Block): BlockOutcome {
    const key = uploadKey(packet, peer);
    const offset = block.num * block.size;
    const now = this.now();
    let upload = this.uploads.get(key);
    if (offset === 0) {
      if (upload) this.drop(key, upload);
      upload = { parts: [], bytes: 0, expires: 0 };
    } else if (!upload || upload.expires <= now || upload.bytes !== offset) {
      // A block out of order, or of an upload we no longer hold [RFC 7959 §2.9.2].
      if (upload) this.drop(key, upload);
      return { refuse: Code.REQUEST_ENTITY_INCOMPLETE };
    }
    this.drop(key, upload);
    if (upload.bytes + packet.payload.length > this.maxBodySize) return { refuse: Code.REQUEST_ENTITY_TOO_LARGE };
    if (!block.more) return { complete: Buffer.concat([...upload.parts, packet.payload]) };
    // Every upload together stays within its bound: past it, try later [RFC 7252 §5.9.3.4].
    if (this.held + upload.bytes + packet.payload.length > this.maxHeldBytes) return { refuse: Code.SERVICE_UNAVAILABLE };
    upload.parts.push(packet.payload);
    upload.bytes += packet.payload.length;
    upload.expires = now + this.lifetimeMs;
    // Re-inserted, so the map stays in order of last activity: the stale ones are at the front.
    this.uploads.set(key, upload);
    this.held += upload.bytes;
    for (const [k, u] of this.uploads) {
      if (u.expires > now && this.uploads.size <= MAX_UPLOADS) break;
      this.drop(k, u);
    }
    return { continue: { num: block.num, more: true, size: block.size } };
  }

  clear(): void {
    this.uploads.clear();
    this.held = 0;
  }

  private drop(key: string, upload: Upload): void {
    if (this.uploads.get(key) !== upload) return;
    this.uploads.delete(key);
    this.held -= upload.bytes;
  }
}

/** One upload: the peer, the method, the URI, and the Request-Tag (option 292) when there is one. */
function uploadKey(packet: ParsedPacket, peer: Peer): string {
  const parts = [peerKey(peer), packet.code];
  for (const o of packet.options) {
    const name = String(o.name);
    if (name === 'Uri-Path' || name === 'Uri-Query' || name === '292') parts.push(`${name}=${o.value.toString('hex')}`);
  }
  return parts.join('|');
}
