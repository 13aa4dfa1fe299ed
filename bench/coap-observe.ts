/**
 * CoAP notifications at fleet scale: BENCH_COAP_OBSERVERS devices (default 1,000) observing their
 * attributes (RFC 7641), one package assigned to their profile with pacing off, and the time until
 * the last device has the notification, from
 *
 *   ours        the whole path: the assignment, the notify queue released at once, the notifier
 *               writing each device's shared attributes, the CoAP transport sending the notification
 *   transport   the CoAP transport alone: the same update handed to it for every device at once
 *               (what the notifier would deliver), timed to the last notification
 *   reference   libcoap's `coap-server-notls` with the same number of observers on one resource,
 *               notifying them all after one PUT (CoAP's part only: no database, one resource)
 *
 * The observers are raw coap-packet clients, one UDP socket each (libcoap keeps one observation per
 * peer and resource, so devices cannot share a socket), registering with CON requests and
 * acknowledging CON notifications, the same for both servers. Memory: this process's RSS growth
 * while the observations are held (engine and clients share the process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import path from 'node:path';
import { Readable } from 'node:stream';
import { generate, parse, type ParsedPacket } from 'coap-packet';
import { OtaEngine } from '../server/engine';
import { CoapTransport } from '../server/transports/coap/coap-transport';
import type { AssignmentEvent } from '../server/pipeline/notify-queue';
import type { DeviceId } from '../server/ids';
import { benchLogger, Cleanup, createProfileWithPackage, formatBytes, positiveInt, printTable, type Benchmark } from './lib';

export const coapObserve: Benchmark = {
  name: 'CoAP notifications to observing devices',
  run,
};

/** Observers spread over sockets; each notification that `wanted` accepts is timed once per observer. */
class Observers {
  private readonly sockets: Socket[] = [];
  private readonly notified = new Set<string>();
  private registered = 0;
  private onRegistered: (() => void) | null = null;
  private onNotified: (() => void) | null = null;
  wanted: (payload: Buffer) => boolean = () => false;
  lastAt = 0n;

  static async open(count: number): Promise<Observers> {
    const o = new Observers();
    for (let i = 0; i < count; i++) {
      const socket = createSocket('udp4');
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      socket.on('message', (m, rinfo) => o.receive(socket, m, rinfo.port));
      o.sockets.push(socket);
    }
    return o;
  }

  private receive(socket: Socket, message: Buffer, from: number): void {
    let p: ParsedPacket;
    try {
      p = parse(message);
    } catch {
      return;
    }
    // Confirmable notifications are acknowledged [RFC 7252 §4.2].
    if (p.confirmable) socket.send(generate({ code: '0.00', ack: true, messageId: p.messageId }), from, '127.0.0.1');
    if (p.ack && p.code === '2.05') {
      this.registered += 1;
      if (this.onRegistered) this.onRegistered();
      return;
    }
    const key = `${socket.address().port}#${p.token.toString('hex')}`;
    if (p.code === '2.05' && !this.notified.has(key) && this.wanted(p.payload)) {
      this.notified.add(key);
      this.lastAt = process.hrtime.bigint();
      this.onNotified?.();
    }
  }

  /**
   * Registers observation i of `paths[i]` from socket i mod sockets, CON, 50 at a time (a burst of
   * a thousand would overflow a socket's receive buffer, and these clients do not retransmit).
   */
  async register(port: number, paths: string[]): Promise<void> {
    this.registered = 0;
    for (let from = 0; from < paths.length; from += 50) {
      const to = Math.min(from + 50, paths.length);
      for (let i = from; i < to; i++) {
        const socket = this.sockets[i % this.sockets.length] as Socket;
        const options = [
          { name: 'Observe' as const, value: Buffer.alloc(0) },
          ...(paths[i] as string)
            .split('/')
            .filter(Boolean)
            .map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) })),
        ];
        socket.send(generate({ code: 'GET', confirmable: true, token: tokenOf(i), options }), port, '127.0.0.1');
      }
      await this.until(
        () => this.registered >= to,
        (f) => (this.onRegistered = f),
        30_000,
        'registrations',
      );
    }
  }

  /** Resolves when `n` observers have a wanted notification. */
  waitNotified(n: number): Promise<void> {
    return this.until(
      () => this.notified.size >= n,
      (f) => (this.onNotified = f),
      120_000,
      'notifications',
    );
  }

  reset(): void {
    this.notified.clear();
    this.wanted = () => false;
  }

  private until(done: () => boolean, hook: (f: () => void) => void, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not all in ${ms} ms`)), ms);
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        hook(() => undefined);
        resolve();
      };
      hook(check);
      check();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

const tokenOf = (i: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(i);
  return b;
};

async function run(): Promise<void> {
  const n = positiveInt('BENCH_COAP_OBSERVERS', 1000);
  const socketCount = n;
  const cleanup = new Cleanup();
  let engine: OtaEngine | null = null;
  let transport: CoapTransport | null = null;
  let observers: Observers | null = null;
  try {
    const dir = await cleanup.tempDir('ota-bench-coap-observe');
    engine = await OtaEngine.open({ dataDir: path.join(dir, 'engine'), http: false, admin: { password: randomBytes(12).toString('base64url') }, logger: benchLogger() });
    const tenantId = engine.bootstrap.admin.tenantId;
    const { profileId, pkg } = await createProfileWithPackage(engine, tenantId, {
      profileName: 'observers',
      title: 'observed-fw',
      version: '2.0',
      source: Readable.from([randomBytes(4096)]),
    });
    const tokens: string[] = [];
    const deviceIds: DeviceId[] = [];
    for (let i = 0; i < n; i++) {
      const token = `obs-${i}-${randomBytes(4).toString('hex')}`;
      deviceIds.push((await engine.devices.save(tenantId, { name: `observer-${i}`, deviceProfileId: { id: profileId } }, { accessToken: token })).id);
      tokens.push(token);
    }
    transport = new CoapTransport(engine.deviceContext, { port: 0, host: '127.0.0.1' });
    const ourPort = (await transport.start()).port;
    observers = await Observers.open(socketCount);

    // Ours: every device observes its attributes, then one assignment reaches all of them.
    const rssBefore = process.memoryUsage().rss;
    await observers.register(
      ourPort,
      tokens.map((t) => `/api/v1/${t}/attributes`),
    );
    const rssHeld = process.memoryUsage().rss - rssBefore;
    if (transport.observers !== n) throw new Error(`${transport.observers} observations, expected ${n}`);
    observers.wanted = (payload) => payload.includes('observed-fw');
    const ours = engine;
    const coap = transport;
    const start = process.hrtime.bigint();
    const notified = observers.waitNotified(n);
    const release = (events: AssignmentEvent[]): void => {
      for (const ev of events) {
        void ours.pipeline.notifier.process(ev).then((outcome) => {
          if ('notification' in outcome) coap.deliver(outcome.notification);
        });
      }
    };
    ours.pipeline.queue.start({ packSize: n, intervalMs: 0, mode: 'spaced' }, release);
    await ours.pipeline.assignment.assign(tenantId, { target: { deviceProfile: profileId }, type: 'FIRMWARE', package: pkg.id });
    await notified;
    const ourSeconds = Number(observers.lastAt - start) / 1e9;
    ours.pipeline.queue.stop();

    // Ours, the transport alone: one update handed to it for every device, as the reference's one PUT.
    for (let i = 0; i < 1000 && coap.load.retransmitting > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    observers.reset();
    observers.wanted = (payload) => payload.includes('transport-only');
    const coapStart = process.hrtime.bigint();
    const coapNotified = observers.waitNotified(n);
    for (const deviceId of deviceIds) coap.deliver({ deviceId, attributes: { fw_tag: 'transport-only' }, deleted: [] });
    await coapNotified;
    const coapSeconds = Number(observers.lastAt - coapStart) / 1e9;

    // Reference: the same number of observers on one libcoap resource, notified by one PUT.
    observers.reset();
    const refPort = await startLibcoapServer(cleanup);
    await put(refPort, 'v1');
    await observers.register(
      refPort,
      Array.from({ length: n }, () => '/observed'),
    );
    observers.wanted = (payload) => payload.toString() === 'v2';
    const refStart = process.hrtime.bigint();
    const refNotified = observers.waitNotified(n);
    await put(refPort, 'v2');
    await refNotified;
    const refSeconds = Number(observers.lastAt - refStart) / 1e9;

    console.log();
    console.log(`${n.toLocaleString('en')} observers, one UDP socket each, CON registrations and notifications`);
    console.log();
    printTable(
      ['server', 'observers', 'seconds to the last notification', 'notifications/s', 'ratio to reference'],
      [
        ['coap-server-notls (reference): one PUT, one resource', String(n), refSeconds.toFixed(3), String(Math.round(n / refSeconds)), '—'],
        ['ours: one assignment, pacing off, whole pipeline', String(n), ourSeconds.toFixed(3), String(Math.round(n / ourSeconds)), `${(refSeconds / ourSeconds).toFixed(2)}×`],
        [
          'ours: the CoAP transport alone, one update per device',
          String(n),
          coapSeconds.toFixed(3),
          String(Math.round(n / coapSeconds)),
          `${(refSeconds / coapSeconds).toFixed(2)}×`,
        ],
      ],
    );
    console.log();
    console.log(
      `ratio: the reference's seconds ÷ ours (1.00 = as fast); ours includes the notifier's database writes; RSS growth while ${n} observations were registered: ${formatBytes(rssHeld)}`,
    );
  } finally {
    await observers?.close();
    await transport?.stop();
    await engine?.close();
    cleanup.run();
  }
}

function client(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('coap-client-notls', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 && !/\b[45]\.\d\d\b/.test(stderr) ? resolve() : reject(new Error(`coap-client-notls ${args.join(' ')}: exit ${code} ${stderr.trim()}`)),
    );
  });
}

const put = (port: number, value: string): Promise<void> => client(['-m', 'put', '-B', '5', '-e', value, `coap://127.0.0.1:${port}/observed`]);

/** coap-server-notls on a free port of 127.0.0.1, `-d` so that a PUT creates the observed resource. */
async function startLibcoapServer(cleanup: Cleanup): Promise<number> {
  const probe = createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const child: ChildProcess = spawn('coap-server-notls', ['-A', '127.0.0.1', '-p', String(port), '-d', '4'], { stdio: 'ignore' });
  cleanup.add(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  for (let attempt = 0; attempt < 50; attempt++) {
    if (
      await client(['-m', 'get', '-B', '1', `coap://127.0.0.1:${port}/`]).then(
        () => true,
        () => false,
      )
    )
      return port;
  }
  throw new Error('coap-server-notls did not answer');
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
