/**
 * Small helpers shared by the benchmarks: timing, peak memory of a process, temp directories that
 * are removed whatever happens, and the one table every benchmark prints.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
