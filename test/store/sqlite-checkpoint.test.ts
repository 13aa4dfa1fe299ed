import { expect } from 'chai';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore } from '../../server/store/open-store';
import type { Store } from '../../server/store/store';
import { eventually } from '../support/eventually';

/**
 * SQLite's write-ahead log: a burst of commits (a fan-out) does not copy the log into the database
 * inside its commits (SQLite's default would, every 1,000 pages, fsyncs and all); the store does it
 * once it has been idle for a second.
 */
describe('SQLite store: WAL checkpoints', () => {
  let dir: string;
  let store: Store;
  const dbFile = () => path.join(dir, 'ota.sqlite');

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-checkpoint-'));
    store = await openStore({ dataDir: dir });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves ~1,500 pages of commits in the log, then copies them into the database once idle', async () => {
    const before = (await stat(dbFile())).size;
    const value = 'x'.repeat(4000);
    // Three commits of ~2 MB each: ~1,500 pages of 4 KiB, past SQLite's default bound of 1,000.
    for (let c = 0; c < 3; c++) {
      await store.transaction(async (tx) => {
        for (let i = 0; i < 500; i++) await tx.settings.putIfAbsent(`k${c}-${i}`, value);
      });
    }
    expect((await stat(dbFile())).size, 'the database file right after the commits').to.equal(before);
    expect((await stat(`${dbFile()}-wal`)).size).to.be.above(6_000_000);
    await eventually(async () => (await stat(dbFile())).size > before + 6_000_000, 'the idle checkpoint', { everyMs: 50 });
    expect(await store.settings.get('k2-499')).to.equal(value);
  });
});
