import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * A user's own Node-RED, as a user has it: Node-RED installed on its own (here the one in our
 * node_modules), a user directory of its own with its own settings.js, and our package installed
 * into that directory from the `npm pack` tarball, as the palette manager installs it.
 */
const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..', '..');
export const NODE_RED_DIR = path.dirname(require.resolve('node-red/package.json'));
export const PACKAGE = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string }).name;

/** `npm pack` of the built tree (the test run built it; prepack would build again). */
export async function packTarball(into: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', into], { cwd: ROOT });
  return path.join(into, (JSON.parse(stdout) as Array<{ filename: string }>)[0]?.filename as string);
}

/**
 * Installs `tarball` into `userDir` with npm, from npm's cache where it can. better-sqlite3 finds
 * its binary as a local prebuild (prebuild-install's `local-prebuilds`, set in the user directory's
 * .prebuild-installrc) made from the one our own install built, instead of compiling it again for
 * minutes: the same install script runs, only the download is local.
 */
export async function installInto(userDir: string, tarball: string, scratch: string): Promise<void> {
  const sqliteDir = path.dirname(require.resolve('better-sqlite3/package.json'));
  const { version } = JSON.parse(readFileSync(path.join(sqliteDir, 'package.json'), 'utf8')) as { version: string };
  const prebuilds = path.join(scratch, 'prebuilds');
  await mkdir(prebuilds, { recursive: true });
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  await run('tar', ['czf', path.join(prebuilds, name), 'build/Release/better_sqlite3.node'], { cwd: sqliteDir });
  await mkdir(userDir, { recursive: true });
  await writeFile(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', description: 'A Node-RED Project', version: '0.0.1', private: true }));
  await writeFile(path.join(userDir, '.prebuild-installrc'), `local-prebuilds=${prebuilds}\n`);
  // The palette manager's own command line (@node-red/registry installer.js), from npm's cache:
  // offline once the registry's package documents are cached there (`npm ci` fetches only
  // tarballs), else online for those documents only.
  const install = (cache: string) =>
    run('npm', ['install', cache, '--no-audit', '--no-update-notifier', '--no-fund', '--save', '--save-prefix=~', '--omit=dev', '--engine-strict', tarball], {
      cwd: userDir,
      maxBuffer: 16 * 1024 * 1024,
    });
  await install('--offline').catch((err: Error) => {
    if (!/ENOTCACHED/.test(err.message)) throw err;
    return install('--prefer-offline');
  });
}

/** bcrypt hash for settings.js `adminAuth.users[].password`, with the bcryptjs Node-RED itself uses. */
export function passwordHash(password: string): string {
  const bcrypt = require(require.resolve('bcryptjs', { paths: [NODE_RED_DIR] })) as { hashSync(p: string, rounds: number): string };
  return bcrypt.hashSync(password, 8);
}

export interface RunningRed {
  child: ChildProcess;
  /** e.g. http://127.0.0.1:41234/admin (no trailing slash) */
  admin: string;
  output(): string;
  /** Resolves with the next match of `pattern` in the output from now on. */
  nextLine(pattern: RegExp, ms?: number): Promise<RegExpExecArray>;
}

/** `node-red --userDir <dir> --settings <dir>/settings.js`, resolved once it listens. */
export function startNodeRed(userDir: string, env: Record<string, string> = {}): Promise<RunningRed> {
  const child = spawn(process.execPath, [path.join(NODE_RED_DIR, 'red.js'), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    out += chunk.toString();
    for (const w of [...waiters]) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const nextLine = (pattern: RegExp, ms = 30_000): Promise<RegExpExecArray> => {
    const from = out.length;
    return new Promise((resolve, reject) => {
      const look = (): void => {
        const m = pattern.exec(out.slice(from));
        if (m) done(() => resolve(m));
      };
      const onExit = (): void => done(() => reject(new Error(`Node-RED exited before logging ${pattern}:\n${out}`)));
      const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} in Node-RED's log after ${ms} ms:\n${out}`))), ms);
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        waiters.delete(look);
        child.off('exit', onExit);
        settle();
      };
      waiters.add(look);
      child.once('exit', onExit);
      look();
    });
  };
  return nextLine(/Server now running at (http:\/\/\S+?)\/?\s/).then((m) => ({ child, admin: m[1] as string, output: () => out, nextLine }));
}

/** SIGINT, as Ctrl-C; resolves with the exit code. */
export function stopNodeRed(red: RunningRed): Promise<number | null> {
  return new Promise((resolve) => {
    if (red.child.exitCode !== null || red.child.signalCode !== null) return resolve(red.child.exitCode);
    red.child.once('exit', (code) => resolve(code));
    red.child.kill('SIGINT');
  });
}

/** A bearer token from Node-RED's admin API (adminAuth credentials). */
export async function redToken(admin: string, username: string, password: string, scope = '*'): Promise<string> {
  const res = await fetch(`${admin}/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope, username, password }),
  });
  if (res.status !== 200) throw new Error(`Node-RED login as ${username}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { access_token: string }).access_token;
}
