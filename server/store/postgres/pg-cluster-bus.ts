import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { ClusterBus } from '../cluster-bus';
import type { Logger } from '../../logger';

/** The one channel of our instances: topics travel inside the payload. */
const CHANNEL = 'ota_cluster';
/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. */
const MAX_PAYLOAD = 7900;
/** After losing its connection the listener tries again this often. */
const RECONNECT_MS = 1000;

interface Envelope {
  /** The sending instance: it does not act on its own messages. */
  from: string;
  topic: string;
  payload: unknown;
}

/**
 * The cluster bus on PostgreSQL's LISTEN/NOTIFY: one connection of this instance listens (outside the
 * pool, since a LISTEN belongs to its session); publishing is one `pg_notify` per message, sent for
 * a whole batch in one statement on the pool, delivered when it commits.
 */
export class PgClusterBus implements ClusterBus {
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
    const texts: string[] = [];
    for (const payload of payloads) {
      const text = JSON.stringify({ from: this.id, topic, payload } satisfies Envelope);
      if (Buffer.byteLength(text) > MAX_PAYLOAD) this.logger.warn(`cluster message on '${topic}' too large for NOTIFY (${Buffer.byteLength(text)} bytes): not sent`);
      else texts.push(text);
    }
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
    for (const listener of this.listeners.get(envelope.topic) ?? []) listener(envelope.payload);
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
