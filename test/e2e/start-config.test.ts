import { expect } from 'chai';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { OtaEngine } from '../../server/engine';
import { quietLogger } from '../unit/pipeline-support';
import { databaseUrlFor, dropDatabaseFor } from '../support/test-store';
import { startServer } from '../support/standalone';

/** Tables in the run's PostgreSQL database of `dataDir` (none on SQLite: its file would be in the directory). */
async function tablesIn(dataDir: string): Promise<number> {
  const url = await databaseUrlFor(dataDir);
  if (!url) return 0;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
    return (rows[0] as { n: number }).n;
  } finally {
    await client.end();
  }
}

/** A bad setting stops start-up before the store is opened: no database, no account, no directory made. */
describe('bad configuration refused before anything is written', () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ota-bad-config-'));
  });
  afterEach(async () => {
    await dropDatabaseFor(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });

  const BAD: Array<[variable: string, value: string, message: string]> = [
    ['OTA_DASHBOARD_PROGRESS_MS', 'soon', "OTA_DASHBOARD_PROGRESS_MS must be a whole number of milliseconds from 50 to 60000, not 'soon'"],
    ['OTA_DOWNLOAD_PROGRESS_FLUSH_MS', '5', "OTA_DOWNLOAD_PROGRESS_FLUSH_MS must be a whole number of milliseconds from 10 to 60000, not '5'"],
    ['OTA_DASHBOARD_STREAMS_PER_USER', '0', "OTA_DASHBOARD_STREAMS_PER_USER must be a whole number of streams from 1 to 1000, not '0'"],
    ['OTA_MQTT_READ_AHEAD_BYTES', '-1', "OTA_MQTT_READ_AHEAD_BYTES must be a non-negative integer, not '-1'"],
    ['OTA_MAX_PACKAGE_SIZE_MB', 'big', "OTA_MAX_PACKAGE_SIZE_MB must be a positive number of megabytes, not 'big'"],
  ];
  for (const [variable, value, message] of BAD) {
    it(`npm start with ${variable}=${value}: one line naming it, exit code 1, the data directory left empty`, async function () {
      this.timeout(60_000);
      const failed = await startServer(dataDir, { [variable]: value }).then(
        () => {
          throw new Error('the server started');
        },
        (err: Error) => err.message,
      );
      expect(failed).to.equal(`server exited with 1 before it was ready:\n[ota] failed to start: ${message}\n`);
      expect(await readdir(dataDir)).to.deep.equal([]);
      expect(await tablesIn(dataDir), 'tables in its PostgreSQL database').to.equal(0);
    });
  }

  it('OtaEngine.open (a Node-RED ota-server node) refuses the same before it opens the store', async () => {
    const saved = process.env.OTA_DASHBOARD_PROGRESS_MAX_DEVICES;
    process.env.OTA_DASHBOARD_PROGRESS_MAX_DEVICES = 'all';
    try {
      const databaseUrl = await databaseUrlFor(dataDir);
      const opened = OtaEngine.open({ dataDir, http: false, logger: quietLogger, ...(databaseUrl ? { databaseUrl } : {}) });
      let error: Error | undefined;
      await opened.then(
        (engine) => engine.close(),
        (err: Error) => (error = err),
      );
      expect(error?.message).to.equal("OTA_DASHBOARD_PROGRESS_MAX_DEVICES must be a whole number of devices from 1 to 100000, not 'all'");
      expect(await readdir(dataDir)).to.deep.equal([]);
      expect(await tablesIn(dataDir)).to.equal(0);
    } finally {
      if (saved === undefined) delete process.env.OTA_DASHBOARD_PROGRESS_MAX_DEVICES;
      else process.env.OTA_DASHBOARD_PROGRESS_MAX_DEVICES = saved;
    }
  });
});
