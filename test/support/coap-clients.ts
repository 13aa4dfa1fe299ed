/**
 * The CoAP devices the tests use: the `coap` package's client, libcoap's `coap-client-notls`
 * (spawned), and a raw UDP peer that sends and reads messages byte for byte (coap-packet).
 */
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { Agent, request, type CoapRequestParams, type IncomingMessage, type ObserveReadStream } from 'coap';
import { generate, parse, type Packet, type ParsedPacket } from 'coap-packet';

/** A response as the tests read it. */
export interface CoapResponse {
  code: string;
  payload: Buffer;
  /** The options of the (last) response message, decoded by the `coap` package. */
  headers: IncomingMessage['headers'];
}

/**
 * One request with the `coap` package's client over `agent`: resolves with the response (the
 * package follows Block2 by itself and hands over the whole body).
 */
export function coapRequest(agent: Agent, port: number, params: CoapRequestParams & { payload?: Buffer | string }): Promise<CoapResponse> {
  return new Promise((resolve, reject) => {
    const { payload, ...rest } = params;
    const req = request({ host: '127.0.0.1', port, agent, ...rest });
    req.on('response', (res: IncomingMessage) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ code: res.code, payload: Buffer.concat(parts), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** An observation with the `coap` package's client: the stream of notifications, and the first one. */
export function coapObserve(agent: Agent, port: number, params: CoapRequestParams): Promise<{ stream: ObserveReadStream; first: CoapResponse; next(): Promise<CoapResponse> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, agent, observe: true, ...params });
    req.on('response', (stream: ObserveReadStream) => {
      const queue: CoapResponse[] = [];
      let waiting: ((r: CoapResponse) => void) | null = null;
      stream.on('data', (payload: Buffer) => {
        const r = { code: stream.code, payload, headers: { ...stream.headers } };
        if (waiting) {
          const w = waiting;
          waiting = null;
          w(r);
        } else queue.push(r);
      });
      stream.on('error', reject);
      const next = (): Promise<CoapResponse> => {
        const r = queue.shift();
        return r ? Promise.resolve(r) : new Promise((res) => (waiting = res));
      };
      void next().then((first) => resolve({ stream, first, next }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** What `coap-client-notls -v 6` printed: the response codes it received, and its output. */
export interface LibcoapRun {
  /** Codes of the messages received from the server, in order (2.05, 4.04, …; empty ACKs left out). */
  codes: string[];
  /** Block2 options of the received messages, as printed (`Block2:1/M/256`). */
  blocks: string[];
  stdout: string;
  stderr: string;
}

/**
 * Runs libcoap's client, which exits 0 whatever the server answered: what it received is read from
 * its `-v 6` message log on stdout (`v:1 t:ACK c:4.04 i:…`), the sent ones told apart by their
 * method names.
 */
export function libcoap(args: string[]): Promise<LibcoapRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('coap-client-notls', ['-v', '6', '-B', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', () => {
      const codes: string[] = [];
      const blocks: string[] = [];
      // The body, when written to stdout, runs into the log lines: match messages anywhere.
      for (const m of stdout.matchAll(/v:1 t:\S+ c:(\d\.\d\d) i:\S+ \{[0-9a-f]*\} \[(.*?)\]/g)) {
        if (m[1] === '0.00') continue;
        codes.push(m[1] as string);
        const b = /Block2:([^,\s\]]+)/.exec(m[2] as string);
        if (b) blocks.push(b[1] as string);
      }
      resolve({ codes, blocks, stdout, stderr });
    });
  });
}

/**
 * A UDP peer that speaks raw CoAP: sends packets (or bytes) and hands out, in order, what comes
 * back. For what a client library would hide: retransmissions, ACKs, RSTs, malformed messages.
 */
export class RawPeer {
  private readonly received: ParsedPacket[] = [];
  private waiting: ((p: ParsedPacket) => void) | null = null;

  private constructor(
    private readonly socket: Socket,
    readonly serverPort: number,
  ) {
    socket.on('message', (m) => {
      const p = parse(m);
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(p);
      } else this.received.push(p);
    });
  }

  static async open(serverPort: number): Promise<RawPeer> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new RawPeer(socket, serverPort);
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Sends a packet (coap-packet fills what is left out) or bytes as they are; answers the bytes. */
  send(message: Packet | Buffer): Buffer {
    const bytes = Buffer.isBuffer(message) ? message : generate(message);
    this.socket.send(bytes, this.serverPort, '127.0.0.1');
    return bytes;
  }

  /** The next message from the server. */
  next(): Promise<ParsedPacket> {
    const p = this.received.shift();
    return p ? Promise.resolve(p) : new Promise((resolve) => (this.waiting = resolve));
  }

  /** Messages received and not yet taken. */
  get queued(): number {
    return this.received.length;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/** A request's path and query as Uri-Path and Uri-Query options. */
export function uriOptions(path: string, query: string[] = []): Array<{ name: 'Uri-Path' | 'Uri-Query'; value: Buffer }> {
  return [
    ...path
      .split('/')
      .filter((s) => s !== '')
      .map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) })),
    ...query.map((q) => ({ name: 'Uri-Query' as const, value: Buffer.from(q) })),
  ];
}

/** The first option named `name` of a parsed packet. */
export const optionOf = (p: ParsedPacket, name: string): Buffer | undefined => p.options.find((o) => String(o.name) === name)?.value;

/** An unsigned option value as a number (Observe, Size2, Content-Format). */
export const uintOf = (b: Buffer | undefined): number | undefined => (b === undefined ? undefined : b.reduce((n, x) => n * 256 + x, 0));
