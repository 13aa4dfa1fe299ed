import type { Phase } from './device';

/** How many devices are in each phase, and the bytes downloaded so far. */
export interface FleetCounts {
  total: number;
  waiting: number;
  /** Downloading, verifying or updating. */
  busy: number;
  updated: number;
  failed: number;
  unfinished: number;
  bytes: number;
}

/** The live view of a run: a bar redrawn in place on a terminal, or a plain line every few seconds. */
export class Progress {
  private readonly phases = new Map<string, Phase>();
  private bytesSoFar = 0;
  private firstDownloadAt: number | null = null;
  private lastBytesAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly startedAt: number;
  private lastLine = '';

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly mode: 'bar' | 'lines' | 'none',
    private readonly total: number,
    private readonly now: () => number = Date.now,
    /** Redraw every this many ms (bar), or print a line (lines). */
    private readonly everyMs = mode === 'bar' ? 200 : 2000,
  ) {
    this.startedAt = now();
  }

  phase(name: string, phase: Phase): void {
    if (phase === 'downloading' && this.firstDownloadAt === null) this.firstDownloadAt = this.now();
    this.phases.set(name, phase);
  }

  bytes(n: number): void {
    this.bytesSoFar += n;
    this.lastBytesAt = this.now();
  }

  counts(): FleetCounts {
    const c: FleetCounts = { total: this.total, waiting: 0, busy: 0, updated: 0, failed: 0, unfinished: 0, bytes: this.bytesSoFar };
    for (const p of this.phases.values()) {
      if (p === 'starting' || p === 'waiting') c.waiting += 1;
      else if (p === 'downloading' || p === 'verifying' || p === 'updating') c.busy += 1;
      else c[p] += 1;
    }
    // Devices not started yet (bounded concurrency) are waiting too.
    c.waiting += this.total - this.phases.size;
    return c;
  }

  /** Download throughput: bytes over the time from the first download to the last byte, in bytes/s. */
  throughput(): number {
    if (this.firstDownloadAt === null || this.lastBytesAt === null || this.lastBytesAt <= this.firstDownloadAt) return 0;
    return (this.bytesSoFar * 1000) / (this.lastBytesAt - this.firstDownloadAt);
  }

  start(): void {
    if (this.mode === 'none' || this.timer) return;
    this.timer = setInterval(() => this.draw(), this.everyMs);
    this.timer.unref();
    this.draw();
  }

  /** A message while the bar is drawn: on its own line, the bar below it. */
  note(line: string): void {
    if (this.mode === 'bar' && this.timer) {
      this.out.write(`\r\x1b[2K[sim] ${line}\n`);
      this.draw();
    } else {
      this.out.write(`[sim] ${line}\n`);
    }
  }

  /** Stops redrawing, after a last drawing that shows the end state. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.mode === 'none') return;
    this.draw();
    if (this.mode === 'bar') this.out.write('\n');
  }

  line(): string {
    const c = this.counts();
    const elapsed = formatDuration(this.now() - this.startedAt);
    return `${elapsed}  updated ${c.updated}/${c.total}  failed ${c.failed}  in progress ${c.busy}  waiting ${c.waiting}${c.unfinished ? `  unfinished ${c.unfinished}` : ''}  ${formatBytes(c.bytes)}  ${formatRate(this.throughput())}`;
  }

  bar(width = 30): string {
    const c = this.counts();
    const done = c.updated + c.failed + c.unfinished;
    const filled = c.total ? Math.round((done / c.total) * width) : width;
    const failedCells = c.total ? Math.min(filled, Math.round(((c.failed + c.unfinished) / c.total) * width)) : 0;
    const cells = '█'.repeat(filled - failedCells) + '▓'.repeat(failedCells) + '░'.repeat(width - filled);
    const pct = c.total ? Math.floor((done / c.total) * 100) : 100;
    return `[${cells}] ${String(pct).padStart(3)}%  ✓ ${c.updated}  ✗ ${c.failed}  ⇣ ${c.busy}  … ${c.waiting}  ${formatBytes(c.bytes)}  ${formatRate(this.throughput())}  ${formatDuration(this.now() - this.startedAt)}`;
  }

  private draw(): void {
    if (this.mode === 'bar') {
      this.out.write(`\r\x1b[2K${this.bar()}`);
    } else if (this.mode === 'lines') {
      const line = this.line();
      // An unchanged line (same counts, same second) says nothing new.
      if (line !== this.lastLine) this.out.write(`[sim] ${line}\n`);
      this.lastLine = line;
    }
  }
}

/** The value below which `p` percent of `values` fall (nearest rank); null for none. */
export function percentile(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export const formatRate = (bytesPerSecond: number): string => `${(bytesPerSecond / 1024 / 1024).toFixed(2)} MB/s`;

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** A two-column table: a label and a value per row. */
export function table(title: string, rows: Array<[string, string]>): string {
  const left = Math.max(...rows.map(([k]) => k.length));
  const right = Math.max(...rows.map(([, v]) => v.length));
  const rule = `+${'-'.repeat(left + 2)}+${'-'.repeat(right + 2)}+`;
  return [title, rule, ...rows.map(([k, v]) => `| ${k.padEnd(left)} | ${v.padStart(right)} |`), rule].join('\n');
}
