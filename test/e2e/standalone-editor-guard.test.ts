import { expect } from 'chai';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ADMIN_PASSWORD, ADMIN_USER, startServer, stopServer, type Running } from '../support/standalone';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request to the editor from `from` (any 127.x.y.z is this machine's loopback on Linux). */
function request(base: string, method: string, urlPath: string, from = '127.0.0.1', form?: Record<string, string>, headers: Record<string, string> = {}): Promise<Answer> {
  const url = new URL(urlPath, base);
  const body = form ? new URLSearchParams(form).toString() : undefined;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method,
        localAddress: from,
        headers: { ...headers, ...(body ? { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) } : {}) },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const tokenForm = (password: string): Record<string, string> => ({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username: ADMIN_USER, password });

/** The embedded Node-RED of `npm start`, probed as an attacker would (issue 10, item 8). */
describe('npm start: the embedded editor under attack', function () {
  this.timeout(60_000);
  let dataDir: string;
  let server: Running;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-e2e-guard-'));
    server = await startServer(dataDir, { OTA_LOGIN_MAX_FAILURES_PER_ADDRESS: '3' });
  });

  after(async () => {
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it("does not let a stranger's wrong logins lock the admin out (Node-RED alone: after 5, 10 minutes)", async () => {
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push((await request(server.editor, 'POST', '/auth/token', '127.0.0.2', tokenForm(`guess ${i}`))).status);
    expect(answers.slice(0, 3)).to.deep.equal([403, 403, 403]);
    expect(answers.slice(3), 'the guesser is throttled').to.deep.equal([429, 429, 429, 429, 429]);
    const admin = await request(server.editor, 'POST', '/auth/token', '127.0.0.3', tokenForm(ADMIN_PASSWORD));
    expect(admin.status, admin.body).to.equal(200);
    expect(JSON.parse(admin.body)).to.have.property('access_token');
  });

  it('answers with neither X-Powered-By nor Access-Control-Allow-Origin, and forbids framing', async () => {
    for (const [method, p] of [
      ['GET', '/'],
      ['GET', '/auth/login'],
      ['GET', '/flows'],
      ['OPTIONS', '/flows'],
    ] as const) {
      const r = await request(server.editor, method, p, '127.0.0.1', undefined, { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'GET' });
      expect(r.headers, `${method} ${p}`).to.not.have.property('x-powered-by');
      expect(r.headers, `${method} ${p}`).to.not.have.property('access-control-allow-origin');
      expect(r.headers['x-frame-options'], `${method} ${p}`).to.equal('DENY');
      expect(r.headers['content-security-policy'], `${method} ${p}`).to.include("frame-ancestors 'none'");
    }
  });

  it('keeps the data directory and the editor settings owner-only', async () => {
    expect((await stat(dataDir)).mode & 0o777).to.equal(0o700);
    expect((await stat(path.join(dataDir, 'node-red'))).mode & 0o777).to.equal(0o700);
    expect((await stat(path.join(dataDir, 'ota.sqlite'))).mode & 0o777).to.equal(0o600);
  });
});
