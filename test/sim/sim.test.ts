import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { summary } from '../../bin/ota-simulate';
import { runDevice, type DeviceLink, type DeviceObserver, type Phase } from '../../sim/device';
import { failingDevices, pool, type FleetReport } from '../../sim/fleet';
import { firmwareOf, verify, type FirmwareInfo } from '../../sim/firmware';
import { parseOptions, simOptions, UsageError } from '../../sim/options';
import { percentile, Progress, table } from '../../sim/progress';
import { checksumOf } from '../../server/packages/checksum';

describe('simulator options', function () {
  const env = { OTA_HTTP_PORT: '18080', OTA_ADMIN_PASSWORD: 'pw', OTA_MQTT_PORT: '0' };

  it('defaults to the standalone server of the environment, 200 HTTP devices and 5 % failures', () => {
    const o = parseOptions([], env, false);
    if (o === 'help') throw new Error('help');
    expect(o).to.include({
      api: 'http://127.0.0.1:18080',
      username: 'tenant@thingsboard.org',
      password: 'pw',
      devices: 200,
      transport: 'http',
      failRate: 0.05,
      profile: 'sim-fleet',
      prefix: 'sim-fleet-',
      packageMb: 1,
      chunk: 4096,
      pace: 0,
      progress: 'lines',
      assign: true,
    });
    // OTA_MQTT_PORT=0 (any free port) says nothing about where to connect: ask the server.
    expect(o.mqttPort).to.equal(null);
    expect(parseOptions([], env, true)).to.include({ progress: 'bar' });
  });

  it('reads every option', () => {
    const o = parseOptions(
      [
        '--api',
        'http://ota.example:9000/api/',
        '--devices',
        '30',
        '--transport',
        'MQTT',
        '--mqtt-port',
        '11883',
        '--mqtt-version',
        '5',
        '--fail-rate',
        '0.1',
        '--profile',
        'p',
        '--chunk',
        '0',
        '--checksum',
        'murmur3_128',
        '--package-title',
        't',
        '--package-version',
        '1',
      ],
      env,
      false,
    );
    if (o === 'help') throw new Error('help');
    expect(o).to.include({
      api: 'http://ota.example:9000',
      devices: 30,
      transport: 'mqtt',
      mqttPort: 11883,
      mqttVersion: 5,
      failRate: 0.1,
      prefix: 'p-',
      chunk: 0,
      checksumAlgorithm: 'MURMUR3_128',
      packageTitle: 't',
      packageVersion: '1',
    });
  });

  it('gives a run started from code the same defaults, quiet', () => {
    const o = simOptions({ api: 'http://127.0.0.1:1', password: 'pw', devices: 5, profile: 'dash' });
    expect(o).to.include({ api: 'http://127.0.0.1:1', devices: 5, profile: 'dash', prefix: 'dash-', transport: 'http', failRate: 0.05, progress: 'none', timeoutS: 600 });
  });

  it('takes --credentials token, basic or x509 (with --cert-dir), basic and x509 for MQTT devices only', () => {
    const parse = (...args: string[]) => parseOptions(['--password', 'pw', ...args], {}, false);
    expect(parse()).to.include({ credentials: 'token', certDir: null, serverCa: null });
    expect(parse('--transport', 'mqtt', '--credentials', 'basic')).to.include({ credentials: 'basic' });
    expect(parse('--transport', 'mqtt', '--credentials', 'x509', '--cert-dir', '/certs', '--server-ca', '/ca.pem')).to.include({
      credentials: 'x509',
      certDir: '/certs',
      serverCa: '/ca.pem',
    });
    expect(() => parse('--credentials', 'basic')).to.throw('--credentials basic is for MQTT devices: add --transport mqtt');
    expect(() => parse('--credentials', 'x509', '--cert-dir', '/certs')).to.throw('--credentials x509 is for MQTT devices: add --transport mqtt');
    expect(() => parse('--transport', 'mqtt', '--credentials', 'x509')).to.throw('--credentials x509 and --cert-dir go together');
    expect(() => parse('--transport', 'mqtt', '--cert-dir', '/certs')).to.throw('--credentials x509 and --cert-dir go together');
    expect(() => parse('--credentials', 'psk')).to.throw("--credentials must be token, basic or x509, not 'psk'");
  });

  it('says what is wrong with a bad option', () => {
    const wrong = (args: string[], e: NodeJS.ProcessEnv = env): string => {
      try {
        parseOptions(args, e, false);
      } catch (err) {
        expect(err).to.be.instanceOf(UsageError);
        return (err as Error).message;
      }
      throw new Error(`accepted ${args.join(' ')}`);
    };
    expect(wrong(['--devices', '0'])).to.equal("--devices must be an integer >= 1, not '0'");
    expect(wrong(['--fail-rate', '5'])).to.equal("--fail-rate is a share from 0 to 1, not '5'");
    expect(wrong(['--checksum', 'SHA1'])).to.match(/^--checksum must be one of MD5, /);
    expect(wrong(['--package-title', 'only'])).to.equal('--package-title and --package-version go together');
    expect(wrong([], {})).to.equal('no admin password: give --password, or set OTA_ADMIN_PASSWORD');
    expect(wrong(['--devcies', '3'])).to.match(/devcies/);
    expect(parseOptions(['--help'], {}, false)).to.equal('help');
  });
});

describe('simulator fleet plan', function () {
  it('fails the share of devices asked for, the same ones for the same seed', () => {
    const a = failingDevices(200, 0.05, 1);
    expect(a.size).to.equal(10);
    expect([...a].every((i) => i >= 0 && i < 200)).to.equal(true);
    expect([...failingDevices(200, 0.05, 1)]).to.deep.equal([...a]);
    expect([...failingDevices(200, 0.05, 2)]).to.not.deep.equal([...a]);
    expect(failingDevices(30, 0.1, 7).size).to.equal(3);
    expect(failingDevices(30, 0, 7).size).to.equal(0);
    expect(failingDevices(3, 1, 7).size).to.equal(3);
  });

  it('runs at most `limit` tasks at a time and keeps their results in order', async () => {
    let running = 0;
    let most = 0;
    const results = await pool([5, 1, 4, 2, 3, 0], 2, async (ms, i) => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return i * 10;
    });
    expect(most).to.equal(2);
    expect(results).to.deep.equal([0, 10, 20, 30, 40, 50]);
  });
});

describe('simulator firmware checks', function () {
  const data = Buffer.from('123456789');

  it("reads the firmware from the shared attributes, and checks it with ThingsBoard's encodings", () => {
    // CRC32 of "123456789" is 0xCBF43926, sent little-endian (reference §8).
    const fw = firmwareOf({ fw_title: 'fw', fw_version: '1', fw_size: 9, fw_checksum: '2639f4cb', fw_checksum_algorithm: 'CRC32' }) as FirmwareInfo;
    expect(fw).to.deep.equal({ title: 'fw', version: '1', size: 9, checksum: '2639f4cb', checksumAlgorithm: 'CRC32' });
    expect(verify(fw, data)).to.equal(true);
    expect(verify({ ...fw, checksumAlgorithm: 'crc32' }, data)).to.equal(true);
    expect(verify(fw, Buffer.from('123456780'))).to.equal(false);
    expect(verify({ ...fw, size: 10 }, data)).to.equal(false);
    expect(verify({ ...fw, checksumAlgorithm: 'SHA1' }, data)).to.equal(false);
    expect(firmwareOf({ fw_title: 'fw', fw_version: '1' })).to.equal(null);
    expect(firmwareOf(undefined)).to.equal(null);
  });
});

describe('simulated device', function () {
  const bytes = Buffer.from('firmware 2.0 '.repeat(100));
  const fw: FirmwareInfo = { title: 'fw', version: '2.0', size: bytes.length, checksum: checksumOf('SHA256', bytes), checksumAlgorithm: 'SHA256' };

  /** A link that offers `offers` in turn and records the reports. */
  function fakeLink(offers: FirmwareInfo[], data = bytes): DeviceLink & { reports: Array<Record<string, unknown>>; closed: boolean } {
    return {
      reports: [],
      closed: false,
      async open() {},
      async firmware(wanted) {
        const fit = offers.find(wanted);
        if (!fit) throw new Error('no firmware offered');
        return fit;
      },
      async download(_f, progress) {
        progress(data.length);
        return data;
      },
      async report(values) {
        this.reports.push(values);
      },
      async close() {
        this.closed = true;
      },
    };
  }
  const phases: Phase[] = [];
  const observer: DeviceObserver = { phase: (_n, p) => phases.push(p), bytes: () => undefined };
  const plan = { name: 'd-1', failWith: null, pace: 0, target: { title: 'fw', version: '2.0' } };

  it('reports DOWNLOADING to UPDATED, with its current firmware in each report, and takes only the target', async () => {
    const link = fakeLink([{ ...fw, version: '1.0' }, fw]);
    const result = await runDevice(link, plan, observer, new AbortController().signal);
    expect(result).to.include({ phase: 'updated', intended: false, error: null, bytes: bytes.length });
    expect(link.reports.map((r) => r.fw_state)).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED']);
    expect(link.reports[3]).to.include({ current_fw_title: 'Initial', current_fw_version: 'v0' });
    expect(link.reports[4]).to.include({ current_fw_title: 'fw', current_fw_version: '2.0' });
    expect(link.closed).to.equal(true);
  });

  it('reports FAILED with the planned fw_error after verifying, and says it was planned', async () => {
    const link = fakeLink([fw]);
    const result = await runDevice(link, { ...plan, failWith: 'Simulated failure: flash write failed' }, observer, new AbortController().signal);
    expect(result).to.include({ phase: 'failed', intended: true });
    expect(link.reports.map((r) => r.fw_state)).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'FAILED']);
    expect(link.reports[3]).to.include({ fw_error: 'Simulated failure: flash write failed' });
  });

  it("reports ThingsBoard's checksum failure for bytes that do not match", async () => {
    const link = fakeLink([fw], Buffer.from('something else'));
    const result = await runDevice(link, plan, observer, new AbortController().signal);
    expect(result).to.include({ phase: 'failed', intended: false });
    expect(link.reports.at(-1)).to.include({ fw_state: 'FAILED', fw_error: 'Checksum verification failed!' });
  });
});

describe('simulator output', function () {
  it('takes percentiles by nearest rank', () => {
    const ms = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    expect(percentile(ms, 50)).to.equal(50);
    expect(percentile(ms, 95)).to.equal(100);
    expect(percentile([7], 95)).to.equal(7);
    expect(percentile([], 50)).to.equal(null);
  });

  it('counts devices by phase, with those not started yet as waiting', () => {
    const progress = new Progress(new PassThrough(), 'none', 5);
    progress.phase('a', 'downloading');
    progress.phase('b', 'updated');
    progress.phase('c', 'failed');
    progress.bytes(2048);
    expect(progress.counts()).to.deep.equal({ total: 5, waiting: 2, busy: 1, updated: 1, failed: 1, unfinished: 0, bytes: 2048 });
  });

  it('draws a bar on a terminal and plain lines elsewhere', async () => {
    let now = 0;
    const tty = new PassThrough();
    const bar = new Progress(tty, 'bar', 4, () => now);
    bar.phase('a', 'updated');
    bar.phase('b', 'failed');
    now = 1500;
    bar.start();
    bar.stop();
    const drawn = String(tty.read());
    expect(drawn).to.include('\r\x1b[2K[');
    expect(drawn).to.include('50%  ✓ 1  ✗ 1');

    now = 0;
    const pipe = new PassThrough();
    const lines = new Progress(pipe, 'lines', 4, () => now);
    lines.phase('a', 'updated');
    now = 1500;
    lines.start();
    lines.stop();
    const text = String(pipe.read());
    expect(text).to.equal('[sim] 1.5 s  updated 1/4  failed 0  in progress 0  waiting 3  0 B  0.00 MB/s\n');
  });

  it('sums a run up in a table, listing what did not go as planned', () => {
    const report: FleetReport = {
      transport: 'HTTP',
      profile: 'sim-fleet',
      package: { id: 'p', title: 'fw', version: '2.0', size: 1024, checksumAlgorithm: 'SHA256' },
      results: [
        { name: 'd-1', phase: 'updated', intended: false, error: null, bytes: 1024, updateMs: 200 },
        { name: 'd-2', phase: 'failed', intended: true, error: 'planned', bytes: 1024, updateMs: 150 },
        { name: 'd-3', phase: 'unfinished', intended: false, error: 'still updating at the timeout', bytes: 0, updateMs: null },
      ],
      elapsedMs: 2500,
      throughput: 1024 * 1024,
      p50Ms: 200,
      p95Ms: 200,
      server: null,
      ok: false,
    };
    const text = summary(report);
    expect(text).to.include("HTTP fleet 'sim-fleet', package 'fw' 2.0 (1.0 kB, SHA256)");
    expect(text).to.match(/\| failed +\| 1 \(1 on purpose\) \|/);
    expect(text).to.match(/\| throughput +\| +1\.00 MB\/s \|/);
    expect(text).to.include('  d-3: unfinished, still updating at the timeout');
    expect(text).to.not.include('d-2:');
    expect(text.endsWith('result: NOT OK')).to.equal(true);
    expect(
      table('t', [
        ['a', '1'],
        ['long label', '22'],
      ]),
    ).to.equal(['t', '+------------+----+', '| a          |  1 |', '| long label | 22 |', '+------------+----+'].join('\n'));
  });
});
