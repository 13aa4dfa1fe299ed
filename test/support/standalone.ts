import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { databaseUrlFor } from './test-store';
import { eventually } from './eventually';

/** The `npm start` entry point in a child process, on free ports, as a user starts it. */
export const ENTRY = path.resolve(__dirname, '..', '..', 'bin', 'ota-server.js');
export const ADMIN_USER = 'tenant@thingsboard.org';
export const ADMIN_PASSWORD = 'e2e-password-1';

export interface Running {
  child: ChildProcess;
  /** e.g. http://127.0.0.1:41234 (the REST API is under /api) */
  api: string;
  editor: string;
  output(): string;
}

/** `entry`: another copy of the command, e.g. the one npm installed from the packed tarball. */
export async function startServer(dataDir: string, extraEnv: Record<string, string> = {}, entry = ENTRY): Promise<Running> {
  // The PostgreSQL run (test-store.ts): the data directory's database; otherwise SQLite in it.
  const databaseUrl = await databaseUrlFor(dataDir);
  const child = spawn(process.execPath, [entry], {
    env: {
      ...process.env,
      ...(databaseUrl ? { OTA_DATABASE_URL: databaseUrl } : {}),
      OTA_DATA_DIR: dataDir,
      OTA_HTTP_PORT: '0',
      OTA_HTTP_HOST: '127.0.0.1',
      NODE_RED_PORT: '0',
      NODE_RED_HOST: '127.0.0.1',
      OTA_ADMIN_PASSWORD: ADMIN_PASSWORD,
      // Free ports for the device endpoints too, so servers started side by side never collide.
      OTA_MQTT_PORT: '0',
      OTA_MQTT_HOST: '127.0.0.1',
      OTA_COAP_PORT: '0',
      OTA_COAP_HOST: '127.0.0.1',
      OTA_LWM2M_PORT: '0',
      OTA_LWM2M_HOST: '127.0.0.1',
      NODE_RED_LOG_LEVEL: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const api = /OTA REST API listening on (http:\/\/\S+)\/api/.exec(out);
      const editor = /Node-RED editor listening on (http:\/\/\S+?)\/?\s/.exec(out);
      if (out.includes('[ota] ready') && api && editor) resolve({ child, api: api[1] as string, editor: editor[1] as string, output: () => out });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before it was ready:\n${out}`)));
  });
}

export function stopServer(r: Running, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
  return new Promise((resolve) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve(r.child.exitCode);
    r.child.once('exit', (code) => resolve(code));
    r.child.kill(signal);
  });
}

/** A logged-in admin client for the REST API. */
export async function adminClient(apiBase: string, password = ADMIN_PASSWORD): Promise<Admin> {
  const res = await fetch(`${apiBase}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: ADMIN_USER, password }),
  });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
  const { token } = (await res.json()) as { token: string };
  return new Admin(`${apiBase}/api`, token);
}

/** One listener of the server, as `GET /api/ota/endpoints` lists it. */
export interface Endpoint {
  transport: string;
  port: number;
  tls?: boolean;
  connections: number;
}

export class Admin {
  constructor(
    readonly base: string,
    private readonly token: string,
  ) {}

  get headers(): Record<string, string> {
    return { 'X-Authorization': `Bearer ${this.token}` };
  }

  async request<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { ...this.headers, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** The server's first endpoint of `transport` that `match` accepts, once it listens. */
  endpoint(transport: string, match: (e: Endpoint) => boolean = () => true, timeoutMs = 10_000): Promise<Endpoint> {
    return eventually(
      async () => (await this.request<Endpoint[]>('GET', '/ota/endpoints')).find((e) => e.transport === transport && match(e)),
      `the ${transport} endpoint of ${this.base}`,
      { timeoutMs, everyMs: 50 },
    );
  }

  /** Creates firmware `title` `version` of a profile and uploads `bytes` to it: the package as the upload answers it. */
  async firmware(
    profileId: string,
    title: string,
    version: string,
    bytes: Buffer,
    checksumAlgorithm = 'SHA256',
    fileName?: string,
  ): Promise<Record<string, unknown> & { id: { id: string } }> {
    const info = await this.request<{ id: { id: string } }>('POST', '/otaPackage', {
      title,
      version,
      type: 'FIRMWARE',
      deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' },
    });
    return (await this.upload(info.id.id, bytes, checksumAlgorithm, fileName)) as Record<string, unknown> & { id: { id: string } };
  }

  async upload(packageId: string, bytes: Buffer, checksumAlgorithm: string, fileName = 'firmware.bin'): Promise<Record<string, unknown>> {
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(bytes)], { type: 'application/octet-stream' }), fileName);
    const res = await fetch(`${this.base}/otaPackage/${packageId}?checksumAlgorithm=${checksumAlgorithm}`, { method: 'POST', headers: this.headers, body: form });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`upload: ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  }
}
