import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parser as mqttParser, type IConnectPacket, type IPublishPacket, type ISubscribePacket, type IUnsubscribePacket, type Packet, type Parser } from 'mqtt-packet';
import type { Device } from '../../store/devices';
import type { MqttAuthenticator } from './authenticate';
import { handlePublish, protoDownlink } from './device-api';
import type { AttributeMap } from '../../store/attributes';
import { ProtoPayloads, protoPayloadsOf } from '../proto-payloads';
import type { DisconnectReason, PublishHost, PublishingSession } from './publish-context';
import type { SessionOpening } from '../device-snapshots';
import { FirmwareChunks } from './firmware-chunks';
import { ChunkReadAhead } from './chunk-read-ahead';
import { handleProvisionPublish, isProvisionConnect, isProvisionFilter } from './provision-session';
import { encode, encodePublish, onlyPubacks, pubackSuccess, type SharedPublish } from './packets';
import { REASON, refusalCode, refusedSubscription, type ProtocolVersion } from './reason-codes';
import { classifySubscription, FAMILY, topicMatches, type TopicFamily } from './topics';

/** What a session needs from the transport that accepted it. */
export interface SessionHost extends PublishHost {
  readonly authenticator: MqttAuthenticator;
  /** Made before a CONNECT reads its device and profile: a change of either before `connected` is not missed (device-snapshots.ts). */
  opening(): SessionOpening;
  connected(session: MqttSession): void;
  refused(session: MqttSession, code: number): void;
  closed(session: MqttSession, reason: DisconnectReason): void;
}

/** Packets read ahead of the one being handled before the socket is paused. */
const MAX_QUEUED = 64;

/**
 * One device connection: MQTT 3.1, 3.1.1 or 5 over mqtt-packet's parser (CONNECT with the access
 * token, SUBSCRIBE, keepalive, DISCONNECT); what its PUBLISH packets ask is device-api.ts. Packets
 * are handled one at a time, in order, so a chunk's PUBACK and PUBLISH follow its request and
 * answers never overtake each other. State is kept small: many thousands of these live at once,
 * with one timer each (the keepalive).
 */
export class MqttSession implements PublishingSession {
  device: Device | null = null;
  /** The device profile's protobuf payloads, read at CONNECT and when the profile is saved (here or on another instance); null: JSON. */
  payloads: ProtoPayloads | 'invalid' | null = null;
  version: ProtocolVersion = 4;
  clientId = '';
  /** The update family subscribed to last (ThingsBoard sends updates on one), and its QoS. */
  private updates: { family: TopicFamily; qos: 0 | 1 } | null = null;
  private subscriptions: Array<{ filter: string; qos: 0 | 1 }> = [];
  private chunks: FirmwareChunks | null = null;
  private ahead: ChunkReadAhead | null = null;
  private readonly parser: Parser;
  private readonly inbox: Packet[] = [];
  private draining = false;
  private connectSeen = false;
  /** The parser holds the first bytes of a packet. */
  private midPacket = false;
  /** A `provision` CONNECT: only provisioning requests are answered. */
  private provisioning = false;
  private isClosing = false;
  private reason: DisconnectReason = 'connection-lost';
  private messageId = 0;
  private keepaliveMs = 0;
  private lastSeen: number;
  private timer: unknown = null;
  /** While a large chunk streams, other packets wait here so they cannot land inside its payload. */
  private held: Buffer[] | null = null;

  constructor(
    readonly socket: Socket,
    private readonly host: SessionHost,
  ) {
    socket.setNoDelay(true);
    this.lastSeen = host.timers.now();
    this.parser = mqttParser();
    this.parser.on('packet', (p: Packet) => this.receive(p));
    this.parser.on('error', () => this.close('protocol-error', REASON.malformedPacket));
    socket.on('data', (data: Buffer) => {
      if (this.isClosing) return;
      this.lastSeen = this.host.timers.now();
      // PUBACKs of updates sent at QoS 1 need nothing (handle()); after a fan-out thousands arrive
      // at once, so they skip the parser whenever it holds no part of a packet.
      if (!this.midPacket && this.connectSeen && onlyPubacks(data)) return;
      const pending = this.parser.parse(data);
      this.midPacket = pending > 0;
      // The bytes of a packet still arriving: a packet larger than the limit is not waited for.
      if (pending > this.host.config.maxChunkSize + 1024 && !this.isClosing) this.close('packet-too-large', REASON.packetTooLarge);
    });
    socket.on('error', () => undefined); // 'close' follows and says the rest
    socket.on('close', () => {
      this.clearTimer();
      this.ahead?.clear();
      this.isClosing = true;
      this.host.closed(this, this.reason);
    });
    // Until CONNECT, the connect timeout; then the keepalive.
    this.schedule(host.config.connectTimeoutMs);
  }

  /** Closing or closed: nothing more is handled or sent. */
  get closing(): boolean {
    return this.isClosing;
  }

  get connected(): boolean {
    return this.device !== null && !this.isClosing;
  }

  /**
   * Sends a shared-attributes update if the device subscribed to updates; whether it did. `json`
   * makes the update's JSON PUBLISH (shared by a batch's sessions); protobuf sessions get
   * ThingsBoard's AttributeUpdateNotificationMsg.
   */
  deliverUpdate(update: { attributes: AttributeMap; deleted: readonly string[] }, json: SharedPublish): boolean {
    if (!this.updates || !this.connected) return false;
    const { family, qos } = this.updates;
    const topic = FAMILY[family].attributes;
    const messageId = qos ? this.nextMessageId() : 0;
    if (!protoDownlink(this, family)) this.write(json.packet(topic, qos, messageId, this.version));
    else this.write(encodePublish(topic, ProtoPayloads.encodeUpdate(update.attributes, update.deleted, this.host.timers.now()), qos, messageId, this.version));
    return true;
  }

  /**
   * Ends the connection: MQTT 5 clients get a DISCONNECT with `code` first (not before CONNACK).
   * The socket is ended gracefully and destroyed if the peer has not closed after a grace period.
   */
  close(reason: DisconnectReason, code?: number, reasonString?: string): void {
    if (this.isClosing) return;
    this.isClosing = true;
    this.reason = reason;
    this.inbox.length = 0;
    if (this.held) {
      // Mid-way through a streamed chunk nothing well-formed can follow: cut the connection.
      this.held = null;
      this.socket.destroy();
      return;
    }
    if (this.version === 5 && this.device && code !== undefined && !this.socket.destroyed) {
      this.socket.write(encode({ cmd: 'disconnect', reasonCode: code, ...(reasonString ? { properties: { reasonString } } : {}) }, 5));
    }
    this.socket.end();
    this.clearTimer();
    this.timer = this.host.timers.setTimeout(() => this.socket.destroy(), this.host.config.closeLingerMs);
  }

  /** Closes at once for a server shutdown, once what was written is flushed. */
  shutdown(): void {
    if (!this.isClosing) this.close('server-stopping', REASON.serverShuttingDown);
    this.clearTimer();
    if (this.socket.writableFinished) this.socket.destroy();
    else this.socket.once('finish', () => this.socket.destroy());
  }

  // ---- inbound ------------------------------------------------------------------------------

  private receive(packet: Packet): void {
    if (this.isClosing) return;
    if (packet.cmd === 'connect' ? this.connectSeen : !this.connectSeen) {
      // A second CONNECT, or anything before the first [MQTT-3.1.0-1, -2].
      return this.close('protocol-error', REASON.protocolError);
    }
    if (packet.cmd === 'connect') this.connectSeen = true;
    this.inbox.push(packet);
    if (this.inbox.length >= MAX_QUEUED) this.socket.pause();
    if (!this.draining) this.drain();
  }

  /**
   * Handles the packets waiting, in order. A packet handled at once (a chunk read ahead, a PINGREQ)
   * costs no promise; one that waits (the store, a read) holds the others until it is done.
   */
  private drain(): void {
    this.draining = true;
    try {
      while (this.inbox.length && !this.isClosing) {
        const work = this.handle(this.inbox.shift() as Packet);
        if (work) return void this.waitFor(work);
      }
    } catch (err) {
      this.failed(err);
    }
    this.draining = false;
    if (!this.isClosing && this.socket.isPaused()) this.socket.resume();
  }

  /** Waits for a packet's work, then goes on with the packets that came meanwhile. */
  private async waitFor(work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (err) {
      this.failed(err);
    }
    this.drain();
  }

  private failed(err: unknown): void {
    this.host.ctx.logger.error(`MQTT ${this.describe()}: ${(err as Error).message}`);
    this.close('server-error', REASON.implementationSpecificError);
  }

  private handle(p: Packet): Promise<void> | void {
    switch (p.cmd) {
      case 'connect':
        return this.onConnect(p);
      case 'publish':
        return this.provisioning ? handleProvisionPublish(this, this.host, p) : handlePublish(this, this.host, p);
      case 'subscribe':
        return this.onSubscribe(p);
      case 'unsubscribe':
        return this.onUnsubscribe(p);
      case 'pingreq':
        return this.write(encode({ cmd: 'pingresp' }, this.version));
      case 'disconnect':
        return this.close('client-disconnect');
      case 'pubrel':
        return this.write(encode({ cmd: 'pubcomp', messageId: p.messageId ?? 0, reasonCode: 0 }, this.version));
      case 'puback':
        // Acknowledgements of what we sent at QoS 1: nothing is redelivered, so nothing to track.
        return;
      default:
        // AUTH (no enhanced authentication here) and server-to-client packets.
        return this.close('protocol-error', REASON.protocolError);
    }
  }

  private async onConnect(p: IConnectPacket): Promise<void> {
    this.version = p.protocolVersion === 3 || p.protocolVersion === 5 ? p.protocolVersion : 4;
    this.clientId = p.clientId;
    if (isProvisionConnect(p)) {
      // No device: the connect timeout still runs and ends the session (provision-session.ts).
      this.provisioning = true;
      return this.write(encode({ cmd: 'connack', returnCode: 0, reasonCode: 0, sessionPresent: false }, this.version));
    }
    const opening = this.host.opening();
    let held: Device | null = null;
    try {
      held = await this.authenticate(p);
    } finally {
      opening.end(held);
    }
  }

  /** The device of an accepted CONNECT, once CONNACK is sent and the session is held; null when refused or closed meanwhile. */
  private async authenticate(p: IConnectPacket): Promise<Device | null> {
    // Access token, MQTT basic or X.509 client certificate: authenticate.ts (§3.1).
    const certificate = 'getPeerCertificate' in this.socket ? (this.socket as TLSSocket).getPeerCertificate().raw : undefined;
    const device = await this.host.authenticator.authenticate({ clientId: p.clientId, username: p.username, password: p.password, certificate });
    if (this.isClosing) return null;
    if (!device) {
      const code = refusalCode(this.version, { clientId: p.clientId, username: p.username, password: p.password });
      this.write(encode({ cmd: 'connack', returnCode: code, reasonCode: code, sessionPresent: false }, this.version));
      this.host.refused(this, code);
      // A refused CONNACK is the last packet [MQTT-3.2.2-7]: no DISCONNECT follows.
      this.close('not-authorized');
      return null;
    }
    this.payloads = protoPayloadsOf(await this.host.ctx.lookups.profileOf(device.tenantId, device.deviceProfileId));
    if (this.isClosing) return null;
    this.device = device;
    // Nothing of a session is kept across connections, so a session is never present, whatever
    // `clean` asked (ThingsBoard answers `!clean`, which tells clients to skip resubscribing).
    this.write(encode({ cmd: 'connack', returnCode: 0, reasonCode: 0, sessionPresent: false, ...(this.version === 5 ? { properties: { maximumQoS: 1 } } : {}) }, this.version));
    this.keepaliveMs = (p.keepalive ?? 0) * 1000;
    this.clearTimer();
    // [MQTT-3.1.2-24]: closed after one and a half keepalive periods of silence; 0 turns it off.
    if (this.keepaliveMs > 0) this.schedule(this.keepaliveMs * 1.5);
    this.host.connected(this);
    return device;
  }

  private onSubscribe(p: ISubscribePacket): void {
    const granted = p.subscriptions.map(({ topic, qos }) => {
      if (this.provisioning) return isProvisionFilter(topic) ? (qos > 0 ? 1 : 0) : refusedSubscription(this.version);
      const sub = classifySubscription(topic);
      if (!sub.accepted) return refusedSubscription(this.version);
      const g: 0 | 1 = qos > 0 ? 1 : 0; // QoS 1 is the highest granted (§3.1)
      this.subscriptions = [...this.subscriptions.filter((s) => s.filter !== topic), { filter: topic, qos: g }];
      if (sub.attributeUpdates) this.updates = { family: sub.attributeUpdates, qos: g };
      return g;
    });
    this.write(encode({ cmd: 'suback', messageId: p.messageId ?? 0, granted }, this.version));
  }

  private onUnsubscribe(p: IUnsubscribePacket): void {
    const granted = p.unsubscriptions.map((filter) => {
      const existed = this.subscriptions.some((s) => s.filter === filter);
      this.subscriptions = this.subscriptions.filter((s) => s.filter !== filter);
      // Leaving any update filter stops updates, as ThingsBoard's unsubscribe does.
      const sub = classifySubscription(filter);
      if (existed && sub.accepted && sub.attributeUpdates) this.updates = null;
      return existed ? REASON.success : 0x11; // 0x11: no subscription existed
    });
    this.write(encode({ cmd: 'unsuback', messageId: p.messageId ?? 0, granted }, this.version));
  }

  // ---- outbound, for device-api.ts too ---------------------------------------------------------

  /** This connection's firmware and software downloads (made on the first chunk request). */
  firmwareChunks(): FirmwareChunks {
    this.chunks ??= new FirmwareChunks(this.host.config.maxChunkSize);
    return this.chunks;
  }

  readAhead(): ChunkReadAhead {
    // A window's buffer is read into again only once nothing cut from it waits to be written.
    this.ahead ??= new ChunkReadAhead(this.host.reader, this.host.readAheadBudget, () => this.held === null && this.socket.writableLength === 0);
    return this.ahead;
  }

  /** Drops read-ahead bytes of a blob whose package was deleted. */
  forgetBlob(sha256: string): void {
    this.ahead?.forget(sha256);
  }

  write(buf: Buffer): void {
    if (this.held) this.held.push(buf);
    else if (!this.socket.destroyed) this.socket.write(buf);
  }

  /** Holds back what is written until `release`: a streamed answer is going out. */
  hold(): void {
    this.held = [];
  }

  release(): void {
    const held = this.held;
    this.held = null;
    if (held && !this.socket.destroyed) for (const buf of held) this.socket.write(buf);
  }

  /** An answer or notification at the granted QoS of a matching subscription, else QoS 1 (§3.4). */
  publish(topic: string, payload: Buffer): void {
    const qos = this.qosFor(topic);
    this.write(encodePublish(topic, payload, qos, qos ? this.nextMessageId() : 0, this.version));
  }

  qosFor(topic: string): 0 | 1 {
    for (const s of this.subscriptions) if (topicMatches(s.filter, topic)) return s.qos;
    return 1;
  }

  /** PUBACK (PUBREC for QoS 2) of a device's PUBLISH; MQTT 5 carries `reasonCode`. */
  ack(p: IPublishPacket, reasonCode: number = REASON.success): void {
    if (p.qos === 0) return;
    if (p.qos === 1 && reasonCode === REASON.success) return this.write(pubackSuccess(p.messageId ?? 0));
    this.write(encode({ cmd: p.qos === 2 ? 'pubrec' : 'puback', messageId: p.messageId ?? 0, reasonCode }, this.version));
  }

  nextMessageId(): number {
    this.messageId = (this.messageId % 0xffff) + 1;
    return this.messageId;
  }

  private describe(): string {
    return this.device ? `device '${this.device.name}'` : `client '${this.clientId}'`;
  }

  // ---- the one timer: connect timeout, then keepalive, then the close grace --------------------

  private schedule(ms: number): void {
    this.timer = this.host.timers.setTimeout(() => this.onTimer(), ms);
  }

  private onTimer(): void {
    this.timer = null;
    if (this.isClosing) return;
    if (!this.device) return this.close('connect-timeout');
    const limit = this.keepaliveMs * 1.5;
    const idle = this.host.timers.now() - this.lastSeen;
    if (idle >= limit) return this.close('keepalive-timeout', REASON.keepAliveTimeout);
    this.schedule(limit - idle);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.host.timers.clearTimeout(this.timer);
    this.timer = null;
  }
}
