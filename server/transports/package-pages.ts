import type { BlobReader } from '../store/blob-reader';

interface Page {
  bytes: Promise<Buffer>;
  /** The bytes once read, so that a block of a page in memory is served without a promise. */
  ready: Buffer | null;
  length: number;
}

/**
 * Pages of package files recently read, shared by every download of the same package: a block
 * of a download is then a slice of a page in memory, not a trip to the thread pool. CoAP asks for
 * its blocks one at a time (stop-and-wait, RFC 7959 §2.4), so a 16 KB page read once serves 16 to
 * 64 requests; and a download past the middle of a page has the next one read ahead, so that the
 * blocks of a download read in order all come from memory.
 *
 * Bounded: at most `maxBytes` in all (OTA_COAP_PAGE_CACHE_BYTES), the least recently used page
 * dropped first; a read straddling two pages, or with the cache off (0), goes to the file.
 */
export class PackagePages {
  private readonly pages = new Map<string, Page>();
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
    const page = this.touch(sha256, index) ?? this.load(sha256, size, index);
    const pageStart = index * this.pageSize;
    return (await page.bytes).subarray(start - pageStart, end - pageStart);
  }

  /**
   * Bytes `[start, end)` of the blob of `size` bytes when their page is in memory already, else
   * undefined (then `read`): the block path of a download answers from here in the turn its
   * request arrived.
   */
  cached(sha256: string, size: number, start: number, end: number): Buffer | undefined {
    const index = Math.floor(start / this.pageSize);
    if (Math.floor((end - 1) / this.pageSize) !== index) return undefined;
    const page = this.touch(sha256, index);
    if (!page?.ready) return undefined;
    const pageStart = index * this.pageSize;
    // Past the middle of the page: the next one is read while this one is served.
    const next = pageStart + this.pageSize;
    if (end - pageStart > this.pageSize / 2 && next < size && !this.pages.has(`${sha256}/${index + 1}`)) this.load(sha256, size, index + 1);
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

  /** The page if it is held, made the most recently used (the map stays in order of last use, the least recent first). */
  private touch(sha256: string, index: number): Page | undefined {
    const key = `${sha256}/${index}`;
    const page = this.pages.get(key);
    if (page) {
      this.pages.delete(key);
      this.pages.set(key, page);
    }
    return page;
  }

  private load(sha256: string, size: number, index: number): Page {
    const key = `${sha256}/${index}`;
    const pageStart = index * this.pageSize;
    const length = Math.min(pageStart + this.pageSize, size) - pageStart;
    const page: Page = { bytes: this.reader.read(sha256, pageStart, pageStart + length), ready: null, length };
    this.pages.set(key, page);
    this.held += length;
    page.bytes.then(
      (b) => (page.ready = b),
      () => this.drop(key, page),
    );
    for (const [k, p] of this.pages) {
      if (this.held <= this.maxBytes) break;
      this.drop(k, p);
    }
    return page;
  }

  private drop(key: string, page: Page): void {
    if (this.pages.get(key) !== page) return;
    this.pages.delete(key);
    this.held -= page.length;
  }
}
