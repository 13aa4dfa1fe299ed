import { Readable } from 'node:stream';
import type pg from 'pg';
import { transaction } from './pool';

/** Bytes per stored chunk: what one row, one query and one buffer hold. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

const SHA256 = /^[0-9a-f]{64}$/;

function checkName(sha256: string): void {
  if (!SHA256.test(sha256)) throw new Error(`not a blob name: ${sha256}`);
}

/**
 * Package bytes in PostgreSQL, where every instance reads them (ThingsBoard keeps them in its
 * database too): `package_blobs` names a blob by SHA-256, `package_blob_chunks` holds its bytes in
 * rows of at most `chunkSize` bytes. A write is one transaction, so a failed or interrupted upload
 * leaves nothing; memory holds one chunk at a time however large the package (PostgreSQL's own
 * bytea limit of 1 GB per value never applies). Bytea rather than large objects: rows are
 * replicated and dumped like any other and deleted with their blob by a cascade.
 */
export class PgPackageBytes {
  constructor(
    private readonly pool: pg.Pool,
    readonly chunkSize = DEFAULT_CHUNK_SIZE,
  ) {
    if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new Error(`chunk size must be a positive integer, not ${chunkSize}`);
  }

  /**
   * Stores `source` under `sha256` (the caller computed it: the bytes are not hashed again here).
   * False, without reading `source`, when the blob is already stored. Two instances writing the same
   * blob at once: the second waits on the first's row and then finds it stored.
   */
  async write(sha256: string, source: Readable): Promise<boolean> {
    checkName(sha256);
    return transaction(this.pool, async (client) => {
      const claimed = await client.query('INSERT INTO package_blobs (sha256, size, chunk_size, created_time) VALUES ($1, 0, $2, $3) ON CONFLICT (sha256) DO NOTHING', [
        sha256,
        this.chunkSize,
        Date.now(),
      ]);
      if (claimed.rowCount === 0) {
        source.destroy();
        return false;
      }
      let seq = 0;
      let size = 0;
      const insert = (data: Buffer): Promise<unknown> => client.query('INSERT INTO package_blob_chunks (sha256, seq, data) VALUES ($1, $2, $3)', [sha256, seq++, data]);
      // Awaiting each insert inside the loop is the back-pressure: the source is not read meanwhile.
      let pending: Buffer[] = [];
      let pendingSize = 0;
      for await (const piece of source as AsyncIterable<Buffer>) {
        let rest = piece;
        while (rest.length > 0) {
          const take = Math.min(rest.length, this.chunkSize - pendingSize);
          pending.push(rest.subarray(0, take));
          pendingSize += take;
          rest = rest.subarray(take);
          if (pendingSize === this.chunkSize) {
            await insert(Buffer.concat(pending, pendingSize));
            size += pendingSize;
            pending = [];
            pendingSize = 0;
          }
        }
      }
      if (pendingSize > 0) {
        await insert(Buffer.concat(pending, pendingSize));
        size += pendingSize;
      }
      await client.query('UPDATE package_blobs SET size = $2 WHERE sha256 = $1', [sha256, size]);
      return true;
    });
  }

  /** The blob's size in bytes, null when it is not stored. */
  async size(sha256: string): Promise<number | null> {
    checkName(sha256);
    const r = (await this.pool.query<{ size: number }>('SELECT size FROM package_blobs WHERE sha256 = $1', [sha256])).rows[0];
    return r ? r.size : null;
  }

  /**
   * Streams bytes `[start, end]` inclusive (fs ranges' convention), the whole blob by default, one
   * chunk per query as the consumer reads. Errors when the blob is not stored or the range passes its end.
   */
  read(sha256: string, range?: { start: number; end: number }): Readable {
    checkName(sha256);
    return Readable.from(this.pieces(sha256, range), { objectMode: false, highWaterMark: this.chunkSize });
  }

  /** Removes the blob and its chunks. */
  async delete(sha256: string): Promise<void> {
    checkName(sha256);
    await this.pool.query('DELETE FROM package_blobs WHERE sha256 = $1', [sha256]);
  }

  private async *pieces(sha256: string, range?: { start: number; end: number }): AsyncGenerator<Buffer> {
    const blob = (await this.pool.query<{ size: number; chunk_size: number }>('SELECT size, chunk_size FROM package_blobs WHERE sha256 = $1', [sha256])).rows[0];
    if (!blob) throw Object.assign(new Error(`package blob ${sha256} is not stored`), { code: 'ENOENT' });
    const start = range?.start ?? 0;
    const end = range ? Math.min(range.end, blob.size - 1) : blob.size - 1;
    if (start < 0 || !Number.isInteger(start) || !Number.isInteger(end)) throw new RangeError(`bad range ${start}-${end}`);
    for (let seq = Math.floor(start / blob.chunk_size); seq * blob.chunk_size <= end; seq++) {
      const chunkStart = seq * blob.chunk_size;
      const from = Math.max(start - chunkStart, 0);
      const to = Math.min(end - chunkStart, blob.chunk_size - 1);
      // substring is 1-based; PostgreSQL sends only the part asked for.
      const row = (
        await this.pool.query<{ data: Buffer }>('SELECT substring(data FROM $3 FOR $4) AS data FROM package_blob_chunks WHERE sha256 = $1 AND seq = $2', [
          sha256,
          seq,
          from + 1,
          to - from + 1,
        ])
      ).rows[0];
      if (!row) throw new Error(`package blob ${sha256} lacks chunk ${seq}`);
      yield row.data;
    }
  }
}
