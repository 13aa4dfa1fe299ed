import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlobReader } from '../../server/store/blob-reader';
import {
  CHUNKS_PER_SMALL_WINDOW,
  CHUNKS_PER_WINDOW,
  ChunkReadAhead,
  READ_AHEAD_WINDOW,
  ReadAheadBudget,
  readAheadBytesFromEnv,
} from '../../server/transports/mqtt/chunk-read-ahead';
import { chunkRange } from '../../server/transports/firmware-download';

/** A blob reader over real files that counts its reads. */
class CountingReader extends BlobReader {
  reads = 0;
  override read(sha256: string, start: number, end: number, into?: Buffer): Promise<Buffer> {
    this.reads += 1;
    return super.read(sha256, start, end, into);
  }
}

describe('MQTT chunk read-ahead', () => {
  const SHA = 'a'.repeat(64);
  const OTHER = 'b'.repeat(64);
  const BIG = 'd'.repeat(64);
  const data = randomBytes(300_000);
  const big = randomBytes(10 * READ_AHEAD_WINDOW + 1000);
  let dir: string;
  let reader: CountingReader;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-read-ahead-'));
    await writeFile(path.join(dir, SHA), data);
    await writeFile(path.join(dir, OTHER), data.subarray(0, 1000));
    await writeFile(path.join(dir, BIG), big);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    reader = new CountingReader((sha) => path.join(dir, sha));
  });

  afterEach(async () => {
    await reader.close();
  });

  /** Every chunk of `size` in order, until the empty one past the end, as a device asks. */
  async function download(ahead: ChunkReadAhead, size: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let i = 0; ; i++) {
      const { start, end } = chunkRange(data.length, size, i);
      if (end === start) return Buffer.concat(parts);
      parts.push(Buffer.from(await ahead.read(SHA, start, end, data.length)));
    }
  }

  for (const size of [1000, 4096, 16384, 65536, 70_000]) {
    it(`serves exactly the blob's bytes in chunks of ${size}`, async () => {
      const budget = new ReadAheadBudget(1024 * 1024);
      expect((await download(new ChunkReadAhead(reader, budget), size)).equals(data)).to.equal(true);
    });
  }

  it('reads small chunks many to a read', async () => {
    const ahead = new ChunkReadAhead(reader, new ReadAheadBudget(1024 * 1024));
    await download(ahead, 4096);
    // 74 chunks of 4 KiB, from as many reads as windows cover the 300,000 bytes.
    expect(reader.reads).to.equal(Math.ceil(data.length / READ_AHEAD_WINDOW));
  });

  it('holds at most two windows, within the budget, and gives them back when cleared', async () => {
    const budget = new ReadAheadBudget(1024 * 1024);
    const ahead = new ChunkReadAhead(reader, budget);
    await ahead.read(SHA, 0, 4096, data.length);
    expect(budget.held).to.equal(Math.min(2 * READ_AHEAD_WINDOW, data.length));
    ahead.clear();
    expect(budget.held).to.equal(0);
  });

  it('reads each chunk when the budget has no room', async () => {
    const budget = new ReadAheadBudget(1000);
    const ahead = new ChunkReadAhead(reader, budget);
    expect((await download(ahead, 16384)).equals(data)).to.equal(true);
    expect(reader.reads).to.equal(Math.ceil(data.length / 16384));
    expect(budget.held).to.equal(0);
  });

  it('shares the budget between connections', async () => {
    const budget = new ReadAheadBudget(3 * READ_AHEAD_WINDOW);
    const one = new ChunkReadAhead(reader, budget);
    const two = new ChunkReadAhead(reader, budget);
    await one.read(SHA, 0, 4096, data.length);
    await two.read(SHA, 0, 4096, data.length);
    expect(budget.held).to.be.at.most(3 * READ_AHEAD_WINDOW);
    one.clear();
    two.clear();
    expect(budget.held).to.equal(0);
  });

  it('serves a request elsewhere in the blob, or in another blob, with the right bytes', async () => {
    const ahead = new ChunkReadAhead(reader, new ReadAheadBudget(1024 * 1024));
    await ahead.read(SHA, 0, 4096, data.length);
    expect((await ahead.read(SHA, 200_000, 204_096, data.length)).equals(data.subarray(200_000, 204_096))).to.equal(true);
    expect((await ahead.read(SHA, 10, 20, data.length)).equals(data.subarray(10, 20))).to.equal(true);
    expect((await ahead.read(OTHER, 0, 500, 1000)).equals(data.subarray(0, 500))).to.equal(true);
  });

  it('drops the windows of a forgotten blob: the next read goes to the store, and fails if it is gone', async () => {
    const budget = new ReadAheadBudget(1024 * 1024);
    const ahead = new ChunkReadAhead(reader, budget);
    await ahead.read(SHA, 0, 4096, data.length);
    ahead.forget(SHA);
    expect(budget.held).to.equal(0);
    const missing = 'c'.repeat(64);
    let err: unknown;
    await ahead.read(missing, 0, 10, 1000).catch((e: unknown) => (err = e));
    expect((err as NodeJS.ErrnoException)?.code).to.equal('ENOENT');
  });

  it('cuts a chunk of a window in memory without a promise, and reads the next window meanwhile', async () => {
    const budget = new ReadAheadBudget(1024 * 1024);
    const ahead = new ChunkReadAhead(reader, budget);
    expect(ahead.cached(SHA, 0, 4096, data.length)).to.equal(undefined);
    await ahead.read(SHA, 0, 4096, data.length);
    expect(ahead.cached(SHA, 4096, 8192, data.length)?.equals(data.subarray(4096, 8192))).to.equal(true);
    expect(reader.reads).to.equal(2);
    // Past the first window: the second, read ahead, serves once its read is done.
    await ahead.read(SHA, READ_AHEAD_WINDOW, READ_AHEAD_WINDOW + 4096, data.length);
    expect(ahead.cached(SHA, READ_AHEAD_WINDOW + 4096, READ_AHEAD_WINDOW + 8192, data.length)?.equals(data.subarray(READ_AHEAD_WINDOW + 4096, READ_AHEAD_WINDOW + 8192))).to.equal(
      true,
    );
    // A chunk elsewhere, or of another blob, is not in memory.
    expect(ahead.cached(SHA, 10, 20, data.length)).to.equal(undefined);
    expect(ahead.cached(OTHER, 0, 10, 1000)).to.equal(undefined);
  });

  it('reads into the buffer of a window done with only when everything cut from it was written', async () => {
    const budget = new ReadAheadBudget(1024 * 1024);
    let written = false;
    const ahead = new ChunkReadAhead(reader, budget, () => written);
    // Not written: a chunk handed out keeps its bytes whatever is read after it.
    const first = await ahead.read(SHA, 0, 4096, data.length);
    for (let at = 4096; at < data.length; at += 4096) await ahead.read(SHA, at, Math.min(at + 4096, data.length), data.length);
    expect(first.equals(data.subarray(0, 4096))).to.equal(true);
    ahead.clear();
    expect(budget.held).to.equal(0);

    // Written: windows take turns in the same few buffers, and every chunk still has the right bytes.
    written = true;
    const buffers = new Set<ArrayBufferLike>();
    for (let i = 0; ; i++) {
      const { start, end } = chunkRange(big.length, 4096, i);
      if (end === start) break;
      const chunk = ahead.cached(BIG, start, end, big.length) ?? (await ahead.read(BIG, start, end, big.length));
      expect(chunk.equals(big.subarray(start, end)), `chunk ${i}`).to.equal(true);
      buffers.add(chunk.buffer);
    }
    // Eleven windows, read into three buffers at most.
    expect(reader.reads).to.be.at.least(11);
    expect(buffers.size).to.be.at.most(3);
    expect(budget.held).to.be.at.most(3 * READ_AHEAD_WINDOW);
    ahead.clear();
    expect(budget.held).to.equal(0);
  });

  it('reads large chunks many to a read, fewer when the budget is short', async () => {
    const size = 65_536;
    const fetchAll = async (ahead: ChunkReadAhead, budget: ReadAheadBudget): Promise<number> => {
      let most = 0;
      for (let i = 0; ; i++) {
        const { start, end } = chunkRange(big.length, size, i);
        if (end === start) return most;
        const chunk = await ahead.read(BIG, start, end, big.length);
        expect(chunk.equals(big.subarray(start, end)), `chunk ${i}`).to.equal(true);
        most = Math.max(most, budget.held);
      }
    };
    const roomy = new ReadAheadBudget(4 * 1024 * 1024);
    await fetchAll(new ChunkReadAhead(reader, roomy), roomy);
    expect(reader.reads).to.equal(Math.ceil(big.length / (CHUNKS_PER_WINDOW * size)));

    reader.reads = 0;
    // Room for two windows of four chunks, not for one of sixteen.
    const short = new ReadAheadBudget(2 * CHUNKS_PER_SMALL_WINDOW * size + 1000);
    expect(await fetchAll(new ChunkReadAhead(reader, short), short)).to.be.at.most(short.max);
    // (The last window, what is left of the blob, may fit where a full one would not.)
    expect(reader.reads).to.be.within(Math.floor(big.length / (CHUNKS_PER_SMALL_WINDOW * size)), Math.ceil(big.length / (CHUNKS_PER_SMALL_WINDOW * size)));
  });

  it('reads its cap from OTA_MQTT_READ_AHEAD_BYTES', () => {
    expect(readAheadBytesFromEnv({})).to.equal(32 * 1024 * 1024);
    expect(readAheadBytesFromEnv({ OTA_MQTT_READ_AHEAD_BYTES: '0' })).to.equal(0);
    expect(() => readAheadBytesFromEnv({ OTA_MQTT_READ_AHEAD_BYTES: '1.5' })).to.throw(/OTA_MQTT_READ_AHEAD_BYTES/);
  });
});
