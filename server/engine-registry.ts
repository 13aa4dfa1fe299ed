import path from 'node:path';
import { OtaEngine, type EngineOptions } from './engine';

interface Entry {
  engine: Promise<OtaEngine>;
  users: number;
}

/**
 * One engine per data directory in a process, shared by whoever asks for it (several ota-server
 * config nodes, the standalone launcher) and closed when the last user lets go. A redeploy that
 * releases and re-acquires within the same tick would otherwise race two engines on one SQLite file.
 */
const engines = new Map<string, Entry>();

export function acquireEngine(options: EngineOptions): Promise<OtaEngine> {
  const key = path.resolve(options.dataDir);
  let entry = engines.get(key);
  if (!entry) {
    const engine = OtaEngine.open(options);
    entry = { engine, users: 0 };
    engines.set(key, entry);
    engine.catch(() => {
      if (engines.get(key) === entry) engines.delete(key);
    });
  }
  entry.users += 1;
  return entry.engine;
}

export async function releaseEngine(engine: OtaEngine): Promise<void> {
  const key = path.resolve(engine.options.dataDir);
  const entry = engines.get(key);
  if (!entry) return;
  entry.users -= 1;
  if (entry.users > 0) return;
  engines.delete(key);
  await engine.close();
}
