import http from 'node:http';
import https from 'node:https';
import type { RequestHandler } from 'express';

/**
 * What one client can make an HTTP server hold (issue 10, item 4): every server we run (REST,
 * device API and dashboard on the OTA port; the editor of `npm start`) applies these.
 */
export interface HttpServerLimits {
  /** The request line and headers must arrive within this (`OTA_HTTP_HEADERS_TIMEOUT_MS`). */
  headersTimeoutMs: number;
  /**
   * A request body must arrive within this, uploads excepted: they are cut when their sender goes
   * quiet instead, since 2 GB over a slow link take longer (`OTA_HTTP_REQUEST_TIMEOUT_MS`).
   */
  requestTimeoutMs: number;
  /** A connection with no traffic either way is closed (`OTA_HTTP_IDLE_TIMEOUT_MS`); long polls extend it. */
  idleTimeoutMs: number;
  /** Between two requests on a kept-alive connection (`OTA_HTTP_KEEP_ALIVE_TIMEOUT_MS`). */
  keepAliveTimeoutMs: number;
  /** Connections open at once; more are refused at accept (`OTA_HTTP_MAX_CONNECTIONS`). */
  maxConnections: number;
}

export const HTTP_LIMIT_DEFAULTS: HttpServerLimits = {
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 4096,
};

const ENV: Record<keyof HttpServerLimits, string> = {
  headersTimeoutMs: 'OTA_HTTP_HEADERS_TIMEOUT_MS',
  requestTimeoutMs: 'OTA_HTTP_REQUEST_TIMEOUT_MS',
  idleTimeoutMs: 'OTA_HTTP_IDLE_TIMEOUT_MS',
  keepAliveTimeoutMs: 'OTA_HTTP_KEEP_ALIVE_TIMEOUT_MS',
  maxConnections: 'OTA_HTTP_MAX_CONNECTIONS',
};

/** The limits from the environment, each variable a positive integer; the defaults for the rest. */
export function httpLimitsFromEnv(env: NodeJS.ProcessEnv, defaults: HttpServerLimits = HTTP_LIMIT_DEFAULTS): HttpServerLimits {
  const out = { ...defaults };
  for (const key of Object.keys(ENV) as Array<keyof HttpServerLimits>) {
    const raw = env[ENV[key]]?.trim();
    if (!raw) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${ENV[key]} must be a positive integer, not '${raw}'`);
    out[key] = n;
  }
  return out;
}

/** PEM certificate (chain) and private key of an HTTPS server. */
export interface TlsIdentity {
  cert: string | Buffer;
  key: string | Buffer;
}

/**
 * An HTTP server that enforces `limits` (Node checks header timeouts every
 * `connectionsCheckingInterval`); with `tls`, an HTTPS server under the same limits.
 */
export function createLimitedServer(app: http.RequestListener, limits: HttpServerLimits, tls?: TlsIdentity): http.Server | https.Server {
  const options = { connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 2)) };
  const server = tls ? https.createServer({ ...options, cert: tls.cert, key: tls.key }, app) : http.createServer(options, app);
  server.headersTimeout = limits.headersTimeoutMs;
  // The body deadline is bodyDeadline's, per request, so uploads can be excepted.
  server.requestTimeout = 0;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.timeout = limits.idleTimeoutMs;
  server.maxConnections = limits.maxConnections;
  return server;
}

/**
 * Cuts a request whose body has not arrived within `ms` (a slow-body attack: `Content-Length:
 * 1000000`, a byte every 20 s). `except` names requests that stream long bodies under a deadline of
 * their own (multipart uploads and their idle timeout).
 */
export function bodyDeadline(ms: number, except: (req: http.IncomingMessage) => boolean = () => false): RequestHandler {
  return (req, _res, next) => {
    if (!req.complete && !except(req)) {
      const timer = setTimeout(() => {
        if (!req.complete) req.socket.destroy();
      }, ms);
      timer.unref();
      const clear = (): void => clearTimeout(timer);
      req.once('end', clear);
      req.once('close', clear);
    }
    next();
  };
}

/** An authenticated multipart upload: POST /api/otaPackage[/{id}] with a multipart body. */
export const isPackageUpload = (req: http.IncomingMessage): boolean =>
  req.method === 'POST' && /^\/api\/otaPackage(\/[^/?]+)?(\?|$)/.test(req.url ?? '') && /^multipart\/form-data/i.test(req.headers['content-type'] ?? '');
