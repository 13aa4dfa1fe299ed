import type { BlobReader } from '../../store/blob-reader';

/**
 * Pages of package files recently read, shared by every download of the same package: a block
 * of a download is then a slice of a page in memory, not a trip to the thread pool. CoAP asks for
 * its blocks one at a time (stop-and-wait, RFC 7959 §2.4), so a 16 KB page read once serves 16 to
 * 64 requests.
 *
 * Bounded: at most `maxBytes` in all (OTA_COAP_PAGE_CACHE_BYTES), the least recently used page
 * dropped first; a read straddling two pages, or with the cache off (0), goes to the file.
 */
export class PackagePages {
  /** `ready` once the read finished, so that a block of a page in memory is served without a promise. */
  private readonly pages = new Map<string, { bytes: Promise<Buffer>; ready: Buffer | null; length: number }>();
  private held = 0;

  constructor(
    private readonly reader: BlobReader,
    private readonly maxBytes: number,
    private readonly pageSize = 16 * 1024,
  ) {}

  /** Bytes `[start, end)` of the blob of `size` bytes. */
  async read(sha256: string, size: number, start: number, end: number): Promise<Buffer> {
    const index = Math.floor(start / this.pageSize);
    if (this.maxBytes < this.pageSize || Math.floor((end - 1) / this.pageSize) !== index) return this.reader.read(sha256, start, end);
    const key = `${sha256}/${index}`;
    const pageStart = index * this.pageSize;
    let page = this.pages.get(key);
    if (page) {
      // Re-inserted: the map stays in order of last use, the least recent first.
      this.pages.delete(key);
      this.pages.set(key, page);
    } else {
      const length = Math.min(pageStart + this.pageSize, size) - pageStart;
      const entry: { bytes: Promise<Buffer>; ready: Buffer | null; length: number } = { bytes: this.reader.read(sha256, pageStart, pageStart + length), ready: null, length };
      page = entry;
      this.pages.set(key, entry);
      this.held += length;
      entry.bytes.then(
        (b) => (entry.ready = b),
        () => this.drop(key, entry),
      );
      for (const [k, p] of this.pages) {
        if (this.held <= this.maxBytes) break;
        this.drop(k, p);
      }
    }
    return (await page.bytes).subarray(start - pageStart, end - pageStart);
  }

  /**
   * Bytes `[start, end)` when their page is in memory already, else undefined (then `read`): the
   * block path of a download answers from here in the turn its request arrived.
   */
  cached(sha256: string, start: number, end: number): Buffer | undefined {
    const index = Math.floor(start / this.pageSize);
    if (Math.floor((end - 1) / this.pageSize) !== index) return undefined;
    const key = `${sha256}/${index}`;
    const page = this.pages.get(key);
    if (!page?.ready) return undefined;
    this.pages.delete(key);
    this.pages.set(key, page);
    const pageStart = index * this.pageSize;
    return page.ready.subarray(start - pageStart, end - pageStart);
  }

  /** Bytes held now. */
  get size(): number {
    return this.held;
  }

  /** Forgets every page (a package changed or was deleted; the transport stops). */
  clear(): void {
    this.pages.clear();
    this.held = 0;
  }

  private drop(key: string, entry: { length: number }): void {
    if (this.pages.get(key) !== entry) return;
    this.pages.delete(key);
    this.held -= entry.length;
  }
}
