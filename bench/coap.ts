/**
 * Block-wise package downloads over CoAP (RFC 7959): libcoap's `coap-client-notls` fetching one
 * package block by block, with 256- and 1024-byte blocks, from
 *
 *   ours        the CoAP transport on the OTA engine: `GET /fw/{token}?title=&version=`, the token
 *               looked up, the package resolved and one block read from the blob store per request
 *   reference   libcoap's own `coap-server-notls`, serving the same bytes from memory
 *
 * The same client binary, the same file, the same machine; the client waits for each block
 * before asking for the next (CoAP's stop-and-wait), so this measures per-request latency as much
 * as bandwidth. Size: BENCH_COAP_MB (default 4); rounds: BENCH_ROUNDS (default 3, best kept).
 *
 * coap-server-notls cannot serve a file it is given on the command line: `-d N` lets clients
 * create up to N resources with PUT, so the reference is loaded by PUTting the file to `/bench`
 * (block-wise, Block1) before timing, then read back and checked against the package's SHA-256,
 * as every timed download is.
 *
 * Ours runs in this process (the client is a separate process either way); the engine's data
 * directory is a temporary one, seeded through the engine's services.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { CoapTransport } from '../server/transports/coap/coap-transport';
import { OtaEngine } from '../server/engine';
import { benchLogger, Cleanup, createProfileWithPackage, generateFile, MB, positiveInt, printTable, queueReaches, type Benchmark } from './lib';

export const coapDownload: Benchmark = {
  name: 'CoAP block-wise download',
  run,
};

const BLOCK_SIZES = [256, 1024] as const;

interface Server {
  name: string;
  /** The URI the client GETs. */
  uri: string;
}

class Row {
  seconds = Infinity;

  constructor(
    readonly blockSize: number,
    readonly server: Server,
    readonly bytes: number,
    readonly reference: Row | null,
  ) {}

  get mbps(): number {
    return this.bytes / MB / this.seconds;
  }

  cells(): string[] {
    return [
      String(this.blockSize),
      this.server.name,
      (this.bytes / MB).toFixed(0),
      this.seconds.toFixed(2),
      this.mbps.toFixed(2),
      String(Math.round(Math.ceil(this.bytes / this.blockSize) / this.seconds)),
      this.reference ? `${(this.mbps / this.reference.mbps).toFixed(2)}×` : '—',
    ];
  }
}

async function run(): Promise<void> {
  const size = positiveInt('BENCH_COAP_MB', 4) * MB;
  const rounds = positiveInt('BENCH_ROUNDS', 3);
  const cleanup = new Cleanup();
  let engine: OtaEngine | null = null;
  let transport: CoapTransport | null = null;
  try {
    const work = await cleanup.tempDir('ota-bench-coap');
    const file = path.join(work, 'package.bin');
    await generateFile(file, size);
    const sha256 = createHash('sha256')
      .update(await readFile(file))
      .digest('hex');

    engine = await OtaEngine.open({ dataDir: path.join(work, 'engine'), http: false, admin: { password: randomBytes(12).toString('base64url') }, logger: benchLogger() });
    const tenantId = engine.bootstrap.admin.tenantId;
    const { profileId, pkg } = await createProfileWithPackage(engine, tenantId, { profileName: 'coap', title: 'coap.bin', version: '1.0', source: createReadStream(file) });
    const queued = queueReaches(engine.pipeline.queue, (await engine.pipeline.queue.depth()) + 1);
    const token = `coap-${randomBytes(6).toString('hex')}`;
    await engine.devices.save(tenantId, { name: 'coap-device', deviceProfileId: { id: profileId }, firmwareId: { id: pkg.id } }, { accessToken: token });
    await queued;

    transport = new CoapTransport(engine.deviceContext, { port: 0, host: '127.0.0.1' });
    const ours: Server = { name: 'ours (CoapTransport)', uri: `coap://127.0.0.1:${(await transport.start()).port}/fw/${token}?title=coap.bin&version=1.0` };
    const reference: Server = { name: 'coap-server-notls (reference)', uri: `coap://127.0.0.1:${await startLibcoapServer(cleanup)}/bench` };
    await put(reference.uri, file);

    const out = path.join(work, 'download.bin');
    const download = async (server: Server, blockSize: number): Promise<number> => {
      const start = process.hrtime.bigint();
      await client(['-m', 'get', '-b', String(blockSize), '-B', '120', '-o', out, server.uri]);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const got = createHash('sha256')
        .update(await readFile(out))
        .digest('hex');
      if (got !== sha256) throw new Error(`${server.name}, ${blockSize}-byte blocks: the download's SHA-256 is ${got}, expected ${sha256}`);
      return seconds;
    };

    const rows = BLOCK_SIZES.flatMap((blockSize) => {
      const ref = new Row(blockSize, reference, size, null);
      return [ref, new Row(blockSize, ours, size, ref)];
    });
    // Each row runs beside its reference in every round, so load from elsewhere hits both sides.
    for (let round = 1; round <= rounds; round++) {
      for (const row of rows) row.seconds = Math.min(row.seconds, await download(row.server, row.blockSize));
    }

    console.log();
    console.log(`coap-client-notls downloads ${(size / MB).toFixed(0)} MB block by block (-b 256 and -b 1024), SHA-256 checked after every download`);
    console.log();
    printTable(
      ['block size', 'server', 'MB', 'seconds', 'MB/s', 'blocks/s', 'ratio to reference'],
      rows.map((r) => r.cells()),
    );
    console.log();
    console.log(`seconds: best of ${rounds} rounds, the client process's wall time; ratio: our MB/s ÷ the reference's (1.00 = as fast)`);
  } finally {
    await transport?.stop();
    await engine?.close();
    cleanup.run();
  }
}

/** Runs coap-client-notls; it exits 0 whatever it got, so an error code on stderr is a failure. */
function client(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('coap-client-notls', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0 || /\b[45]\.\d\d\b/.test(stderr)) reject(new Error(`coap-client-notls ${args.join(' ')}: exit ${code} ${stderr.trim()}`));
      else resolve();
    });
  });
}

/** PUTs the file as a resource of the reference server (block-wise, 1024-byte blocks). */
function put(uri: string, file: string): Promise<void> {
  return client(['-m', 'put', '-b', '1024', '-B', '60', '-f', file, uri]);
}

/**
 * Starts coap-server-notls on a free UDP port of 127.0.0.1, allowing PUT to create a resource
 * (`-d`); resolves once it answers a GET.
 */
async function startLibcoapServer(cleanup: Cleanup): Promise<number> {
  const port = await freeUdpPort();
  const child: ChildProcess = spawn('coap-server-notls', ['-A', '127.0.0.1', '-p', String(port), '-d', '4'], { stdio: 'ignore' });
  cleanup.add(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`coap-server-notls exited with ${code}`))));
  exited.catch(() => undefined);
  for (let attempt = 0; attempt < 50; attempt++) {
    // The root resource answers once the server is up; -B 1 waits at most a second per try.
    const up = await Promise.race([
      client(['-m', 'get', '-B', '1', `coap://127.0.0.1:${port}/`]).then(
        () => true,
        () => false,
      ),
      exited,
    ]);
    if (up) return port;
  }
  throw new Error('coap-server-notls did not answer');
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
