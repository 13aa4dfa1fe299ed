/**
 * The REST API (admin, telemetry, dashboard and the device HTTP API) under property-based fuzzing:
 * paths from every route with real, random and hostile ids; query strings with hostile numbers,
 * repeats and nested keys; hostile headers; JSON, near-valid, binary and multipart bodies. Every
 * answer must be below 500, every refused one must leave the stored state as it was, and every
 * admin error must be ThingsBoard's error JSON.
 */
import fc from 'fast-check';
import http from 'node:http';
import { count, newReport, note, type FuzzReport } from './report';
import type { FuzzTarget } from './target';

const ROUTES = [
  'POST /api/auth/login',
  'POST /api/auth/token',
  'GET /api/auth/user',
  'POST /api/auth/changePassword',
  'POST /api/otaPackage',
  'POST /api/otaPackage/{id}',
  'GET /api/otaPackage/{id}',
  'GET /api/otaPackage/info/{id}',
  'GET /api/otaPackage/{id}/download',
  'GET /api/otaPackages',
  'GET /api/otaPackages/{id}/{type}',
  'DELETE /api/otaPackage/{id}',
  'POST /api/deviceProfile',
  'POST /api/deviceProfile/{id}',
  'POST /api/deviceProfile/{id}/default',
  'GET /api/deviceProfile/{id}',
  'GET /api/deviceProfiles',
  'DELETE /api/deviceProfile/{id}',
  'POST /api/device',
  'POST /api/device/{id}',
  'GET /api/device/{id}',
  'GET /api/device/{id}/credentials',
  'POST /api/device/credentials',
  'GET /api/tenant/devices',
  'DELETE /api/device/{id}',
  'GET /api/plugins/telemetry/DEVICE/{id}/values/timeseries',
  'GET /api/ota/endpoints',
  'GET /api/ota/metrics',
  'GET /api/ota/devices',
  'GET /api/ota/failures',
  'GET /api/ota/devices/{id}',
  'GET /api/ota/devices/{id}/history',
  'POST /api/ota/devices/{id}/retry',
  'GET /api/ota/distribution',
  'POST /api/ota/events/ticket',
  'GET /api/ota/events',
  'GET /metrics',
  'GET /dashboard/{id}',
  'POST /api/v1/{token}/telemetry',
  'POST /api/v1/{token}/attributes',
  'GET /api/v1/{token}/attributes',
  'GET /api/v1/{token}/attributes/updates',
  'GET /api/v1/{token}/firmware',
  'HEAD /api/v1/{token}/firmware',
  'GET /api/v1/{token}/software',
  // Tenants and users (issue 10): the fuzzer's tenant admin is refused the sysadmin's routes.
  'POST /api/tenant',
  'GET /api/tenant/{id}',
  'GET /api/tenants',
  'DELETE /api/tenant/{id}',
  'POST /api/tenantProfile',
  'GET /api/tenantProfile/{id}',
  'GET /api/tenantProfiles',
  'POST /api/user',
  'GET /api/user/{id}',
  'GET /api/user/{id}/activationLink',
  'GET /api/tenant/{id}/users',
  'GET /api/users',
  'POST /api/noauth/activate',
];

const QUERY_KEYS = [
  'page',
  'pageSize',
  'textSearch',
  'sortProperty',
  'sortOrder',
  'type',
  'deviceName',
  'keys',
  'startTs',
  'endTs',
  'limit',
  'orderBy',
  'useStrictDataTypes',
  'checksumAlgorithm',
  'checksum',
  'accessToken',
  'title',
  'version',
  'size',
  'chunk',
  'timeout',
  'clientKeys',
  'sharedKeys',
  'ticket',
  'state',
];
const HOSTILE = [
  '9223372036854775807',
  '-1',
  '0',
  '0x1',
  '1e3',
  'NaN',
  '',
  ' ',
  '%00',
  '..%2f..%2f',
  '2147483648',
  '1.5',
  'SHA256',
  'ASC',
  'FIRMWARE',
  'null',
  '[]',
  '{}',
  '\u0000',
  'é',
  '\ud83d\ude00',
];
const BODY_KEYS = [
  'username',
  'password',
  'refreshToken',
  'name',
  'title',
  'version',
  'type',
  'tag',
  'url',
  'id',
  'deviceProfileId',
  'firmwareId',
  'softwareId',
  'deviceId',
  'credentialsId',
  'credentialsType',
  'checksum',
  'checksumAlgorithm',
  'dataSize',
  'additionalInfo',
  'currentPassword',
  'newPassword',
  'ts',
  'values',
  'fw_state',
  'activateToken',
  'email',
  'authority',
  'tenantId',
  'tenantProfileId',
  'profileData',
];

export interface RestInput {
  method: string;
  path: string;
  auth: 'valid' | 'none' | 'garbage' | 'alg-none' | 'truncated';
  headers: Record<string, string>;
  body: Buffer | null;
}

function arbitraries(t: FuzzTarget): fc.Arbitrary<RestInput> {
  const ids = [t.profile.id.id, t.pkg.id.id, t.device.id.id];
  const segment = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...ids) },
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE).map(encodeURIComponent) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40, unit: 'binary' }).map(encodeURIComponent) },
    { weight: 1, arbitrary: fc.constantFrom('FIRMWARE', 'SOFTWARE', 'firmware', 'x') },
  );
  const token = fc.oneof({ weight: 5, arbitrary: fc.constant('fuzz-device-token') }, { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map(encodeURIComponent) });
  const value = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ maxLength: 30 }), fc.integer().map(String), fc.constantFrom(...ids));
  const encode = fc.constantFrom<(s: string) => string>(encodeURIComponent, (s) => s.replace(/[#&?\s]/g, ''));
  const query = fc
    .array(fc.tuple(fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.constantFrom('keys[a]', 'page[]', '__proto__', 'constructor')), value, encode), { maxLength: 6 })
    .map((pairs) => pairs.map(([k, v, enc]) => `${k}=${enc(v)}`).join('&'));
  const path = fc.tuple(fc.constantFrom(...ROUTES), fc.array(segment, { minLength: 2, maxLength: 2 }), token, query).map(([route, segs, tok, q]) => {
    const [method, template] = route.split(' ') as [string, string];
    let i = 0;
    const p = template.replace('{token}', tok).replace(/\{\w+\}/g, () => segs[i++] ?? '');
    return { method, path: q ? `${p}?${q}` : p };
  });
  const nearValid = fc.dictionary(
    fc.constantFrom(...BODY_KEYS),
    fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ id: fc.oneof(fc.constantFrom(...ids), fc.string()), entityType: fc.string() })),
    { maxKeys: 6 },
  );
  const part = fc.record({
    name: fc.oneof(fc.constantFrom('file', 'title', 'version', 'type', 'checksum', 'checksumAlgorithm', 'deviceProfileId', 'description', 'tag'), fc.string({ maxLength: 10 })),
    fileName: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    data: fc.oneof(
      fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
      fc.constantFrom(...HOSTILE).map((s) => Buffer.from(s)),
    ),
  });
  const multipartBody = fc.tuple(fc.array(part, { maxLength: 5 }), fc.boolean(), fc.nat({ max: 100 })).map(([parts, close, cut]) => {
    const chunks = parts.map((p) =>
      Buffer.concat([
        Buffer.from(
          `--fuzzB\r\nContent-Disposition: form-data; name="${p.name.replace(/["\r\n]/g, '')}"${p.fileName !== undefined ? `; filename="${p.fileName.replace(/["\r\n]/g, '')}"` : ''}\r\n\r\n`,
        ),
        p.data,
        Buffer.from('\r\n'),
      ]),
    );
    const whole = Buffer.concat([...chunks, Buffer.from(close ? '--fuzzB--\r\n' : '')]);
    return cut > 90 ? whole.subarray(0, Math.floor((whole.length * (cut - 90)) / 10)) : whole;
  });
  const body = fc.oneof(
    { weight: 2, arbitrary: fc.constant(null) },
    { weight: 3, arbitrary: nearValid.map((o) => Buffer.from(JSON.stringify(o))) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.constantFrom('{"a":', '{"__proto__":{"x":1}}', '[', '"', '{"username":"tenant@thingsboard.org","password":null}').map((s) => Buffer.from(s)) },
    { weight: 3, arbitrary: multipartBody },
  );
  const contentType = fc.constantFrom(
    'application/json',
    'multipart/form-data; boundary=fuzzB',
    'multipart/form-data',
    'text/plain',
    'application/json; charset=utf-16',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=',
    '',
  );
  const extra = fc.dictionary(
    fc.constantFrom('range', 'if-none-match', 'content-encoding', 'accept', 'x-forwarded-for', 'transfer-encoding-hint', 'accept-encoding'),
    fc.oneof(
      fc.constantFrom('bytes=0-1', 'bytes=-0', 'bytes=9223372036854775807-', 'bytes=0-1,2-3', '*', 'gzip', 'deflate', 'br', 'identity', '"x"'),
      fc.string({ maxLength: 20 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
    ),
    { maxKeys: 3 },
  );
  return fc
    .record({
      route: path,
      auth: fc.constantFrom<RestInput['auth']>('valid', 'valid', 'valid', 'none', 'garbage', 'alg-none', 'truncated'),
      contentType,
      extra,
      body,
    })
    .map(({ route, auth, contentType: ct, extra: ex, body: b }) => {
      const headers: Record<string, string> = { ...ex };
      delete headers['transfer-encoding-hint'];
      if (ct) headers['content-type'] = ct;
      return { method: route.method, path: route.path, auth, headers, body: b };
    });
}

function authHeader(t: FuzzTarget, auth: RestInput['auth']): string | null {
  const [head, body] = t.token.split('.') as [string, string];
  switch (auth) {
    case 'valid':
      return `Bearer ${t.token}`;
    case 'none':
      return null;
    case 'garbage':
      return 'Bearer x.y.z';
    case 'alg-none':
      return `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.${body}.`;
    case 'truncated':
      return `Bearer ${head}.${body}`;
  }
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

function send(t: FuzzTarget, agent: http.Agent, input: RestInput): Promise<Answer | 'timeout' | 'reset'> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { ...input.headers };
    const auth = authHeader(t, input.auth);
    if (auth) headers['x-authorization'] = auth;
    if (input.body) headers['content-length'] = String(input.body.length);
    let req: http.ClientRequest;
    try {
      req = http.request({ host: '127.0.0.1', port: t.httpPort, method: input.method, path: input.path, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size < 100_000) chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', () => resolve('reset'));
      });
    } catch {
      // A path or header Node's client itself refuses to send: nothing reached the server.
      return resolve('reset');
    }
    // Streams (the live events, long polls) are cut by the client: not a failure.
    const timer = setTimeout(() => {
      req.destroy();
      resolve('timeout');
    }, 250);
    req.on('error', () => {
      clearTimeout(timer);
      resolve('reset');
    });
    req.end(input.body ?? undefined);
  });
}

const describeInput = (i: RestInput): string =>
  `${i.method} ${i.path} auth=${i.auth} headers=${JSON.stringify(i.headers)} body=${i.body ? JSON.stringify(i.body.subarray(0, 300).toString('latin1')) : 'none'}`;

/** `runs` inputs, one at a time (a refused one is checked against the state just before it). */
export async function fuzzRest(t: FuzzTarget, runs: number, seed: number): Promise<FuzzReport> {
  const report = newReport('REST + device HTTP API');
  const started = Date.now();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const arb = arbitraries(t);
  const batch = 500;
  for (let done = 0; done < runs; done += batch) {
    for (const input of fc.sample(arb, { numRuns: Math.min(batch, runs - done), seed: seed + done })) {
      const before = t.fingerprint();
      const answer = await send(t, agent, input);
      report.inputs += 1;
      if (answer === 'timeout' || answer === 'reset') {
        count(report, answer);
        continue;
      }
      count(report, `${Math.floor(answer.status / 100)}xx`);
      if (answer.status >= 500) note(report.serverErrors, `${answer.status} ${describeInput(input)} -> ${answer.body.slice(0, 200)}`);
      if (answer.status >= 400 && answer.status < 500) {
        if (t.fingerprint() !== before) note(report.refusedButChanged, `${answer.status} ${describeInput(input)}`);
        const admin = input.path.startsWith('/api/') && !input.path.startsWith('/api/v1/');
        if (admin && answer.contentType.startsWith('application/json') && input.method !== 'HEAD') {
          const shape = safeJson(answer.body);
          if (!shape || !['status', 'message', 'errorCode', 'timestamp'].every((k) => k in shape))
            note(report.problems, `not ThingsBoard's error JSON: ${answer.body.slice(0, 200)} for ${describeInput(input)}`);
        }
      }
    }
  }
  agent.destroy();
  const staged = await t.stagedFiles();
  if (staged.length) note(report.problems, `files left in the staging area: ${staged.join(', ')}`);
  report.ms = Date.now() - started;
  return report;
}

function safeJson(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
