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

interface Slot {
  sha256: string;
  start: number;
  end: number;
  bytes: Promise<Buffer | null>;
}

/**
 * One connection's read-ahead. A device asks for chunk after chunk, one at a time (ThingsBoard's
 * SDK and ours, reference §3.4): while it handles chunk n, chunk n+1 of the same size is read from
 * the blob store, so its request is answered from memory instead of waiting for a read on the
 * thread pool (a round trip that costs as much as the rest of the answer). One chunk is held per
 * connection, within the transport's budget; a request for anything else reads as before.
 */
export class ChunkReadAhead {
  private slot: Slot | null = null;

  constructor(
    private readonly reader: BlobReader,
    private readonly budget: ReadAheadBudget,
  ) {}

  /** Bytes `[start, end)` of the blob (of `total` bytes); then reads the next range of that length ahead. */
  async read(sha256: string, start: number, end: number, total: number): Promise<Buffer> {
    const slot = this.take();
    let bytes = slot && slot.sha256 === sha256 && slot.start === start && slot.end === end ? await slot.bytes : null;
    // A read ahead that failed is tried again now, so the device gets the error a read gives.
    bytes ??= await this.reader.read(sha256, start, end);
    this.ahead(sha256, end, Math.min(end + (end - start), total));
    return bytes;
  }

  /** Drops what is held of a blob (its package was deleted: not one more byte of it from memory). */
  forget(sha256: string): void {
    if (this.slot?.sha256 === sha256) this.take();
  }

  /** The connection closed. */
  clear(): void {
    this.take();
  }

  private ahead(sha256: string, start: number, end: number): void {
    if (end <= start || !this.budget.take(end - start)) return;
    this.slot = { sha256, start, end, bytes: this.reader.read(sha256, start, end).catch(() => null) };
  }

  private take(): Slot | null {
    const slot = this.slot;
    this.slot = null;
    if (slot) this.budget.give(slot.end - slot.start);
    return slot;
  }
}
