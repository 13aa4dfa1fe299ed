import { expect } from 'chai';
import http from 'node:http';
import { realTimers } from '../../server/timers';
import { ADMIN_USER, ApiHarness, expectError, type ApiResponse } from '../support/api-harness';

/** A login sent from `from` (any 127.x.y.z is this machine's loopback on Linux). */
function loginFrom(h: ApiHarness, from: string, username: string, password: string): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ username, password });
    const req = http.request(
      {
        host: '127.0.0.1',
        port: h.port,
        localAddress: from,
        method: 'POST',
        path: '/api/auth/login',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          const text = bytes.toString('utf8');
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          resolve({ status: res.statusCode ?? 0, headers, bytes, text, body: text ? (JSON.parse(text) as unknown) : undefined });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Password guessing is slowed without letting a stranger lock the admin out (issue 10, item 2). */
describe('Login throttling', () => {
  let h: ApiHarness;
  afterEach(async () => h?.close());

  it('refuses an address after too many wrong passwords with 429 and errorCode 33, even the right one', async () => {
    h = await ApiHarness.start({ login: { maxFailuresPerAddress: 3 } });
    for (let i = 0; i < 3; i++) expectError(await loginFrom(h, '127.0.0.2', ADMIN_USER, `guess ${i}`), 401, 'Invalid username or password', 10);
    expectError(await loginFrom(h, '127.0.0.2', ADMIN_USER, h.password), 429, undefined, 33);
    expectError(await loginFrom(h, '127.0.0.2', 'someone@else.org', 'x'), 429, undefined, 33);
  });

  it("does not let a stranger's wrong passwords lock the admin out of another address", async () => {
    h = await ApiHarness.start({ login: { maxFailuresPerAddress: 3 } });
    for (let i = 0; i < 10; i++) await loginFrom(h, '127.0.0.2', ADMIN_USER, `guess ${i}`);
    expect((await loginFrom(h, '127.0.0.3', ADMIN_USER, h.password)).status).to.equal(200);
  });

  it('stops a guesser spread over many addresses, still letting the admin in from an address it used before', async () => {
    h = await ApiHarness.start({ login: { maxFailuresPerAddress: 3, maxFailuresPerUser: 6 } });
    // The harness logged in from 127.0.0.1: a known address for the admin.
    for (let i = 0; i < 6; i++) expectError(await loginFrom(h, `127.0.1.${i + 1}`, ADMIN_USER, `guess ${i}`), 401, undefined, 10);
    expectError(await loginFrom(h, '127.0.2.1', ADMIN_USER, h.password), 429, undefined, 33);
    expect((await loginFrom(h, '127.0.0.1', ADMIN_USER, h.password)).status).to.equal(200);
    // Other users are not affected.
    expectError(await loginFrom(h, '127.0.2.1', 'other@x.org', 'x'), 401, undefined, 10);
  });

  it('forgets failures once the window has passed', async () => {
    // The engine's clock passes the window when the test moves it: under load, a real 300 ms window
    // ran out during the two slow (scrypt) failures themselves, and the third login got in.
    let skew = 0;
    h = await ApiHarness.start({ login: { maxFailuresPerAddress: 2, windowMs: 60_000 }, timers: { ...realTimers, now: () => Date.now() + skew } });
    for (let i = 0; i < 2; i++) await loginFrom(h, '127.0.0.2', ADMIN_USER, 'wrong');
    expectError(await loginFrom(h, '127.0.0.2', ADMIN_USER, h.password), 429, undefined, 33);
    skew = 60_001;
    expect((await loginFrom(h, '127.0.0.2', ADMIN_USER, h.password)).status).to.equal(200);
  });

  it('checks the password of an unknown user too (same work as a wrong password), through the bounded queue', async () => {
    // One scrypt at a time and one waiting: of three at once, the third is refused, unknown users included.
    h = await ApiHarness.start({ login: { concurrency: 1, queue: 1 } });
    const answers = await Promise.all([1, 2, 3].map((i) => loginFrom(h, `127.0.3.${i}`, `nobody-${i}@x.org`, 'x')));
    expect(answers.map((a) => a.status).sort()).to.deep.equal([401, 401, 429]);
    expectError(answers.find((a) => a.status === 429) as ApiResponse, 429, undefined, 33);
  });

  it('keeps memory bounded: only maxTracked addresses are remembered', async () => {
    h = await ApiHarness.start({ login: { maxFailuresPerAddress: 1, maxTracked: 2 } });
    await loginFrom(h, '127.0.4.1', ADMIN_USER, 'wrong');
    await loginFrom(h, '127.0.4.2', ADMIN_USER, 'wrong');
    await loginFrom(h, '127.0.4.3', ADMIN_USER, 'wrong');
    // The oldest address was forgotten; the newest is still refused.
    expect((await loginFrom(h, '127.0.4.1', ADMIN_USER, h.password)).status).to.equal(200);
    expect((await loginFrom(h, '127.0.4.3', ADMIN_USER, h.password)).status).to.equal(429);
  });
});
