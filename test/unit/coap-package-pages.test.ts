import { expect } from 'chai';
import type { BlobReader } from '../../server/store/blob-reader';
import { PackagePages } from '../../server/transports/package-pages';

const SIZE = 100 * 1024;
const PAGE = 16 * 1024;
const blob = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 31 + (i >> 9)) & 0xff));

/** A blob store holding one blob, counting the reads that reach it. */
function reader(): { reader: BlobReader; reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  const fake = {
    read: (_sha256: string, start: number, end: number): Promise<Buffer> => {
      reads.push([start, end]);
      return Promise.resolve(Buffer.from(blob.subarray(start, end)));
    },
  };
  return { reader: fake as unknown as BlobReader, reads };
}

/** Lets the reads started so far finish. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('CoAP package pages', function () {
  it('serves a download read in order from memory after its first block, reading each page once, ahead of need', async () => {
    const { reader: r, reads } = reader();
    const pages = new PackagePages(r, 1024 * 1024, PAGE);
    let fromMemory = 0;
    for (let start = 0; start < SIZE; start += 256) {
      const end = Math.min(start + 256, SIZE);
      let bytes = pages.cached('sha', SIZE, start, end);
      if (bytes) fromMemory++;
      else bytes = await pages.read('sha', SIZE, start, end);
      expect(bytes.equals(blob.subarray(start, end)), `bytes ${start}-${end}`).to.equal(true);
      await settle();
    }
    expect(fromMemory, 'every block but the first').to.equal(SIZE / 256 - 1);
    expect(reads).to.deep.equal(Array.from({ length: Math.ceil(SIZE / PAGE) }, (_, i) => [i * PAGE, Math.min((i + 1) * PAGE, SIZE)]));
  });

  it('holds at most its byte limit, the least recently used page going first, and reads through when off', async () => {
    const { reader: r, reads } = reader();
    const pages = new PackagePages(r, 2 * PAGE, PAGE);
    for (const start of [0, PAGE, 2 * PAGE, 3 * PAGE]) await pages.read('sha', SIZE, start, start + 16);
    expect(pages.size).to.be.at.most(2 * PAGE);
    expect(pages.cached('sha', SIZE, 0, 16), 'page 0 went first').to.equal(undefined);
    expect(pages.cached('sha', SIZE, 3 * PAGE, 3 * PAGE + 16)?.equals(blob.subarray(3 * PAGE, 3 * PAGE + 16))).to.equal(true);

    const off = reader();
    const none = new PackagePages(off.reader, 0, PAGE);
    await none.read('sha', SIZE, 0, 256);
    expect(none.cached('sha', SIZE, 0, 256)).to.equal(undefined);
    expect(off.reads).to.deep.equal([[0, 256]]);
    expect(none.size).to.equal(0);
    expect(reads.length).to.equal(4);
  });
});
