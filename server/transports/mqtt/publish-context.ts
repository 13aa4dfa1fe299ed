import type { Socket } from 'node:net';
import type { IPublishPacket } from 'mqtt-packet';
import type { Device } from '../../store/devices';
import type { BlobReader } from '../../store/blob-reader';
import type { UplinkEvent } from '../../pipeline/uplink';
import type { Timers } from '../../timers';
import type { DeviceContext } from '../device-context';
import type { FirmwareChunks } from './firmware-chunks';
import type { ReadAheadBudget } from './chunk-read-ahead';
import type { ChunkReadAhead } from './chunk-read-ahead';
import type { ProtocolVersion } from './reason-codes';
import type { ProtoPayloads } from '../proto-payloads';

/** The limits a session works within (see MqttOptions). */
export interface SessionConfig {
  maxChunkSize: number;
  maxInflightMessages: number;
  connectTimeoutMs: number;
  closeLingerMs: number;
}

/** Why a connection ended. */
export type DisconnectReason =
  | 'client-disconnect'
  | 'connection-lost'
  | 'keepalive-timeout'
  | 'connect-timeout'
  | 'protocol-error'
  | 'not-authorized'
  | 'invalid-payload'
  | 'packet-too-large'
  | 'ota-error'
  | 'session-taken-over'
  | 'device-deleted'
  | 'credentials-changed'
  | 'server-stopping'
  | 'server-error';

/** What the PUBLISH handlers (device-api.ts) need of the transport: its context, limits and uplink. */
export interface PublishHost {
  readonly ctx: DeviceContext;
  readonly config: SessionConfig;
  readonly timers: Timers;
  /** Package bytes, read per request. */
  readonly reader: BlobReader;
  /** What every connection's read-ahead may hold together. */
  readonly readAheadBudget: ReadAheadBudget;
  uplink(ev: UplinkEvent): void;
}

/**
 * What the PUBLISH handlers need of the session they answer. MqttSession implements it; kept apart
 * so that the session and its handlers do not import each other.
 */
export interface PublishingSession {
  readonly device: Device | null;
  readonly version: ProtocolVersion;
  /** The device profile's protobuf payloads (proto-payloads.ts); null: JSON. */
  readonly payloads: ProtoPayloads | 'invalid' | null;
  readonly closing: boolean;
  readonly socket: Socket;
  close(reason: DisconnectReason, code?: number, reasonString?: string): void;
  firmwareChunks(): FirmwareChunks;
  /** The connection's read-ahead of package chunks. */
  readAhead(): ChunkReadAhead;
  write(buf: Buffer): void;
  hold(): void;
  release(): void;
  publish(topic: string, payload: Buffer): void;
  qosFor(topic: string): 0 | 1;
  ack(p: IPublishPacket, reasonCode?: number): void;
  nextMessageId(): number;
}
