import type { BlobReader } from '../../store/blob-reader';

/** Bytes every connection's read-ahead may hold together, by default (`OTA_MQTT_READ_AHEAD_BYTES`). */
export const DEFAULT_READ_AHEAD_BYTES = 32 * 1024 * 1024;

/** The cap from `OTA_MQTT_READ_AHEAD_BYTES` (0 turns read-ahead off), else the default. */
export function readAheadBytesFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_MQTT_READ_AHEAD_BYTES?.trim();
  if (!raw) return DEFAULT_READ_AHEAD_BYTES;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`OTA_MQTT_READ_AHEAD_BYTES must be a non-negative integer, not '${raw}'`);
  return n;
}

/** The bytes all read-aheads of a transport hold, and their cap: past it, chunks are read when asked. */
export class ReadAheadBudget {
  private used = 0;

  constructor(readonly max: number) {}

  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }

  get held(): number {
    return this.used;
  }
}

/** What one read covers at least: small chunks are served many to a read. */
export const READ_AHEAD_WINDOW = 128 * 1024;

/** Chunks one window covers at least, up to WINDOW_CAP bytes: larger chunks are read several to a read too. */
export const CHUNKS_PER_WINDOW = 4;
const WINDOW_CAP = 1024 * 1024;

/**
 * The bytes a window of chunks of `n` bytes covers. A read costs the main thread about as much
 * whatever its size (the hop to the thread pool and back, ~20-30 µs measured on Node 20, more than
 * a 64 KiB answer's socket write), so the reads are made fewer, not smaller.
 */
export const windowFor = (n: number): number => Math.max(READ_AHEAD_WINDOW, Math.min(CHUNKS_PER_WINDOW * n, WINDOW_CAP), n);

interface Window {
  sha256: string;
  start: number;
  end: number;
  /** Null: the read failed (the chunk is then read again, so the device gets that read's error). */
  bytes: Promise<Buffer | null>;
}

/**
 * One connection's read-ahead. A device asks for chunk after chunk, in order and one at a time
 * (ThingsBoard's SDK and ours, reference §3.4), and a read on the thread pool costs as much as the
 * rest of an answer. So the blob is read in windows of at least READ_AHEAD_WINDOW bytes or
 * CHUNKS_PER_WINDOW chunks (`windowFor`): a chunk is cut from the window that holds it, and once a window is in use the
 * next one is read, while the device handles what it got. At most two windows per connection,
 * within the transport's budget; without room there, or for a request elsewhere in the blob, the
 * chunk is read as before. Blobs never change under their name (content-addressed), so a window is
 * never stale; a deleted package's are dropped (`forget`).
 */
export class ChunkReadAhead {
  /** Consecutive windows of one blob, in order: the one in use and the one after it. */
  private windows: Window[] = [];

  constructor(
    private readonly reader: BlobReader,
    private readonly budget: ReadAheadBudget,
  ) {}

  /** Bytes `[start, end)` of the blob, `total` bytes long. */
  async read(sha256: string, start: number, end: number, total: number): Promise<Buffer> {
    // Windows of another blob, or wholly before this chunk, will not be asked for again.
    while (this.windows.length && (this.windows[0]?.sha256 !== sha256 || (this.windows[0]?.end ?? 0) <= start)) this.drop(0);
    let w = this.windows.find((x) => x.start <= start && end <= x.end);
    if (!w) {
      this.clear();
      w = this.load(sha256, start, Math.min(total, start + windowFor(end - start)));
    }
    const last = this.windows[this.windows.length - 1];
    if (last && last.end < total) this.load(sha256, last.end, Math.min(total, last.end + windowFor(end - start)));
    const bytes = w ? await w.bytes : null;
    if (!bytes || !w) {
      this.clear();
      return this.reader.read(sha256, start, end);
    }
    return bytes.subarray(start - w.start, end - w.start);
  }

  /** Drops what is held of a blob (its package was deleted: not one more byte of it from memory). */
  forget(sha256: string): void {
    if (this.windows.some((w) => w.sha256 === sha256)) this.clear();
  }

  /** The connection closed, or the device asked elsewhere. */
  clear(): void {
    while (this.windows.length) this.drop(0);
  }

  /** Starts reading a window, if the budget has room and fewer than two are held; answers it. */
  private load(sha256: string, start: number, end: number): Window | undefined {
    if (this.windows.length >= 2 || end <= start || !this.budget.take(end - start)) return undefined;
    const w: Window = { sha256, start, end, bytes: this.reader.read(sha256, start, end).catch(() => null) };
    this.windows.push(w);
    return w;
  }

  private drop(i: number): void {
    const [w] = this.windows.splice(i, 1);
    if (w) this.budget.give(w.end - w.start);
  }
}
