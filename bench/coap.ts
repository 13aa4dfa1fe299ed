/**
 * Block-wise package downloads over CoAP (RFC 7959): libcoap's `coap-client-notls` fetching one
 * package block by block, with 256- and 1024-byte blocks, from
 *
 *   ours        the CoAP transport on the OTA engine: `GET /fw/{token}?title=&version=`, the token
 *               looked up, the package resolved and one block read from the blob store per request
 *   reference   libcoap's own `coap-server-notls`, serving the same bytes from memory
 *
 *   bare Node   a dgram socket in this process answering each GET with its block of the file in
 *               memory: the header read by hand, no CoAP stack, no engine. Not a CoAP server (it
 *               answers any request with a block); it is the ceiling of a Node process, whose UDP
 *               send costs what it costs whatever sits above it.
 *
 * The same client binary, the same file, the same machine; the client waits for each block
 * before asking for the next (CoAP's stop-and-wait), so this measures per-request latency as much
 * as bandwidth. Size: BENCH_COAP_MB (default 4); rounds: BENCH_ROUNDS (default 5, the median
 * kept: the machine is shared, and a best-of hides how much the load moves both sides).
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
import { createReadStream, readFileSync } from 'node:fs';
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
  /** CPU time the serving process has used so far, in microseconds. */
  cpu(): number;
}

/** This process's CPU time (ours and the bare line are served from it; it is otherwise idle while the client runs). */
const ownCpu = (): number => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

/** Another process's CPU time, from the scheduler's nanosecond count (/proc/PID/schedstat, Linux). */
const processCpu = (pid: number) => (): number => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;

const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

class Row {
  readonly runs: number[] = [];
  /** Server CPU microseconds per download. */
  readonly cpu: number[] = [];

  constructor(
    readonly blockSize: number,
    readonly server: Server,
    readonly bytes: number,
    readonly reference: Row | null,
  ) {}

  /** The median run. */
  get seconds(): number {
    return median(this.runs);
  }

  /** The server's median CPU time per block, in microseconds. */
  get cpuPerBlock(): number {
    return median(this.cpu) / Math.ceil(this.bytes / this.blockSize);
  }

  get mbps(): number {
    return this.bytes / MB / this.seconds;
  }

  cells(): string[] {
    return [
      String(this.blockSize),
      this.server.name,
      (this.bytes / MB).toFixed(0),
      this.seconds.toFixed(2),
      `${Math.min(...this.runs).toFixed(2)}-${Math.max(...this.runs).toFixed(2)}`,
      this.mbps.toFixed(2),
      String(Math.round(Math.ceil(this.bytes / this.blockSize) / this.seconds)),
      this.reference ? `${(this.mbps / this.reference.mbps).toFixed(2)}×` : '—',
      this.cpuPerBlock.toFixed(1),
      this.reference ? `${(this.reference.cpuPerBlock / this.cpuPerBlock).toFixed(2)}×` : '—',
    ];
  }
}

async function run(): Promise<void> {
  const size = positiveInt('BENCH_COAP_MB', 4) * MB;
  const rounds = positiveInt('BENCH_ROUNDS', 5);
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
    const ours: Server = { name: 'ours (CoapTransport)', uri: `coap://127.0.0.1:${(await transport.start()).port}/fw/${token}?title=coap.bin&version=1.0`, cpu: ownCpu };
    const libcoap = await startLibcoapServer(cleanup);
    const reference: Server = { name: 'coap-server-notls (reference)', uri: `coap://127.0.0.1:${libcoap.port}/bench`, cpu: processCpu(libcoap.pid) };
    await put(reference.uri, file);
    const bare: Server = { name: 'bare Node UDP (ceiling)', uri: `coap://127.0.0.1:${await startBareNodeServer(cleanup, await readFile(file))}/bench`, cpu: ownCpu };

    const out = path.join(work, 'download.bin');
    const download = async (server: Server, blockSize: number): Promise<{ seconds: number; cpu: number }> => {
      const start = process.hrtime.bigint();
      const cpuBefore = server.cpu();
      await client(['-m', 'get', '-b', String(blockSize), '-B', '120', '-o', out, server.uri]);
      const cpu = server.cpu() - cpuBefore;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const got = createHash('sha256')
        .update(await readFile(out))
        .digest('hex');
      if (got !== sha256) throw new Error(`${server.name}, ${blockSize}-byte blocks: the download's SHA-256 is ${got}, expected ${sha256}`);
      return { seconds, cpu };
    };

    const rows = BLOCK_SIZES.flatMap((blockSize) => {
      const ref = new Row(blockSize, reference, size, null);
      return [ref, new Row(blockSize, ours, size, ref), new Row(blockSize, bare, size, ref)];
    });
    // Each row runs beside its reference in every round, so load from elsewhere hits both sides.
    for (let round = 1; round <= rounds; round++) {
      for (const row of rows) {
        const { seconds, cpu } = await download(row.server, row.blockSize);
        row.runs.push(seconds);
        row.cpu.push(cpu);
      }
    }

    console.log();
    console.log(`coap-client-notls downloads ${(size / MB).toFixed(0)} MB block by block (-b 256 and -b 1024), SHA-256 checked after every download`);
    console.log();
    printTable(
      ['block size', 'server', 'MB', 'seconds', 'range', 'MB/s', 'blocks/s', 'ratio to reference', 'server CPU µs/block', 'CPU ratio'],
      rows.map((r) => r.cells()),
    );
    console.log();
    console.log(`seconds: median of ${rounds} rounds (range: fastest-slowest), the client process's wall time; ratio: MB/s ÷ the reference's (1.00 = as fast)`);
    console.log(
      `server CPU: the serving process's CPU time during the download (median) per block, a figure the machine's load moves less than wall time; CPU ratio: the reference's ÷ ours (1.00 = as cheap)`,
    );
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
async function startLibcoapServer(cleanup: Cleanup): Promise<{ port: number; pid: number }> {
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
    if (up) return { port, pid: child.pid as number };
  }
  throw new Error('coap-server-notls did not answer');
}

/**
 * The bare Node line: answers every confirmable request with a piggybacked 2.05 carrying the block
 * its Block2 option asks for [RFC 7959 §2.4], read from `body` in memory. The header and options
 * are walked by hand and the reply written into one buffer: what is left is dgram's receive and send.
 */
async function startBareNodeServer(cleanup: Cleanup, body: Buffer): Promise<number> {
  const socket = createSocket({ type: 'udp4', lookup: (address, _options, callback) => callback(null, address, 4) });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  cleanup.add(() => socket.close());
  socket.on('message', (m, rinfo) => {
    const tokenLength = (m[0] as number) & 0x0f;
    let o = 4 + tokenLength;
    let option = 0;
    // No Block2 asked: 1024-byte blocks, as ours.
    let block = 6;
    while (o < m.length && m[o] !== 0xff) {
      const byte = m[o++] as number;
      let delta = byte >> 4;
      let length = byte & 0x0f;
      if (delta === 13) delta = 13 + (m[o++] as number);
      else if (delta === 14) delta = 269 + m.readUInt16BE((o += 2) - 2);
      if (length === 13) length = 13 + (m[o++] as number);
      else if (length === 14) length = 269 + m.readUInt16BE((o += 2) - 2);
      option += delta;
      if (option === 23) block = length ? m.readUIntBE(o, length) : 0;
      o += length;
    }
    const size = 16 << (block & 7);
    const num = block >>> 4;
    const start = Math.min(num * size, body.length);
    const end = Math.min(start + size, body.length);
    const value = (num << 4) | (end < body.length ? 8 : 0) | (block & 7);
    const valueLength = value === 0 ? 0 : value < 0x100 ? 1 : value < 0x10000 ? 2 : 3;
    const out = Buffer.allocUnsafe(4 + tokenLength + 2 + valueLength + 1 + (end - start));
    out[0] = 0x60 | tokenLength; // ACK
    out[1] = 0x45; // 2.05
    m.copy(out, 2, 2, 4 + tokenLength); // message id and token
    o = 4 + tokenLength;
    out[o++] = 0xd0 | valueLength; // Block2: delta 23 = 13 + 10
    out[o++] = 10;
    if (valueLength) out.writeUIntBE(value, o, valueLength);
    o += valueLength;
    out[o++] = 0xff;
    body.copy(out, o, start, end);
    socket.send(out, rinfo.port, rinfo.address);
  });
  return socket.address().port;
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
