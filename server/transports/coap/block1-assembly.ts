import type { ParsedPacket } from 'coap-packet';
import type { Block } from './block-wise';
import { Code, peerKey, type Peer, type ResponseCode } from './messages';

/** Uploads in progress at once; past this the oldest is dropped (a client that went away). */
const MAX_UPLOADS = 1024;

/** What one block of an upload comes to. */
export type BlockOutcome = { continue: Block } | { complete: Buffer } | { refuse: ResponseCode };

/**
 * Request bodies sent block-wise (Block1, RFC 7959 §2.3), put back together before the request is
 * served.
 *
 * The `coap` package reassembles them itself, but by token: libcoap's client sends each block with
 * a new token (RFC 7959 allows that; the blocks belong together by endpoint, URI and Request-Tag,
 * RFC 9175 §3), so its uploads never complete there. Here the blocks are matched the standard way,
 * by byte offset, and the package only ever sees the whole request.
 */
export class Block1Assembly {
  private readonly uploads = new Map<string, { parts: Buffer[]; bytes: number; expires: number }>();

  constructor(
    private readonly maxBodySize: number,
    private readonly now: () => number,
    private readonly lifetimeMs: number,
  ) {}

  take(packet: ParsedPacket, peer: Peer, block: Block): BlockOutcome {
    const key = uploadKey(packet, peer);
    const offset = block.num * block.size;
    const now = this.now();
    let upload = this.uploads.get(key);
    if (offset === 0) {
      upload = { parts: [], bytes: 0, expires: 0 };
    } else if (!upload || upload.expires <= now || upload.bytes !== offset) {
      // A block out of order, or of an upload we no longer hold [RFC 7959 §2.9.2].
      this.uploads.delete(key);
      return { refuse: Code.REQUEST_ENTITY_INCOMPLETE };
    }
    upload.parts.push(packet.payload);
    upload.bytes += packet.payload.length;
    if (upload.bytes > this.maxBodySize) {
      this.uploads.delete(key);
      return { refuse: Code.REQUEST_ENTITY_TOO_LARGE };
    }
    this.uploads.delete(key);
    if (!block.more) return { complete: Buffer.concat(upload.parts) };
    upload.expires = now + this.lifetimeMs;
    // Re-inserted, so the map stays in order of last activity: the stale ones are at the front.
    this.uploads.set(key, upload);
    for (const [k, u] of this.uploads) {
      if (u.expires > now && this.uploads.size <= MAX_UPLOADS) break;
      this.uploads.delete(k);
    }
    return { continue: { num: block.num, more: true, size: block.size } };
  }

  clear(): void {
    this.uploads.clear();
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
