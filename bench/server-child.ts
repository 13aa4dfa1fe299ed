/**
 * The server side of a benchmark, in its own process so its peak RSS is its own and it gets its
 * own core. Listens on 127.0.0.1 port 0 and prints `{"port": N}` as one line on stdout.
 *
 *   node server-child.js engine <dataDir>            the OTA engine (admin password: $BENCH_ADMIN_PASSWORD)
 *   node server-child.js reference <file> <dir>      a plain `http` server: the reference to beat
 *   node server-child.js device-reference <dir>      a plain `http` server for device downloads
 *
 * The reference server does the least an upload/download server can do with the same bytes:
 * `GET /file` streams <file>; `POST /upload` streams the raw body through SHA-256 into a file in
 * <dir>, fsynced like the blob store does, and answers `{size, sha256}`.
 *
 * The device reference answers any GET the way the device API answers
 * `/api/v1/{token}/firmware?title=&version=&size=&chunk=`, doing the least that takes: the file
 * `<dir>/<title>` (no token, version or database), the chunk `size`×`chunk` streamed from disk,
 * the whole file for `size=0`, an empty 200 past the end.
 *
 * Exits on SIGTERM, and when stdin closes: the parent died without killing us.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OtaEngine } from '../server/engine';
import { type Logger } from '../server/logger';
import { chunkRange } from '../server/transports/firmware-download';

const quiet: Logger = {
  info: () => undefined,
  warn: (m) => console.error(`[ota] ${m}`),
  error: (m) => console.error(`[ota] ${m}`),
};

async function startEngine(dataDir: string): Promise<{ port: number; close: () => Promise<void> }> {
  const password = process.env.BENCH_ADMIN_PASSWORD;
  if (!password) throw new Error('BENCH_ADMIN_PASSWORD is not set');
  const engine = await OtaEngine.open({ dataDir, http: { port: 0, host: '127.0.0.1' }, admin: { password }, logger: quiet });
  return { port: (engine.httpAddress as AddressInfo).port, close: () => engine.close() };
}

async function startReference(file: string, uploadDir: string): Promise<{ port: number; close: () => Promise<void> }> {
  const size = (await stat(file)).size;
  let uploads = 0;
  const server = http.createServer((req, res) => {
    const fail = (err: unknown) => {
      console.error(`[reference] ${(err as Error).message}`);
      res.destroy();
    };
    if (req.method === 'GET' && req.url === '/file') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size });
      pipeline(createReadStream(file), res).catch(fail);
    } else if (req.method === 'POST' && req.url === '/upload') {
      const hash = createHash('sha256');
      let received = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, callback) {
          received += chunk.length;
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      const target = path.join(uploadDir, `upload-${++uploads}`);
      pipeline(req, meter, createWriteStream(target, { flush: true }))
        .then(() => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ size: received, sha256: hash.digest('hex') })))
        .catch(fail);
    } else {
      res.writeHead(404).end();
    }
  });
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function startDeviceReference(dir: string): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const file = path.join(dir, path.basename(url.searchParams.get('title') ?? ''));
    stat(file).then(
      ({ size: total }) => {
        const slice = chunkRange(total, Number(url.searchParams.get('size') ?? 0), Number(url.searchParams.get('chunk') ?? 0));
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': slice.end - slice.start });
        if (slice.end === slice.start) return void res.end();
        pipeline(createReadStream(file, { start: slice.start, end: slice.end - 1 }), res).catch((err: unknown) => {
          console.error(`[device-reference] ${(err as Error).message}`);
          res.destroy();
        });
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function main(): Promise<void> {
  const [mode, a, b] = process.argv.slice(2);
  let started: { port: number; close: () => Promise<void> };
  if (mode === 'engine' && a) started = await startEngine(a);
  else if (mode === 'reference' && a && b) started = await startReference(a, b);
  else if (mode === 'device-reference' && a) started = await startDeviceReference(a);
  else throw new Error('usage: server-child.js engine <dataDir> | reference <file> <uploadDir> | device-reference <dir>');

  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    started.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ port: started.port })}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
