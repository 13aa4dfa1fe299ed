import { parseArgs } from 'node:util';
import { CHECKSUM_ALGORITHMS, parseChecksumAlgorithm, type ChecksumAlgorithm } from '../server/packages/checksum';

export type SimTransport = 'http' | 'mqtt' | 'coap' | 'lwm2m';

/** Everything a simulated fleet run is told, after defaults. */
export interface SimOptions {
  /** Base URL of the REST API and the HTTP device API, e.g. http://127.0.0.1:8080 */
  api: string;
  username: string;
  password: string;
  devices: number;
  transport: SimTransport;
  /** MQTT and CoAP ports: null = OTA_*_PORT, else what the server lists at /api/ota/endpoints, else 1883 / 5683. */
  mqttPort: number | null;
  coapPort: number | null;
  lwm2mPort: number | null;
  /** MQTT protocol level: 4 (3.1.1, as ThingsBoard's example script) or 5 (as its Python SDK). */
  mqttVersion: 4 | 5;
  /** Share of devices that report FAILED on purpose, 0..1. */
  failRate: number;
  profile: string;
  /** Device names are `<prefix><n>`. */
  prefix: string;
  packageTitle: string | null;
  packageVersion: string | null;
  packageMb: number;
  checksumAlgorithm: ChecksumAlgorithm;
  /** Chunk size in bytes for HTTP and MQTT downloads; 0 asks for the whole file at once. */
  chunk: number;
  /** Milliseconds a device waits between two steps (state reports, chunk requests). */
  pace: number;
  concurrency: number;
  /** Seconds the whole run may take before the devices still busy count as unfinished. */
  timeoutS: number;
  /** Seed of the choice of failing devices, so a run can be repeated. */
  seed: number;
  /** Draw a live bar (a TTY) or print a line every few seconds. */
  progress: 'bar' | 'lines' | 'none';
  /** Leave the profile's package as it is (the devices update to whatever is assigned already). */
  assign: boolean;
  /** Check each package's Ed25519 signature with the tenant's public key (issue 14). */
  verifySignature: boolean;
  /**
   * How MQTT devices authenticate: their access token, MQTT basic credentials set up by the run,
   * or an X.509 client certificate over MQTT TLS (`certDir`/`<device name>.pem` and `.key`).
   */
  credentials: 'token' | 'basic' | 'x509';
  /** With x509: the folder holding each device's certificate and key. */
  certDir: string | null;
  /** The CA the server's TLS certificate is checked against; null: MQTT TLS only with x509, not checked. */
  serverCa: string | null;
  /** New devices provision themselves (`POST /api/v1/provision`) instead of being created by the admin. */
  provision: boolean;
}

export class UsageError extends Error {}

export const USAGE = `Usage: ota-simulate [options]

Plays a fleet of well-behaved ThingsBoard devices against an OTA server: creates the devices
in a profile, uploads a package (unless one is named), assigns it to the profile, and has
every device download it, verify its checksum and report DOWNLOADING .. UPDATED (or FAILED).

  --api URL              REST and HTTP device API (default http://127.0.0.1:$OTA_HTTP_PORT, else :8080)
  --username NAME        tenant admin (default $OTA_ADMIN_USERNAME, else tenant@thingsboard.org)
  --password PASSWORD    its password (default $OTA_ADMIN_PASSWORD)
  --devices N            fleet size (default 200)
  --transport T          http, mqtt, coap or lwm2m (default http)
  --mqtt-port PORT       default $OTA_MQTT_PORT, else the server's MQTT endpoint, else 1883
  --mqtt-version 4|5     MQTT 3.1.1 or 5 (default 4)
  --coap-port PORT       default $OTA_COAP_PORT, else the server's CoAP endpoint, else 5683
  --lwm2m-port PORT      default $OTA_LWM2M_PORT, else the server's LwM2M endpoint, else 5685
  --fail-rate R          share of devices that report FAILED on purpose (default 0.05)
  --profile NAME         device profile, created if missing (default sim-fleet)
  --prefix TEXT          device names are <prefix><n> (default <profile>-)
  --package-title T      use (or create) this package; with --package-version
  --package-version V
  --package-mb MB        size of an uploaded package (default 1)
  --checksum ALG         its checksum algorithm (default SHA256; ${CHECKSUM_ALGORITHMS.join(', ')})
  --chunk BYTES          chunk size of HTTP and MQTT downloads, 0 = whole file (default 4096);
                         CoAP devices fetch the whole file block-wise (RFC 7959)
  --pace MS              a device's pause between two steps (default 0)
  --concurrency N        devices running at once (default 100)
  --timeout S            give up on devices still busy after S seconds (default 600)
  --seed N               which devices fail on purpose (default 1)
  --no-assign            do not assign: update to the firmware the profile has already
  --verify-signature     devices check the package's Ed25519 signature with the tenant's public
                         key (GET /api/ota/signingKey) and report FAILED when it does not verify
  --credentials token|basic|x509   how MQTT devices authenticate (default token); basic gives
                         each device MQTT basic credentials (client id, user name, password)
                         first; x509 registers each device's certificate (X509_CERTIFICATE) and
                         connects over MQTT TLS presenting it
  --cert-dir DIR         with x509: <device name>.pem and <device name>.key for every device
                         (names are <prefix><n>, e.g. sim-fleet-0001); signed by the CA the
                         server's OTA_MQTT_TLS_CA_FILE names
  --server-ca FILE       CA to check the server's TLS certificate against (unset: not checked)
  --provision            new devices provision themselves (POST /api/v1/provision with the
                         profile's key and secret, set up by the run) instead of being created
  --progress bar|lines|none   (default: bar on a terminal, lines otherwise)
  -h, --help

Exit status: 0 when every device ended UPDATED, or FAILED on purpose; 1 otherwise; 2 on a usage
or setup error. Queue pacing is the server's (TB_QUEUE_CORE_OTA_PACK_SIZE per
TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS): with ThingsBoard's defaults, 100 devices a minute.`;

const positive = (name: string, raw: string | undefined, fallback: number, { integer = true, min = 1 } = {}): number => {
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, not '${raw}'`);
  return n;
};

/** A port from the flag, else from the variable (0 or empty = not set), else null. */
const portOf = (name: string, raw: string | undefined, envValue: string | undefined): number | null => {
  for (const v of [raw, envValue]) {
    if (v === undefined || v.trim() === '' || v.trim() === '0') continue;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--${name} must be a port (1-65535), not '${v}'`);
    return n;
  }
  return null;
};

/** Options from the command line and the environment; throws UsageError with what is wrong. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv, isTty: boolean): SimOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        api: { type: 'string' },
        username: { type: 'string' },
        password: { type: 'string' },
        devices: { type: 'string' },
        transport: { type: 'string' },
        'mqtt-port': { type: 'string' },
        'mqtt-version': { type: 'string' },
        'coap-port': { type: 'string' },
        'lwm2m-port': { type: 'string' },
        'fail-rate': { type: 'string' },
        profile: { type: 'string' },
        prefix: { type: 'string' },
        'package-title': { type: 'string' },
        'package-version': { type: 'string' },
        'package-mb': { type: 'string' },
        checksum: { type: 'string' },
        chunk: { type: 'string' },
        pace: { type: 'string' },
        concurrency: { type: 'string' },
        timeout: { type: 'string' },
        seed: { type: 'string' },
        'no-assign': { type: 'boolean' },
        'verify-signature': { type: 'boolean' },
        credentials: { type: 'string' },
        'cert-dir': { type: 'string' },
        'server-ca': { type: 'string' },
        provision: { type: 'boolean' },
        progress: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';

  const transport = (v.transport ?? 'http').toLowerCase();
  if (transport !== 'http' && transport !== 'mqtt' && transport !== 'coap' && transport !== 'lwm2m')
    throw new UsageError(`--transport must be http, mqtt, coap or lwm2m, not '${v.transport}'`);
  const failRate = positive('fail-rate', v['fail-rate'], 0.05, { integer: false, min: 0 });
  if (failRate > 1) throw new UsageError(`--fail-rate is a share from 0 to 1, not '${v['fail-rate']}'`);
  const checksum = parseChecksumAlgorithm(v.checksum ?? 'SHA256');
  if (!checksum) throw new UsageError(`--checksum must be one of ${CHECKSUM_ALGORITHMS.join(', ')}, not '${v.checksum}'`);
  const mqttVersion = positive('mqtt-version', v['mqtt-version'], 4);
  if (mqttVersion !== 4 && mqttVersion !== 5) throw new UsageError(`--mqtt-version must be 4 (3.1.1) or 5, not '${v['mqtt-version']}'`);
  if ((v['package-title'] === undefined) !== (v['package-version'] === undefined)) throw new UsageError('--package-title and --package-version go together');
  if (v['no-assign'] && v['package-title'] !== undefined) throw new UsageError("--no-assign updates to the profile's firmware: leave out --package-title and --package-version");
  const credentials = (v.credentials ?? 'token').toLowerCase();
  if (credentials !== 'token' && credentials !== 'basic' && credentials !== 'x509') throw new UsageError(`--credentials must be token, basic or x509, not '${v.credentials}'`);
  if (credentials !== 'token' && transport !== 'mqtt') throw new UsageError(`--credentials ${credentials} is for MQTT devices: add --transport mqtt`);
  if ((credentials === 'x509') !== (v['cert-dir'] !== undefined)) throw new UsageError('--credentials x509 and --cert-dir go together');
  if (credentials === 'x509' && v.provision) throw new UsageError('--provision hands out tokens: leave it out with --credentials x509');
  const progress = v.progress ?? (isTty ? 'bar' : 'lines');
  if (progress !== 'bar' && progress !== 'lines' && progress !== 'none') throw new UsageError(`--progress must be bar, lines or none, not '${v.progress}'`);

  const httpPort = env.OTA_HTTP_PORT && env.OTA_HTTP_PORT.trim() !== '' && env.OTA_HTTP_PORT.trim() !== '0' ? env.OTA_HTTP_PORT.trim() : '8080';
  const api = (v.api ?? `http://127.0.0.1:${httpPort}`).replace(/\/+$/, '').replace(/\/api$/, '');
  try {
    new URL(api);
  } catch {
    throw new UsageError(`--api must be a URL such as http://127.0.0.1:8080, not '${api}'`);
  }
  const password = v.password ?? env.OTA_ADMIN_PASSWORD ?? '';
  if (!password) throw new UsageError('no admin password: give --password, or set OTA_ADMIN_PASSWORD');
  const profile = v.profile ?? 'sim-fleet';

  return {
    api,
    username: v.username ?? (env.OTA_ADMIN_USERNAME || 'tenant@thingsboard.org'),
    password,
    devices: positive('devices', v.devices, 200),
    transport,
    mqttPort: portOf('mqtt-port', v['mqtt-port'], env.OTA_MQTT_PORT),
    coapPort: portOf('coap-port', v['coap-port'], env.OTA_COAP_PORT),
    lwm2mPort: portOf('lwm2m-port', v['lwm2m-port'], env.OTA_LWM2M_PORT),
    mqttVersion,
    failRate,
    profile,
    prefix: v.prefix ?? `${profile}-`,
    packageTitle: v['package-title'] ?? null,
    packageVersion: v['package-version'] ?? null,
    packageMb: positive('package-mb', v['package-mb'], 1, { integer: false, min: 0.000001 }),
    checksumAlgorithm: checksum,
    chunk: positive('chunk', v.chunk, 4096, { min: 0 }),
    pace: positive('pace', v.pace, 0, { min: 0 }),
    concurrency: positive('concurrency', v.concurrency, 100),
    timeoutS: positive('timeout', v.timeout, 600, { integer: false, min: 0.001 }),
    seed: positive('seed', v.seed, 1, { min: 0 }),
    progress,
    assign: !v['no-assign'],
    verifySignature: !!v['verify-signature'],
    credentials,
    certDir: v['cert-dir'] ?? null,
    serverCa: v['server-ca'] ?? null,
    provision: Boolean(v.provision),
  };
}

/**
 * Options for a run started from code (the dashboard's test, the benchmarks): the server and the
 * password, the rest as the command line's defaults unless given.
 */
export function simOptions(given: Partial<SimOptions> & Pick<SimOptions, 'api' | 'password'>): SimOptions {
  const defaults = parseOptions(['--api', given.api, '--password', given.password, '--progress', 'none'], {}, false);
  if (defaults === 'help') throw new Error('unreachable');
  return { ...defaults, ...(given.profile && given.prefix === undefined ? { prefix: `${given.profile}-` } : {}), ...given };
}
