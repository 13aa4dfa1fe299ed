/**
 * LwM2M devices updated through a real server: BENCH_LWM2M_DEVICES (default 500) simulated LwM2M
 * devices (sim/lwm2m-device.ts: our CoAP endpoint as the client) register with `npm start`'s LwM2M
 * endpoint in a child process, all at once, and update to a 256 KiB package (BENCH_LWM2M_KB) with
 * the queue's pacing off: the server writes the Package URI, each device pulls `/tbfw/{id}`
 * block-wise, reports its State and Result, and the server executes Update. Measured: the time
 * from the simulator's login to every device UPDATED on the server, and the server's peak RSS
 * growth during the run per device (its registration, OTA state, observations and exchanges).
 *
 * The reference, in the same run and the same server: the same number of simulated CoAP devices
 * (ThingsBoard's CoAP API: observe attributes, download `/fw/{token}` block-wise, post their
 * states), the transport closest to LwM2M's. Set up beforehand and not timed: profiles, packages,
 * devices and their credentials.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { AdminClient, type PackageInfo } from '../sim/admin-client';
import { deviceName, pool, runFleet, type FleetReport } from '../sim/fleet';
import { simOptions, type SimTransport } from '../sim/options';
import { Cleanup, formatBytes, peakRss, positiveInt, printTable, resetPeakRss, timed, type Benchmark } from './lib';
import { startOtaServer, stopOtaServer } from './simulated-fleet';

export const lwm2mFleet: Benchmark = {
  name: 'LwM2M fleet (register + pull update) vs CoAP fleet',
  run,
};

const ADMIN_USER = 'tenant@thingsboard.org';

async function run(): Promise<void> {
  const devices = positiveInt('BENCH_LWM2M_DEVICES', 500);
  const packageBytes = positiveInt('BENCH_LWM2M_KB', 256) * 1024;
  const cleanup = new Cleanup();
  try {
    const dataDir = await cleanup.tempDir('ota-bench-lwm2m');
    const password = `bench-${randomBytes(6).toString('hex')}`;
    const server = await startOtaServer(cleanup, dataDir, password, devices);
    const pid = server.child.pid as number;
    const admin = await AdminClient.login(server.api, ADMIN_USER, password);
    const bytes = randomBytes(packageBytes);
    const transports: SimTransport[] = ['coap', 'lwm2m'];

    const prepared = new Map<SimTransport, PackageInfo>();
    for (const transport of transports) {
      const profile = await admin.findOrCreateProfile(`bench-${transport}`);
      prepared.set(transport, await admin.upload(await admin.createPackage('bench-fw', `1.0.0-${transport}`, profile), bytes, 'SHA256'));
      const created = await pool(
        Array.from({ length: devices }, (_, i) => deviceName(`bench-${transport}-`, i, devices)),
        16,
        (name) => admin.ensureDevice(name, profile),
      );
      if (transport === 'lwm2m') await pool(created, 16, (d) => admin.lwm2mCredentials(d));
    }

    const rows: string[][] = [];
    let reference: { seconds: number; perDevice: number | null } | null = null;
    for (const transport of transports) {
      const pkg = prepared.get(transport) as PackageInfo;
      const opts = simOptions({
        api: server.api,
        username: ADMIN_USER,
        password,
        devices,
        failRate: 0,
        progress: 'none',
        timeoutS: 300,
        transport,
        concurrency: devices,
        profile: `bench-${transport}`,
        packageTitle: pkg.title,
        packageVersion: pkg.version,
      });
      const log: string[] = [];
      const sink = new Writable({
        write(c: Buffer, _enc, done) {
          log.push(c.toString());
          done();
        },
      });
      const before = peakRss(pid);
      const reset = resetPeakRss(pid);
      const { value: report, seconds } = await timed(() => runFleet(opts, sink));
      const after = peakRss(pid);
      check(report, devices, log);
      const perDevice = reset && before !== null && after !== null ? Math.max(0, after - before) / devices : null;
      const ratio = reference ? (seconds / reference.seconds).toFixed(2) : '1.00 (reference)';
      const memRatio = reference?.perDevice && perDevice !== null ? (perDevice / reference.perDevice).toFixed(2) : reference ? 'n/a' : '1.00 (reference)';
      rows.push([
        `simulator over ${transport.toUpperCase()}`,
        String(devices),
        seconds.toFixed(2),
        (devices / seconds).toFixed(1),
        ratio,
        perDevice === null ? 'n/a' : formatBytes(perDevice),
        memRatio,
      ]);
      reference ??= { seconds, perDevice };
    }
    console.log(`${devices} devices each, a ${packageBytes / 1024} KiB package, pacing off, all devices at once\n`);
    printTable(['fleet', 'devices', 'seconds', 'devices/s', 'time ratio', 'server peak RSS growth per device', 'memory ratio'], rows);
    console.log('\nseconds: from the simulator login to the server counting every device UPDATED (devices made beforehand).');
    console.log("memory: growth of the server's peak RSS over the run, divided by the devices (registration, OTA state, exchanges).");
    await stopOtaServer(server.child);
  } finally {
    cleanup.run();
  }
}

function check(report: FleetReport, devices: number, log: string[]): void {
  const bad = report.results.filter((r) => r.phase !== 'updated');
  if (bad.length || report.results.length !== devices) {
    throw new Error(
      `simulated ${report.transport} fleet: ${bad.length} of ${report.results.length} devices did not update: ${JSON.stringify(bad.slice(0, 3))}\n${log.join('').slice(-3000)}`,
    );
  }
}
