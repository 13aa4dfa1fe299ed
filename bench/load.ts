/**
 * `npm run bench -- load`: the server under load, in a child process (load-server.ts) whose memory
 * is read from /proc:
 *
 *   MQTT       BENCH_LOAD_MQTT (10,000) devices connected with a 60 s keepalive, subscribed to
 *              attribute updates, held BENCH_LOAD_HOLD_S (300) seconds while pinging every 30 s,
 *              each notified once (the notifier writes INITIATED and the fw_* attributes, the
 *              transport delivers): every device must get its one update and stay connected.
 *   CoAP       BENCH_LOAD_COAP (2,000) of those devices also observe their attributes over CoAP
 *              (GET Observe 0); each observer must get the same notification.
 *   HTTP       BENCH_LOAD_HTTP (1,000) downloads at once of a BENCH_LOAD_MB (10) MB package over the
 *              device HTTP API, each checked against the package's SHA-256.
 *
 * Reported: the server's RSS before and after each stage and per connection, the peak during the
 * downloads, the time each stage took, and every error (expected: 0). The reference is the same
 * server idle (its RSS before any client). Both processes need many open files: the child is
 * started under `ulimit -n` raised to the hard limit; this process must be started with enough
 * (npm run bench -- load checks and says so).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import http from 'node:http';
import path from 'node:path';
import { generate, parse } from 'coap-packet';
import { Cleanup, formatBytes, MB, peakRss, positiveInt, printTable, resetPeakRss, type Benchmark } from './lib';
import { WireClient } from './mqtt-wire';

export const load: Benchmark = { name: 'Load: 10,000 MQTT devices, 2,000 CoAP observers, 1,000 HTTP downloads', run };

const token = (i: number): string => `load-${i}`;

interface Ready {
  ports: { http: number; mqtt: number; coap: number };
  title: string;
  version: string;
  sha256: string;
  size: number;
}
interface Memory {
  rss: number;
  heap: number;
  mqtt: number;
  coap: number;
}

function ask<T>(child: ChildProcess, msg: unknown, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>): void => {
      if ('error' in m) reject(new Error(String(m.error)));
      else if (key in m) {
        child.off('message', onMessage);
        resolve(m as T);
      }
    };
    child.on('message', onMessage);
    if (msg !== null) child.send(msg as object);
  });
}

async function run(): Promise<void> {
  const mqttCount = positiveInt('BENCH_LOAD_MQTT', 10_000);
  const coapCount = Math.min(positiveInt('BENCH_LOAD_COAP', 2_000), mqttCount);
  const httpCount = positiveInt('BENCH_LOAD_HTTP', 1_000);
  const holdS = positiveInt('BENCH_LOAD_HOLD_S', 300);
  const packageMb = positiveInt('BENCH_LOAD_MB', 10);
  const cleanup = new Cleanup();
  const errors: string[] = [];
  const error = (what: string): void => void (errors.length < 20 ? errors.push(what) : errors.length === 20 && errors.push('…'));
  try {
    const dataDir = await cleanup.tempDir('ota-load');
    // The child may hold ~mqtt + http + a few sockets: raised to the hard limit by its shell.
    const child = spawn(
      'sh',
      [
        '-c',
        `ulimit -n "$(ulimit -Hn)"; exec "${process.execPath}" "${path.join(__dirname, 'load-server.js')}" "$@"`,
        'load-server',
        dataDir,
        String(mqttCount),
        String(packageMb),
      ],
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    cleanup.add(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const ready = await ask<Ready>(child, null, 'ports');
    const pid = child.pid as number;
    const memory = (): Promise<Memory> => ask<Memory>(child, { memory: true }, 'rss');
    const idle = await memory();

    // ---- MQTT: connect, subscribe, keep alive -------------------------------------------------
    const clients: WireClient[] = [];
    let updates = 0;
    let dropped = 0;
    let t0 = Date.now();
    for (let i = 0; i < mqttCount; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, mqttCount - i) }, async (_, k) => {
          try {
            const c = await WireClient.connect(ready.ports.mqtt, { clientId: `load-${i + k}`, username: token(i + k), keepalive: 60 });
            c.onMessage = (topic) => void (topic === 'v1/devices/me/attributes' && (updates += 1));
            c.onClose(() => void (dropped += 1));
            await c.subscribe('v1/devices/me/attributes', 1);
            clients.push(c);
          } catch (err) {
            error(`MQTT connect ${i + k}: ${(err as Error).message}`);
          }
        }),
      );
    }
    const mqttConnectS = (Date.now() - t0) / 1000;
    const pinger = setInterval(() => clients.forEach((c) => c.ping()), 30_000);
    cleanup.add(() => clearInterval(pinger));
    const withMqtt = await memory();

    // ---- CoAP: observers -----------------------------------------------------------------------
    // Registered 100 at a time, each resent until answered, as a CoAP client retransmits a
    // confirmable request [RFC 7252 §4.2]: a burst of 2,000 datagrams overflows socket buffers.
    const sockets: Socket[] = [];
    const registered = new Set<number>();
    const coapUpdated = new Set<number>();
    t0 = Date.now();
    const tokenOf = (i: number): Buffer => Buffer.from([i >> 8, i & 0xff, 0x10]);
    const register = (i: number): void => {
      const options = [
        ...['api', 'v1', token(i), 'attributes'].map((v) => ({ name: 'Uri-Path' as const, value: Buffer.from(v) })),
        { name: 'Observe' as const, value: Buffer.alloc(0) },
      ];
      (sockets[Math.floor(i / 100)] as Socket).send(generate({ code: '0.01', confirmable: true, messageId: i + 1, token: tokenOf(i), options }), ready.ports.coap, '127.0.0.1');
    };
    for (let s = 0; s < Math.ceil(coapCount / 100); s++) {
      const socket = createSocket('udp4');
      socket.on('error', (err) => error(`CoAP socket: ${err.message}`));
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      cleanup.add(() => socket.close());
      sockets.push(socket);
      socket.on('message', (m) => {
        const p = parse(m);
        if (p.confirmable) socket.send(generate({ code: '0.00', ack: true, messageId: p.messageId }), ready.ports.coap, '127.0.0.1');
        if (p.code === '0.00' || p.token.length !== 3) return;
        const i = ((p.token[0] ?? 0) << 8) | (p.token[1] ?? 0);
        registered.add(i);
        if (p.payload.includes('fw_title')) coapUpdated.add(i);
      });
    }
    for (let first = 0; first < coapCount; first += 100) {
      const batch = Array.from({ length: Math.min(100, coapCount - first) }, (_, k) => first + k);
      for (let attempt = 0; attempt < 10 && batch.some((i) => !registered.has(i)); attempt++) {
        for (const i of batch) if (!registered.has(i)) register(i);
        for (let wait = 0; wait < 20 && batch.some((i) => !registered.has(i)); wait++) await new Promise((r) => setTimeout(r, 50));
      }
    }
    const observed = registered.size;
    if (observed < coapCount) error(`CoAP: ${coapCount - observed} observe registrations unanswered after 10 attempts`);
    const coapRegisterS = (Date.now() - t0) / 1000;
    const withCoap = await memory();

    // ---- notify every device once, then hold ---------------------------------------------------
    const notified = await ask<{ notified: number; mqtt: number; coap: number; ms: number }>(child, { notify: mqttCount }, 'notified');
    for (let wait = 0; (updates < clients.length || coapUpdated.size < observed) && wait < 400; wait++) await new Promise((r) => setTimeout(r, 50));
    if (updates !== clients.length) error(`MQTT: ${updates} of ${clients.length} devices got their update`);
    if (coapUpdated.size !== observed) error(`CoAP: ${coapUpdated.size} of ${observed} observers got their update`);
    await new Promise((r) => setTimeout(r, holdS * 1000));
    const held = await memory();
    if (dropped) error(`MQTT: ${dropped} connections dropped during the ${holdS} s hold`);
    if (held.mqtt !== clients.length) error(`MQTT: the server counts ${held.mqtt} sessions, ${clients.length} expected`);

    // ---- 1,000 downloads at once -----------------------------------------------------------------
    resetPeakRss(pid);
    t0 = Date.now();
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const q = new URLSearchParams({ title: ready.title, version: ready.version });
    let bytes = 0;
    await Promise.all(
      Array.from(
        { length: httpCount },
        (_, i) =>
          new Promise<void>((resolve) => {
            const req = http.get({ host: '127.0.0.1', port: ready.ports.http, path: `/api/v1/${token(i % mqttCount)}/firmware?${q}`, agent }, (res) => {
              const hash = createHash('sha256');
              res.on('data', (c: Buffer) => {
                bytes += c.length;
                hash.update(c);
              });
              res.on('end', () => {
                if (res.statusCode !== 200) error(`HTTP download ${i}: ${res.statusCode}`);
                else if (hash.digest('hex') !== ready.sha256) error(`HTTP download ${i}: checksum differs`);
                resolve();
              });
              res.on('error', (err) => {
                error(`HTTP download ${i}: ${err.message}`);
                resolve();
              });
            });
            req.on('error', (err) => {
              error(`HTTP download ${i}: ${err.message}`);
              resolve();
            });
          }),
      ),
    );
    const downloadS = (Date.now() - t0) / 1000;
    const downloadPeak = peakRss(pid);
    for (const c of clients) c.destroy();

    const perConn = (after: number, before: number, n: number): string => (n ? `${((after - before) / n / 1024).toFixed(1)} KB` : 'n/a');
    printTable(
      ['stage', 'count', 'time', 'server RSS after', 'per connection'],
      [
        ['idle server (reference)', '-', '-', formatBytes(idle.rss), '-'],
        ['MQTT devices connected + subscribed', String(clients.length), `${mqttConnectS.toFixed(1)} s`, formatBytes(withMqtt.rss), perConn(withMqtt.rss, idle.rss, clients.length)],
        ['CoAP observers registered', String(observed), `${coapRegisterS.toFixed(1)} s`, formatBytes(withCoap.rss), perConn(withCoap.rss, withMqtt.rss, observed)],
        ['notified once (MQTT / CoAP delivered)', `${notified.notified} (${notified.mqtt} / ${notified.coap})`, `${(notified.ms / 1000).toFixed(1)} s`, '-', '-'],
        [`held ${holdS} s with keepalives`, `${held.mqtt} MQTT, ${held.coap} CoAP`, `${holdS} s`, formatBytes(held.rss), '-'],
        [
          `HTTP downloads of ${packageMb} MB at once`,
          String(httpCount),
          `${downloadS.toFixed(1)} s (${(bytes / MB / downloadS).toFixed(0)} MB/s)`,
          `peak ${formatBytes(downloadPeak)}`,
          downloadPeak ? perConn(downloadPeak, held.rss, httpCount) : 'n/a',
        ],
      ],
    );
    console.log(`\nerrors: ${errors.length}${errors.length ? `\n  ${errors.join('\n  ')}` : ''}`);
    if (errors.length) process.exitCode = 1;
  } finally {
    cleanup.run();
  }
}
