/**
 * A real engine for admin REST API tests: its own temporary data directory, HTTP on 127.0.0.1
 * port 0, a logged-in admin, and a small typed client over Node's global `fetch`. Everything it
 * creates is removed by `close()`.
 */
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { OtaEngine, type EngineOptions } from '../../server/engine';
import { type Logger } from '../../server/logger';
import { databaseUrlFor, dropDatabaseFor } from './test-store';

export const quietLogger: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export const ADMIN_USER = 'tenant@thingsboard.org';
export const ADMIN_PASSWORD = 'correct horse battery staple';
export const SYSADMIN_USER = 'sysadmin@thingsboard.org';
export const SYSADMIN_PASSWORD = 'sysadmin battery staple';

// ---- ThingsBoard JSON shapes, as far as the tests read them ---------------------------------------

export interface EntityRef {
  entityType: string;
  id: string;
}

export interface PageData<T> {
  data: T[];
  totalPages: number;
  totalElements: number;
  hasNext: boolean;
}

export interface ErrorBody {
  status: number;
  message: string;
  errorCode: number;
  timestamp: number;
}

export interface TokenPairBody {
  token: string;
  refreshToken: string;
  scope?: unknown;
}

export interface PackageInfo {
  id: EntityRef;
  createdTime: number;
  tenantId: EntityRef;
  deviceProfileId: EntityRef | null;
  type: 'FIRMWARE' | 'SOFTWARE';
  title: string;
  version: string;
  tag: string | null;
  url: string | null;
  hasData: boolean;
  fileName: string | null;
  contentType: string | null;
  checksumAlgorithm: string | null;
  checksum: string | null;
  dataSize: number | null;
  additionalInfo: Record<string, unknown> | null;
  name: string;
  data?: string | null;
}

export interface DeviceProfileBody {
  id: EntityRef;
  createdTime: number;
  tenantId: EntityRef;
  name: string;
  description: string | null;
  default: boolean;
  firmwareId: EntityRef | null;
  softwareId: EntityRef | null;
  version: number;
  [extra: string]: unknown;
}

export interface DeviceBody {
  id: EntityRef;
  createdTime: number;
  tenantId: EntityRef;
  name: string;
  type: string;
  label: string | null;
  deviceProfileId: EntityRef;
  firmwareId: EntityRef | null;
  softwareId: EntityRef | null;
  [extra: string]: unknown;
}

export interface DeviceCredentialsBody {
  id: { id: string };
  createdTime: number;
  deviceId: EntityRef;
  credentialsType: string;
  credentialsId: string;
  credentialsValue: string | null;
}

export interface UserBody {
  id: EntityRef;
  tenantId: EntityRef;
  email: string;
  authority: string;
  [extra: string]: unknown;
}

// ---- responses --------------------------------------------------------------------------------------

export interface ApiResponse {
  status: number;
  headers: Headers;
  bytes: Buffer;
  text: string;
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  body: unknown;
}

/** Asserts a 200 and returns the body as `T`. */
export function ok<T>(res: ApiResponse): T {
  expect(res.status, `expected 200, got ${res.status}: ${res.text}`).to.equal(200);
  return res.body as T;
}

/**
 * Asserts ThingsBoard's error JSON: the status, exactly the keys status, message, errorCode and
 * timestamp, and (when given) the message and code.
 */
export function expectError(res: ApiResponse, status: number, message?: string | RegExp, errorCode?: number): ErrorBody {
  expect(res.status, `expected ${status}, got ${res.status}: ${res.text}`).to.equal(status);
  expect(res.headers.get('content-type') ?? '').to.match(/^application\/json/);
  const body = res.body as ErrorBody;
  expect(body).to.be.an('object');
  expect(Object.keys(body).sort()).to.deep.equal(['errorCode', 'message', 'status', 'timestamp']);
  expect(body.status).to.equal(status);
  expect(body.timestamp).to.be.a('number');
  expect(Math.abs(body.timestamp - Date.now())).to.be.below(60_000);
  expect(body.message).to.be.a('string');
  if (typeof message === 'string') expect(body.message).to.equal(message);
  else if (message) expect(body.message).to.match(message);
  if (errorCode !== undefined) expect(body.errorCode).to.equal(errorCode);
  return body;
}

// ---- multipart, built by hand so tests control part order ----------------------------------------

export type Part = { name: string; value: string } | { name: string; fileName: string; contentType: string; data: Buffer };

export interface MultipartBody {
  body: Buffer;
  contentType: string;
}

export function multipart(parts: readonly Part[]): MultipartBody {
  const boundary = `----otatest${randomBytes(12).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const head =
      'value' in p
        ? `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"\r\n\r\n`
        : `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.fileName}"\r\nContent-Type: ${p.contentType}\r\n\r\n`;
    chunks.push(Buffer.from(head, 'utf8'), 'value' in p ? Buffer.from(p.value, 'utf8') : p.data, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** A file part named `file`, as ThingsBoard's upload endpoint expects. */
export const filePart = (data: Buffer, fileName = 'firmware.bin', contentType = 'application/octet-stream'): Part => ({
  name: 'file',
  fileName,
  contentType,
  data,
});

// ---- the client --------------------------------------------------------------------------------------

export interface RequestOptions {
  json?: unknown;
  body?: Buffer;
  headers?: Record<string, string>;
}

export interface NewPackage {
  title?: string;
  version?: string;
  type?: 'FIRMWARE' | 'SOFTWARE';
  deviceProfileId: string;
  tag?: string | null;
  url?: string;
  usesUrl?: boolean;
  additionalInfo?: Record<string, unknown>;
}

export interface UploadOptions {
  fileName?: string;
  contentType?: string;
  checksumAlgorithm?: string;
  checksum?: string;
}

let uniqueCounter = 0;
/** A name no other test uses, so tests sharing an engine stay independent. */
export const unique = (prefix: string): string => `${prefix}-${++uniqueCounter}-${randomBytes(3).toString('hex')}`;

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string | null,
    /** Header carrying the token; ThingsBoard's own is X-Authorization. */
    readonly authHeader: 'X-Authorization' | 'Authorization' = 'X-Authorization',
  ) {}

  /** The same credentials sent in another header. */
  withHeader(authHeader: 'X-Authorization' | 'Authorization'): ApiClient {
    return new ApiClient(this.baseUrl, this.token, authHeader);
  }

  async request(method: string, urlPath: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (this.token !== null) headers[this.authHeader] = `Bearer ${this.token}`;
    let body: Uint8Array<ArrayBuffer> | string | undefined = opts.body === undefined ? undefined : new Uint8Array(opts.body);
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['Content-Type'] = 'application/json';
    }
    const res = await fetch(`${this.baseUrl}${urlPath}`, { method, headers, body });
    const bytes = Buffer.from(await res.arrayBuffer());
    const text = bytes.toString('utf8');
    let parsed: unknown;
    if ((res.headers.get('content-type') ?? '').startsWith('application/json') && text !== '') parsed = JSON.parse(text);
    return { status: res.status, headers: res.headers, bytes, text, body: parsed };
  }

  get(urlPath: string, headers?: Record<string, string>): Promise<ApiResponse> {
    return this.request('GET', urlPath, { headers });
  }

  post(urlPath: string, json: unknown): Promise<ApiResponse> {
    return this.request('POST', urlPath, { json });
  }

  delete(urlPath: string): Promise<ApiResponse> {
    return this.request('DELETE', urlPath);
  }

  postMultipart(urlPath: string, parts: readonly Part[]): Promise<ApiResponse> {
    const mp = multipart(parts);
    return this.request('POST', urlPath, { body: mp.body, headers: { 'Content-Type': mp.contentType } });
  }

  // -- domain helpers: each asserts success, so a test's setup never fails silently --

  async createProfile(name = unique('profile'), extra: Record<string, unknown> = {}): Promise<DeviceProfileBody> {
    return ok<DeviceProfileBody>(await this.post('/api/deviceProfile', { name, ...extra }));
  }

  async defaultProfile(): Promise<DeviceProfileBody> {
    const page = ok<PageData<DeviceProfileBody>>(await this.get('/api/deviceProfiles?pageSize=100&page=0'));
    const found = page.data.find((p) => p.default);
    expect(found, 'the tenant has a default profile').to.not.equal(undefined);
    return found as DeviceProfileBody;
  }

  packageBody(p: NewPackage): Record<string, unknown> {
    return {
      title: p.title ?? unique('fw'),
      version: p.version ?? '1.0.0',
      type: p.type ?? 'FIRMWARE',
      deviceProfileId: { entityType: 'DEVICE_PROFILE', id: p.deviceProfileId },
      tag: p.tag ?? null,
      ...(p.url !== undefined ? { url: p.url } : {}),
      ...(p.usesUrl !== undefined ? { usesUrl: p.usesUrl } : {}),
      ...(p.additionalInfo !== undefined ? { additionalInfo: p.additionalInfo } : {}),
    };
  }

  async createPackage(p: NewPackage): Promise<PackageInfo> {
    return ok<PackageInfo>(await this.post('/api/otaPackage', this.packageBody(p)));
  }

  /** `POST /api/otaPackage/{id}?checksumAlgorithm=...` with the bytes as the `file` part. */
  upload(id: string, data: Buffer, o: UploadOptions = {}): Promise<ApiResponse> {
    const q = new URLSearchParams();
    if (o.checksumAlgorithm !== undefined) q.set('checksumAlgorithm', o.checksumAlgorithm);
    if (o.checksum !== undefined) q.set('checksum', o.checksum);
    const qs = q.toString();
    return this.postMultipart(`/api/otaPackage/${id}${qs ? `?${qs}` : ''}`, [filePart(data, o.fileName, o.contentType)]);
  }

  /** A package with `data` uploaded (SHA256), ready to assign. */
  async createPackageWithData(p: NewPackage, data: Buffer = randomBytes(256)): Promise<PackageInfo> {
    const info = await this.createPackage(p);
    return ok<PackageInfo>(await this.upload(info.id.id, data, { checksumAlgorithm: 'SHA256' }));
  }

  async createDevice(body: Record<string, unknown>, accessToken?: string): Promise<DeviceBody> {
    const qs = accessToken === undefined ? '' : `?accessToken=${encodeURIComponent(accessToken)}`;
    return ok<DeviceBody>(await this.post(`/api/device${qs}`, body));
  }
}

export const ref = (entityType: string, id: string): EntityRef => ({ entityType, id });

// ---- the harness -------------------------------------------------------------------------------------

export interface HarnessOptions {
  maxPackageSize?: number;
  maxTenantStorage?: number;
  /** Admin password; `null` starts without one, so the engine generates it. */
  password?: string | null;
  jwtSecret?: string;
  uploadIdleMs?: number;
  /** Reuse a data directory (a restart); it is then not removed by close(). */
  dataDir?: string;
  httpLimits?: EngineOptions['httpLimits'];
  login?: EngineOptions['login'];
  lookupCache?: EngineOptions['lookupCache'];
  /** The default tenant profile's limits when it is first made. */
  tenantLimits?: EngineOptions['tenantLimits'];
  /** The engine's clock and timers (a fake one moves only when told). */
  timers?: EngineOptions['timers'];
  /** `false`: rollouts move only when the test calls `engine.rolloutDriver.tick()`. */
  rolloutTickMs?: EngineOptions['rolloutTickMs'];
}

/** A tenant made through the API as ThingsBoard's sysadmin makes one, with its activated admin logged in. */
export interface ApiTenant {
  tenantId: string;
  email: string;
  password: string;
  admin: ApiClient;
}

export class ApiHarness {
  private closed = false;

  private constructor(
    readonly engine: OtaEngine,
    readonly dataDir: string,
    readonly baseUrl: string,
    readonly password: string,
    readonly admin: ApiClient,
    private readonly ownsDir: boolean,
    /** The PostgreSQL database of the PostgreSQL run; undefined: SQLite in `dataDir`. */
    readonly databaseUrl: string | undefined,
  ) {}

  static async start(o: HarnessOptions = {}): Promise<ApiHarness> {
    const ownsDir = o.dataDir === undefined;
    const dataDir = o.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'ota-api-')));
    const databaseUrl = await databaseUrlFor(dataDir);
    const options: EngineOptions = {
      dataDir,
      ...(databaseUrl ? { databaseUrl } : {}),
      http: { port: 0, host: '127.0.0.1' },
      admin: o.password === null ? {} : { password: o.password ?? ADMIN_PASSWORD },
      sysadmin: { password: SYSADMIN_PASSWORD },
      ...(o.tenantLimits !== undefined ? { tenantLimits: o.tenantLimits } : {}),
      logger: quietLogger,
      ...(o.maxPackageSize !== undefined ? { maxPackageSize: o.maxPackageSize } : {}),
      ...(o.maxTenantStorage !== undefined ? { maxTenantStorage: o.maxTenantStorage } : {}),
      ...(o.jwtSecret !== undefined ? { jwtSecret: o.jwtSecret } : {}),
      ...(o.uploadIdleMs !== undefined ? { uploadIdleMs: o.uploadIdleMs } : {}),
      ...(o.httpLimits !== undefined ? { httpLimits: o.httpLimits } : {}),
      ...(o.login !== undefined ? { login: o.login } : {}),
      ...(o.timers !== undefined ? { timers: o.timers } : {}),
      ...(o.rolloutTickMs !== undefined ? { rolloutTickMs: o.rolloutTickMs } : {}),
      ...(o.lookupCache !== undefined ? { lookupCache: o.lookupCache } : {}),
    };
    let engine: OtaEngine;
    try {
      engine = await OtaEngine.open(options);
    } catch (err) {
      if (ownsDir) await rm(dataDir, { recursive: true, force: true });
      throw err;
    }
    try {
      const address = engine.httpAddress;
      if (!address) throw new Error('engine is not listening');
      const baseUrl = `http://127.0.0.1:${address.port}`;
      const password = o.password === null ? (engine.bootstrap.generatedPassword ?? '') : (o.password ?? ADMIN_PASSWORD);
      const admin = await login(baseUrl, ADMIN_USER, password);
      return new ApiHarness(engine, dataDir, baseUrl, password, admin, ownsDir, databaseUrl);
    } catch (err) {
      await engine.close();
      if (ownsDir) await rm(dataDir, { recursive: true, force: true });
      throw err;
    }
  }

  get port(): number {
    return (this.engine.httpAddress as { port: number }).port;
  }

  /** A client with no token. */
  anonymous(): ApiClient {
    return new ApiClient(this.baseUrl, null);
  }

  login(username: string, password: string): Promise<ApiClient> {
    return login(this.baseUrl, username, password);
  }

  /** A second tenant with its own admin, logged in. */
  async otherTenant(email = `${unique('other')}@x.org`, password = 'pw12345678'): Promise<ApiClient> {
    await this.engine.accounts.createTenant('Other', email, password);
    return this.login(email, password);
  }

  /** The system administrator, logged in. */
  sysadmin(): Promise<ApiClient> {
    return this.login(SYSADMIN_USER, SYSADMIN_PASSWORD);
  }

  /**
   * A tenant created through the REST API: `POST /api/tenant` and `POST /api/user` as the sysadmin,
   * the activation link, `POST /api/noauth/activate`, then the new admin's login.
   */
  async apiTenant(title = unique('tenant'), body: Record<string, unknown> = {}): Promise<ApiTenant> {
    const sys = await this.sysadmin();
    const tenant = ok<{ id: EntityRef }>(await sys.post('/api/tenant', { title, ...body }));
    const email = `${unique('admin')}@example.org`;
    const user = ok<UserBody>(await sys.post('/api/user?sendActivationMail=false', { email, authority: 'TENANT_ADMIN', tenantId: tenant.id }));
    const link = await sys.get(`/api/user/${user.id.id}/activationLink`);
    expect(link.status, link.text).to.equal(200);
    const activateToken = new URL(link.text).searchParams.get('activateToken') as string;
    const password = `pw-${unique('x')}`;
    ok(await this.anonymous().post('/api/noauth/activate', { activateToken, password }));
    return { tenantId: tenant.id.id, email, password, admin: await this.login(email, password) };
  }

  /** How many rows of `table` have `column = value`, read past the engine. */
  async countRows(table: string, column: string, value: string): Promise<number> {
    if (this.databaseUrl) {
      const client = new pg.Client({ connectionString: this.databaseUrl });
      await client.connect();
      try {
        return Number((await client.query(`SELECT count(*) AS n FROM ${table} WHERE ${column}::text = $1`, [value])).rows[0].n);
      } finally {
        await client.end();
      }
    }
    const db = new Database(path.join(this.dataDir, 'ota.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${column} = ?`).get(value) as { n: number }).n;
    } finally {
      db.close();
    }
  }

  get blobsDir(): string {
    return path.join(this.dataDir, 'blobs');
  }

  get tmpDir(): string {
    return path.join(this.dataDir, 'blobs', 'tmp');
  }

  /** Every row of a table, read past the engine from whichever database it runs on. */
  async rows(table: 'users' | 'settings'): Promise<Array<Record<string, unknown>>> {
    if (this.databaseUrl) {
      const client = new pg.Client({ connectionString: this.databaseUrl });
      await client.connect();
      try {
        return (await client.query(`SELECT * FROM ${table}`)).rows;
      } finally {
        await client.end();
      }
    }
    const db = new Database(path.join(this.dataDir, 'ota.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(`SELECT * FROM ${table}`).all() as Array<Record<string, unknown>>;
    } finally {
      db.close();
    }
  }

  /** Stored blobs (not the staging area), as paths relative to blobs/. */
  async blobFiles(): Promise<string[]> {
    const out: string[] = [];
    if (!existsSync(this.blobsDir)) return out;
    for (const entry of await readdir(this.blobsDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name === 'tmp') continue;
      for (const f of await readdir(path.join(this.blobsDir, entry.name))) out.push(`${entry.name}/${f}`);
    }
    return out.sort();
  }

  async tmpFiles(): Promise<string[]> {
    return existsSync(this.tmpDir) ? (await readdir(this.tmpDir)).sort() : [];
  }

  /** Closes the engine and removes the data directory (when the harness made it). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine.close();
    if (this.ownsDir) await Promise.all([rm(this.dataDir, { recursive: true, force: true }), dropDatabaseFor(this.dataDir)]);
  }
}

export async function login(baseUrl: string, username: string, password: string): Promise<ApiClient> {
  const res = await new ApiClient(baseUrl, null).post('/api/auth/login', { username, password });
  const pair = ok<TokenPairBody>(res);
  return new ApiClient(baseUrl, pair.token);
}

/** The path a blob of these bytes has under blobs/ (content addressed by SHA-256). */
export const blobPathOf = (sha256: string): string => `${sha256.slice(0, 2)}/${sha256}`;

// ---- raw HTTP, for bodies fetch cannot shape (no length, cut short) -----------------------------------

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: unknown;
}

export const rawToApi = (r: RawResponse): ApiResponse => {
  const h = new Headers();
  for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string') h.set(k, v);
  return { status: r.status, headers: h, bytes: Buffer.from(r.text), text: r.text, body: r.body };
};

/**
 * Sends a request with node:http, writing `chunks` one by one (chunked transfer encoding unless a
 * Content-Length header is given), and resolves with the response as soon as it arrives — the
 * server may answer (and close) before the whole body is written; write errors after that are
 * expected and ignored.
 */
export function rawRequest(
  port: number,
  opts: { method: string; path: string; headers: Record<string, string>; chunks: readonly Buffer[]; endBody?: boolean },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({ host: '127.0.0.1', port, method: opts.method, path: opts.path, headers: opts.headers, agent: false });
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let body: unknown;
        if ((res.headers['content-type'] ?? '').startsWith('application/json') && text) body = JSON.parse(text);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.flushHeaders();
    const write = async (): Promise<void> => {
      for (const c of opts.chunks) {
        if (answered || req.destroyed) return;
        if (!req.write(c)) {
          await new Promise<void>((r) => {
            const done = (): void => {
              req.off('drain', done).off('close', done);
              r();
            };
            req.on('drain', done).on('close', done);
          });
        }
      }
      if (opts.endBody !== false && !answered && !req.destroyed) req.end();
    };
    void write().catch(() => undefined);
  });
}
