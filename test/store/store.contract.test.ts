import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore } from '../../server/store/open-store';
import { PgStore } from '../../server/store/postgres/pg-store';
import { emptyTestDatabase, withTestDatabase } from '../support/postgres';
import { describeStoreContract } from './store-contract';

describeStoreContract('SQLite', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ota-store-contract-'));
  const store = await openStore({ dataDir: dir });
  return {
    store,
    dispose: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('store contract on PostgreSQL', () => {
  const database = withTestDatabase();
  // One database for the suite, emptied before each test: a fresh one per test costs a CREATE DATABASE each.
  describeStoreContract('PostgreSQL', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-store-contract-pg-'));
    await emptyTestDatabase(database().url);
    const store = await openStore({ dataDir: dir, databaseUrl: database().url });
    expect(store).to.be.instanceOf(PgStore);
    return {
      store,
      dispose: async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

describe('PostgreSQL transaction lanes', () => {
  const database = withTestDatabase();

  it('runs a transaction of the enqueue lane while one of the main lane is open', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-lanes-pg-'));
    const store = await openStore({ dataDir: dir, databaseUrl: database().url });
    try {
      // The main lane's transaction ends only once the enqueue lane's has run: in turn, neither would.
      let enqueued!: () => void;
      const gate = new Promise<void>((resolve) => (enqueued = resolve));
      const open = store.transaction(() => gate);
      await store.transaction(async (tx) => {
        await tx.queue.depth();
        enqueued();
      }, 'enqueue');
      await open;
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('openStore', () => {
  it('names an unreachable PostgreSQL server without echoing its password', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ota-store-open-'));
    try {
      // Port 1 on loopback: nothing listens, so the connection is refused at once.
      const err = await openStore({ dataDir: dir, databaseUrl: 'postgres://ota:secret@127.0.0.1:1/ota' }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).to.match(/cannot open the PostgreSQL database at postgres:\/\/ota:\*\*\*@127\.0\.0\.1:1\/ota/);
      expect(err?.message).to.not.include('secret');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses another URL, without echoing its password', async () => {
    const err = await openStore({ dataDir: tmpdir(), databaseUrl: 'mysql://ota:secret@db/ota' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).to.match(/must be a postgres:\/\/ URL/);
    expect(err?.message).to.not.include('secret');
  });
});
