/**
 * Upload and download of one large package through the admin REST API, beside references that do
 * the same work with nothing of ours in the way, on the same file in the same run:
 *
 *   sha256sum            the hash every upload computes, by coreutils (which may be slower than
 *                        Node's OpenSSL SHA-256 on a CPU with SHA extensions: a yardstick, not a floor)
 *   stream copy + fsync  read the file, write it elsewhere, fsync: the blob store's disk work
 *   plain http upload    the same multipart bytes POSTed to a bare `http` server that hashes and
 *                        fsyncs the body to a file: what the upload costs without Express/busboy
 *   plain http download  a bare `http` server streaming the same file to the same client
 *
 * The servers run in a child process (server-child.ts), so the peak RSS reported is theirs alone;
 * it is reset before each operation where Linux allows, so each row's peak is that operation's. The client never
 * holds the file: the upload streams it inside a hand-built multipart body, the download hashes
 * the stream and discards it. Size: BENCH_PACKAGE_MB (default 1024; 1 MB = 2^20 bytes here).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, statfsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  Cleanup,
  formatBytes,
  generateFile,
  MB,
  measured,
  peakRss,
  positiveInt,
  printTable,
  remove,
  resetPeakRss,
  startServerChild,
  stopServerChild,
  timed,
  type Benchmark,
} from './lib';

export const packageTransfer: Benchmark = {
  name: 'package transfer',
  run,
};

/** One row of the table: the best of the rounds, and the highest server peak seen in any. */
class Operation {
  seconds = Infinity;
  serverPeak: number | null = null;

  constructor(
    readonly name: string,
    /** The row this one is compared against; none for a reference. */
    readonly reference: Operation | null = null,
    /** Whether a server process did this work (and so has a peak RSS to show). */
    readonly served = true,
  ) {}

  record(seconds: number, peak: number | null = null): void {
    this.seconds = Math.min(this.seconds, seconds);
    if (peak !== null) this.serverPeak = Math.max(this.serverPeak ?? 0, peak);
  }

  cells(size: number): string[] {
    const mbps = (s: number) => size / MB / s;
    return [
      this.name,
      mbps(this.seconds).toFixed(0),
      this.seconds.toFixed(2),
      this.reference ? `${(mbps(this.seconds) / mbps(this.reference.seconds)).toFixed(2)}× ${this.reference.name.replace(' (reference)', '')}` : '—',
      this.served ? formatBytes(this.serverPeak) : '—',
    ];
  }
}

async function run(): Promise<void> {
  const sizeMb = positiveInt('BENCH_PACKAGE_MB', 1024);
  const rounds = positiveInt('BENCH_ROUNDS', 3);
  const size = sizeMb * MB;
  checkFreeSpace(size);

  const sha = new Operation('sha256sum (reference)', null, false);
  const copy = new Operation('stream copy + fsync (reference)', null, false);
  const plainUp = new Operation('upload, plain http (reference)');
  const engineUp = new Operation('upload, engine (multipart POST)', plainUp);
  const plainDown = new Operation('download, plain http (reference)');
  const engineDown = new Operation('download, engine', plainDown);

  const cleanup = new Cleanup();
  try {
    const work = await cleanup.tempDir('ota-bench-transfer');
    const file = path.join(work, 'package.bin');
    const generated = await timed(() => generateFile(file, size));
    console.log(`package: ${formatBytes(size)} in ${work}, generated in ${generated.seconds.toFixed(1)} s; best of ${rounds} rounds`);

    const uploads = path.join(work, 'reference-uploads');
    await mkdir(uploads);
    const plain = await startServerChild(cleanup, ['reference', file, uploads]);
    const password = randomBytes(12).toString('base64url');
    const engine = await startServerChild(cleanup, ['engine', path.join(work, 'engine')], { BENCH_ADMIN_PASSWORD: password });
    const api = new AdminClient(engine.port);
    await api.login(password);
    const profileId = await api.createProfile();
    const peaksPerOperation = resetPeakRss(plain.child.pid as number);

    // Each engine run sits right beside its reference, and every round repeats all of them, so a
    // burst of load from elsewhere on the machine cannot land on one side of a ratio only.
    let expected = '';
    for (let round = 1; round <= rounds; round++) {
      const sum = await timed(() => sha256sum(file));
      if (expected && sum.value !== expected) throw new Error(`sha256sum changed between rounds: ${expected}, then ${sum.value}`);
      expected = sum.value;
      sha.record(sum.seconds);

      const copyPath = path.join(work, 'copy.bin');
      copy.record((await timed(() => pipeline(createReadStream(file), createWriteStream(copyPath, { flush: true })))).seconds);
      await remove(copyPath);

      const up = await measured(plain.child.pid as number, () => upload(plain.port, '/upload', file, size, {}));
      const received = (JSON.parse(up.value) as { size: number }).size;
      if (received < size) throw new Error(`reference upload received ${received} of ${size} bytes`);
      plainUp.record(up.seconds, up.peak);
      for (const name of await readdir(uploads)) await remove(path.join(uploads, name));

      // A package per round: same bytes, so the blob store keeps one blob (after writing it again).
      const packageId = await api.createPackage(profileId, `1.${round}`);
      const ours = await measured(engine.child.pid as number, () => upload(engine.port, `/api/otaPackage/${packageId}?checksumAlgorithm=SHA256`, file, size, api.headers()));
      const info = JSON.parse(ours.value) as { checksum?: string; dataSize?: number };
      if (info.checksum !== expected || info.dataSize !== size) {
        throw new Error(`engine stored checksum ${info.checksum} and size ${info.dataSize}; the file has ${expected} and ${size}`);
      }
      engineUp.record(ours.seconds, ours.peak);

      const down = await measured(plain.child.pid as number, () => download(plain.port, '/file', {}));
      checkDownload('reference download', down.value, size, expected);
      plainDown.record(down.seconds, down.peak);

      const oursDown = await measured(engine.child.pid as number, () => download(engine.port, `/api/otaPackage/${packageId}/download`, api.headers()));
      checkDownload('engine download', oursDown.value, size, expected);
      engineDown.record(oursDown.seconds, oursDown.peak);
    }
    await Promise.all([stopServerChild(plain.child), stopServerChild(engine.child)]);

    console.log();
    printTable(
      ['operation', 'MB/s', 'seconds', 'ratio to reference', 'peak RSS (server)'],
      [sha, copy, plainUp, engineUp, plainDown, engineDown].map((o) => o.cells(size)),
    );
    console.log();
    console.log(
      peaksPerOperation
        ? 'seconds: best of the rounds; peak RSS: the highest of the rounds, for that operation alone'
        : 'seconds: best of the rounds; peak RSS: since the server started (/proc/<pid>/clear_refs is not writable here)',
    );
    console.log("ratio: our MB/s ÷ the reference's (1.00 = as fast, below 1 = slower)");
    console.log(`client peak RSS (this process, whole run): ${formatBytes(peakRss())}`);
  } finally {
    cleanup.run();
  }
}

/** The upload, the blob and the references need about three copies of the file at once. */
function checkFreeSpace(size: number): void {
  const fs = statfsSync(tmpdir());
  const free = fs.bavail * fs.bsize;
  const needed = 3 * size + 256 * MB;
  if (free < needed) throw new Error(`${tmpdir()} has ${formatBytes(free)} free; a ${formatBytes(size)} package needs about ${formatBytes(needed)}`);
}

function sha256sum(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sha256sum', [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.on('error', reject);
    child.on('close', (code) => {
      const hex = /^[0-9a-f]{64}/.exec(out)?.[0];
      if (code === 0 && hex) resolve(hex);
      else reject(new Error(`sha256sum exited with ${code}: ${out}`));
    });
  });
}

// ---- HTTP ------------------------------------------------------------------------------------

/** Just enough of the admin API to get a package to upload into. */
class AdminClient {
  private token = '';

  constructor(private readonly port: number) {}

  headers(): Record<string, string> {
    return { 'X-Authorization': `Bearer ${this.token}` };
  }

  async login(password: string): Promise<void> {
    const body = await this.json<{ token: string }>('/api/auth/login', { username: 'tenant@thingsboard.org', password });
    this.token = body.token;
  }

  async createProfile(): Promise<string> {
    return (await this.json<{ id: { id: string } }>('/api/deviceProfile', { name: 'bench' })).id.id;
  }

  async createPackage(profileId: string, version: string): Promise<string> {
    const pkg = await this.json<{ id: { id: string } }>('/api/otaPackage', {
      title: 'bench',
      version,
      type: 'FIRMWARE',
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
    });
    return pkg.id.id;
  }

  private async json<T>(urlPath: string, body: unknown): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1',
      port: this.port,
      method: 'POST',
      path: urlPath,
      headers: { ...(this.token ? this.headers() : {}), 'Content-Type': 'application/json', 'Content-Length': payload.length },
    });
    const response = responseOf(req);
    req.end(payload);
    const res = await response;
    const text = await textOf(res);
    if (res.statusCode !== 200) throw new Error(`POST ${urlPath}: ${res.statusCode} ${text}`);
    return JSON.parse(text) as T;
  }
}

/**
 * POSTs `file` as the part `file` of a multipart body built by hand — preamble, the file streamed
 * from disk, epilogue — with an exact Content-Length, so neither side may buffer it whole.
 * Resolves with the response text once the server answered 200.
 */
async function upload(port: number, urlPath: string, file: string, size: number, headers: Record<string, string>): Promise<string> {
  const boundary = `----ota-bench-${randomBytes(12).toString('hex')}`;
  const preamble = Buffer.from(`--${boundary}\r\n` + 'Content-Disposition: form-data; name="file"; filename="package.bin"\r\n' + 'Content-Type: application/octet-stream\r\n\r\n');
  const epilogue = Buffer.from(`\r\n--${boundary}--\r\n`);
  const req = http.request({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: urlPath,
    headers: {
      ...headers,
      'Content-Type': `multipart/form-data; boundary=${boundary}`,
      'Content-Length': preamble.length + size + epilogue.length,
    },
  });
  const response = responseOf(req);
  async function* body(): AsyncGenerator<Buffer> {
    yield preamble;
    yield* createReadStream(file) as AsyncIterable<Buffer>;
    yield epilogue;
  }
  // A server that answers early (an error) may close before the body is sent: its answer wins.
  let sendError: unknown = null;
  await Promise.all([pipeline(body(), req).catch((err: unknown) => (sendError = err)), response.catch(() => undefined)]);
  const res = await response;
  const text = await textOf(res);
  if (res.statusCode !== 200) throw new Error(`POST ${urlPath}: ${res.statusCode} ${text}`);
  if (sendError) throw sendError;
  return text;
}

/** GETs `urlPath`, hashing the body as it streams past; nothing is kept. */
async function download(port: number, urlPath: string, headers: Record<string, string>): Promise<{ size: number; sha256: string }> {
  const req = http.request({ host: '127.0.0.1', port, method: 'GET', path: urlPath, headers });
  const response = responseOf(req);
  req.end();
  const res = await response;
  if (res.statusCode !== 200) throw new Error(`GET ${urlPath}: ${res.statusCode} ${await textOf(res)}`);
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { size, sha256: hash.digest('hex') };
}

function checkDownload(what: string, got: { size: number; sha256: string }, size: number, sha256: string): void {
  if (got.size !== size || got.sha256 !== sha256) throw new Error(`${what}: got ${got.size} bytes with SHA-256 ${got.sha256}, expected ${size} with ${sha256}`);
}

/** The response of `req` as a promise, created before the request is sent so no event is missed. */
function responseOf(req: http.ClientRequest): Promise<IncomingMessage> {
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  response.catch(() => undefined); // observed by the caller; this only prevents an unhandled rejection
  return response;
}

async function textOf(res: IncomingMessage): Promise<string> {
  let text = '';
  res.setEncoding('utf8');
  for await (const s of res as AsyncIterable<string>) text += s;
  return text;
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
