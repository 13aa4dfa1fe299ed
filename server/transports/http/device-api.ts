import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { AttributeMap } from '../../store/attributes';
import type { DeviceContext } from '../device-context';
import type { Device } from '../../store/devices';
import { chunkRange } from '../firmware-download';
import type { HttpDeviceSessions } from './http-transport';
import { byteRange } from './byte-range';
import type { OtaPackageType } from '../../store/ota-packages';
import { parseTelemetry } from '../../store/telemetry';
import { isStorageFull } from '../../errors';
import { credentialsChanged } from '../../devices/device-revocations';
import type { ProvisionRequest } from '../../devices/device-provisioning';
import type { BlobReader } from '../../store/blob-reader';
import type { PackagePages } from '../package-pages';

/**
 * A download answer this big or smaller (a chunk, a small package) is cut from the package pages
 * in memory (read once, on a shared file handle, for every device downloading the same package) and
 * sent in one write; larger ones stream from disk. A stream per chunk would cost an open, a read and
 * a close on the thread pool for each request.
 */
const INLINE_ANSWER = 1024 * 1024;

/** The pages HTTP answers are cut from: 64 KiB, the chunk size devices ask for most. */
export const HTTP_PAGE_SIZE = 64 * 1024;

/** Bytes of package pages the HTTP device API keeps (`OTA_HTTP_PAGE_CACHE_BYTES`, default 32 MiB; 0: none). */
export function httpPageCacheBytesFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.OTA_HTTP_PAGE_CACHE_BYTES?.trim();
  if (!raw) return 32 * 1024 * 1024;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`OTA_HTTP_PAGE_CACHE_BYTES must be a non-negative integer, not '${raw}'`);
  return n;
}

/** A transport's context (device-context.ts) plus the long-poll sessions of the HTTP transport. */
export interface DeviceApiDeps extends Omit<DeviceContext, 'logger'> {
  sessions: HttpDeviceSessions;
  /** ThingsBoard's `transport.http.request_timeout` (60 s) and Tomcat's cap (300 s). */
  longPoll?: { defaultMs: number; maxMs: number };
  /** Chunk reads of package files; its owner closes it. */
  reader: BlobReader;
  /** Package pages in memory, over `reader`. */
  pages: PackagePages;
}

/** The Express router of the device API, and its download route for the raw request (`answerDownload`). */
export interface DeviceApi {
  router: Router;
  /** Answers a plain download request and says true; false: not one, for Express to route. */
  answerDownload(req: IncomingMessage, res: ServerResponse, counted: (path: string, status: number) => void): boolean;
}

type DeviceHandler = (req: Request, res: Response, device: Device) => Promise<unknown>;

/**
 * Comma-separated or repeated query keys, as Spring joins them (reference §4). An empty list is
 * no list: ThingsBoard treats `sharedKeys=` as not given (§3.2 "both absent/empty → all").
 */
function keyList(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const keys = (Array.isArray(v) ? v : [v])
    .flatMap((x) => String(x).split(','))
    .map((k) => k.trim())
    .filter((k) => k !== '');
  return keys.length ? keys : undefined;
}

/**
 * A non-negative integer query parameter: absent or empty is 0 (ThingsBoard's `defaultValue =
 * "0"`); anything but plain decimal digits (`0x1`, ` `, `1e3`, a repeated parameter) or a number
 * past 2^31-1 (Java's int) is null, for a 400. `Number()` alone would read `0x1` as 1 and ` ` as 0.
 */
function decimalParam(v: unknown): number | null {
  if (v === undefined || v === '') return 0;
  if (typeof v !== 'string' || !/^[0-9]{1,10}$/.test(v)) return null;
  const n = Number(v);
  return n <= 0x7fffffff ? n : null;
}

/**
 * ThingsBoard's HTTP device API under `/api/v1/{token}` (reference §4), plus what its users ask
 * for on downloads: Range requests (206), an ETag from the checksum with If-None-Match (304), HEAD.
 */
export function createDeviceApi(deps: DeviceApiDeps): DeviceApi {
  const api = express.Router();
  const longPoll = deps.longPoll ?? { defaultMs: 60_000, maxMs: 300_000 };
  const json = express.json({ limit: '1mb', type: () => true });
  // The body is read only once the token is known: an unknown token is 401 whatever the body holds.
  const readJson = (req: Request, res: Response): Promise<unknown> =>
    new Promise((resolve, reject) => json(req, res, (err?: unknown) => (err ? reject(err) : resolve(req.body as unknown))));

  // A device deleted while long-polling: ThingsBoard answers its waiting requests 403 (reference §4).
  deps.events.on('deviceDeleted', ({ device }) => deps.sessions.deviceDeleted(device.id));
  // A new token ends the polls made with the old one, as it ends MQTT sessions (issue 10, item 1).
  deps.events.on('deviceSaved', ({ before, after }) => {
    if (before && credentialsChanged(before, after)) deps.sessions.end(after.id, 'credentials-changed');
  });
  // Either, made through another instance sharing the store (issue 9).
  deps.events.on('deviceRevoked', ({ deviceId, reason }) => deps.sessions.end(deviceId, reason));
  deps.events.on('packageDeleted', ({ pkg }) => {
    if (!pkg.blobSha256) return;
    deps.reader.forget(pkg.blobSha256);
    deps.pages.clear();
  });

  // An unknown token is 401 with an empty body on every endpoint.
  const device = (h: DeviceHandler) => (req: Request, res: Response, next: NextFunction) => {
    deps.lookups
      .deviceByToken(String(req.params.token))
      .then((d) => (d ? h(req, res, d) : res.status(401).end()))
      .catch(next);
  };

  // ThingsBoard's `POST /api/v1/provision`: always 200, the outcome is the body's `status`.
  api.post('/provision', (req, res, next) => {
    const provisioning = deps.provisioning;
    readJson(req, res)
      .then(async (body) => {
        if (!provisioning) return res.json({ status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' });
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return res.status(400).end();
        return res.json(await provisioning.provision(body as ProvisionRequest));
      })
      .catch(next);
  });

  const uplinkBase = (d: Device) => ({ tenantId: d.tenantId, deviceId: d.id, deviceName: d.name, transport: 'HTTP' as const, ts: Date.now() });

  api.post(
    '/:token/telemetry',
    device(async (req, res, d) => {
      const entries = parseTelemetry(await readJson(req, res), Date.now());
      if (!entries) return res.status(400).end();
      await deps.telemetry.save(d.id, entries);
      deps.events.emit('uplink', { ...uplinkBase(d), kind: 'telemetry', entries });
      res.status(200).end();
    }),
  );

  api.post(
    '/:token/attributes',
    device(async (req, res, d) => {
      const body = await readJson(req, res);
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return res.status(400).end();
      await deps.attributes.save(d.id, 'CLIENT', body as AttributeMap, Date.now());
      deps.events.emit('uplink', { ...uplinkBase(d), kind: 'attributes', attributes: body as AttributeMap });
      res.status(200).end();
    }),
  );

  api.get(
    '/:token/attributes/updates',
    device(async (req, res, d) => {
      const asked = Number(req.query.timeout ?? 0);
      const timeout = !Number.isFinite(asked) || asked <= 0 ? longPoll.defaultMs : Math.min(asked, longPoll.maxMs);
      let timer: NodeJS.Timeout | undefined;
      const cancel = deps.sessions.wait(
        d,
        (update) => {
          clearTimeout(timer);
          res.status(200).json(update);
        },
        (reason) => {
          clearTimeout(timer);
          // The old token is no longer a device's: what an unknown token gets (401, empty body).
          if (reason === 'credentials-changed') res.status(401).end();
          else res.status(403).type('text/plain').send('Device was deleted!');
        },
      );
      timer = setTimeout(() => {
        cancel();
        res.status(408).end();
      }, timeout);
      // A poll is silent by design: the server's idle timeout must not cut it before its own.
      req.setTimeout(timeout + 10_000);
      res.on('close', () => {
        clearTimeout(timer);
        cancel();
      });
    }),
  );

  api.get(
    '/:token/attributes',
    device(async (req, res, d) => {
      const clientKeys = keyList(req.query.clientKeys);
      const sharedKeys = keyList(req.query.sharedKeys);
      const all = clientKeys === undefined && sharedKeys === undefined;
      const out: Record<string, AttributeMap> = {};
      if (all || clientKeys !== undefined) {
        const client = await deps.attributes.get(d.id, 'CLIENT', all ? undefined : clientKeys);
        if (Object.keys(client).length) out.client = client;
      }
      if (all || sharedKeys !== undefined) {
        const shared = await deps.attributes.get(d.id, 'SHARED', all ? undefined : sharedKeys);
        if (Object.keys(shared).length) out.shared = shared;
      }
      res.status(200).json(out);
    }),
  );

  for (const [path, type] of [
    ['firmware', 'FIRMWARE'],
    ['software', 'SOFTWARE'],
  ] as const) {
    const handler = device((req, res, d) => download(req, res, req.query, d, type));
    api.get(`/:token/${path}`, handler);
    api.head(`/:token/${path}`, handler);
  }

  async function download(req: IncomingMessage, res: ServerResponse, query: Query, d: Device, type: OtaPackageType): Promise<void> {
    const title = query.title;
    const version = query.version;
    if (typeof title !== 'string' || typeof version !== 'string') return answer(res, 400);
    const found = await deps.lookups.packageOf(d.tenantId, d.id, type);
    if ('error' in found) return answer(res, 404);
    const { pkg } = found;
    // Case-sensitive, as ThingsBoard: the device must ask for what it was told.
    if (pkg.title !== title || pkg.version !== version) return answer(res, 400);
    const size = decimalParam(query.size);
    const chunk = decimalParam(query.chunk);
    if (size === null || chunk === null) return answer(res, 400);
    const slice = chunkRange(pkg.dataSize, size, chunk);
    const fileName = (pkg.fileName ?? `${pkg.title}-${pkg.version}`).replace(/[^\x20-\x7e]|["\\]/g, '_');
    const etag = `"${pkg.checksum ?? pkg.blobSha256}${size > 0 ? `-${size}-${chunk}` : ''}"`;

    res.setHeader('Content-Disposition', `attachment;filename=${fileName}`);
    res.setHeader('x-filename', fileName);
    res.setHeader('Content-Type', pkg.contentType || 'application/octet-stream');
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('ETag', etag);
    if (req.headers['if-none-match']?.split(',').some((t) => t.trim() === etag || t.trim() === '*')) return answer(res, 304);

    let start = slice.start;
    let end = slice.end; // exclusive
    const range = byteRange(req.headers.range, end - start);
    if (range === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${end - start}`);
      return answer(res, 416);
    }
    if (range) {
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${end - start}`);
      end = slice.start + range.end + 1;
      start = slice.start + range.start;
    } else {
      res.statusCode = 200;
    }
    res.setHeader('Content-Length', String(end - start));
    if (req.method === 'HEAD' || end === start) return void res.end();
    if (end - start <= INLINE_ANSWER) res.end(await deps.pages.read(pkg.blobSha256, pkg.dataSize, start, end));
    else await pipeline(deps.blobs.read(pkg.blobSha256, { start, end: end - 1 }), res);
    deps.events.emit('uplink', { ...uplinkBase(d), kind: 'download', type, packageId: pkg.id, bytes: end - start, offset: start, size: pkg.dataSize });
  }

  api.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => failed(res, err));

  /**
   * The download route answered on the raw request, before Express: a device fetching 64 KiB
   * chunks makes thousands of requests, and Express's router, query parser and the middleware of
   * every other route cost more per request than the answer itself (issue 9's download benchmark).
   * Only a plain request is taken: GET or HEAD of exactly `/api/v1/{token}/firmware|software?query`,
   * no body, a query of plain `key=value` pairs each named once, nothing escaped in the token.
   * Anything else (a repeated or bracketed key, a trailing slash, another letter case) goes to the
   * Express route, which answers it as before; both run `download`. `counted` is told of an error
   * status, as the dashboard's counter of every route's errors would be.
   */
  const answerDownload = (req: IncomingMessage, res: ServerResponse, counted: (path: string, status: number) => void): boolean => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const m = DOWNLOAD_PATH.exec(req.url ?? '');
    if (!m || req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0') return false;
    const query = plainQuery(m[3] as string);
    if (!query) return false;
    const type: OtaPackageType = m[2] === 'firmware' ? 'FIRMWARE' : 'SOFTWARE';
    deps.lookups
      .deviceByToken(m[1] as string)
      .then((d) => (d ? download(req, res, query, d, type) : answer(res, 401)))
      .catch((err: unknown) => failed(res, err))
      .finally(() => {
        if (res.statusCode >= 400) counted(req.url ?? '', res.statusCode);
      });
    return true;
  };

  return { router: api, answerDownload };
}

/** A download request the raw dispatcher takes: token, `firmware` or `software`, the query. */
const DOWNLOAD_PATH = /^\/api\/v1\/([^/?%#]+)\/(firmware|software)\?([^#]*)$/;

type Query = Record<string, unknown>;

/**
 * `key=value&...` as Express's parser (qs) reads it when it is that simple: `+` is a space, escapes
 * decoded. Null (then Express parses it) for a bracket, a repeated key or an escape that does not
 * decode, where qs makes arrays or objects or keeps the text as it was.
 */
function plainQuery(text: string): Query | null {
  if (text.includes('[') || text.includes(']')) return null;
  const query: Query = Object.create(null) as Query;
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
      value = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '));
    } catch {
      return null;
    }
    if (key in query || key === '__proto__') return null;
    query[key] = value;
  }
  return query;
}

/** An answer with no body. */
function answer(res: ServerResponse, status: number): void {
  res.statusCode = status;
  res.end();
}

/** A failed request: its own status if it carries one (a body parser's 413), 507 when storage is full, else 500. */
function failed(res: ServerResponse, err: unknown): void {
  if (res.headersSent) return void res.destroy();
  const status = typeof err === 'object' && err !== null && 'status' in err && typeof err.status === 'number' ? err.status : isStorageFull(err) ? 507 : 500;
  answer(res, status >= 400 && status < 600 ? status : 500);
}
