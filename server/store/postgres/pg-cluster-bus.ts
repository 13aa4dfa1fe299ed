import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { CLUSTER_MESSAGE_MAX_BYTES, type ClusterBus } from '../cluster-bus';
import type { Logger } from '../../logger';

/** The one channel of our instances: topics travel inside the payload. */
const CHANNEL = 'ota_cluster';
/** After losing its connection the listener tries again this often. */
const RECONNECT_MS = 1000;

interface Envelope {
  /** The sending instance: it does not act on its own messages. */
  from: string;
  topic: string;
  /** The payloads of one publish (as many as fit in one NOTIFY). */
  payloads?: unknown[];
  /** One payload: what instances before the packing sent, still understood during a rolling upgrade. */
  payload?: unknown;
}

/**
 * The cluster bus on PostgreSQL's LISTEN/NOTIFY: one connection of this instance listens (outside the
 * pool, since a LISTEN belongs to its session). A publish packs its payloads into as few NOTIFYs as
 * fit under PostgreSQL's payload limit (a 500-device batch of notifications is a few, not 500: each
 * NOTIFY is parsed by every listener, this instance's own included), sent in one statement on the
 * pool, delivered when it commits.
 */
export class PgClusterBus implements ClusterBus {
  readonly reachesOthers = true;
  private readonly id = randomUUID();
  private readonly listeners = new Map<string, Set<(payload: unknown) => void>>();
  private client: pg.Client | null = null;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly connectionString: string,
    private readonly logger: Pick<Logger, 'warn'> = { warn: () => undefined },
  ) {}

  /** Starts listening; resolves once LISTEN is in place, so nothing published after is missed. */
  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString });
    client.on('notification', (m) => this.heard(m.payload));
    client.on('error', (err) => {
      this.logger.warn(`cluster listener lost its PostgreSQL connection (${err.message}); reconnecting`);
      this.reconnect(client);
    });
    client.on('end', () => this.reconnect(client));
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    this.client = client;
  }

  private reconnect(old: pg.Client): void {
    if (this.closed || this.client !== old) return;
    this.client = null;
    old.end().catch(() => undefined);
    setTimeout(() => {
      if (!this.closed) this.start().catch((err: Error) => (this.logger.warn(`cluster listener cannot reconnect: ${err.message}`), this.reconnect(old)));
    }, RECONNECT_MS).unref();
  }

  async publish(topic: string, payloads: readonly unknown[]): Promise<void> {
    const texts = packed(this.id, topic, payloads, (bytes) => this.logger.warn(`cluster message on '${topic}' too large for NOTIFY (${bytes} bytes): not sent`));
    if (texts.length) await this.pool.query(`SELECT pg_notify('${CHANNEL}', t) FROM unnest($1::text[]) AS t`, [texts]);
  }

  subscribe(topic: string, listener: (payload: unknown) => void): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  private heard(text: string | undefined): void {
    if (!text) return;
    let envelope: Envelope;
    try {
      envelope = JSON.parse(text) as Envelope;
    } catch {
      return;
    }
    if (envelope.from === this.id) return;
    const listeners = this.listeners.get(envelope.topic);
    if (!listeners) return;
    const payloads = Array.isArray(envelope.payloads) ? envelope.payloads : 'payload' in envelope ? [envelope.payload] : [];
    for (const payload of payloads) for (const listener of listeners) listener(payload);
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}

/**
 * Envelopes of `payloads` in order, each under CLUSTER_MESSAGE_MAX_BYTES with as many payloads as
 * fit. A payload too large on its own goes to `tooLarge` and is left out.
 */
export function packed(from: string, topic: string, payloads: readonly unknown[], tooLarge: (bytes: number) => void): string[] {
  const head = `{"from":${JSON.stringify(from)},"topic":${JSON.stringify(topic)},"payloads":[`;
  const tail = ']}';
  const room = CLUSTER_MESSAGE_MAX_BYTES - Buffer.byteLength(head) - Buffer.byteLength(tail);
  const out: string[] = [];
  let parts: string[] = [];
  let used = 0;
  for (const payload of payloads) {
    const text = JSON.stringify(payload) ?? 'null';
    const bytes = Buffer.byteLength(text);
    if (bytes > room) {
      tooLarge(bytes + CLUSTER_MESSAGE_MAX_BYTES - room);
      continue;
    }
    // A comma before every payload but the first.
    if (parts.length && used + 1 + bytes > room) {
      out.push(head + parts.join(',') + tail);
      parts = [];
      used = 0;
    }
    used += (parts.length ? 1 : 0) + bytes;
    parts.push(text);
  }
  if (parts.length) out.push(head + parts.join(',') + tail);
  return out;
}
