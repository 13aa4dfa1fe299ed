import type { Readable } from 'node:stream';
import type { ContentFormat } from './content-formats';
import type { Lwm2mValue } from './resource-types';

/** Package bytes to push (Write /5/0/0 or /9/0/2), streamed block by block, never held whole. */
export interface OpaqueSource {
  size: number;
  open(): Readable;
}

export interface WriteOptions {
  /** Bytes the client has acknowledged so far, for a pushed package (Block1). */
  onProgress?(sent: number, size: number): void;
}

/**
 * What the OTA logic needs from a registered LwM2M client (Device Management and Information
 * Reporting interfaces, Core V1.1 §6.3-6.4), whatever carries it: the CoAP core, or a scripted
 * fake in tests. Paths are "/5/0/3" strings. Every call rejects with a Lwm2mRequestError.
 */
export interface Lwm2mDeviceClient {
  /** The Resource's value, decoded; undefined when the device answered without it. */
  read(path: string): Promise<Lwm2mValue | undefined>;
  write(path: string, value: Lwm2mValue | OpaqueSource, format: ContentFormat, options?: WriteOptions): Promise<void>;
  execute(path: string, args?: string): Promise<void>;
  /** Starts an observation; resolves with the current value, then `onValue` gets each notification. */
  observe(path: string, onValue: (value: Lwm2mValue) => void): Promise<Lwm2mValue | undefined>;
  /** Cancels the observation of `path`. */
  cancel(path: string): Promise<void>;
}

/**
 * A request that did not succeed: `timeout` (no response: lost, or the device is gone), `response`
 * (the device answered with an error code such as 4.04), or `closed` (the registration ended).
 */
export class Lwm2mRequestError extends Error {
  constructor(
    readonly kind: 'timeout' | 'response' | 'closed',
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'Lwm2mRequestError';
  }
}
