/**
 * Mocha root hooks of the PostgreSQL run (`mocha --config .mocharc.postgres.json`): the engine
 * suites listed there open their engines on PostgreSQL, one fresh database per data directory.
 */
import { createTestDatabase } from './postgres';
import { dropTestDatabases } from './test-store';

process.env.OTA_TEST_STORE = 'postgres';

export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    // Reachable? The same rule as the store suites: CI must run them, a laptop without a cluster skips them.
    try {
      await (await createTestDatabase()).drop();
    } catch (err) {
      const reason = `PostgreSQL run skipped: no server (${(err as Error).message}); set OTA_TEST_DATABASE_URL or start the cluster (see .ci/run)`;
      if (process.env.CI === 'true') throw new Error(`${reason}. CI=true: the PostgreSQL suites must run.`, { cause: err });
      console.warn(`  ${reason}`);
      this.skip();
    }
  },
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(120_000);
    await dropTestDatabases();
  },
};
