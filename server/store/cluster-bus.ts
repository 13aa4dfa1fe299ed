/**
 * Messages between the instances sharing one store: what one instance decides and another must act
 * on (a notification for a device whose session is there). Fire and forget: a message is for
 * instances listening now; what must survive a restart is in the store.
 */
export interface ClusterBus {
  /** False when no other instance can hear this one (SQLite): publishing is then wasted work. */
  readonly reachesOthers: boolean;
  /**
   * Sends `payloads` (JSON values) on `topic` to every other instance; this one does not hear them.
   * The payloads of one call travel together, as few messages as fit; a payload whose JSON exceeds
   * CLUSTER_PAYLOAD_MAX_BYTES may be dropped (with a warning).
   */
  publish(topic: string, payloads: readonly unknown[]): Promise<void>;
  /** Hears `topic` from the other instances; answers the unsubscribe. */
  subscribe(topic: string, listener: (payload: unknown) => void): () => void;
  close(): Promise<void>;
}

/**
 * The most one bus message may take, envelope included: PostgreSQL refuses a NOTIFY payload of
 * 8,000 bytes or more (the only bus with a limit), less a margin.
 */
export const CLUSTER_MESSAGE_MAX_BYTES = 7900;

/** The most a single payload's JSON may take: one message less its envelope (sender id and topic, ~60 bytes plus the topic's). */
export const CLUSTER_PAYLOAD_MAX_BYTES = CLUSTER_MESSAGE_MAX_BYTES - 300;

/** The bus of a store no other instance shares (SQLite): nobody else to tell. */
export class LoneInstanceBus implements ClusterBus {
  readonly reachesOthers = false;
  async publish(): Promise<void> {}
  subscribe(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}
