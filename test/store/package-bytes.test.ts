/**
 * Package bytes in PostgreSQL (PgPackageBytes) and the blob store of instances sharing it
 * (PgBlobStore: bytes in PostgreSQL, a local cache per instance), on a real database and temp dirs.
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type pg from 'pg';
import { BlobStore } from '../../server/store/blob-store';
import { PgPackageBytes } from '../../server/store/postgres/package-bytes';
import { PgBlobStore } from '../../server/store/postgres/pg-blob-store';
import { openPool } from '../../server/store/postgres/pool';
import { withTestDatabase } from '../support/postgres';

const sha256Of = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream as AsyncIterable<Buffer>) parts.push(p);
  return Buffer.concat(parts);
}

/** A readable giving `data` in pieces of `piece` bytes. */
const pieces = (data: Buffer, piece: number): Readable =>
  Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += piece) yield data.subarray(i, i + piece);
    })(),
  );

async function countRows(pool: pg.Pool, sha256: string): Promise<{ blobs: number; chunks: number }> {
  const r = await pool.query<{ blobs: number; chunks: number }>(
    'SELECT (SELECT count(*) FROM package_blobs WHERE sha256 = $1) AS blobs, (SELECT count(*) FROM package_blob_chunks WHERE sha256 = $1) AS chunks',
    [sha256],
  );
  return r.rows[0];
}

describe('package bytes in PostgreSQL', () => {
  const database = withTestDatabase();
  let pool: pg.Pool;
  before(async () => {
    pool = await openPool({ connectionString: database().url, max: 6 });
  });
  after(async () => {
    await pool?.end();
  });

  describe('PgPackageBytes', () => {
    it('streams a package in and out byte for byte, in chunks of the configured size', async () => {
      const bytes = new PgPackageBytes(pool, 1000);
      const data = randomBytes(3500);
      expect(await bytes.write(sha256Of(data), pieces(data, 333))).to.equal(true);
      expect(await bytes.size(sha256Of(data))).to.equal(3500);
      expect(await countRows(pool, sha256Of(data))).to.deep.equal({ blobs: 1, chunks: 4 });
      expect((await collect(bytes.read(sha256Of(data)))).equals(data)).to.equal(true);
    });

    it('reads inclusive ranges within a chunk, across chunks and up to the last byte', async () => {
      const bytes = new PgPackageBytes(pool, 1000);
      const data = randomBytes(3500);
      await bytes.write(sha256Of(data), pieces(data, 4096));
      for (const [start, end] of [
        [0, 0],
        [10, 20],
        [999, 1000],
        [500, 2999],
        [3000, 3499],
        [3499, 3499],
        [1200, 9999],
      ]) {
        const got = await collect(bytes.read(sha256Of(data), { start, end }));
        expect(got.equals(data.subarray(start, end + 1)), `range ${start}-${end}`).to.equal(true);
      }
    });

    it('stores identical bytes once', async () => {
      const bytes = new PgPackageBytes(pool, 1000);
      const data = randomBytes(1500);
      expect(await bytes.write(sha256Of(data), pieces(data, 100))).to.equal(true);
      expect(await bytes.write(sha256Of(data), pieces(data, 100))).to.equal(false);
      expect(await countRows(pool, sha256Of(data))).to.deep.equal({ blobs: 1, chunks: 2 });
    });

    it('leaves nothing when the upload fails half-way', async () => {
      const bytes = new PgPackageBytes(pool, 1000);
      const sha = sha256Of(Buffer.from('never complete'));
      const failing = Readable.from(
        (function* () {
          yield randomBytes(2500);
          throw new Error('client went away');
        })(),
      );
      let err: unknown;
      await bytes.write(sha, failing).catch((e: unknown) => (err = e));
      expect((err as Error).message).to.equal('client went away');
      expect(await bytes.size(sha)).to.equal(null);
      expect(await countRows(pool, sha)).to.deep.equal({ blobs: 0, chunks: 0 });
    });

    it('answers a read of bytes it does not hold with ENOENT', async () => {
      const bytes = new PgPackageBytes(pool);
      const err = await collect(bytes.read('0'.repeat(64))).then(
        () => null,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err?.code).to.equal('ENOENT');
    });

    it('writes and reads a 64 MB package holding a few 1 MB chunks in memory at most', async function () {
      this.timeout(120_000);
      // Live memory, measured after full collections (two: the first leaves freed buffers to a
      // sweeper running alongside), so garbage not yet collected does not count.
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      const live = (): number => {
        gc();
        gc();
        const m = process.memoryUsage();
        return m.heapUsed + m.arrayBuffers;
      };
      const MB = 1024 * 1024;
      const total = 64 * MB;
      // Deterministic content made on the fly: the test holds no copy of the package either.
      const blockBytes = (i: number): Buffer => Buffer.alloc(MB, createHash('sha512').update(String(i)).digest());
      const hash = createHash('sha256');
      for (let i = 0; i < total / MB; i++) hash.update(blockBytes(i));
      const sha = hash.digest('hex');
      const small = await openPool({ connectionString: database().url, max: 2 });
      try {
        const bytes = new PgPackageBytes(small);
        const baseline = live();
        let peak = 0;
        const source = Readable.from(
          (function* () {
            for (let i = 0; i < total / MB; i++) {
              peak = Math.max(peak, live() - baseline);
              yield blockBytes(i);
            }
          })(),
          { objectMode: false, highWaterMark: MB },
        );
        expect(await bytes.write(sha, source)).to.equal(true);
        const check = createHash('sha256');
        let read = 0;
        for await (const piece of bytes.read(sha) as AsyncIterable<Buffer>) {
          check.update(piece);
          read += piece.length;
          if (read % (8 * MB) < piece.length) peak = Math.max(peak, live() - baseline);
        }
        expect(read).to.equal(total);
        expect(check.digest('hex')).to.equal(sha);
        expect(peak, `peak live memory ${(peak / MB).toFixed(1)} MB`).to.be.below(8 * MB);
      } finally {
        await small.end();
      }
    });
  });

  describe('PgBlobStore', () => {
    let dir: string;
    let stores: PgBlobStore[];
    /** An instance: its own data directory (cache), the shared database. */
    async function instance(name: string): Promise<PgBlobStore> {
      const store = new PgBlobStore(path.join(dir, name), new PgPackageBytes(pool, 64 * 1024), pool);
      await store.init();
      stores.push(store);
      return store;
    }
    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'ota-pg-blobs-'));
      stores = [];
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('is a BlobStore the existing callers take', async () => {
      const store: BlobStore = await instance('a');
      expect(store).to.be.instanceOf(BlobStore);
    });

    it('an upload on one instance downloads on another, from its local cache after the first fetch', async () => {
      const a = await instance('a');
      const b = await instance('b');
      const data = randomBytes(200_000);
      const staged = await a.stage(pieces(data, 7000), { maxSize: 1e6 });
      await a.commit(staged, async () => undefined);
      const sha = staged.sha256;
      expect(await b.size(sha)).to.equal(200_000);
      expect(existsSync(b.pathOf(sha))).to.equal(false);
      expect((await collect(b.read(sha, { start: 100, end: 150_000 }))).equals(data.subarray(100, 150_001))).to.equal(true);
      expect((await readFile(b.pathOf(sha))).equals(data)).to.equal(true);
      // With the database's copy gone, the cache still serves the bytes: no second fetch.
      await pool.query('DELETE FROM package_blobs WHERE sha256 = $1', [sha]);
      expect((await collect(b.read(sha))).equals(data)).to.equal(true);
    });

    it('its reader fetches a missing blob, then reads chunks by position', async () => {
      const a = await instance('a');
      const b = await instance('b');
      const data = randomBytes(100_000);
      const staged = await a.stage(pieces(data, 10_000), { maxSize: 1e6 });
      await a.commit(staged, async () => undefined);
      const reader = b.reader();
      try {
        const [x, y] = await Promise.all([reader.read(staged.sha256, 0, 4096), reader.read(staged.sha256, 65_000, 70_000)]);
        expect(x.equals(data.subarray(0, 4096))).to.equal(true);
        expect(y.equals(data.subarray(65_000, 70_000))).to.equal(true);
      } finally {
        await reader.close();
      }
    });

    it('a package record that fails leaves the bytes nowhere', async () => {
      const a = await instance('a');
      const data = randomBytes(10_000);
      const staged = await a.stage(pieces(data, 1000), { maxSize: 1e6 });
      const err = await a.commit(staged, async () => Promise.reject(new Error('title taken'))).catch((e: Error) => e);
      expect((err as Error).message).to.equal('title taken');
      expect(await countRows(pool, staged.sha256)).to.deep.equal({ blobs: 0, chunks: 0 });
      expect(existsSync(a.pathOf(staged.sha256))).to.equal(false);
      expect(existsSync(staged.tempPath)).to.equal(false);
    });

    it('a rejected upload never reaches the database', async () => {
      const a = await instance('a');
      const data = randomBytes(5000);
      const err = await a.stage(pieces(data, 1000), { maxSize: 4000 }).catch((e: Error) => e);
      expect((err as Error).name).to.equal('BlobTooLargeError');
      expect(await countRows(pool, sha256Of(data))).to.deep.equal({ blobs: 0, chunks: 0 });
    });

    it('removes the bytes from the database when the last package using them goes', async () => {
      const a = await instance('a');
      const data = randomBytes(3000);
      const staged = await a.stage(pieces(data, 1000), { maxSize: 1e6 });
      await a.commit(staged, async () => undefined);
      await a.release(
        staged.sha256,
        async () => undefined,
        async () => true,
      );
      expect((await countRows(pool, staged.sha256)).blobs).to.equal(1);
      await a.release(
        staged.sha256,
        async () => undefined,
        async () => false,
      );
      expect(await countRows(pool, staged.sha256)).to.deep.equal({ blobs: 0, chunks: 0 });
      expect(existsSync(a.pathOf(staged.sha256))).to.equal(false);
    });

    it('two instances uploading the same bytes at once store them once, and both packages read them', async () => {
      const a = await instance('a');
      const b = await instance('b');
      const data = randomBytes(300_000);
      const [sa, sb] = await Promise.all([a.stage(pieces(data, 5000), { maxSize: 1e6 }), b.stage(pieces(data, 7000), { maxSize: 1e6 })]);
      const recorded: string[] = [];
      await Promise.all([a.commit(sa, async () => recorded.push('a')), b.commit(sb, async () => recorded.push('b'))]);
      expect(recorded.sort()).to.deep.equal(['a', 'b']);
      expect(await countRows(pool, sa.sha256)).to.deep.equal({ blobs: 1, chunks: 5 });
      const c = await instance('c');
      expect((await collect(c.read(sa.sha256))).equals(data)).to.equal(true);
    });

    it('a delete on one instance and an upload of the same bytes on another take turns: the bytes stay for the new package', async () => {
      const a = await instance('a');
      const b = await instance('b');
      const data = randomBytes(100_000);
      const first = await a.stage(pieces(data, 5000), { maxSize: 1e6 });
      let packages = 0;
      await a.commit(first, async () => packages++);
      const again = await b.stage(pieces(data, 5000), { maxSize: 1e6 });
      // The delete forgets its package and asks whether another uses the bytes; the upload records one.
      await Promise.all([
        a.release(
          first.sha256,
          async () => void packages--,
          async () => packages > 0,
        ),
        b.commit(again, async () => packages++),
      ]);
      expect(packages).to.equal(1);
      expect(await countRows(pool, first.sha256)).to.deep.equal({ blobs: 1, chunks: 2 });
      const c = await instance('c');
      expect((await collect(c.read(first.sha256))).equals(data)).to.equal(true);
    });

    it('refuses to cache bytes that do not match their name', async () => {
      const a = await instance('a');
      const b = await instance('b');
      const data = randomBytes(3000);
      const staged = await a.stage(pieces(data, 1000), { maxSize: 1e6 });
      await a.commit(staged, async () => undefined);
      await pool.query("UPDATE package_blob_chunks SET data = '\\x00'::bytea || substring(data FROM 2) WHERE sha256 = $1 AND seq = 0", [staged.sha256]);
      const err = await collect(b.read(staged.sha256)).catch((e: Error) => e);
      expect((err as Error).message).to.match(/read back as/);
      expect(existsSync(b.pathOf(staged.sha256))).to.equal(false);
    });

    it('answers a read of a blob stored nowhere with ENOENT', async () => {
      const a = await instance('a');
      const err = await collect(a.read('1'.repeat(64))).catch((e: NodeJS.ErrnoException) => e);
      expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
    });
  });
});
