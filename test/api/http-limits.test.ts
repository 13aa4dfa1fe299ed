import { expect } from 'chai';
import net from 'node:net';
import { ApiHarness, multipart, filePart, ok, unique, type PackageInfo } from '../support/api-harness';

/** A raw connection to the harness, with what it received and when it closed. */
class RawHttp {
  readonly socket: net.Socket;
  received = '';
  readonly closed: Promise<void>;
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => (this.received += d.toString('latin1')));
    this.socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }
  get open(): boolean {
    return !this.socket.destroyed && !this.socket.readableEnded;
  }
  connected(): Promise<void> {
    return new Promise((resolve) => (this.socket.connecting ? this.socket.once('connect', () => resolve()) : resolve()));
  }
}

/** Header, body and idle timeouts and a connection cap on the OTA HTTP server (issue 10, item 4). */
describe('HTTP server limits', () => {
  let h: ApiHarness;
  const sockets: RawHttp[] = [];
  const raw = (): RawHttp => {
    const r = new RawHttp(h.port);
    sockets.push(r);
    return r;
  };
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.socket.destroy();
    await h?.close();
  });

  it('cuts a login whose body trickles in (Content-Length 1000000, one byte sent)', async () => {
    h = await ApiHarness.start({ httpLimits: { requestTimeoutMs: 300 } });
    const r = raw();
    await r.connected();
    r.socket.write('POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{');
    await r.closed;
    expect(r.received).to.equal('');
  });

  it('cuts a request whose headers never end', async () => {
    h = await ApiHarness.start({ httpLimits: { headersTimeoutMs: 300 } });
    const r = raw();
    await r.connected();
    r.socket.write('GET /api/auth/user HTTP/1.1\r\nHost: x\r\n');
    await r.closed;
    expect(r.received).to.match(/^HTTP\/1\.1 408/);
  });

  // The idle timeout counts a request the server is still working on as no traffic, and the
  // harness's own requests (its login's scrypt, a device created on PostgreSQL) took over 300 ms
  // under load: the idle timeouts below leave them room.
  it('closes a connection with no traffic after the idle timeout', async () => {
    h = await ApiHarness.start({ httpLimits: { idleTimeoutMs: 2000, headersTimeoutMs: 60_000 } });
    const r = raw();
    await r.connected();
    await r.closed;
  });

  it('refuses connections past the cap, and serves again once they close', async () => {
    h = await ApiHarness.start({ httpLimits: { maxConnections: 3 } });
    const server = (h.engine as unknown as { server: net.Server }).server;
    const open = (): Promise<number> => new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    // Each asks something, so that an accepted one answers and a refused one is closed unanswered.
    const tries = Array.from({ length: 5 }, () => raw());
    const outcome = await Promise.all(
      tries.map(
        (s) =>
          new Promise<string>((resolve) => {
            s.socket.write('GET /api/noauth/x HTTP/1.1\r\nHost: x\r\n\r\n');
            s.socket.once('data', () => resolve('served'));
            s.socket.once('close', () => resolve('refused'));
          }),
      ),
    );
    expect(outcome.filter((o) => o === 'refused').length, outcome.join()).to.be.at.least(2);
    expect(await open()).to.be.at.most(3);
    for (const s of tries) s.socket.destroy();
    await Promise.all(tries.map((s) => s.closed));
    expect((await fetch(`${h.baseUrl}/api/noauth/x`)).status).to.equal(404);
  });

  it('keeps a long poll open past the idle timeout, up to its own timeout', async () => {
    h = await ApiHarness.start({ httpLimits: { idleTimeoutMs: 2000 } });
    const token = unique('tok');
    await h.admin.createDevice({ name: unique('poller') }, token);
    const res = await fetch(`${h.baseUrl}/api/v1/${token}/attributes/updates?timeout=3000`);
    expect(res.status).to.equal(408);
  });

  it('does not apply the body deadline to an upload that keeps sending', async () => {
    h = await ApiHarness.start({ httpLimits: { requestTimeoutMs: 200 } });
    const profile = await h.admin.createProfile();
    const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, type: 'FIRMWARE', title: unique('slow'), version: '1' });
    const { body, contentType } = multipart([filePart(Buffer.alloc(30_000, 7))]);
    const r = raw();
    await r.connected();
    r.socket.write(
      `POST /api/otaPackage/${pkg.id.id} HTTP/1.1\r\nHost: x\r\nX-Authorization: Bearer ${h.admin.token}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    );
    // A slow client: three parts, each after a pause longer than the body deadline.
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      r.socket.write(body.subarray(Math.floor((i * body.length) / 3), Math.floor(((i + 1) * body.length) / 3)));
    }
    await r.closed;
    expect(r.received).to.match(/^HTTP\/1\.1 200/);
    const info = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`));
    expect(info.dataSize).to.equal(30_000);
  });
});
