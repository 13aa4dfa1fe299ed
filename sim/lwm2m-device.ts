import { lookup } from 'node:dns/promises';
import { isIP, isIPv6 } from 'node:net';
import { CoapEndpoint } from '../server/transports/coap/endpoint';
import { Code, encodeReply, reply, type CoapRequest, type Peer, type Reply } from '../server/transports/coap/messages';
import type { DeviceLink } from './device';
import type { FirmwareInfo } from './firmware';

/** Firmware Update (Object 5) State and Result values (LwM2M Core V1.1 Appendix E.6). */
const STATE = { IDLE: 0, DOWNLOADING: 1, DOWNLOADED: 2, UPDATING: 3 } as const;
const RESULT = { SUCCESS: 1, INTEGRITY_FAILURE: 5, UPDATE_FAILED: 8 } as const;

/**
 * An LwM2M 1.1 device (NoSec) on one UDP socket of our own CoAP endpoint, in both roles: it
 * registers (`POST /rd`), then serves the server's Reads and Observes of Objects 3 and 5 (text/plain),
 * takes a Write of the Package URI `/5/0/1` (pull) or the Package `/5/0/0` (push, Block1) and an
 * Execute of Update `/5/0/2`. It pulls the URI's package block-wise (Block2). The update states the
 * fleet's devices report become Object 5 State and Result values, notified to the observer.
 */
export class Lwm2mDeviceLink implements DeviceLink {
  private endpoint: CoapEndpoint | null = null;
  private server: Peer | null = null;
  private location: string[] = [];
  private readonly values: Record<string, string> = { '3/0/0': 'ota-simulate', '3/0/3': 'v0', '5/0/3': '0', '5/0/5': '0', '5/0/6': 'Initial', '5/0/7': 'v0', '5/0/9': '0' };
  private readonly observers = new Map<string, { token: Buffer; peer: Peer; seq: number }>();
  private delivered: ((what: { uri: string } | { bytes: Buffer }) => void) | null = null;
  private delivery: Promise<{ uri: string } | { bytes: Buffer }>;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly name: string,
    /** The package being rolled out, as the admin API describes it: the device gets only a URI. */
    private readonly pkg: FirmwareInfo,
    deliveryMethod: 0 | 1 = 0,
    private readonly lifetimeS = 300,
  ) {
    this.values['5/0/9'] = String(deliveryMethod);
    this.delivery = new Promise((resolve) => (this.delivered = resolve));
  }

  async open(signal: AbortSignal): Promise<void> {
    const address = isIP(this.host) ? this.host : (await lookup(this.host)).address;
    const endpoint = new CoapEndpoint({ port: 0, host: isIPv6(address) ? '::' : '0.0.0.0' }, (req) => this.serve(req));
    await endpoint.start();
    this.endpoint = endpoint;
    this.server = { address, port: this.port };
    const res = await abortable(
      endpoint.request(this.server, {
        method: 'POST',
        path: ['rd'],
        query: [`ep=${this.name}`, `lt=${this.lifetimeS}`, 'lwm2m=1.1', 'b=U'],
        payload: Buffer.from('</1/0>,</3/0>,</5/0>'),
        contentFormat: 40,
      }),
      signal,
    );
    if (res.code !== '2.01') throw new Error(`LwM2M Register answered ${res.code}: ${res.payload.toString() || 'no reason given'}`);
    this.location = res.options.filter((o) => o.name === 'Location-Path').map((o) => o.value.toString());
  }

  async firmware(wanted: (fw: FirmwareInfo) => boolean, signal: AbortSignal): Promise<FirmwareInfo> {
    await abortable(this.delivery, signal);
    if (!wanted(this.pkg)) throw new Error(`the server sent a package, but ${this.pkg.title} ${this.pkg.version} is not the one being rolled out`);
    return this.pkg;
  }

  async download(_fw: FirmwareInfo, progress: (bytes: number) => void, signal: AbortSignal): Promise<Buffer> {
    const what = await this.delivery;
    if ('bytes' in what) {
      progress(what.bytes.length);
      return what.bytes;
    }
    const url = new URL(what.uri);
    if (url.protocol !== 'coap:') throw new Error(`the Package URI ${what.uri} is not coap:`);
    const address = isIP(url.hostname.replace(/^\[|\]$/g, '')) ? url.hostname.replace(/^\[|\]$/g, '') : (await lookup(url.hostname)).address;
    const res = await abortable(
      (this.endpoint as CoapEndpoint).request({ address, port: Number(url.port || 5683) }, { method: 'GET', path: url.pathname.split('/').filter(Boolean) }, { onBlock: progress }),
      signal,
    );
    if (res.code !== '2.05') throw new Error(`GET ${what.uri} answered ${res.code}`);
    return res.payload;
  }

  /** The fleet's ThingsBoard states as Object 5 State and Result (reference §6, read backwards). */
  async report(values: Record<string, unknown>): Promise<void> {
    switch (values.fw_state) {
      case 'DOWNLOADING':
        return this.set('5/0/3', STATE.DOWNLOADING);
      case 'DOWNLOADED':
        return this.set('5/0/3', STATE.DOWNLOADED);
      case 'UPDATING':
        return this.set('5/0/3', STATE.UPDATING);
      case 'UPDATED':
        this.values['5/0/6'] = this.pkg.title;
        this.values['5/0/7'] = this.pkg.version;
        this.set('5/0/5', RESULT.SUCCESS);
        return this.set('5/0/3', STATE.IDLE);
      case 'FAILED':
        this.set('5/0/5', /checksum/i.test(String(values.fw_error)) ? RESULT.INTEGRITY_FAILURE : RESULT.UPDATE_FAILED);
        return this.set('5/0/3', STATE.IDLE);
      default:
        return; // VERIFIED has no LwM2M State of its own
    }
  }

  async close(): Promise<void> {
    const endpoint = this.endpoint;
    if (!endpoint) return;
    this.endpoint = null;
    if (this.server && this.location.length) {
      await endpoint.request(this.server, { method: 'DELETE', path: this.location }, { timeoutMs: 5_000 }).catch(() => undefined);
    }
    await endpoint.stop();
  }

  private set(path: string, value: number): void {
    this.values[path] = String(value);
    const o = this.observers.get(path);
    if (!o || !this.endpoint) return;
    o.seq++;
    const { bytes } = encodeReply({ code: Code.CONTENT, observe: o.seq, contentFormat: 0, payload: Buffer.from(String(value)) }, { token: o.token, type: 'NON' });
    this.endpoint.send(bytes, o.peer);
  }

  private async serve(req: CoapRequest): Promise<Reply> {
    const path = req.path.join('/');
    if (req.code === '0.01') {
      const value = this.values[path];
      if (value === undefined) return reply(Code.NOT_FOUND);
      if (req.observe === 0) {
        this.observers.set(path, { token: req.token, peer: req.peer, seq: 1 });
        return { ...reply(Code.CONTENT, Buffer.from(value), 0), observe: 1 };
      }
      if (req.observe === 1) this.observers.delete(path);
      return reply(Code.CONTENT, Buffer.from(value), 0);
    }
    if (req.code === '0.03' && path === '5/0/1') {
      this.delivered?.({ uri: req.payload.toString('utf8') });
      return reply(Code.CHANGED);
    }
    if (req.code === '0.03' && path === '5/0/0') {
      this.delivered?.({ bytes: req.payload });
      return reply(Code.CHANGED);
    }
    if (req.code === '0.02' && path === '5/0/2') return reply(Code.CHANGED);
    return reply(Code.NOT_FOUND);
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(new Error('aborted'));
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(err as Error);
      },
    );
  });
}
