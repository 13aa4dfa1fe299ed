import { open, type FileHandle } from 'node:fs/promises';

interface Entry {
  handle: Promise<FileHandle>;
  reads: number;
}

/**
 * Chunks of package files, each read from the blob store when it is asked for, with one
 * positional read on a file handle shared by every connection downloading the same blob. A
 * stream per chunk (open, read, close) costs three trips to the thread pool, as long as the whole
 * network round trip of a 4 KB chunk on loopback; one `pread` costs one. Nothing of a package is
 * kept in memory: only the chunk being sent.
 *
 * Handles stay open for the blobs in use, at most `max` of them (the least recently read is
 * closed first); `forget` closes one at once (its package was deleted), `close` all of them.
 */
export class BlobReader {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly pathOf: (sha256: string) => string,
    private readonly max = 32,
  ) {}

  /**
   * Bytes `[start, end)` of the blob. Rejects when the blob cannot be read (gone, say). `into`, at
   * least `end - start` bytes long, is read into and its start answered instead of a new buffer:
   * a large buffer made afresh for every read costs the kernel more than the read (its pages are
   * mapped and faulted in each time).
   */
  async read(sha256: string, start: number, end: number, into?: Buffer): Promise<Buffer> {
    const entry = this.entry(sha256);
    entry.reads += 1;
    try {
      const handle = await entry.handle;
      const buf = into ? into.subarray(0, end - start) : Buffer.allocUnsafe(end - start);
      let filled = 0;
      while (filled < buf.length) {
        const { bytesRead } = await handle.read(buf, filled, buf.length - filled, start + filled);
        if (bytesRead === 0) throw new Error(`blob ${sha256} ends at ${start + filled}, before ${end}`);
        filled += bytesRead;
      }
      return buf;
    } catch (err) {
      // A handle that failed to open is not kept: the next read tries again.
      if (
        this.entries.get(sha256) === entry &&
        (await entry.handle.then(
          () => false,
          () => true,
        ))
      )
        this.entries.delete(sha256);
      throw err;
    } finally {
      entry.reads -= 1;
      this.trim();
    }
  }

  /** Closes the blob's handle (its package was deleted); a later read opens it again. */
  forget(sha256: string): void {
    const entry = this.entries.get(sha256);
    if (!entry) return;
    this.entries.delete(sha256);
    void closeWhenIdle(entry);
  }

  /** Closes every handle, once the reads in progress are done. */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map(closeWhenIdle));
  }

  private entry(sha256: string): Entry {
    let entry = this.entries.get(sha256);
    if (entry) {
      // Most recently used last: Map keeps insertion order.
      this.entries.delete(sha256);
    } else {
      entry = { handle: open(this.pathOf(sha256), 'r'), reads: 0 };
      entry.handle.catch(() => undefined);
    }
    this.entries.set(sha256, entry);
    return entry;
  }

  private trim(): void {
    for (const [sha, entry] of this.entries) {
      if (this.entries.size <= this.max) return;
      if (entry.reads > 0) continue;
      this.entries.delete(sha);
      void closeWhenIdle(entry);
    }
  }
}

/** Closes an entry's handle after its reads in progress (they hold their own reference to it). */
async function closeWhenIdle(entry: Entry): Promise<void> {
  const handle = await entry.handle.catch(() => null);
  if (!handle) return;
  while (entry.reads > 0) await new Promise((r) => setImmediate(r));
  await handle.close().catch(() => undefined);
}
