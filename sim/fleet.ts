import { createPublicKey, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setMaxListeners } from 'node:events';
import { AdminClient, type DeviceInfo, type PackageInfo, type PackageMetrics, type ProfileInfo } from './admin-client';
import { CoapDeviceLink } from './coap-device';
import { runDevice, type DeviceLink, type DeviceObserver, type DeviceResult, type Phase } from './device';
import { HttpDeviceLink } from './http-device';
import { Lwm2mDeviceLink } from './lwm2m-device';
import type { FirmwareInfo } from './firmware';
import { MqttDeviceLink } from './mqtt-device';
import type { SimOptions } from './options';
import { percentile, Progress } from './progress';

/** What a run did, for the summary and the exit status. */
export interface FleetReport {
  transport: string;
  profile: string;
  package: { id: string; title: string; version: string; size: number; checksumAlgorithm: string };
  results: DeviceResult[];
  elapsedMs: number;
  /** Bytes per second while devices were downloading. */
  throughput: number;
  p50Ms: number | null;
  p95Ms: number | null;
  /** The server's own count for the package (GET /api/ota/metrics), or null when it has none. */
  server: PackageMetrics | null;
  /** Every device ended UPDATED, or FAILED on purpose. */
  ok: boolean;
}

/** A setup step failed (login, profile, package, assignment): nothing was simulated. */
export class SetupError extends Error {}

/** Runs `work` over `items`, at most `limit` at a time, keeping the results in order. */
export async function pool<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The indices of the `count` devices (of `total`) that fail on purpose: a seeded shuffle, so a run can be repeated. */
export function failingDevices(total: number, rate: number, seed: number): Set<number> {
  const count = Math.round(total * rate);
  let state = seed >>> 0 || 1;
  // mulberry32: small, seedable, good enough to spread the failures over the fleet.
  const random = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const order = Array.from({ length: total }, (_, i) => i);
  for (let i = total - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return new Set(order.slice(0, count));
}

export const deviceName = (prefix: string, index: number, total: number): string => `${prefix}${String(index + 1).padStart(Math.max(4, String(total).length), '0')}`;

export async function runFleet(opts: SimOptions, out: NodeJS.WritableStream): Promise<FleetReport> {
  const log = (line: string): void => void out.write(`[sim] ${line}\n`);
  const started = Date.now();

  const admin = await setup('log in', () => AdminClient.login(opts.api, opts.username, opts.password));
  let profile = await setup('find or create the device profile', () => admin.findOrCreateProfile(opts.profile));

  const publicKey = opts.verifySignature ? await setup('read the signing key', async () => createPublicKey((await admin.signingKey()).publicKey)) : null;
  const pkg = await setup('prepare the package', () => (opts.assign ? preparePackage(admin, opts, profile, log) : assignedPackage(admin, profile, log)));

  const names = Array.from({ length: opts.devices }, (_, i) => deviceName(opts.prefix, i, opts.devices));
  const known = await setup('list the devices', () => admin.devicesOf(profile, opts.prefix));
  if (opts.provision) {
    // New devices create themselves, as ThingsBoard devices provisioning on first boot do.
    const fresh = names.filter((n) => !known.has(n));
    await setup('provision the devices', async () => {
      const { key, secret } = await admin.enableProvisioning(profile);
      await pool(fresh, 16, (name) => admin.provisionDevice(name, key, secret));
    });
    log(`${fresh.length} devices provisioned themselves (POST /api/v1/provision)`);
  }
  const devices = await setup('create the devices', () => pool(names, 16, (name) => admin.ensureDevice(name, profile, known.get(name))));
  // An LwM2M device is found by its endpoint name (LWM2M_CREDENTIALS), an other by its access token;
  // with basic credentials: user name = device name, client id as the MQTT link uses it, a fresh password.
  const passwords = opts.credentials === 'basic' ? names.map(() => randomBytes(12).toString('base64url')) : null;
  if (passwords) {
    await setup('set MQTT basic credentials', () =>
      pool(devices, 16, (d: DeviceInfo, i) =>
        admin.setBasicCredentials(d, { clientId: `${names[i]}-${process.pid}`, userName: names[i] as string, password: passwords[i] as string }),
      ),
    );
  }
  // With X.509: each device's certificate registered as its credentials; it connects over TLS with it.
  const certificates = opts.certDir ? await setup('read the device certificates', () => readCertificates(opts.certDir as string, names)) : null;
  if (certificates) await setup('set X.509 credentials', () => pool(devices, 16, (d: DeviceInfo, i) => admin.setX509Credentials(d, (certificates[i] as { cert: string }).cert)));
  const serverCa = opts.serverCa ? await setup('read the server CA', () => readFile(opts.serverCa as string, 'utf8')) : undefined;
  const tokens =
    passwords || certificates
      ? names
      : opts.transport === 'lwm2m'
        ? await setup('give the devices LwM2M credentials', () => pool(devices, 16, (d: DeviceInfo) => admin.lwm2mCredentials(d)))
        : await setup('read the access tokens', () => pool(devices, 16, (d: DeviceInfo) => admin.accessToken(d)));
  log(`profile '${profile.name}': ${devices.length} devices (${devices.length - names.filter((n) => known.has(n)).length} created)`);
  const transport = opts.transport.toUpperCase();
  const port = await setup('find the device endpoint', () => endpointPort(admin, opts));
  const host = new URL(opts.api).hostname;
  if (port !== null) log(`${transport} devices connect to ${host}:${port}`);

  const failing = failingDevices(opts.devices, opts.failRate, opts.seed);
  const progress = new Progress(out, opts.progress, opts.devices);
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  const timeout = setTimeout(() => controller.abort(), opts.timeoutS * 1000);

  // Assign once the devices of the first window listen, so their notifications find them.
  const listening = new Set<string>();
  let startAssignment: () => void = () => undefined;
  const windowReady = new Promise<void>((resolve) => (startAssignment = resolve));
  const firstWindow = Math.min(opts.concurrency, opts.devices);
  const observer: DeviceObserver = {
    phase(name: string, phase: Phase) {
      progress.phase(name, phase);
      if (phase === 'starting') return;
      listening.add(name);
      if (listening.size >= firstWindow) startAssignment();
    },
    bytes: (n) => progress.bytes(n),
  };

  const linkFor = (index: number): DeviceLink => {
    const token = tokens[index] as string;
    if (opts.transport === 'mqtt')
      return new MqttDeviceLink(
        host,
        port as number,
        token,
        `${names[index]}-${process.pid}`,
        opts.chunk,
        opts.pace,
        opts.mqttVersion,
        undefined,
        passwords?.[index],
        certificates ? { ...(certificates[index] as { cert: string; key: string }), ca: serverCa } : undefined,
      );
    if (opts.transport === 'coap') return new CoapDeviceLink(host, port as number, token);
    if (opts.transport === 'lwm2m') return new Lwm2mDeviceLink(host, port as number, token, firmwareInfo(pkg));
    return new HttpDeviceLink(opts.api, token, opts.chunk, opts.pace);
  };

  progress.start();
  const run = pool(names, opts.concurrency, async (name, index): Promise<DeviceResult> => {
    if (controller.signal.aborted) {
      progress.phase(name, 'unfinished');
      return { name, phase: 'unfinished', intended: false, error: 'not started before the timeout', bytes: 0, updateMs: null };
    }
    const failWith = failing.has(index) ? 'Simulated failure: flash write failed' : null;
    // Each request of a device listens to its signal until collected (undici): one signal per device, not one for the run.
    const device = new AbortController();
    setMaxListeners(0, device.signal);
    const abort = (): void => device.abort();
    controller.signal.addEventListener('abort', abort, { once: true });
    try {
      return await runDevice(linkFor(index), { name, failWith, pace: opts.pace, target: { title: pkg.title, version: pkg.version }, publicKey }, observer, device.signal);
    } finally {
      controller.signal.removeEventListener('abort', abort);
    }
  });
  try {
    await Promise.race([windowReady, run.then(() => undefined)]);
    if (opts.assign) {
      if (profile.firmwareId?.id === pkg.id.id) progress.note(`'${pkg.title}' ${pkg.version} is already the profile's firmware: devices read it from their attributes`);
      else profile = await setup('assign the package to the profile', () => admin.assignToProfile(profile, pkg));
    }
  } catch (err) {
    controller.abort();
    await run.catch(() => undefined);
    progress.stop();
    clearTimeout(timeout);
    throw err;
  }
  const results = await run;
  clearTimeout(timeout);
  progress.stop();

  const updated = results.filter((r) => r.phase === 'updated');
  const expected = { updated: updated.length, failed: results.filter((r) => r.phase === 'failed').length };
  const server = await serverCounts(admin, pkg.id.id, expected);
  const times = updated.map((r) => r.updateMs).filter((t): t is number => t !== null);
  return {
    transport,
    profile: profile.name,
    package: { id: pkg.id.id, title: pkg.title, version: pkg.version, size: pkg.dataSize ?? 0, checksumAlgorithm: pkg.checksumAlgorithm ?? '' },
    results,
    elapsedMs: Date.now() - started,
    throughput: progress.throughput(),
    p50Ms: percentile(times, 50),
    p95Ms: percentile(times, 95),
    server,
    ok: results.every((r) => r.phase === 'updated' || (r.phase === 'failed' && r.intended)),
  };
}

async function setup<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw new SetupError(`could not ${what}: ${(err as Error).message}`);
  }
}

/** The package named, else a new one of random bytes; uploaded when it has no data yet. */
async function preparePackage(admin: AdminClient, opts: SimOptions, profile: ProfileInfo, log: (line: string) => void): Promise<PackageInfo> {
  const title = opts.packageTitle ?? 'sim-firmware';
  const version = opts.packageVersion ?? new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15) + `-${randomBytes(2).toString('hex')}`;
  let pkg = opts.packageTitle ? await admin.findPackage(title, version) : null;
  if (pkg && pkg.deviceProfileId && pkg.deviceProfileId.id !== profile.id.id) {
    throw new Error(`package '${title}' ${version} belongs to another device profile; ThingsBoard assigns a package only to its own profile`);
  }
  if (!pkg) pkg = await admin.createPackage(title, version, profile);
  if (!pkg.hasData) {
    const bytes = randomBytes(Math.max(1, Math.round(opts.packageMb * 1024 * 1024)));
    pkg = await admin.upload(pkg, bytes, opts.checksumAlgorithm);
    log(`uploaded '${pkg.title}' ${pkg.version}: ${bytes.length} bytes, ${pkg.checksumAlgorithm} ${pkg.checksum}`);
  } else {
    log(`using '${pkg.title}' ${pkg.version}: ${pkg.dataSize} bytes, ${pkg.checksumAlgorithm}`);
  }
  return pkg;
}

/** With --no-assign: the firmware the profile has already. */
async function assignedPackage(admin: AdminClient, profile: ProfileInfo, log: (line: string) => void): Promise<PackageInfo> {
  if (!profile.firmwareId) throw new Error(`profile '${profile.name}' has no firmware assigned: run without --no-assign`);
  const pkg = await admin.package(profile.firmwareId.id);
  log(`the profile's firmware: '${pkg.title}' ${pkg.version}, ${pkg.dataSize} bytes, ${pkg.checksumAlgorithm}`);
  return pkg;
}

/** What an LwM2M device is told of its package: nothing but a URI, so the run's own description of it. */
function firmwareInfo(pkg: PackageInfo): FirmwareInfo {
  return { title: pkg.title, version: pkg.version, size: pkg.dataSize ?? 0, checksum: pkg.checksum ?? '', checksumAlgorithm: pkg.checksumAlgorithm ?? 'SHA256' };
}

/** The MQTT, CoAP or LwM2M port: the option (or its variable), else the server's listed endpoint, else the protocol's default. */
/** `<dir>/<name>.pem` and `<name>.key` of every device; a missing file names the device. */
async function readCertificates(dir: string, names: readonly string[]): Promise<Array<{ cert: string; key: string }>> {
  return pool([...names], 16, async (name) => ({ cert: await readFile(path.join(dir, `${name}.pem`), 'utf8'), key: await readFile(path.join(dir, `${name}.key`), 'utf8') }));
}

async function endpointPort(admin: AdminClient, opts: SimOptions): Promise<number | null> {
  if (opts.transport === 'http') return null;
  const given = { mqtt: opts.mqttPort, coap: opts.coapPort, lwm2m: opts.lwm2mPort }[opts.transport];
  if (given !== null) return given;
  const listed = (await admin.endpoints().catch(() => [])).find((e) => e.transport === opts.transport.toUpperCase() && e.port > 0);
  return listed ? listed.port : { mqtt: 1883, coap: 5683, lwm2m: 5685 }[opts.transport];
}

/**
 * The server's counts for the package. Devices' last reports reach its state tracker through the
 * flow, a moment after they were answered: wait (briefly) until they are all counted.
 */
async function serverCounts(admin: AdminClient, packageId: string, expected: { updated: number; failed: number }): Promise<PackageMetrics | null> {
  let last: PackageMetrics | null = null;
  for (let i = 0; i < 25; i++) {
    try {
      const metrics = await admin.metrics();
      last = metrics.packages.find((p) => p.packageId === packageId && p.type === 'FIRMWARE') ?? null;
      if (last && last.updated >= expected.updated && last.failed >= expected.failed) return last;
    } catch {
      return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return last;
}
