import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore } from '../../server/store/open-store';
import { describeStoreContract } from './store-contract';

describeStoreContract('SQLite', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ota-store-contract-'));
  const store = openStore({ dataDir: dir });
  return {
    store,
    dispose: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('openStore', () => {
  it('refuses a PostgreSQL URL with a clear error until PostgreSQL is built in', () => {
    expect(() => openStore({ dataDir: tmpdir(), databaseUrl: 'postgres://ota:secret@db/ota' })).to.throw(/PostgreSQL database, which this build cannot use yet/);
  });

  it('refuses another URL, without echoing its password', () => {
    expect(() => openStore({ dataDir: tmpdir(), databaseUrl: 'mysql://ota:secret@db/ota' }))
      .to.throw(/must be a postgres:\/\/ URL/)
      .with.property('message')
      .that.does.not.include('secret');
  });
});
