import { EventEmitter } from 'node:events';
import type { DeviceId, DeviceProfileId, TenantId } from '../../ids';
import type { Timers } from '../../timers';
import { Code, ContentFormat, encodeReply, peerKey, type CoapRequest, type Peer, type Reply } from './messages';
import type { Delivery, Replacement } from './retransmission';
import type { AttributeMap } from '../../store/attributes';
import { ProtoPayloads } from '../proto-payloads';

/** The message layer notifications go out through: the endpoint's (endpoint.ts), which retransmits the confirmable ones. */
export interface NotificationChannel {
  send(bytes: Buffer, peer: Peer): void;
  sendConfirmable(bytes: Buffer, peer: Peer, newer?: () => Replacement | undefined): Promise<Delivery>;
  giveUp(peer: Peer, messageId: number): void;
}

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
export type ObservationEnd = 'cancelled' | 'reset' | 'timeout' | 'device deleted' | 'credentials changed' | 'replaced' | 'stopped';

/** One device observing its attributes from one peer, under one token [RFC 7641 §4.1]. */
interface Observation {
  readonly key: string;
  readonly deviceId: DeviceId;
  /** Its device's tenant, for a tenant's own count; null when the caller did not say. */
  readonly tenantId: TenantId | null;
  readonly peer: Peer;
  readonly token: Buffer;
  /** Its device's profile, kept as saved (here or on another instance); null when the caller did not say. */
  profileId: DeviceProfileId | null;
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
  /** The confirmable notification waiting for its ACK (in the endpoint's retransmission), and what it carries. */
  inFlight: InFlight | null;
  /** Every update since the one in flight, merged: sent when it is acknowledged, or in its place at its next retransmission. */
  next: AttributeUpdate | null;
}

interface InFlight {
  messageId: number;
  update: AttributeUpdate;
}

/**
 * A non-confirmable observer gets a confirmable notification when it has not been heard from for
 * this long, so that one that went away is found out and dropped [RFC 7641 §4.5: "at least every
 * 24 hours"].
 */
const CHECK_NON_OBSERVER_MS = 24 * 60 * 60 * 1000;

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
 * - confirmable notifications go through the endpoint's message layer, retransmitted with
 *   exponential back-off; when the last one is unanswered the observation ends [RFC 7641 §4.5].
 *   One is in flight at a time [RFC 7252 §4.7, RFC 7641 §4.5.1]: updates meanwhile are merged,
 *   and sent when it is acknowledged, or at its next retransmission as a newer notification that
 *   replaces it, taking over its retransmission counter and timeout [RFC 7641 §4.5.2].
 *   ThingsBoard's updates are deltas, so the replacement carries the replaced one's keys too:
 *   nothing is lost;
 * - a RST to a notification, or a GET with Observe 1, ends it [RFC 7641 §3.6];
 * - a non-confirmable observer not heard from for 24 hours gets its next notification
 *   confirmable, and is dropped if it does not answer [RFC 7641 §4.5].
 */
export class Observations extends EventEmitter<ObservationEvents> {
  private readonly byKey = new Map<string, Observation>();
  private readonly byDevice = new Map<DeviceId, Set<Observation>>();
  /** `peer/messageId` of each observation's last message of its own, which a RST may answer. */
  private readonly byMessage = new Map<string, Observation>();
  /** Cleared for good (the transport stops): registrations still being answered are refused. */
  private closed = false;

  constructor(
    private readonly channel: NotificationChannel,
    private readonly timers: Timers,
    private readonly limits: ObservationLimits,
  ) {
    super();
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Observations of one tenant's devices. */
  sizeOf(tenantId: TenantId): number {
    let n = 0;
    for (const o of this.byKey.values()) if (o.tenantId === tenantId) n += 1;
    return n;
  }

  /**
   * Registers (or renews, RFC 7641 §4.1) the observation `req` asks for, and answers its first
   * notification: the shared attributes in `attributes`. A new observation past a limit is refused
   * instead (4.29 past the device's, 5.03 past the total), and nothing is registered.
   */
  accept(req: CoapRequest, deviceId: DeviceId, attributes: AttributeMap, proto = false, tenantId: TenantId | null = null, profileId: DeviceProfileId | null = null): Reply {
    if (this.closed) return { code: Code.SERVICE_UNAVAILABLE };
    const key = observationKey(req.peer, req.token);
    let obs = this.byKey.get(key);
    if (obs && obs.deviceId !== deviceId) {
      this.end(obs, 'cancelled');
      obs = undefined;
    }
    if (!obs) {
      const refusal = this.overLimit(deviceId, req.peer);
      if (refusal) return refusal;
      obs = {
        key,
        deviceId,
        tenantId,
        profileId,
        peer: req.peer,
        token: req.token,
        proto,
        confirmable: req.confirmable,
        heardAt: 0,
        sequence: 0,
        recent: null,
        inFlight: null,
        next: null,
      };
      this.byKey.set(key, obs);
      let set = this.byDevice.get(deviceId);
      if (!set) this.byDevice.set(deviceId, (set = new Set()));
      set.add(obs);
      this.emit('observers', this.size);
    }
    obs.confirmable = req.confirmable;
    obs.proto = proto;
    obs.profileId = profileId;
    obs.heardAt = this.timers.now();
    const registered = obs;
    // The answer rides on the request's own exchange; a RST to it, when it is a message of its own, cancels.
    return { ...this.reply(obs, { attributes, deleted: [] }), sent: (messageId) => this.setRecent(registered, messageId) };
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
    for (const obs of set) {
      if (obs.inFlight) obs.next = obs.next ? mergeUpdates(obs.next, update) : update;
      else this.transmit(obs, update);
    }
    return set.size;
  }

  /** Whether the device is observed here. */
  observes(deviceId: DeviceId): boolean {
    return this.byDevice.has(deviceId);
  }

  /** Whether a device of this profile is observed here. */
  observesProfile(tenantId: TenantId, profileId: DeviceProfileId): boolean {
    for (const o of this.byKey.values()) if (o.profileId === profileId && o.tenantId === tenantId) return true;
    return false;
  }

  /**
   * The device's profile, or the payload type of every device of a profile, changed: later
   * notifications are in the payload type it now has (ThingsBoard's `onDeviceProfileUpdate`).
   */
  setPayloadType(of: { deviceId: DeviceId; tenantId: TenantId } | { profileId: DeviceProfileId; tenantId: TenantId }, profileId: DeviceProfileId, proto: boolean): void {
    const observations = 'deviceId' in of ? (this.byDevice.get(of.deviceId) ?? []) : [...this.byKey.values()].filter((o) => o.profileId === of.profileId);
    for (const o of observations) {
      if (o.tenantId !== null && o.tenantId !== of.tenantId) continue;
      o.profileId = profileId;
      o.proto = proto;
    }
  }

  /**
   * The device is gone, or its token changed: its observers get a final 4.04 (the resource under
   * the old token is no more), which ends an observation at the client [RFC 7641 §3.2], and are removed.
   */
  endDevice(deviceId: DeviceId, reason: 'device deleted' | 'credentials changed'): void {
    for (const obs of [...(this.byDevice.get(deviceId) ?? [])]) {
      const { bytes } = encodeReply({ code: Code.NOT_FOUND }, { token: obs.token, type: obs.confirmable ? 'CON' : 'NON' });
      this.channel.send(bytes, obs.peer);
      this.end(obs, reason);
    }
  }

  /** A RST no message in retransmission was waiting for: true when it answered an observation's last message [RFC 7641 §3.6]. */
  onReset(peer: Peer, messageId: number): boolean {
    const obs = this.byMessage.get(messageKey(peer, messageId));
    if (obs) this.end(obs, 'reset');
    return obs !== undefined;
  }

  /** Ends every observation, sending nothing, and takes no more (the transport stops). */
  clear(): void {
    this.closed = true;
    for (const obs of [...this.byKey.values()]) this.end(obs, 'stopped');
  }

  /** The next notification of `obs`, numbered. JSON: flat, plus `deleted` when keys were deleted (reference §5); protobuf: ThingsBoard's message, octet-stream. */
  private reply(obs: Observation, update: AttributeUpdate): Reply {
    const observe = obs.sequence;
    // The Observe value has 24 bits [RFC 7641 §4.4].
    obs.sequence = (obs.sequence + 1) & 0xffffff;
    if (obs.proto)
      return { code: Code.CONTENT, observe, contentFormat: ContentFormat.OCTET_STREAM, payload: ProtoPayloads.encodeUpdate(update.attributes, update.deleted, this.timers.now()) };
    const body = update.deleted.length ? { ...update.attributes, deleted: update.deleted } : update.attributes;
    return { code: Code.CONTENT, observe, contentFormat: ContentFormat.JSON, payload: Buffer.from(JSON.stringify(body)) };
  }

  /** The next notification of `obs` as a message of its own, which a RST may answer. */
  private notification(obs: Observation, update: AttributeUpdate, confirmable: boolean): { bytes: Buffer; messageId: number } {
    const encoded = encodeReply(this.reply(obs, update), { token: obs.token, type: confirmable ? 'CON' : 'NON' });
    this.setRecent(obs, encoded.messageId);
    return encoded;
  }

  private transmit(obs: Observation, update: AttributeUpdate): void {
    const confirmable = obs.confirmable || this.timers.now() - obs.heardAt >= CHECK_NON_OBSERVER_MS;
    const { bytes, messageId } = this.notification(obs, update, confirmable);
    if (!confirmable) return this.channel.send(bytes, obs.peer);
    const flight: InFlight = { messageId, update };
    obs.inFlight = flight;
    void this.channel.sendConfirmable(bytes, obs.peer, () => this.replacement(obs, flight)).then((outcome) => this.delivered(obs, flight, outcome));
  }

  /**
   * At a retransmission of the notification in flight: when updates came since, a newer
   * notification carrying them and the one it replaces [RFC 7641 §4.5.2].
   */
  private replacement(obs: Observation, flight: InFlight): Replacement | undefined {
    if (obs.inFlight !== flight || !obs.next) return undefined;
    flight.update = mergeUpdates(flight.update, obs.next);
    obs.next = null;
    const encoded = this.notification(obs, flight.update, true);
    flight.messageId = encoded.messageId;
    return encoded;
  }

  /** How the notification in flight ended: acknowledged (the next one goes), reset or unanswered (the observation ends) [RFC 7641 §4.5]. */
  private delivered(obs: Observation, flight: InFlight, outcome: Delivery): void {
    if (this.byKey.get(obs.key) !== obs || obs.inFlight !== flight) return;
    if (outcome !== 'ack') return this.end(obs, outcome);
    obs.inFlight = null;
    obs.heardAt = this.timers.now();
    const next = obs.next;
    obs.next = null;
    if (next) this.transmit(obs, next);
  }

  /** The message a RST may answer. */
  private setRecent(obs: Observation, messageId: number | null): void {
    if (obs.recent !== null) this.byMessage.delete(messageKey(obs.peer, obs.recent));
    obs.recent = messageId;
    if (messageId !== null) this.byMessage.set(messageKey(obs.peer, messageId), obs);
  }

  private end(obs: Observation, reason: ObservationEnd): void {
    if (this.byKey.get(obs.key) !== obs) return;
    // A notification still in retransmission is given up; its outcome then finds the observation gone.
    if (obs.inFlight) this.channel.giveUp(obs.peer, obs.inFlight.messageId);
    obs.inFlight = null;
    obs.next = null;
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

/**
 * Two updates of the shared attributes as one, the newer winning [reference §5: keys set, flat,
 * and `deleted`]: a key set again is no longer deleted, a key deleted is no longer set.
 */
export function mergeUpdates(older: AttributeUpdate, newer: AttributeUpdate): AttributeUpdate {
  const deleted = new Set<string>(older.deleted);
  const attributes: AttributeMap = { ...older.attributes };
  for (const [k, v] of Object.entries(newer.attributes)) {
    attributes[k] = v;
    deleted.delete(k);
  }
  for (const k of newer.deleted) {
    delete attributes[k];
    deleted.add(k);
  }
  return { attributes, deleted: [...deleted] };
}
