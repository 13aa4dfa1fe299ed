import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHasher, type ChecksumAlgorithm, type Hasher } from '../packages/checksum';
import { BlobReader } from './blob-reader';

/** Bytes received so far are over the limit; the staged file is already gone. */
export class BlobTooLargeError extends Error {
  constructor(readonly maxSize: number) {
    super(`more than ${maxSize} bytes`);
    this.name = 'BlobTooLargeError';
  }
}

/** An upload written to a temporary file, not yet visible under its content name. */
export interface StagedBlob {
  readonly tempPath: string;
  readonly size: number;
  readonly sha256: string;
  /** The checksums computed while the bytes streamed in (SHA256 always). */
  readonly checksums: Partial<Record<ChecksumAlgorithm, string>>;
}

/**
 * Content-addressed package bytes: `<root>/<aa>/<sha256>`. Uploads stream into `<root>/tmp`, are
 * fsynced, then renamed, so a crash or a rejected upload never leaves a visible partial blob, and
 * identical bytes are stored once. SQLite is not used for bytes: its blobs stop at 1 GB.
 */
export class BlobStore {
  private readonly tmpDir: string;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly root: string) {
    this.tmpDir = path.join(root, 'tmp');
  }

  /** Creates the folders and removes what interrupted uploads left in `tmp`. */
  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    for (const name of await readdir(this.tmpDir)) await rm(path.join(this.tmpDir, name), { force: true, recursive: true });
  }

  pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a blob name: ${sha256}`);
    return path.join(this.root, sha256.slice(0, 2), sha256);
  }

  /**
   * Streams `source` into a temporary file while computing SHA-256 (the blob's name) and the extra
   * `algorithms`. Past `maxSize` bytes it stops reading, removes the file and throws
   * BlobTooLargeError; on any other failure the file is removed too.
   */
  async stage(source: Readable, opts: { maxSize: number; algorithms?: readonly ChecksumAlgorithm[] }): Promise<StagedBlob> {
    const algorithms = new Set<ChecksumAlgorithm>(['SHA256', ...(opts.algorithms ?? [])]);
    const hashers = new Map<ChecksumAlgorithm, Hasher>([...algorithms].map((a) => [a, createHasher(a)]));
    const tempPath = path.join(this.tmpDir, `${randomUUID()}.part`);
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        size += chunk.length;
        if (size > opts.maxSize) return callback(new BlobTooLargeError(opts.maxSize));
        for (const h of hashers.values()) h.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      // `flush: true` fsyncs before close: the bytes are on disk before the rename makes them visible.
      await pipeline(source, meter, createWriteStream(tempPath, { flush: true }));
    } catch (err) {
      await rm(tempPath, { force: true });
      throw err;
    }
    const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
    for (const [a, h] of hashers) checksums[a] = h.digest();
    return { tempPath, size, sha256: checksums.SHA256 as string, checksums };
  }

  async discard(staged: StagedBlob): Promise<void> {
    await rm(staged.tempPath, { force: true });
  }

  /**
   * Makes a staged blob visible under its SHA-256 name (or drops it when those bytes are already
   * stored), then runs `record` — the metadata commit — before anyone can remove the blob again.
   * When `record` fails, a blob this call made visible is removed again: nothing refers to it.
   */
  async commit<T>(staged: StagedBlob, record: () => Promise<T>): Promise<T> {
    return this.withLock(staged.sha256, async () => {
      const target = this.pathOf(staged.sha256);
      const created = !(await exists(target));
      if (created) {
        await mkdir(path.dirname(target), { recursive: true });
        await rename(staged.tempPath, target);
        await fsyncDir(path.dirname(target));
      } else {
        await unlink(staged.tempPath);
      }
      try {
        return await record();
      } catch (err) {
        // Under the blob's lock no other package can have started using a blob we just created.
        if (created) await rm(target, { force: true });
        throw err;
      }
    });
  }

  /**
   * Runs `forget` (the metadata delete) and then removes the blob if `stillUsed` says no package
   * refers to it any more; both under the blob's lock, so a concurrent upload of the same bytes
   * cannot commit against a file that is being removed.
   */
  async release(sha256: string, forget: () => Promise<void>, stillUsed: () => Promise<boolean>): Promise<void> {
    await this.withLock(sha256, async () => {
      await forget();
      if (!(await stillUsed())) await rm(this.pathOf(sha256), { force: true });
    });
  }

  async size(sha256: string): Promise<number> {
    return (await stat(this.pathOf(sha256))).size;
  }

  /** Reads `[start, end]` inclusive, as fs ranges do; the whole blob by default. */
  read(sha256: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.pathOf(sha256), range ? { start: range.start, end: range.end } : {});
  }

  /** Positional chunk reads (MQTT, CoAP) of the blobs this store holds, at most `max` files open. */
  reader(max?: number): BlobReader {
    return new BlobReader((sha) => this.pathOf(sha), max);
  }

  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.locks.set(key, settled);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    }
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

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
