import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { adminClient, startServer, stopServer, type Admin, type Running } from './standalone';
import { databaseUrlFor } from './test-store';

/**
 * Two `npm start` instances on one PostgreSQL database, each with its own data directory, as two
 * machines behind a load balancer (the suites of test/cluster). `stop` ends what started and
 * removes the directories, also after a start that failed part-way.
 */
export class TwoInstances {
  private readonly dirs: string[] = [];
  private readonly running: Running[] = [];

  constructor(private readonly prefix: string) {}

  async start(env: Record<string, string> = {}): Promise<{ a: Running; b: Running; adminA: Admin; adminB: Admin }> {
    for (let i = 0; i < 2; i++) this.dirs.push(await mkdtemp(path.join(os.tmpdir(), `${this.prefix}-${i}-`)));
    const url = (await databaseUrlFor(this.dirs[0]!)) as string;
    for (const dir of this.dirs) this.running.push(await startServer(dir, { OTA_DATABASE_URL: url, ...env }));
    const [a, b] = this.running as [Running, Running];
    return { a, b, adminA: await adminClient(a.api), adminB: await adminClient(b.api) };
  }

  async stop(signal?: NodeJS.Signals): Promise<void> {
    for (const r of this.running) await stopServer(r, signal);
    for (const d of this.dirs) await rm(d, { recursive: true, force: true });
  }
}
