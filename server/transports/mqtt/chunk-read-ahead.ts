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
export const CHUNKS_PER_WINDOW = 16;
/** Chunks a window covers when the budget has no room for one of CHUNKS_PER_WINDOW. */
export const CHUNKS_PER_SMALL_WINDOW = 4;
const WINDOW_CAP = 1024 * 1024;

/**
 * The bytes a window of `chunks` chunks of `n` bytes covers. A read costs the main thread about as
 * much whatever its size (the hop to the thread pool and back, 30-150 µs measured here under load,
 * more than a 64 KiB answer's socket write), so the reads are made fewer, not smaller.
 */
export const windowFor = (n: number, chunks = CHUNKS_PER_WINDOW): number => Math.max(READ_AHEAD_WINDOW, Math.min(chunks * n, WINDOW_CAP), n);

interface Window {
  sha256: string;
  start: number;
  end: number;
  /** What the window is read into (it may be longer): its length is what the budget counts. */
  buffer: Buffer;
  /** Null: the read failed (the chunk is then read again, so the device gets that read's error). */
  bytes: Promise<Buffer | null>;
  /** The bytes once read: a chunk of a window in memory is cut without a promise (`cached`). */
  ready: Buffer | null;
}

/**
 * One connection's read-ahead. A device asks for chunk after chunk, in order and one at a time
 * (ThingsBoard's SDK and ours, reference §3.4), and a read on the thread pool costs as much as the
 * rest of an answer. So the blob is read in windows of at least READ_AHEAD_WINDOW bytes or
 * CHUNKS_PER_WINDOW chunks (`windowFor`; CHUNKS_PER_SMALL_WINDOW when the budget is short): a chunk
 * is cut from the window that holds it, and once a window is in use the next one is read, while
 * the device handles what it got. At most two windows per connection,
 * within the transport's budget; without room there, or for a request elsewhere in the blob, the
 * chunk is read as before. Blobs never change under their name (content-addressed), so a window is
 * never stale; a deleted package's are dropped (`forget`).
 *
 * A window done with is read into again for the next one, once `written` says the connection
 * holds no chunk cut from it (everything written went to the kernel): a fresh large buffer per
 * window costs the kernel more than the read itself (mapping and faulting its pages in).
 */
export class ChunkReadAhead {
  /** Consecutive windows of one blob, in order: the one in use and the one after it. */
  private windows: Window[] = [];
  /** A window's buffer kept for the next window (within the budget, as when it was a window). */
  private spare: Buffer | null = null;

  constructor(
    private readonly reader: BlobReader,
    private readonly budget: ReadAheadBudget,
    /** Whether every chunk handed out so far has been written out; never, unless told. */
    private readonly written: () => boolean = () => false,
  ) {}

  /**
   * Bytes `[start, end)` of the blob, `total` bytes long, when a window holding them is in memory
   * already (the next one is then read ahead, as `read` does), else undefined (then `read`): the
   * common case of a download in order, answered in the turn its request came.
   */
  cached(sha256: string, start: number, end: number, total: number): Buffer | undefined {
    this.dropBefore(sha256, start);
    const w = this.windows[0];
    if (!w?.ready || start < w.start || end > w.end) return undefined;
    this.readNext(total, end - start);
    return w.ready.subarray(start - w.start, end - w.start);
  }

  /** Bytes `[start, end)` of the blob, `total` bytes long. */
  async read(sha256: string, start: number, end: number, total: number): Promise<Buffer> {
    this.dropBefore(sha256, start);
    let w = this.windows.find((x) => x.start <= start && end <= x.end);
    if (!w) {
      this.clear();
      w = this.load(sha256, start, total, end - start);
    }
    this.readNext(total, end - start);
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
    this.releaseSpare();
  }

  /** Windows of another blob, or wholly before `start`, will not be asked for again. */
  private dropBefore(sha256: string, start: number): void {
    while (this.windows.length && (this.windows[0]?.sha256 !== sha256 || (this.windows[0]?.end ?? 0) <= start)) this.drop(0);
  }

  /** Starts reading the window after the last one held, for chunks of `n` bytes, unless the blob ends there. */
  private readNext(total: number, n: number): void {
    const last = this.windows[this.windows.length - 1];
    if (last) this.load(last.sha256, last.end, total, n);
  }

  /**
   * Starts reading the window from `start` for chunks of `n` bytes, if fewer than two are held and
   * the budget has room (for a smaller window when not for a full one); answers it.
   */
  private load(sha256: string, start: number, total: number, n: number): Window | undefined {
    if (this.windows.length >= 2 || start >= total) return undefined;
    let end = Math.min(total, start + windowFor(n));
    let buffer = this.buffer(end - start);
    if (!buffer) {
      end = Math.min(total, start + windowFor(n, CHUNKS_PER_SMALL_WINDOW));
      buffer = this.buffer(end - start);
    }
    if (!buffer) return undefined;
    const w: Window = { sha256, start, end, buffer, bytes: this.reader.read(sha256, start, end, buffer).catch(() => null), ready: null };
    void w.bytes.then((b) => (w.ready = b));
    this.windows.push(w);
    return w;
  }

  /** A window done with: its buffer is kept for the next one when nothing cut from it can still be waiting to be sent. */
  private drop(i: number): void {
    const [w] = this.windows.splice(i, 1);
    if (!w) return;
    // `ready`: the read into it is over (a read under way, or failed, keeps it from being reused).
    if (!this.spare && w.ready && this.written()) this.spare = w.buffer;
    else this.budget.give(w.buffer.length);
  }

  /** A buffer of `n` bytes or more within the budget: the spare if it is large enough, else a new one; null without room. */
  private buffer(n: number): Buffer | null {
    const spare = this.spare;
    if (spare && spare.length >= n) {
      this.spare = null;
      return spare;
    }
    this.releaseSpare();
    return this.budget.take(n) ? Buffer.allocUnsafe(n) : null;
  }

  private releaseSpare(): void {
    if (this.spare) this.budget.give(this.spare.length);
    this.spare = null;
  }
}
