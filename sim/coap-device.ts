import { lookup } from 'node:dns/promises';
import { isIP, isIPv6 } from 'node:net';
import { CoapEndpoint } from '../server/transports/coap/endpoint';
import type { CoapObservation, CoapResponse, OutgoingRequest } from '../server/transports/coap/client';
import type { Peer } from '../server/transports/coap/messages';
import type { DeviceLink } from './device';
import { FW_KEYS_PARAM, firmwareOf, type FirmwareInfo } from './firmware';

/**
 * A device on ThingsBoard's CoAP API (reference §5, the docs' coap_firmware_client.py), on the
 * client role of our own CoAP endpoint: observes `/api/v1/{token}/attributes` (Observe 0; the
 * first notification is every shared attribute, later ones the changes), downloads
 * `GET /fw/{token}?title=&version=` in one block-wise (RFC 7959 Block2) transfer, and posts its
 * states to `/api/v1/{token}/telemetry`. It also asks for its attributes now and then without
 * Observe, in case a notification is lost (CoAP runs over UDP).
 */
export class CoapDeviceLink implements DeviceLink {
  private endpoint: CoapEndpoint | null = null;
  private peer: Peer | null = null;
  private observation: CoapObservation | null = null;
  private shared: Record<string, unknown> = {};
  private onAttributes: () => void = () => undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly token: string,
    /** How often the device asks for its attributes while it waits. */
    private readonly pollMs = 5_000,
    /** How long an exchange may go without an answer (for a download: without a block). */
    private readonly silenceMs = 60_000,
  ) {}

  /** The endpoint, bound on first use; responses are matched by address, so a host name is resolved first. */
  private async link(): Promise<{ endpoint: CoapEndpoint; peer: Peer }> {
    if (this.endpoint && this.peer) return { endpoint: this.endpoint, peer: this.peer };
    const address = isIP(this.host) ? this.host : (await lookup(this.host)).address;
    const endpoint = new CoapEndpoint({ port: 0, host: isIPv6(address) ? '::' : '0.0.0.0' }, null);
    await endpoint.start();
    this.endpoint = endpoint;
    this.peer = { address, port: this.port };
    return { endpoint, peer: this.peer };
  }

  private async exchange(req: OutgoingRequest, signal: AbortSignal, onBlock?: (bytes: number) => void): Promise<CoapResponse> {
    const { endpoint, peer } = await this.link();
    const what = `CoAP ${req.method} ${String(req.path)}`;
    const answer = endpoint.request(peer, req, { timeoutMs: this.silenceMs, ...(onBlock ? { onBlock } : {}) }).catch((err: Error) => {
      throw new Error(`${what}: ${err.message}`);
    });
    return abortable(answer, signal);
  }

  private merge(body: Buffer): void {
    let update: Record<string, unknown>;
    try {
      update = JSON.parse(body.toString()) as Record<string, unknown>;
    } catch {
      return;
    }
    // A plain GET answers {client, shared}; a notification is flat, with `deleted` for removed keys.
    const flat = (typeof update.shared === 'object' && update.shared !== null ? update.shared : update) as Record<string, unknown>;
    for (const key of Array.isArray(update.deleted) ? (update.deleted as string[]) : []) delete this.shared[key];
    for (const [k, v] of Object.entries(flat)) if (k !== 'deleted') this.shared[k] = v;
    this.onAttributes();
  }

  async open(signal: AbortSignal): Promise<void> {
    const { endpoint, peer } = await this.link();
    const req: OutgoingRequest = { method: 'GET', path: ['api', 'v1', this.token, 'attributes'], query: [`sharedKeys=${FW_KEYS_PARAM}`] };
    const observation = await abortable(
      endpoint.observe(
        peer,
        req,
        (n) => {
          if (n.code === '2.05') this.merge(n.payload);
        },
        { timeoutMs: this.silenceMs },
      ),
      signal,
    );
    if (observation.first.code === '4.01') throw new Error('CoAP attributes answered 4.01: unknown access token');
    // 4.04 (nothing yet) ends the observation; the polling below still finds the firmware.
    if (observation.first.code === '2.05') {
      this.observation = observation;
      this.merge(observation.first.payload);
    }
  }

  async firmware(wanted: (fw: FirmwareInfo) => boolean, signal: AbortSignal): Promise<FirmwareInfo> {
    return new Promise<FirmwareInfo>((resolve, reject) => {
      let poll: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = (err: Error | null, fw?: FirmwareInfo): void => {
        if (finished) return;
        finished = true;
        clearTimeout(poll);
        signal.removeEventListener('abort', abort);
        this.onAttributes = () => undefined;
        if (err) reject(err);
        else resolve(fw as FirmwareInfo);
      };
      const abort = (): void => finish(new Error('aborted'));
      signal.addEventListener('abort', abort, { once: true });
      this.onAttributes = () => {
        const fw = firmwareOf(this.shared);
        if (fw && wanted(fw)) finish(null, fw);
      };
      const ask = (): void => {
        this.exchange({ method: 'GET', path: ['api', 'v1', this.token, 'attributes'], query: [`sharedKeys=${FW_KEYS_PARAM}`] }, signal).then(
          (res) => {
            if (finished) return;
            if (res.code === '2.05') this.merge(res.payload);
            if (!finished) poll = setTimeout(ask, this.pollMs);
          },
          (err: Error) => finish(err),
        );
      };
      this.onAttributes();
      ask();
    });
  }

  async download(fw: FirmwareInfo, progress: (bytes: number) => void, signal: AbortSignal): Promise<Buffer> {
    let counted = 0;
    const res = await this.exchange({ method: 'GET', path: ['fw', this.token], query: [`title=${fw.title}`, `version=${fw.version}`] }, signal, (n) => {
      counted += n;
      progress(n);
    });
    if (res.code !== '2.05') throw new Error(`CoAP GET /fw answered ${res.code}`);
    // A body in one datagram has no blocks.
    progress(res.payload.length - counted);
    return res.payload;
  }

  async report(values: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const res = await this.exchange({ method: 'POST', path: ['api', 'v1', this.token, 'telemetry'], payload: Buffer.from(JSON.stringify(values)), contentFormat: 50 }, signal);
    if (res.code !== '2.01' && res.code !== '2.04') throw new Error(`CoAP telemetry answered ${res.code}`);
  }

  async close(): Promise<void> {
    // Deregistering [RFC 7641 §3.6] waits at most a moment: the server may be gone already.
    const observation = this.observation;
    this.observation = null;
    if (observation?.active) await Promise.race([observation.cancel().catch(() => null), new Promise((resolve) => setTimeout(resolve, 500).unref())]);
    await this.endpoint?.stop();
    this.endpoint = null;
  }
}

/** The promise, or a rejection as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(new Error('aborted'));
    signal.addEventListener('abort', abort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
