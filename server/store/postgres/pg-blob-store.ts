import { createHash, randomUUID } from 'node:crypto';
import fs, { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { BlobReader } from '../blob-reader';
import { BlobStore, type StagedBlob } from '../blob-store';
import type { PgPackageBytes } from './package-bytes';

/** Advisory-lock namespace for blobs (any number, the same on every instance). */
const BLOB_LOCK_NAMESPACE = 0x07a_0002;

/**
 * The blob store of instances sharing PostgreSQL: the bytes live in PostgreSQL (PgPackageBytes),
 * every instance keeps a local cache by checksum under `root` (its data directory), so downloads
 * read local files after the first fetch. It is a BlobStore, so the package service, the HTTP
 * download and the transports use it unchanged:
 *
 * - `stage`/`discard` are the local ones: an upload is checked (size, checksums) on local disk
 *   before PostgreSQL sees a byte.
 * - `commit` copies the staged file into PostgreSQL, then makes it visible locally and records the
 *   package; `release` removes the bytes from PostgreSQL too when no package uses them. Both hold a
 *   PostgreSQL advisory lock on the blob, so uploads and deletes of the same bytes on different
 *   instances take turns as they do within one process.
 * - `read` and `reader()` fetch a blob missing from the cache first. Cached blobs are never wrong:
 *   they are named by their SHA-256 and verified when fetched.
 */
export class PgBlobStore extends BlobStore {
  private readonly fetches = new Map<string, Promise<string>>();
  private readonly fetchDir: string;

  constructor(
    root: string,
    private readonly bytes: PgPackageBytes,
    private readonly pool: pg.Pool,
  ) {
    super(root);
    // Inside the base class's tmp folder, which init() empties of what an interrupted run left.
    this.fetchDir = path.join(root, 'tmp');
  }

  override async commit<T>(staged: StagedBlob, record: () => Promise<T>): Promise<T> {
    return this.withClusterLock(staged.sha256, async () => {
      const created = await this.bytes.write(staged.sha256, createReadStream(staged.tempPath));
      try {
        return await super.commit(staged, record);
      } catch (err) {
        if (created) await this.bytes.delete(staged.sha256);
        throw err;
      }
    });
  }

  override async release(sha256: string, forget: () => Promise<void>, stillUsed: () => Promise<boolean>): Promise<void> {
    await this.withClusterLock(sha256, async () => {
      let used = true;
      await super.release(sha256, forget, async () => (used = await stillUsed()));
      if (!used) await this.bytes.delete(sha256);
    });
  }

  override async size(sha256: string): Promise<number> {
    const size = await this.bytes.size(sha256);
    if (size === null) throw Object.assign(new Error(`package blob ${sha256} is not stored`), { code: 'ENOENT' });
    return size;
  }

  /**
   * Reads `[start, end]` inclusive from the local copy, fetched first when missing. The return type
   * is the base class's fs.ReadStream; its `fs.open` hook waits for the fetch, so a caller gets the
   * stream at once and the first bytes once the blob is local.
   */
  override read(sha256: string, range?: { start: number; end: number }): ReadStream {
    const local = this.pathOf(sha256);
    const open = (file: string, flags: string, mode: number, callback: (err: NodeJS.ErrnoException | null, fd?: number) => void): void => {
      this.fetch(sha256).then(
        () => fs.open(file, flags, mode, callback),
        (err: NodeJS.ErrnoException) => callback(err),
      );
    };
    return createReadStream(local, { ...(range ? { start: range.start, end: range.end } : {}), fs: { open, read: fs.read, close: fs.close } });
  }

  /** A BlobReader over the local cache that fetches a missing blob before reading it. */
  override reader(max?: number): BlobReader {
    return new CachingBlobReader(this, max);
  }

  /**
   * The local path of the blob, fetching it from PostgreSQL when it is not cached yet. Concurrent
   * calls for one blob share one fetch. The bytes stream into a temporary file and are checked
   * against their SHA-256 before the rename makes them visible.
   */
  async fetch(sha256: string): Promise<string> {
    const local = this.pathOf(sha256);
    if (await exists(local)) return local;
    let running = this.fetches.get(sha256);
    if (!running) {
      running = this.download(sha256, local).finally(() => this.fetches.delete(sha256));
      this.fetches.set(sha256, running);
    }
    return running;
  }

  private async download(sha256: string, local: string): Promise<string> {
    await mkdir(this.fetchDir, { recursive: true });
    const temp = path.join(this.fetchDir, `${randomUUID()}.fetch`);
    const hash = createHash('sha256');
    const verify = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
      flush(callback) {
        const actual = hash.digest('hex');
        callback(actual === sha256 ? null : new Error(`package blob ${sha256} read back as ${actual}: not cached`));
      },
    });
    try {
      await pipeline(this.bytes.read(sha256), verify, createWriteStream(temp, { flush: true }));
      await mkdir(path.dirname(local), { recursive: true });
      await rename(temp, local);
      return local;
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /**
   * Runs `fn` holding a session advisory lock on the blob. The lock's connection stays checked out
   * meanwhile, so the pool needs room for it and for what `fn` runs (at least 3 connections).
   */
  private async withClusterLock<T>(sha256: string, fn: () => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [BLOB_LOCK_NAMESPACE, sha256]);
      try {
        return await fn();
      } finally {
        // A connection that cannot unlock is dropped: its session's locks go with it.
        await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [BLOB_LOCK_NAMESPACE, sha256]).catch((err: Error) => (broken = err));
      }
    } finally {
      client.release(broken);
    }
  }
}

/** BlobReader's positional reads on local files, after making sure the file is local. */
class CachingBlobReader extends BlobReader {
  constructor(
    private readonly store: PgBlobStore,
    max?: number,
  ) {
    super((sha) => store.pathOf(sha), max);
  }

  override async read(sha256: string, start: number, end: number, into?: Buffer): Promise<Buffer> {
    await this.store.fetch(sha256);
    return super.read(sha256, start, end, into);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
