import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import type { DeviceLink } from './device';
import { FW_KEYS_PARAM, firmwareOf, type FirmwareInfo } from './firmware';

/** MQTT.js is a development dependency: loaded only when MQTT devices are simulated. */
function loadMqtt(): typeof import('mqtt') {
  try {
    return require('mqtt') as typeof import('mqtt');
  } catch {
    throw new Error("MQTT devices need the 'mqtt' package (MQTT.js): npm install mqtt");
  }
}

const TOPIC = {
  attributes: 'v1/devices/me/attributes',
  attributeResponses: 'v1/devices/me/attributes/response/+',
  attributeRequest: (id: number) => `v1/devices/me/attributes/request/${id}`,
  telemetry: 'v1/devices/me/telemetry',
  chunkRequest: (requestId: number, index: number) => `v2/fw/request/${requestId}/chunk/${index}`,
  // The exact filters ThingsBoard accepts (reference §3.4); the SDK's `v2/fw/response/+` is refused.
  chunkResponses: 'v2/fw/response/+/chunk/+',
  error: 'v2/fw/error',
};

/**
 * A device on ThingsBoard's MQTT API (reference §3, §9), as its Python SDK behaves: connects with
 * its access token as the username, subscribes to attribute updates and responses, asks for its
 * shared `fw_*` keys on `v1/devices/me/attributes/request/{n}`, then downloads on
 * `v2/fw/request/{requestId}/chunk/{n}` with the chunk size as payload until it holds `fw_size` bytes.
 */
export class MqttDeviceLink implements DeviceLink {
  private client: MqttClient | null = null;
  private shared: Record<string, unknown> = {};
  private attributeRequests = 0;
  private fwRequests = 0;
  /** Called on every attribute message; the firmware wait listens here. */
  private onAttributes: () => void = () => undefined;
  /** The pending chunk request, by its response topic. */
  private pending: { topic: string; resolve: (payload: Buffer) => void; reject: (err: Error) => void } | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly token: string,
    private readonly clientId: string,
    private readonly chunk: number,
    private readonly pace: number,
    private readonly protocolVersion: 4 | 5,
    /** How long a chunk may take before the download fails. */
    private readonly chunkTimeoutMs = 30_000,
    /** With MQTT basic credentials: the password (the token is then the user name). */
    private readonly password?: string,
    /** With an X.509 certificate: MQTT over TLS presenting it, and no user name (ThingsBoard's X.509 devices send none). */
    private readonly tls?: { cert: string; key: string; ca?: string },
  ) {}

  async open(signal: AbortSignal): Promise<void> {
    const mqtt = loadMqtt();
    const client = mqtt.connect({
      host: this.host,
      port: this.port,
      protocolVersion: this.protocolVersion,
      clientId: this.clientId,
      ...(this.tls
        ? { protocol: 'mqtts' as const, cert: this.tls.cert, key: this.tls.key, ...(this.tls.ca ? { ca: this.tls.ca } : {}), rejectUnauthorized: Boolean(this.tls.ca) }
        : { username: this.token }),
      ...(this.password !== undefined ? { password: this.password } : {}),
      reconnectPeriod: 0,
      connectTimeout: 15_000,
      clean: true,
    });
    this.client = client;
    client.on('message', (topic, payload) => this.message(topic, payload));
    client.on('error', (err) => this.pending?.reject(err));
    client.on('close', () => this.pending?.reject(new Error('MQTT connection closed')));
    await new Promise<void>((resolve, reject) => {
      const abort = (): void => reject(new Error('aborted'));
      signal.addEventListener('abort', abort, { once: true });
      client.once('connect', () => {
        signal.removeEventListener('abort', abort);
        resolve();
      });
      client.once('error', (err) => {
        signal.removeEventListener('abort', abort);
        reject(new Error(`MQTT connect to ${this.host}:${this.port} failed: ${err.message}`));
      });
    });
    const granted = await client.subscribeAsync([TOPIC.attributes, TOPIC.attributeResponses, TOPIC.chunkResponses, TOPIC.error], { qos: 1 });
    const refused = granted.filter((g) => g.qos >= 128).map((g) => g.topic);
    if (refused.length) throw new Error(`subscription refused: ${refused.join(', ')}`);
  }

  private message(topic: string, payload: Buffer): void {
    if (this.pending && topic === this.pending.topic) {
      const { resolve } = this.pending;
      this.pending = null;
      resolve(payload);
      return;
    }
    if (topic === TOPIC.error) {
      this.pending?.reject(new Error(`v2/fw/error: ${payload.toString() || 'UNKNOWN'}`));
      this.pending = null;
      return;
    }
    if (topic.startsWith('v1/devices/me/attributes')) {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(payload.toString()) as Record<string, unknown>;
      } catch {
        return;
      }
      // A response carries `{shared: {...}}`; an update the keys themselves, plus `deleted`.
      const update = topic === TOPIC.attributes ? body : ((body.shared ?? {}) as Record<string, unknown>);
      for (const key of Array.isArray(body.deleted) ? (body.deleted as string[]) : []) delete this.shared[key];
      for (const [k, v] of Object.entries(update)) if (k !== 'deleted') this.shared[k] = v;
      this.onAttributes();
    }
  }

  private get connected(): MqttClient {
    if (!this.client) throw new Error('not connected');
    return this.client;
  }

  async firmware(wanted: (fw: FirmwareInfo) => boolean, signal: AbortSignal): Promise<FirmwareInfo> {
    const found = new Promise<FirmwareInfo>((resolve, reject) => {
      const abort = (): void => reject(new Error('aborted'));
      signal.addEventListener('abort', abort, { once: true });
      this.onAttributes = () => {
        const fw = firmwareOf(this.shared);
        if (!fw || !wanted(fw)) return;
        this.onAttributes = () => undefined;
        signal.removeEventListener('abort', abort);
        resolve(fw);
      };
    });
    this.attributeRequests += 1;
    await this.connected.publishAsync(TOPIC.attributeRequest(this.attributeRequests), JSON.stringify({ sharedKeys: FW_KEYS_PARAM }), { qos: 1 });
    return found;
  }

  private requestChunk(requestId: number, index: number, payload: string, signal: AbortSignal): Promise<Buffer> {
    const topic = `v2/fw/response/${requestId}/chunk/${index}`;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no answer to chunk ${index} within ${this.chunkTimeoutMs} ms`)), this.chunkTimeoutMs);
      const abort = (): void => fail(new Error('aborted'));
      const settle = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', abort);
        this.pending = null;
      };
      const fail = (err: Error): void => {
        settle();
        reject(err);
      };
      signal.addEventListener('abort', abort, { once: true });
      this.pending = {
        topic,
        resolve: (p) => {
          settle();
          resolve(p);
        },
        reject: fail,
      };
      this.connected.publishAsync(TOPIC.chunkRequest(requestId, index), payload, { qos: 1 }).catch(fail);
    });
  }

  async download(fw: FirmwareInfo, progress: (bytes: number) => void, signal: AbortSignal): Promise<Buffer> {
    // A new request id per update, as the docs ask: the server binds it to the package on first use.
    this.fwRequests += 1;
    const requestId = this.fwRequests;
    // The SDK sends an empty payload (the whole file) when its chunk size is 0 or above fw_size.
    const payload = this.chunk === 0 || this.chunk > fw.size ? '' : String(this.chunk);
    const parts: Buffer[] = [];
    let received = 0;
    for (let index = 0; received < fw.size; index++) {
      const part = await this.requestChunk(requestId, index, payload, signal);
      if (part.length === 0) throw new Error(`empty chunk ${index} after ${received} of ${fw.size} bytes`);
      parts.push(part);
      received += part.length;
      progress(part.length);
      if (this.pace > 0 && received < fw.size) await sleep(this.pace, undefined, { signal });
    }
    return Buffer.concat(parts);
  }

  async report(values: Record<string, unknown>): Promise<void> {
    await this.connected.publishAsync(TOPIC.telemetry, JSON.stringify(values), { qos: 1 });
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (!client) return;
    // A clean DISCONNECT, unless the server no longer answers: then the socket goes.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 2000)));
    const ended = await Promise.race([client.endAsync().then(() => 'ended' as const), late]);
    clearTimeout(timer);
    if (ended === 'late') client.stream?.destroy();
  }
}
