import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { ApiHarness, filePart, multipart } from '../support/api-harness';
import { eventually } from '../support/eventually';

describe('an upload whose sender goes silent', () => {
  let h: ApiHarness;

  before(async () => {
    h = await ApiHarness.start({ uploadIdleMs: 300 });
  });
  after(async () => {
    await h.close();
  });

  it('is cut after the idle time, leaving no staged file and no data', async () => {
    const profile = (await h.admin.request('GET', '/api/deviceProfiles?pageSize=1&page=0')).body as { data: Array<{ id: { id: string } }> };
    const pkg = await h.admin.createPackage({ deviceProfileId: profile.data[0]!.id.id });
    const mp = multipart([filePart(randomBytes(64 * 1024))]);
    const socket = net.connect(h.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', () => undefined);
    socket.write(
      [
        `POST /api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256 HTTP/1.1`,
        `Host: 127.0.0.1:${h.port}`,
        `X-Authorization: Bearer ${h.admin.token as string}`,
        `Content-Type: ${mp.contentType}`,
        `Content-Length: ${mp.body.length}`,
        '',
        '',
      ].join('\r\n'),
    );
    socket.write(mp.body.subarray(0, mp.body.length / 2));
    await eventually(async () => (await h.tmpFiles()).length > 0, 'the upload to be staged', { timeoutMs: 5000 });
    // Silence: the server closes the connection by itself.
    await closed;
    await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
    const info = (await h.admin.request('GET', `/api/otaPackage/info/${pkg.id.id}`)).body as { hasData: boolean };
    expect(info.hasData).to.equal(false);
  });
});
