import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Where a browser test saves a screenshot named `name`: the README's pictures in `docs/` only when
 * `OTA_UPDATE_SCREENSHOTS=1` asks for it, otherwise a temp folder, so `npm test` leaves the work
 * tree as it found it.
 */
export function screenshotPath(name: string): string {
  if (process.env.OTA_UPDATE_SCREENSHOTS === '1') return path.resolve(__dirname, '..', '..', '..', 'docs', name);
  const dir = path.join(os.tmpdir(), 'ota-screenshots');
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}
