import { chmod, mkdir, open } from 'node:fs/promises';
import path from 'node:path';

/**
 * The data directory holds the JWT secret, Node-RED's credential key and device tokens (in
 * `ota.sqlite`): only its owner may read it (issue 10, item 7). Directories are 0700 and the
 * database 0600, also when they already exist with looser modes from an older version.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Makes `dir` (and missing parents) and narrows it to its owner. */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Makes `file` empty if missing, with owner-only permissions, before anyone else creates it with
 * the process umask; SQLite gives its -wal and -shm files the mode of the database file.
 */
export async function privateFile(file: string): Promise<void> {
  const handle = await open(file, 'a', PRIVATE_FILE_MODE);
  await handle.close();
  await chmod(file, PRIVATE_FILE_MODE);
  for (const side of ['-wal', '-shm']) await chmod(`${file}${side}`, PRIVATE_FILE_MODE).catch(() => undefined);
}

export const databaseFileIn = (dataDir: string): string => path.join(dataDir, 'ota.sqlite');
