import { EventEmitter } from 'node:events';
import type { DeviceId } from '../../ids';
import type { Timers } from '../../timers';
import { Code, ContentFormat, encodeReply, peerKey, type CoapRequest, type Peer, type Reply } from './messages';
import type { AttributeMap } from '../../store/attributes';
import { ProtoPayloads } from '../proto-payloads';
import type { TransmissionParams } from './retransmission';

/** How many observations are held: per device (OTA_COAP_MAX_OBSERVATIONS_PER_DEVICE) and in all (OTA_COAP_MAX_OBSERVATIONS). */
export interface ObservationLimits {
  maxPerDevice: number;
  maxTotal: number;
}

/** Max-Age of a refused registration: when to try again [RFC 8516 §3]. */
const RETRY_AFTER_S = 30;

/** Shared attributes changed and deleted, as a notification carries them. */
export interface AttributeUpdate {
  attributes: AttributeMap;
  deleted: readonly string[];
}

/** Why an observation ended. */
export type ObservationEnd = 'cancelled' | 'reset' | 'timeout' | 'too far behind' | 'device deleted' | 'credentials changed' | 'replaced' | 'stopped';

/** One device observing its attributes from one peer, under one token [RFC 7641 §4.1]. */
interface Observation {
  readonly key: string;
  readonly deviceId: DeviceId;
  readonly peer: Peer;
  readonly token: Buffer;
  /** Its device's profile is protobuf: notifications are ThingsBoard's AttributeUpdateNotificationMsg. */
  proto: boolean;
  /** Notifications are CON when the registration was [reference §5: "CON/NON follows the registering request"]. */
  confirmable: boolean;
  /** When the peer last showed it still wants the notifications: its registration, or an ACK. */
  heardAt: number;
  /** The next Observe value: 0 for the registration's answer, then counting [reference §5]. */
  sequence: number;
  /** Message id of the last message sent on its own (not as an ACK), for a RST that cancels it. */
  recent: number | null;
  /** A confirmable notification waiting for its ACK, and the ones queued behind it. */
  inFlight: { messageId: number; bytes: Buffer; retransmits: number; timeoutMs: number; timer: unknown } | null;
  queue: Reply[];
}

/**
 * A non-confirmable observer gets a confirmable notification when it has not been heard from for
 * this long, so that one that went away is found out and dropped [RFC 7641 §4.5: "at least every
 * 24 hours"].
 */
const CHECK_NON_OBSERVER_MS = 24 * 60 * 60 * 1000;

/** Notifications queued behind an unacknowledged one; past this the device is too far behind to be served. */
const MAX_QUEUED = 64;

export interface ObservationEvents {
  /** The number of observations changed. */
  observers: [count: number];
  ended: [{ deviceId: DeviceId; peer: Peer; reason: ObservationEnd }];
}

/**
 * The devices observing `/api/v1/{token}/attributes`, and the notifications sent to them:
 *
 * - the registration's answer has Observe 0 and all shared attributes; each notification counts on
 *   [reference §5; ThingsBoard's `getObserveCounter().getAndIncrement()`];
 * - confirmable notifications are retransmitted with exponential back-off; when the last one is
 *   unanswered the observation ends [RFC 7641 §4.5]. Later notifications wait for the ACK instead
 *   of replacing the one in flight (RFC 7641 §4.5.2 allows replacing, but ThingsBoard's updates
 *   are deltas: each must arrive);
 * - a RST to a notification, or a GET with Observe 1, ends it [RFC 7641 §3.6];
 * - a non-confirmable observer not heard from for 24 hours gets its next notification
 *   confirmable, and is dropped if it does not answer [RFC 7641 §4.5].
 */
export class Observations extends EventEmitter<ObservationEvents> {
  private readonly byKey = new Map<string, Observation>();
  private readonly byDevice = new Map<DeviceId, Set<Observation>>();
  /** `peer/messageId` of the messages an ACK or RST may answer: each observation's last, and its confirmable one in flight. */
  private readonly byMessage = new Map<string, Observation>();

  constructor(
    private readonly send: (bytes: Buffer, peer: Peer) => void,
    private readonly timers: Timers,
    private readonly params: TransmissionParams,
    private readonly limits: ObservationLimits,
    private readonly random: () => number = Math.random,
  ) {
    super();
  }

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Registers (or renews, RFC 7641 §4.1) the observation `req` asks for, and answers its first
   * notification: the shared attributes in `attributes`. A new observation past a limit is refused
   * instead (4.29 past the device's, 5.03 past the total), and nothing is registered.
   */
  accept(req: CoapRequest, deviceId: DeviceId, attributes: AttributeMap, proto = false): Reply {
    const key = observationKey(req.peer, req.token);
    let obs = this.byKey.get(key);
    if (obs && obs.deviceId !== deviceId) {
      this.end(obs, 'cancelled');
      obs = undefined;
    }
    if (!obs) {
      const refusal = this.overLimit(deviceId, req.peer);
      if (refusal) return refusal;
      obs = { key, deviceId, peer: req.peer, token: req.token, proto, confirmable: req.confirmable, heardAt: 0, sequence: 0, recent: null, inFlight: null, queue: [] };
      this.byKey.set(key, obs);
      let set = this.byDevice.get(deviceId);
      if (!set) this.byDevice.set(deviceId, (set = new Set()));
      set.add(obs);
      this.emit('observers', this.size);
    }
    obs.confirmable = req.confirmable;
    obs.proto = proto;
    obs.heardAt = this.timers.now();
    const registered = obs;
    // The answer rides on the request's own exchange; a RST to it, when it is a message of its own, cancels.
    return { ...this.notification(obs, { attributes, deleted: [] }), sent: (messageId) => this.setRecent(registered, messageId) };
  }

  /**
   * The answer to a registration past a limit [RFC 8516 §3: 4.29 with Max-Age; RFC 7252 §5.9.3.4:
   * 5.03], or null when it may be registered. A device at its limit that registers from a new
   * address or port has restarted (its old socket is gone, and a non-confirmable observer is only
   * checked on daily): its observation least recently heard from another peer makes room. From
   * one peer, the limit holds.
   */
  private overLimit(deviceId: DeviceId, peer: Peer): Reply | null {
    const own = this.byDevice.get(deviceId);
    if (own && own.size >= this.limits.maxPerDevice) {
      let stalest: Observation | null = null;
      for (const o of own) if (peerKey(o.peer) !== peerKey(peer) && (!stalest || o.heardAt < stalest.heardAt)) stalest = o;
      if (!stalest) return { code: Code.TOO_MANY_REQUESTS, maxAge: RETRY_AFTER_S };
      this.end(stalest, 'replaced');
    }
    if (this.byKey.size >= this.limits.maxTotal) return { code: Code.SERVICE_UNAVAILABLE, maxAge: RETRY_AFTER_S };
    return null;
  }

  /** A GET with Observe 1 from the same peer and token [RFC 7641 §3.6]. */
  cancel(peer: Peer, token: Buffer): boolean {
    const obs = this.byKey.get(observationKey(peer, token));
    if (obs) this.end(obs, 'cancelled');
    return obs !== undefined;
  }

  /** Sends `update` to every observer of the device; answers how many there are. */
  notify(deviceId: DeviceId, update: AttributeUpdate): number {
    const set = this.byDevice.get(deviceId);
    if (!set) return 0;
    for (const obs of [...set]) {
      const next = this.notification(obs, update);
      if (obs.inFlight) {
        if (obs.queue.length >= MAX_QUEUED) this.end(obs, 'too far behind');
        else obs.queue.push(next);
      } else this.transmit(obs, next);
    }
    return set.size;
  }

  /**
   * The device is gone, or its token changed: its observers get a final 4.04 (the resource under
   * the old token is no more), which ends an observation at the client [RFC 7641 §3.2], and are removed.
   */
  endDevice(deviceId: DeviceId, reason: 'device deleted' | 'credentials changed'): void {
    for (const obs of [...(this.byDevice.get(deviceId) ?? [])]) {
      const { bytes } = encodeReply({ code: Code.NOT_FOUND }, { token: obs.token, type: obs.confirmable ? 'CON' : 'NON' });
      this.send(bytes, obs.peer);
      this.end(obs, reason);
    }
  }

  /** An ACK or RST from a peer: true when it answered one of our messages. */
  onEmpty(kind: 'ACK' | 'RST', peer: Peer, messageId: number): boolean {
    const obs = this.byMessage.get(messageKey(peer, messageId));
    if (!obs) return false;
    if (kind === 'RST') {
      this.end(obs, 'reset');
      return true;
    }
    if (obs.inFlight?.messageId !== messageId) return true;
    this.timers.clearTimeout(obs.inFlight.timer);
    obs.inFlight = null;
    obs.heardAt = this.timers.now();
    if (obs.recent !== messageId) this.byMessage.delete(messageKey(peer, messageId));
    const next = obs.queue.shift();
    if (next) this.transmit(obs, next);
    return true;
  }

  /** Ends every observation, sending nothing (the endpoint stops). */
  clear(): void {
    for (const obs of [...this.byKey.values()]) this.end(obs, 'stopped');
  }

  /** JSON: flat, plus `deleted` when keys were deleted (reference §5); protobuf: ThingsBoard's message, octet-stream. */
  private notification(obs: Observation, update: AttributeUpdate): Reply {
    const observe = obs.sequence;
    // The Observe value has 24 bits [RFC 7641 §4.4].
    obs.sequence = (obs.sequence + 1) & 0xffffff;
    if (obs.proto)
      return { code: Code.CONTENT, observe, contentFormat: ContentFormat.OCTET_STREAM, payload: ProtoPayloads.encodeUpdate(update.attributes, update.deleted, this.timers.now()) };
    const body = update.deleted.length ? { ...update.attributes, deleted: update.deleted } : update.attributes;
    return { code: Code.CONTENT, observe, contentFormat: ContentFormat.JSON, payload: Buffer.from(JSON.stringify(body)) };
  }

  private transmit(obs: Observation, notification: Reply): void {
    const confirmable = obs.confirmable || this.timers.now() - obs.heardAt >= CHECK_NON_OBSERVER_MS;
    const { bytes, messageId } = encodeReply(notification, { token: obs.token, type: confirmable ? 'CON' : 'NON' });
    if (confirmable) {
      // The first timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR] [RFC 7252 §4.2].
      const timeoutMs = this.params.ackTimeoutMs * (1 + (this.params.ackRandomFactor - 1) * this.random());
      obs.inFlight = { messageId, bytes, retransmits: 0, timeoutMs, timer: null };
      this.arm(obs);
    }
    this.setRecent(obs, messageId);
    this.send(bytes, obs.peer);
  }

  /** Waits for the ACK; retransmits with the timeout doubled, MAX_RETRANSMIT times, then gives up. */
  private arm(obs: Observation): void {
    const f = obs.inFlight;
    if (!f) return;
    f.timer = this.timers.setTimeout(() => {
      if (obs.inFlight !== f) return;
      if (f.retransmits >= this.params.maxRetransmit) return this.end(obs, 'timeout');
      f.retransmits += 1;
      f.timeoutMs *= 2;
      this.arm(obs);
      this.send(f.bytes, obs.peer);
    }, f.timeoutMs);
  }

  /** The message a RST may answer; the one in flight stays known until its ACK whatever is sent meanwhile. */
  private setRecent(obs: Observation, messageId: number | null): void {
    const old = obs.recent;
    if (old !== null && old !== obs.inFlight?.messageId) this.byMessage.delete(messageKey(obs.peer, old));
    obs.recent = messageId;
    if (messageId !== null) this.byMessage.set(messageKey(obs.peer, messageId), obs);
  }

  private end(obs: Observation, reason: ObservationEnd): void {
    if (this.byKey.get(obs.key) !== obs) return;
    if (obs.inFlight) {
      this.timers.clearTimeout(obs.inFlight.timer);
      this.byMessage.delete(messageKey(obs.peer, obs.inFlight.messageId));
    }
    obs.inFlight = null;
    obs.queue = [];
    this.setRecent(obs, null);
    this.byKey.delete(obs.key);
    const set = this.byDevice.get(obs.deviceId);
    set?.delete(obs);
    if (set?.size === 0) this.byDevice.delete(obs.deviceId);
    this.emit('ended', { deviceId: obs.deviceId, peer: obs.peer, reason });
    this.emit('observers', this.size);
  }
}

const observationKey = (peer: Peer, token: Buffer): string => `${peerKey(peer)}#${token.toString('hex')}`;
const messageKey = (peer: Peer, messageId: number): string => `${peerKey(peer)}/${messageId}`;
