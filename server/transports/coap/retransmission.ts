import type { Timers } from '../../timers';
import type { Peer } from './messages';

/** Transmission parameters [RFC 7252 §4.8]. */
export interface TransmissionParams {
  ackTimeoutMs: number;
  ackRandomFactor: number;
  maxRetransmit: number;
}

/** How a confirmable message ended: acknowledged (an empty ACK or a piggybacked response), reset, or never answered. */
export type Delivery = 'ack' | 'reset' | 'timeout';

/** A newer message that takes the place of one being retransmitted. */
export interface Replacement {
  bytes: Buffer;
  messageId: number;
}

interface Pending {
  key: string;
  bytes: Buffer;
  peer: Peer;
  /** Asked at each retransmission for a message that replaces this one from then on. */
  newer: (() => Replacement | undefined) | undefined;
  retransmits: number;
  timeoutMs: number;
  timer: unknown;
  done(outcome: Delivery): void;
}

/**
 * Our own confirmable messages, retransmitted until acknowledged [RFC 7252 §4.2]: the first
 * timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR], doubled at each of at most
 * MAX_RETRANSMIT retransmissions; then the message is given up. Keyed by peer and message id, as
 * the ACK or RST that ends it is matched [§4.4].
 *
 * A message may be superseded while it waits: an observation's notification, when the resource
 * changed again, is replaced at its next retransmission by a newer one, which takes over its
 * retransmission counter and timeout [RFC 7641 §4.5.2], so that one notification at most is in
 * flight to an observer and a device that went away is given up on at the same time as before.
 */
export class Retransmission {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly send: (bytes: Buffer, peer: Peer) => void,
    private readonly timers: Timers,
    private readonly params: TransmissionParams,
    private readonly random: () => number = Math.random,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /**
   * Sends `bytes` (a CON message with id `messageId`) and resolves how it ended: the ACK or RST
   * may answer it or the replacement `newer` gave at a retransmission.
   */
  sendConfirmable(bytes: Buffer, peer: Peer, messageId: number, newer?: () => Replacement | undefined): Promise<Delivery> {
    const key = messageKey(peer, messageId);
    this.pending.get(key)?.done('timeout');
    return new Promise<Delivery>((resolve) => {
      const timeoutMs = this.params.ackTimeoutMs * (1 + (this.params.ackRandomFactor - 1) * this.random());
      const p: Pending = {
        key,
        bytes,
        peer,
        newer,
        retransmits: 0,
        timeoutMs,
        timer: null,
        done: (outcome) => {
          if (this.pending.get(p.key) !== p) return;
          this.pending.delete(p.key);
          this.timers.clearTimeout(p.timer);
          resolve(outcome);
        },
      };
      this.pending.set(key, p);
      this.arm(p);
      this.send(bytes, peer);
    });
  }

  /** An ACK or RST (or a piggybacked response) for one of our messages: true when it was one. */
  answered(peer: Peer, messageId: number, kind: 'ack' | 'reset'): boolean {
    const p = this.pending.get(messageKey(peer, messageId));
    if (!p) return false;
    p.done(kind);
    return true;
  }

  /** Stops retransmitting a message of ours (whoever sent it no longer needs it); it ends as 'timeout'. */
  giveUp(peer: Peer, messageId: number): void {
    this.pending.get(messageKey(peer, messageId))?.done('timeout');
  }

  /** Gives every message up (the endpoint stops). */
  clear(): void {
    for (const p of [...this.pending.values()]) p.done('timeout');
  }

  private arm(p: Pending): void {
    p.timer = this.timers.setTimeout(() => {
      if (this.pending.get(p.key) !== p) return;
      if (p.retransmits >= this.params.maxRetransmit) return p.done('timeout');
      p.retransmits += 1;
      p.timeoutMs *= 2;
      const replacement = p.newer?.();
      if (replacement) {
        // From now on only the newer message is sent, and only its ACK or RST ends the exchange.
        this.pending.delete(p.key);
        p.key = messageKey(p.peer, replacement.messageId);
        p.bytes = replacement.bytes;
        this.pending.get(p.key)?.done('timeout');
        this.pending.set(p.key, p);
      }
      this.arm(p);
      this.send(p.bytes, p.peer);
    }, p.timeoutMs);
  }
}

export const messageKey = (peer: Peer, messageId: number): string => `${peer.address}:${peer.port}/${messageId}`;
