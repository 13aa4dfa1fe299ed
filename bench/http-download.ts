/**
 * Package downloads through the HTTP device API, `GET /api/v1/{token}/firmware?title=&version=&size=&chunk=`,
 * by one device and by many at once, beside a reference hit by the same client code at the same
 * concurrency: a bare `http` server streaming the same bytes from disk (`fs.createReadStream`
 * piped to the response) with no token lookup, no database and no Express.
 *
 *   whole file        one request with `size=0`
 *   64 KiB chunks     `size=65536&chunk=0,1,…` until the empty chunk that ends every ThingsBoard download
 *
 * Every device has its own access token and the package assigned in its firmware slot. Sizes:
 * BENCH_DOWNLOAD_MB (default 100) for the single device; the concurrent case (BENCH_DOWNLOAD_DEVICES,
 * default 200) downloads a smaller package, BENCH_FLEET_MB (default 10) per device, so that the
 * whole benchmark stays near two minutes on two cores (200 × 100 MB would be 20 GB per row).
 *
 * Both servers run in a child process (server-child.ts), so the client's load does not share their
 * event loop and the peak RSS reported is theirs alone, reset before each row. The engine's data
 * directory is prepared in this process beforehand (profiles, packages, devices, through the
 * engine's services), then served by the child. Before timing, one whole and one chunked download
 * from each server are checked against the package's SHA-256; timed downloads count bytes and
 * every device must receive exactly the package's size.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { OtaEngine } from '../server/engine';
import type { TenantId } from '../server/ids';
import {
  benchLogger,
  Cleanup,
  createProfileWithPackage,
  formatBytes,
  generateFile,
  MB,
  measured,
  positiveInt,
  printTable,
  queueReaches,
  resetPeakRss,
  startServerChild,
  stopServerChild,
  type Benchmark,
  type ServerChild,
} from './lib';

export const httpDownload: Benchmark = {
  name: 'HTTP device download',
  run,
};

const CHUNK = 64 * 1024;

/** A package as a device knows it from its shared attributes, and the devices assigned to it. */
interface Target {
  title: string;
  version: string;
  size: number;
  sha256: string;
  tokens: string[];
}

/** How a device fetches the package: `size=0`, or chunk after chunk. */
type Mode = { name: string; chunkSize: number };
const WHOLE: Mode = { name: 'whole file (size=0)', chunkSize: 0 };
const CHUNKED: Mode = { name: '64 KiB chunks', chunkSize: CHUNK };

/** One row of the table: the best of the rounds, and the highest server peak seen in any. */
class Row {
  seconds = Infinity;
  requests = 0;
  serverPeak: number | null = null;

  constructor(
    readonly server: string,
    readonly target: Target,
    readonly mode: Mode,
    /** The row this one is compared against; none for a reference. */
    readonly reference: Row | null = null,
  ) {}

  get totalBytes(): number {
    return this.target.size * this.target.tokens.length;
  }

  get mbps(): number {
    return this.totalBytes / MB / this.seconds;
  }

  record(m: { value: number; seconds: number; peak: number | null }): void {
    this.requests = m.value;
    this.seconds = Math.min(this.seconds, m.seconds);
    if (m.peak !== null) this.serverPeak = Math.max(this.serverPeak ?? 0, m.peak);
  }

  cells(): string[] {
    return [
      `${this.mode.name}, ${this.server}`,
      String(this.target.tokens.length),
      (this.target.size / MB).toFixed(0),
      this.mbps.toFixed(0),
      (this.requests / this.seconds).toFixed(0),
      this.seconds.toFixed(2),
      this.reference ? `${(this.mbps / this.reference.mbps).toFixed(2)}×` : '—',
      formatBytes(this.serverPeak),
    ];
  }
}

async function run(): Promise<void> {
  const singleMb = positiveInt('BENCH_DOWNLOAD_MB', 100);
  const fleetDevices = positiveInt('BENCH_DOWNLOAD_DEVICES', 200);
  const fleetMb = positiveInt('BENCH_FLEET_MB', 10);
  const rounds = positiveInt('BENCH_ROUNDS', 3);

  const cleanup = new Cleanup();
  try {
    const work = await cleanup.tempDir('ota-bench-download');
    const files = path.join(work, 'files');
    await mkdir(files);
    const password = randomBytes(12).toString('base64url');
    const dataDir = path.join(work, 'engine');
    const [single, fleet] = await seed(dataDir, password, files, [
      { title: 'single.bin', size: singleMb * MB, devices: 1 },
      { title: 'fleet.bin', size: fleetMb * MB, devices: fleetDevices },
    ]);
    if (!single || !fleet) throw new Error('seeding made no packages');

    const plain = await startServerChild(cleanup, ['device-reference', files]);
    const engine = await startServerChild(cleanup, ['engine', dataDir], { BENCH_ADMIN_PASSWORD: password });
    for (const server of [plain, engine]) {
      for (const mode of [WHOLE, CHUNKED]) await verify(server, single, mode);
    }

    const cases = [single, fleet].flatMap((target) =>
      [WHOLE, CHUNKED].map((mode) => {
        const plainRow = new Row('plain http (reference)', target, mode);
        return { plain: plainRow, engine: new Row('engine', target, mode, plainRow) };
      }),
    );
    const peaksPerRow = resetPeakRss(engine.child.pid as number);
    // Each engine row runs right beside its reference, and every round repeats all of them, so a
    // burst of load from elsewhere on the machine cannot land on one side of a ratio only.
    for (let round = 1; round <= rounds; round++) {
      for (const c of cases) {
        c.plain.record(await measured(plain.child.pid as number, () => downloadAll(plain.port, c.plain.target, c.plain.mode)));
        c.engine.record(await measured(engine.child.pid as number, () => downloadAll(engine.port, c.engine.target, c.engine.mode)));
      }
    }
    await Promise.all([stopServerChild(plain.child), stopServerChild(engine.child)]);

    console.log(
      `1 device downloads ${formatBytes(single.size)}; ${fleet.tokens.length} devices at once each download ${formatBytes(fleet.size)}` +
        (fleet.size < single.size ? ` (not ${formatBytes(single.size)}: ${fleet.tokens.length} × that would not fit the ~2-minute budget)` : ''),
    );
    console.log();
    printTable(
      ['download, server', 'devices', 'MB/device', 'MB/s (all devices)', 'requests/s', 'seconds', 'ratio to reference', 'peak RSS (server)'],
      cases.flatMap((c) => [c.plain.cells(), c.engine.cells()]),
    );
    console.log();
    console.log(`seconds: best of ${rounds} rounds; ratio: our MB/s ÷ the reference's on the row above (1.00 = as fast, below 1 = slower)`);
    console.log(
      peaksPerRow
        ? 'peak RSS: the highest of the rounds, for that row alone (memory an earlier row left the server holding counts)'
        : 'peak RSS: since the server started (/proc/<pid>/clear_refs is not writable here)',
    );
    console.log('client: one http.Agent per row, keepAlive, maxSockets = devices; bytes counted per device (SHA-256 checked once per server and mode before timing)');
  } finally {
    cleanup.run();
  }
}

/**
 * Writes each package file into `files` (named by its title, which is what the reference serves),
 * then, with the engine open in this process: a profile per package, the package from the same
 * file, and its devices, each with its own token and the package assigned. The engine is closed
 * again for the child to open.
 */
async function seed(dataDir: string, password: string, files: string, specs: Array<{ title: string; size: number; devices: number }>): Promise<Target[]> {
  const engine = await OtaEngine.open({ dataDir, http: false, admin: { password }, logger: benchLogger() });
  try {
    const tenantId: TenantId = engine.bootstrap.admin.tenantId;
    const targets: Target[] = [];
    for (const spec of specs) {
      const file = path.join(files, spec.title);
      await generateFile(file, spec.size);
      const { profileId, pkg } = await createProfileWithPackage(engine, tenantId, {
        profileName: spec.title,
        title: spec.title,
        version: '1.0',
        source: createReadStream(file),
      });
      // Each device is assigned the package in its own slot when created, and queued in the
      // background: wait for that, or the close below would pull the database from under it. (A
      // profile-wide assignment pages on after its last enqueue, with nothing to wait for.)
      const queued = queueReaches(engine.pipeline.queue, (await engine.pipeline.queue.depth()) + spec.devices);
      const tokens: string[] = [];
      for (let i = 0; i < spec.devices; i++) {
        const token = `${path.parse(spec.title).name}-${i}-${randomBytes(6).toString('hex')}`;
        const body = { name: `${spec.title}-${i}`, deviceProfileId: { id: profileId }, firmwareId: { id: pkg.id } };
        await engine.devices.save(tenantId, body, { accessToken: token });
        tokens.push(token);
      }
      await queued;
      targets.push({ title: pkg.title, version: pkg.version, size: spec.size, sha256: pkg.checksum ?? '', tokens });
    }
    return targets;
  } finally {
    await engine.close();
  }
}

/** One device downloads the package and the bytes are hashed: both servers must send exactly the package. */
async function verify(server: ServerChild, target: Target, mode: Mode): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const hash = createHash('sha256');
    const got = await downloadOne(agent, server.port, target, target.tokens[0] as string, mode, (chunk) => hash.update(chunk));
    const sha256 = hash.digest('hex');
    if (got.bytes !== target.size || sha256 !== target.sha256) {
      throw new Error(`${mode.name} from port ${server.port}: ${got.bytes} bytes with SHA-256 ${sha256}, expected ${target.size} with ${target.sha256}`);
    }
  } finally {
    agent.destroy();
  }
}

/** Every device of `target` downloads it at once; answers the number of requests made. */
async function downloadAll(port: number, target: Target, mode: Mode): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: target.tokens.length });
  try {
    const results = await Promise.all(target.tokens.map((token) => downloadOne(agent, port, target, token, mode)));
    let requests = 0;
    for (const r of results) {
      if (r.bytes !== target.size) throw new Error(`${mode.name} from port ${port}: a device received ${r.bytes} bytes, expected ${target.size}`);
      requests += r.requests;
    }
    return requests;
  } finally {
    agent.destroy();
  }
}

/** One device's download, as a ThingsBoard HTTP client does it: whole, or chunk by chunk until an empty one. */
async function downloadOne(
  agent: http.Agent,
  port: number,
  target: Target,
  token: string,
  mode: Mode,
  onData?: (chunk: Buffer) => void,
): Promise<{ bytes: number; requests: number }> {
  const base = `/api/v1/${token}/firmware?title=${encodeURIComponent(target.title)}&version=${encodeURIComponent(target.version)}&size=${mode.chunkSize}`;
  if (mode.chunkSize === 0) return { bytes: await get(agent, port, base, onData), requests: 1 };
  let bytes = 0;
  for (let chunk = 0; ; chunk++) {
    const n = await get(agent, port, `${base}&chunk=${chunk}`, onData);
    if (n === 0) return { bytes, requests: chunk + 1 };
    bytes += n;
  }
}

/** GETs `urlPath` and counts the body's bytes (handing each piece to `onData`); anything but 200 is an error. */
function get(agent: http.Agent, port: number, urlPath: string, onData?: (chunk: Buffer) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`GET ${urlPath}: ${res.statusCode}`));
      }
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        onData?.(chunk);
      });
      res.once('end', () => resolve(bytes));
      res.once('error', reject);
    });
    req.once('error', reject);
  });
}

if (require.main === module) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
