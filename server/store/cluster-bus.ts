/**
 * Messages between the instances sharing one store: what one instance decides and another must act
 * on (a notification for a device whose session is there). Fire and forget: a message is for
 * instances listening now; what must survive a restart is in the store.
 */
export interface ClusterBus {
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

/** The most a single payload's JSON may take (PostgreSQL's NOTIFY carries under 8000 bytes, envelope included). */
export const CLUSTER_PAYLOAD_MAX_BYTES = 7600;

/** The bus of a store no other instance shares (SQLite): nobody else to tell. */
export class LoneInstanceBus implements ClusterBus {
  async publish(): Promise<void> {}
  subscribe(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}
