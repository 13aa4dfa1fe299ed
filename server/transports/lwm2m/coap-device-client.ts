import type { Readable } from 'node:stream';
import { CoapRequestError, type CoapObservation, type CoapResponse, type OutgoingRequest } from '../coap/client';
import type { CoapEndpoint } from '../coap/endpoint';
import type { Peer } from '../coap/messages';
import { ContentFormatError } from './content-errors';
import { ContentFormat, decodeValue, encodeContent } from './content-formats';
import { Lwm2mRequestError, type Lwm2mDeviceClient, type OpaqueSource, type WriteOptions } from './device-client';
import { parsePath } from './paths';
import type { Lwm2mValue } from './resource-types';

/** What one registered client's requests go through: our endpoint, and where the client is now. */
export interface CoapDeviceTarget {
  endpoint: CoapEndpoint;
  /** The registration's current address (an Update may move it, LwM2M Core V1.1 §6.2.2). */
  peer(): Peer;
  /** The alternate root path of its Objects (`rt="oma.lwm2m"`, §6.2.1.1); "/" when none. */
  rootPath: string;
  /** Largest pushed package accepted (it is sent from memory, block by block). */
  maxPushBytes: number;
  /** How long a request waits for its response once acknowledged. */
  timeoutMs: number;
}

/**
 * The Device Management interface (LwM2M Core V1.1 §6.3, transport binding §8.2.2 / Table 6.3.x)
 * over the CoAP core's client role: Read = GET, Write = PUT (replace), Execute = POST, Observe =
 * GET with Observe 0 [RFC 7641]. A response without Content-Format is read as text/plain, which is
 * how lwm2m-node-lib and other small clients answer.
 */
export class CoapDeviceClient implements Lwm2mDeviceClient {
  private readonly observations = new Map<string, CoapObservation>();
  private closed = false;

  constructor(private readonly target: CoapDeviceTarget) {}

  async read(path: string): Promise<Lwm2mValue | undefined> {
    const res = await this.send({ method: 'GET', path: this.uri(path) }, `Read ${path}`);
    return decode(res, path);
  }

  async write(path: string, value: Lwm2mValue | OpaqueSource, format: ContentFormat, options: WriteOptions = {}): Promise<void> {
    let payload: Buffer;
    if (isSource(value)) {
      if (value.size > this.target.maxPushBytes) {
        throw new Lwm2mRequestError('response', `Package of ${value.size} bytes is larger than the ${this.target.maxPushBytes} bytes pushed at most (OTA_LWM2M_MAX_PUSH_BYTES)`);
      }
      payload = await collect(value.open(), value.size);
    } else {
      payload = encodeContent(format, parsePath(path), value);
    }
    // A body larger than a block goes block-wise (Block1, RFC 7959 §2.3): the client does it.
    await this.send({ method: 'PUT', path: this.uri(path), payload, contentFormat: format }, `Write ${path}`);
    if (isSource(value)) options.onProgress?.(payload.length, payload.length);
  }

  async execute(path: string, args?: string): Promise<void> {
    await this.send({ method: 'POST', path: this.uri(path), ...(args ? { payload: Buffer.from(args), contentFormat: ContentFormat.TEXT } : {}) }, `Execute ${path}`);
  }

  async observe(path: string, onValue: (value: Lwm2mValue) => void): Promise<Lwm2mValue | undefined> {
    this.check(`Observe ${path}`);
    let observation: CoapObservation;
    try {
      observation = await this.target.endpoint.observe(
        this.target.peer(),
        { method: 'GET', path: this.uri(path) },
        (n) => {
          if (this.closed || !n.code.startsWith('2.')) return;
          const v = safeDecode(n, path);
          if (v !== undefined) onValue(v);
        },
        { timeoutMs: this.target.timeoutMs },
      );
    } catch (err) {
      throw asRequestError(err, `Observe ${path}`);
    }
    if (!observation.first.code.startsWith('2.')) throw new Lwm2mRequestError('response', `Observe ${path}: the device answered ${observation.first.code}`, observation.first.code);
    if (this.closed) {
      void observation.cancel().catch(() => undefined);
      throw new Lwm2mRequestError('closed', `Observe ${path}: the registration ended`);
    }
    this.observations
      .get(path)
      ?.cancel()
      .catch(() => undefined);
    this.observations.set(path, observation);
    return decode(observation.first, path);
  }

  async cancel(path: string): Promise<void> {
    const observation = this.observations.get(path);
    this.observations.delete(path);
    await observation?.cancel().catch(() => undefined);
  }

  /**
   * The registration ended: later calls reject as `closed`, and observations are forgotten without
   * a message (the device is gone or registered again; a late notification is answered with a RST,
   * which ends it at the device, RFC 7641 §3.6).
   */
  close(): void {
    this.closed = true;
    this.observations.clear();
  }

  private uri(path: string): string[] {
    const root = this.target.rootPath.split('/').filter(Boolean);
    return [...root, ...path.split('/').filter(Boolean)];
  }

  private check(what: string): void {
    if (this.closed) throw new Lwm2mRequestError('closed', `${what}: the registration ended`);
  }

  private async send(req: OutgoingRequest, what: string): Promise<CoapResponse> {
    this.check(what);
    let res: CoapResponse;
    try {
      res = await this.target.endpoint.request(this.target.peer(), req, { timeoutMs: this.target.timeoutMs });
    } catch (err) {
      throw asRequestError(err, what);
    }
    if (this.closed) throw new Lwm2mRequestError('closed', `${what}: the registration ended`);
    if (!res.code.startsWith('2.')) throw new Lwm2mRequestError('response', `${what}: the device answered ${res.code}`, res.code);
    return res;
  }
}

function asRequestError(err: unknown, what: string): Error {
  if (err instanceof CoapRequestError) {
    if (err.reason === 'stopped') return new Lwm2mRequestError('closed', `${what}: the LwM2M endpoint stopped`);
    if (err.reason === 'reset') return new Lwm2mRequestError('response', `${what}: the device reset the request`, null);
    if (err.reason === 'timeout') return new Lwm2mRequestError('timeout', `${what}: no response from the device`);
    return new Lwm2mRequestError('response', `${what}: ${err.message}`);
  }
  return err as Error;
}

function decode(res: CoapResponse, path: string): Lwm2mValue | undefined {
  if (res.payload.length === 0) return undefined;
  try {
    return decodeValue(res.contentFormat ?? ContentFormat.TEXT, res.payload, parsePath(path));
  } catch (err) {
    if (err instanceof ContentFormatError) throw new Lwm2mRequestError('response', `Read ${path}: ${err.message}`);
    throw err;
  }
}

function safeDecode(res: CoapResponse, path: string): Lwm2mValue | undefined {
  try {
    return decode(res, path);
  } catch {
    return undefined; // a notification we cannot read changes nothing
  }
}

const isSource = (v: Lwm2mValue | OpaqueSource): v is OpaqueSource => typeof v === 'object' && v !== null && 'open' in v && typeof (v as OpaqueSource).open === 'function';

/** The package's bytes, read from its stream, no more than it said it holds. */
async function collect(stream: Readable, size: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (at + chunk.length > size) {
      stream.destroy();
      throw new Error(`package stream holds more than its ${size} bytes`);
    }
    chunk.copy(out, at);
    at += chunk.length;
  }
  return out.subarray(0, at);
}
