import { Agent, request, type IncomingMessage, type ObserveReadStream } from 'coap';
import type { DeviceLink } from './device';
import { FW_KEYS_PARAM, firmwareOf, type FirmwareInfo } from './firmware';

type Packet = Parameters<Agent['_handle']>[0];

/**
 * node-coap's agent requests the blocks of a Block2 transfer itself and answers only with the
 * whole body [RFC 7959 §2.4]; this one also says when each block arrives, so a download shows its
 * progress and fails after a silence rather than after a fixed time.
 */
class BlockWatchingAgent extends Agent {
  onBlock: ((bytes: number) => void) | null = null;

  override _handle(packet: Packet, rsinfo: Parameters<Agent['_handle']>[1], outSocket: Parameters<Agent['_handle']>[2]): void {
    if (this.onBlock && packet.payload?.length && packet.options?.some((o) => o.name === 'Block2')) this.onBlock(packet.payload.length);
    super._handle(packet, rsinfo, outSocket);
  }
}

/**
 * A device on ThingsBoard's CoAP API (reference §5, the docs' coap_firmware_client.py): observes
 * `/api/v1/{token}/attributes` (Observe 0; the first notification is every shared attribute, later
 * ones the changes), downloads `GET /fw/{token}?title=&version=` in one block-wise (RFC 7959 Block2)
 * transfer, and posts its states to `/api/v1/{token}/telemetry`. It also asks for its attributes
 * now and then without Observe, in case a notification is lost (CoAP runs over UDP).
 */
export class CoapDeviceLink implements DeviceLink {
  private readonly agent = new BlockWatchingAgent({ type: 'udp4' });
  private observation: ObserveReadStream | null = null;
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

  private exchange(
    method: 'GET' | 'POST',
    pathname: string,
    opts: { query?: string; body?: string; observe?: boolean; onBlock?: (bytes: number) => void },
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = request({
        hostname: this.host,
        port: this.port,
        method,
        pathname,
        ...(opts.query ? { query: opts.query } : {}),
        ...(opts.observe ? { observe: true } : {}),
        confirmable: true,
        agent: this.agent,
        ...(opts.body !== undefined ? { contentFormat: 'application/json' } : {}),
      });
      const silent = (): void => fail(new Error(`CoAP ${method} ${pathname}: nothing heard for ${this.silenceMs} ms`));
      let timer = setTimeout(silent, this.silenceMs);
      if (opts.onBlock) {
        const onBlock = opts.onBlock;
        this.agent.onBlock = (bytes) => {
          clearTimeout(timer);
          timer = setTimeout(silent, this.silenceMs);
          onBlock(bytes);
        };
      }
      const abort = (): void => fail(new Error('aborted'));
      const done = (): void => {
        clearTimeout(timer);
        this.agent.onBlock = null;
        signal.removeEventListener('abort', abort);
      };
      const fail = (err: Error): void => {
        done();
        reject(err);
      };
      signal.addEventListener('abort', abort, { once: true });
      req.on('response', (res: IncomingMessage) => {
        done();
        resolve(res);
      });
      req.on('error', (err: Error) => fail(new Error(`CoAP ${method} ${pathname}: ${err.message}`)));
      req.on('timeout', () => fail(new Error(`CoAP ${method} ${pathname}: timed out`)));
      req.end(opts.body);
    });
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
    const res = await this.exchange('GET', `/api/v1/${this.token}/attributes`, { query: `sharedKeys=${FW_KEYS_PARAM}`, observe: true }, signal);
    if (res.code === '4.01') throw new Error('CoAP attributes answered 4.01: unknown access token');
    // 4.04 (nothing yet) ends the observation; the polling below still finds the firmware.
    if (res.code === '2.05') {
      this.observation = res as ObserveReadStream;
      res.on('data', (chunk: Buffer) => this.merge(chunk));
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
        this.exchange('GET', `/api/v1/${this.token}/attributes`, { query: `sharedKeys=${FW_KEYS_PARAM}` }, signal).then(
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
    const query = new URLSearchParams({ title: fw.title, version: fw.version }).toString();
    let counted = 0;
    const res = await this.exchange('GET', `/fw/${this.token}`, { query, onBlock: (n) => ((counted += n), progress(n)) }, signal);
    if (res.code !== '2.05') throw new Error(`CoAP GET /fw answered ${res.code}`);
    // A body in one datagram has no blocks; a block heard twice (a retransmission) was counted twice.
    progress(res.payload.length - counted);
    return res.payload;
  }

  async report(values: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const res = await this.exchange('POST', `/api/v1/${this.token}/telemetry`, { body: JSON.stringify(values) }, signal);
    if (res.code !== '2.01' && res.code !== '2.04') throw new Error(`CoAP telemetry answered ${res.code}`);
  }

  async close(): Promise<void> {
    this.observation?.close();
    this.observation = null;
    // Closing aborts what is still in flight; a socket that does not close in time is left to the process's end.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      this.agent.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
