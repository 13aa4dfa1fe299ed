/**
 * Small helpers shared by the benchmarks: timing, peak memory of a process, temp directories that
 * are removed whatever happens, the one table every benchmark prints, sizes from the environment,
 * generated package files, server children, and an engine seeded with a package.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pg from 'pg';
import type { OtaEngine } from '../server/engine';
import type { Logger } from '../server/logger';
import type { DeviceProfileId, TenantId } from '../server/ids';
import type { NotifyQueue } from '../server/pipeline/notify-queue';
import type { OtaPackage } from '../server/store/ota-packages';

/** One benchmark as `bench/index.ts` runs it. */
export interface Benchmark {
  readonly name: string;
  run(): Promise<void>;
}

export const MB = 1024 * 1024;

/** Seconds since `start` (a `process.hrtime.bigint()` reading). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Runs `fn` and returns its result with the wall time it took, in seconds. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { value, seconds: secondsSince(start) };
}

/**
 * Peak resident set size of a process in bytes: `VmHWM` from /proc/<pid>/status (Linux only).
 * Null when the process is gone or /proc is not there.
 */
export function peakRss(pid: number | 'self' = 'self'): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status)?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}

/**
 * CPU time a process has used so far (user + system), in ms: utime and stime from /proc/<pid>/stat
 * (Linux only, clock ticks of 1/100 s). On a shared machine wall time swings with the load; the
 * CPU a step costs does not as much. Null when the process is gone or /proc is not there.
 */
export function cpuMs(pid: number | 'self' = 'self'): number | null {
  try {
    // Fields after the command (which may hold spaces, so split after its closing parenthesis).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10 : null;
  } catch {
    return null;
  }
}

/**
 * CPU of the PostgreSQL backends serving `url`'s database (readable in /proc when the server runs on
 * this machine). With `before`, what they spent since: a backend started meanwhile counts whole.
 */
export async function backendCpu(url: string, before?: Map<number, number>): Promise<{ byPid: Map<number, number>; spent: number }> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  let pids: number[];
  try {
    pids = (await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')).rows.map((r) => r.pid);
  } finally {
    await c.end();
  }
  const byPid = new Map<number, number>();
  let total = 0;
  for (const pid of pids) {
    const ms = cpuMs(pid);
    if (ms === null) continue;
    byPid.set(pid, ms);
    total += ms - (before?.get(pid) ?? 0);
  }
  return { byPid, spent: total };
}

/**
 * Resets a process's peak RSS to its current RSS, so the next `peakRss` reading covers only what
 * ran since (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0, our own processes only). Returns
 * false where that is not allowed; the reading then covers the process's whole life.
 */
export function resetPeakRss(pid: number | 'self' = 'self'): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function formatBytes(bytes: number | null): string {
  if (bytes === null) return 'n/a';
  return bytes >= 1024 * MB ? `${(bytes / (1024 * MB)).toFixed(2)} GB` : `${(bytes / MB).toFixed(1)} MB`;
}

/**
 * Cleanup that runs once, on success, on failure and on Ctrl-C: temp directories are removed and
 * child processes killed. Synchronous on purpose, so a signal handler can run it before exiting.
 */
export class Cleanup {
  private readonly steps: (() => void)[] = [];
  private done = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.run();
    process.kill(process.pid, signal);
  };

  constructor() {
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  /** Registers a step; steps run in reverse order of registration (children die before their dirs go). */
  add(step: () => void): void {
    this.steps.push(step);
  }

  /** A fresh directory under the OS temp dir, removed at cleanup. */
  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), `${prefix}-`));
    this.add(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  run(): void {
    if (this.done) return;
    this.done = true;
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    for (const step of this.steps.reverse()) {
      try {
        step();
      } catch (err) {
        console.error(`bench cleanup: ${(err as Error).message}`);
      }
    }
  }
}

/** Removes a file or directory now, not at cleanup (a finished step's gigabyte is not needed). */
export async function remove(target: string): Promise<void> {
  await rm(target, { recursive: true, force: true });
}

/** Prints rows as a Markdown table, columns padded to line up in a terminal too. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  console.log(line(header));
  console.log(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`);
  for (const r of rows) console.log(line(r));
}

/** A whole number above zero from the environment, or `fallback` when the variable is unset or empty. */
export function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, not ${raw}`);
  return n;
}

/**
 * Random-looking bytes fast: one random buffer of up to 16 MB written over and over (the blob
 * store dedupes identical files, not identical chunks). Fsynced, so writeback of the file does not
 * compete with the timed work that follows.
 */
export async function generateFile(file: string, size: number): Promise<void> {
  const chunk = randomBytes(Math.min(16 * MB, size));
  const handle = await open(file, 'w');
  try {
    for (let written = 0; written < size;) {
      const n = Math.min(chunk.length, size - written);
      await handle.write(chunk, 0, n);
      written += n;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// ---- server children -------------------------------------------------------------------------

export interface ServerChild {
  child: ChildProcess;
  port: number;
}

/** Spawns server-child.js and waits for the `{"port": N}` line; killed at cleanup if still alive. */
export function startServerChild(cleanup: Cleanup, args: string[], env: Record<string, string> = {}): Promise<ServerChild> {
  const child = spawn(process.execPath, [path.join(__dirname, 'server-child.js'), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  cleanup.add(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (s: string) => {
      out += s;
      const newline = out.indexOf('\n');
      if (newline < 0) return;
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      child.stdout?.resume(); // anything later is not ours to read, but must not block the child
      try {
        resolve({ child, port: (JSON.parse(out.slice(0, newline)) as { port: number }).port });
      } catch {
        reject(new Error(`server child printed ${JSON.stringify(out.slice(0, newline))}, not {"port": N}`));
      }
    };
    const onExit = (code: number | null) => reject(new Error(`server child ${args[0]} exited with ${code} before listening`));
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.once('exit', onExit);
    child.once('error', reject);
  });
}

export async function stopServerChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

/** Times `fn` and reads the peak RSS of `pid` (a child, or this process) over just that call. */
export async function measured<T>(pid: number | 'self', fn: () => Promise<T>): Promise<{ value: T; seconds: number; peak: number | null }> {
  resetPeakRss(pid);
  const { value, seconds } = await timed(fn);
  return { value, seconds, peak: peakRss(pid) };
}

// ---- an engine with a package ------------------------------------------------------------------

/**
 * A logger for an engine under benchmark: quiet, except that errors (an assignment that failed in
 * the background, say) go to `onError`, so a benchmark waiting for an event fails instead of hanging.
 */
export function benchLogger(onError: (message: string) => void = (m) => console.error(`[ota] ${m}`)): Logger {
  return { info: () => undefined, warn: (m) => console.error(`[ota] ${m}`), error: onError };
}

/**
 * A new device profile and a FIRMWARE package of it with `source` as its bytes, through the
 * engine's services (what `POST /api/deviceProfile` and the multipart `POST /api/otaPackage` do).
 */
export async function createProfileWithPackage(
  engine: OtaEngine,
  tenantId: TenantId,
  opts: { profileName: string; title: string; version: string; source: Readable },
): Promise<{ profileId: DeviceProfileId; pkg: OtaPackage }> {
  const profile = await engine.profiles.save(tenantId, { name: opts.profileName });
  const staged = await engine.packages.stage(opts.source, 'SHA256');
  const pkg = await engine.packages.createWithData(tenantId, { deviceProfileId: profile.id, type: 'FIRMWARE', title: opts.title, version: opts.version }, staged, {
    fileName: `${opts.title}.bin`,
    contentType: 'application/octet-stream',
    checksumAlgorithm: 'SHA256',
    checksum: null,
  });
  return { profileId: profile.id, pkg };
}

/**
 * Resolves once the notify queue holds at least `n` rows. Call it before whatever enqueues: the
 * assignment service enqueues in the background, after the save that caused it has returned.
 */
export function queueReaches(queue: NotifyQueue, n: number): Promise<void> {
  return new Promise((resolve) => {
    const onDepth = (depth: number) => {
      if (depth < n) return;
      queue.off('depth', onDepth);
      resolve();
    };
    queue.on('depth', onDepth);
  });
}
