import type { DeviceRow } from '../store/fleet-read-model';
import type { LiveEvent } from './fleet-watch';

/** The first event of a stream: its time and its name for `follow`. */
export interface ReadyEvent {
  event: 'ready';
  data: { ts: number; stream: string | null };
}

/** What a live stream writes to: an HTTP response, seen as a writable stream. */
export interface EventSink {
  write(chunk: string): boolean;
  readonly writableNeedDrain: boolean;
  readonly writableLength: number;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  on(event: 'drain', listener: () => void): unknown;
  off(event: 'drain', listener: () => void): unknown;
}

/**
 * One live stream's server-sent events, written so that a client that stops reading costs a bounded
 * amount of memory. While its socket is backed up (Node's buffer past its high-water mark), nothing
 * more is written: `devices` events merge into one pending set of rows (the latest row of each
 * device), `metrics` keep only the latest, and once the set passes `maxBacklog` devices it becomes
 * the page's own "reload" (`more: true`, as after a pruned change log). All of it goes out on
 * `drain`. Progress is not kept here: it is refused, and LiveProgress offers it again, newer.
 * What the socket holds is then at most its high-water mark plus one event.
 */
export class LiveOutbox {
  /** Devices of merged `devices` events: the latest row, or null once removed. */
  private rows = new Map<string, DeviceRow | null>();
  /** Too many devices changed while the client did not read: the page reloads instead. */
  private reload = false;
  private metrics: LiveEvent | null = null;
  private readonly flush = (): void => this.writePending();

  constructor(
    private readonly out: EventSink,
    private readonly maxBacklog: number,
  ) {
    out.on('drain', this.flush);
  }

  /** Writes the event, or keeps what it says for `drain`; false only for progress not taken (see ProgressSink). */
  send(ev: LiveEvent | ReadyEvent): boolean {
    if (this.out.writableEnded || this.out.destroyed) return false;
    if (!this.backedUp) this.write(ev);
    else if (ev.event === 'devices') this.merge(ev.data);
    else if (ev.event === 'metrics') this.metrics = ev;
    else return false;
    return true;
  }

  /** A comment line (keep-alive): nothing to say to a client that has not read what came before. */
  comment(text: string): void {
    if (!this.backedUp && !this.out.writableEnded && !this.out.destroyed) this.out.write(`: ${text}\n\n`);
  }

  /** Devices waiting for the client to read (0 after a reload took their place). */
  get pendingDevices(): number {
    return this.rows.size;
  }

  /** Bytes written and not yet taken by the socket. */
  get bufferedBytes(): number {
    return this.out.writableLength;
  }

  close(): void {
    this.out.off('drain', this.flush);
    this.rows.clear();
    this.metrics = null;
  }

  private get backedUp(): boolean {
    return this.out.writableNeedDrain || this.reload || this.rows.size > 0 || this.metrics !== null;
  }

  /** False once the socket is backed up. */
  private write(ev: LiveEvent | ReadyEvent): boolean {
    return this.out.write(`event: ${ev.event}\ndata: ${JSON.stringify(ev.data)}\n\n`);
  }

  private merge(data: { rows: DeviceRow[]; removed: string[]; more: boolean }): void {
    if (this.reload) return;
    for (const row of data.rows) this.rows.set(row.id, row);
    for (const id of data.removed) this.rows.set(id, null);
    if (data.more || this.rows.size > this.maxBacklog) {
      this.reload = true;
      this.rows.clear();
    }
  }

  /** What waits, devices before metrics (the order the watcher sends them in), until the socket is full again. */
  private writePending(): void {
    if (this.out.writableEnded || this.out.destroyed) return;
    if (this.reload || this.rows.size) {
      const rows: DeviceRow[] = [];
      const removed: string[] = [];
      for (const [id, row] of this.rows) {
        if (row) rows.push(row);
        else removed.push(id);
      }
      const more = this.reload;
      this.reload = false;
      this.rows = new Map();
      if (!this.write({ event: 'devices', data: { rows, removed, more } })) return;
    }
    if (this.metrics) {
      const ev = this.metrics;
      this.metrics = null;
      this.write(ev);
    }
  }
}
