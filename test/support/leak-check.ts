import path from 'node:path';
import type { Context, Suite } from 'mocha';
import { eventually } from './eventually';

/**
 * Mocha root hook (.mocharc.json `require`): after each test file's top-level suite has run its own
 * `after` hooks, the handles that keep the process alive (servers, sockets, timers, child
 * processes: `process.getActiveResourcesInfo()`, which leaves out unref'd ones) must be back to what
 * they were before the first file. A file that leaves one open fails, named with what it left, so
 * the suite ends by itself instead of hiding leaks behind mocha's `exit`.
 */
const ROOT = path.resolve(__dirname, '..', '..', '..');
// Closing is often a callback or two behind the close call (a socket's 'close', a child's 'exit').
const SETTLE_MS = 3000;

type Counts = Map<string, number>;

/** Handles keeping the process alive, less the timeout timer mocha runs for the hook `ctx` itself. */
function activeHandles(ctx: Context): Counts {
  const counts: Counts = new Map();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  // Mocha keeps its runnable's timer on a field its typings leave out.
  const own = (ctx.runnable() as unknown as { timer?: NodeJS.Timeout }).timer;
  if (own?.hasRef()) counts.set('Timeout', (counts.get('Timeout') ?? 1) - 1);
  return counts;
}

function leftOver(now: Counts, before: Counts): string[] {
  return [...now].filter(([type, n]) => n > (before.get(type) ?? 0)).map(([type, n]) => `${n - (before.get(type) ?? 0)} ${type}`);
}

let leaked = false;

export const mochaHooks = {
  beforeAll(this: Context): void {
    let baseline = activeHandles(this);
    const root = this.test?.parent as Suite;
    for (const suite of root.suites) {
      // Named by its source: dist/test/x.test.js was test/x.test.ts.
      const file = suite.file
        ? path
            .relative(ROOT, suite.file)
            .replace(/^dist\//, '')
            .replace(/\.js$/, '.ts')
        : suite.title;
      suite.afterAll('leaves no handle open', async function (this: Context) {
        this.timeout(SETTLE_MS + 2000);
        try {
          await eventually(() => leftOver(activeHandles(this), baseline).length === 0, 'handles to close', { timeoutMs: SETTLE_MS, everyMs: 20 });
        } catch {
          const left = leftOver(activeHandles(this), baseline);
          // Report each leak once: the next file is measured from here.
          baseline = activeHandles(this);
          leaked = true;
          throw new Error(`${file} left ${left.join(', ')} open: close every server, socket, timer and child process it starts`);
        }
      });
    }
  },
  afterAll(): void {
    // A leaked handle would keep the process alive after the summary: end it (failed) once mocha has
    // reported. The timer is unref'd, so a clean run ends by itself without waiting for it.
    if (leaked) setTimeout(() => process.exit(1), 5000).unref();
  },
};
