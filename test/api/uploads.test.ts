import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { checksumOf } from '../../server/packages/checksum';
import {
  ApiHarness,
  blobPathOf,
  expectError,
  filePart,
  multipart,
  ok,
  rawRequest,
  rawToApi,
  unique,
  type ApiClient,
  type DeviceProfileBody,
  type PackageInfo,
  type PageData,
} from '../support/api-harness';
import { eventually } from '../support/eventually';

const KiB = 1024;
const MAX = 64 * KiB;

describe('admin API: package bytes on disk', () => {
  let h: ApiHarness;
  let profile: DeviceProfileBody;
  beforeEach(async () => {
    h = await ApiHarness.start({ maxPackageSize: MAX });
    profile = await h.admin.createProfile();
  });
  afterEach(async () => h?.close());

  const hasData = async (id: string, client: ApiClient = h.admin): Promise<boolean> => ok<PackageInfo>(await client.get(`/api/otaPackage/info/${id}`)).hasData;

  /** Nothing stored and nothing staged: what every refused upload must leave behind. */
  const expectNothingOnDisk = async (): Promise<void> => {
    expect(await h.blobFiles(), 'files under blobs/').to.deep.equal([]);
    expect(await h.tmpFiles(), 'files under blobs/tmp').to.deep.equal([]);
  };

  const packageCount = async (): Promise<number> => ok<PageData<PackageInfo>>(await h.admin.get('/api/otaPackages?pageSize=1&page=0')).totalElements;

  describe('deduplication', () => {
    it('stores identical bytes of two packages once, under their SHA-256', async () => {
      const bytes = randomBytes(5000);
      await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, type: 'SOFTWARE' }, bytes);
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(checksumOf('SHA256', bytes))]);
      expect(await h.tmpFiles()).to.deep.equal([]);
    });

    it('stores different bytes as different files', async () => {
      const a = randomBytes(100);
      const b = randomBytes(100);
      await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, a);
      await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, b);
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(checksumOf('SHA256', a)), blobPathOf(checksumOf('SHA256', b))].sort());
    });

    it('removes a shared blob only when its last package is deleted', async () => {
      const bytes = randomBytes(5000);
      const first = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      const second = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      ok(await h.admin.delete(`/api/otaPackage/${first.id.id}`));
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(checksumOf('SHA256', bytes))]);
      const download = await h.admin.get(`/api/otaPackage/${second.id.id}/download`);
      expect(download.bytes.equals(bytes)).to.equal(true);
      ok(await h.admin.delete(`/api/otaPackage/${second.id.id}`));
      await expectNothingOnDisk();
    });

    it('keeps the blob when a delete is refused because a device uses the package', async () => {
      const bytes = randomBytes(100);
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, firmwareId: pkg.id });
      expectError(await h.admin.delete(`/api/otaPackage/${pkg.id.id}`), 400, 'The otaPackage referenced by the devices cannot be deleted!', 31);
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(checksumOf('SHA256', bytes))]);
    });
  });

  describe('refused uploads leave nothing behind', () => {
    it('a wrong checksum', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.upload(pkg.id.id, randomBytes(2000), { checksumAlgorithm: 'SHA256', checksum: 'ab'.repeat(32) }), 400, 'Wrong otaPackage file!', 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('a wrong checksum sent as a field after the file', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await h.admin.postMultipart(`/api/otaPackage/${pkg.id.id}`, [
        filePart(randomBytes(2000)),
        { name: 'checksumAlgorithm', value: 'MD5' },
        { name: 'checksum', value: '0'.repeat(32) },
      ]);
      expectError(res, 400, 'Wrong otaPackage file!', 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('an unknown algorithm sent as a field after the file', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await h.admin.postMultipart(`/api/otaPackage/${pkg.id.id}`, [filePart(randomBytes(2000)), { name: 'checksumAlgorithm', value: 'SHA1' }]);
      expectError(res, 400, /ChecksumAlgorithm\.SHA1/, 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('a missing file part', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await h.admin.postMultipart(`/api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256`, [
        { name: 'checksum', value: 'ab' },
        { name: 'notfile', fileName: 'x.bin', contentType: 'application/octet-stream', data: randomBytes(100) },
      ]);
      expectError(res, 400, "Required request part 'file' is not present", 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('a malformed multipart body', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const mp = multipart([filePart(randomBytes(2000))]);
      const truncated = mp.body.subarray(0, mp.body.length - 40); // no closing boundary
      const res = await h.admin.request('POST', `/api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256`, { body: truncated, headers: { 'Content-Type': mp.contentType } });
      expectError(res, 400, undefined, 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      await expectNothingOnDisk();
    });

    it('a package of another tenant', async () => {
      const other = await h.otherTenant();
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await other.upload(pkg.id.id, randomBytes(2000), { checksumAlgorithm: 'SHA256' });
      expectError(res, 403, "You don't have permission to perform this operation!", 20);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('a one-request multipart create with a non-existent profile', async () => {
      const res = await h.admin.postMultipart('/api/otaPackage', [
        { name: 'title', value: unique('t') },
        { name: 'version', value: '1' },
        { name: 'deviceProfileId', value: '3f1e5a5c-0000-4000-8000-000000000099' },
        { name: 'type', value: 'FIRMWARE' },
        filePart(randomBytes(2000)),
      ]);
      expectError(res, 400, 'OtaPackage is referencing to non-existent device profile!', 31);
      expect(await packageCount()).to.equal(0);
      await expectNothingOnDisk();
    });

    it('a one-request multipart create with a wrong checksum', async () => {
      const res = await h.admin.postMultipart('/api/otaPackage', [
        { name: 'title', value: unique('t') },
        { name: 'version', value: '1' },
        { name: 'deviceProfileId', value: profile.id.id },
        { name: 'type', value: 'FIRMWARE' },
        filePart(randomBytes(2000)),
        { name: 'checksumAlgorithm', value: 'CRC32' },
        { name: 'checksum', value: '00000000' },
      ]);
      expectError(res, 400, 'Wrong otaPackage file!', 31);
      expect(await packageCount()).to.equal(0);
      await expectNothingOnDisk();
    });
  });

  describe('concurrent uploads', () => {
    it('creates one of several simultaneous one-request uploads of the same title and version, and keeps only its blob', async () => {
      const title = unique('race');
      const uploads = Array.from({ length: 6 }, () => randomBytes(3000));
      const results = await Promise.all(
        uploads.map((bytes) =>
          h.admin.postMultipart('/api/otaPackage', [
            { name: 'title', value: title },
            { name: 'version', value: '1' },
            { name: 'deviceProfileId', value: profile.id.id },
            { name: 'type', value: 'FIRMWARE' },
            filePart(bytes),
          ]),
        ),
      );
      const winners = results.filter((r) => r.status === 200);
      expect(winners).to.have.length(1);
      for (const r of results) if (r.status !== 200) expectError(r, 400, 'OtaPackage with such title and version already exists!', 31);
      const winner = ok<PackageInfo>(winners[0] as (typeof results)[number]);
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(winner.checksum as string)]);
      expect(await h.tmpFiles()).to.deep.equal([]);
    });

    it('stores one of several simultaneous uploads of different files to the same package, and keeps only its blob', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const results = await Promise.all(Array.from({ length: 6 }, () => h.admin.upload(pkg.id.id, randomBytes(3000), { checksumAlgorithm: 'SHA256' })));
      const winners = results.filter((r) => r.status === 200);
      expect(winners).to.have.length(1);
      for (const r of results) if (r.status !== 200) expectError(r, 400, /^Updating otaPackage .* is prohibited!$/, 31);
      const stored = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`));
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(stored.checksum as string)]);
      expect(await h.tmpFiles()).to.deep.equal([]);
    });
  });

  describe('the package size limit', () => {
    it('accepts a package of exactly maxPackageSize bytes', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const saved = ok<PackageInfo>(await h.admin.upload(pkg.id.id, randomBytes(MAX), { checksumAlgorithm: 'SHA256' }));
      expect(saved.dataSize).to.equal(MAX);
    });

    it("answers one byte more with 413 and ThingsBoard's error JSON, storing nothing", async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.upload(pkg.id.id, randomBytes(MAX + 1), { checksumAlgorithm: 'SHA256' }), 413, undefined, 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('answers 413 as soon as Content-Length announces too much, before the body is sent', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await rawRequest(h.port, {
        method: 'POST',
        path: `/api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256`,
        headers: {
          'X-Authorization': `Bearer ${h.admin.token as string}`,
          'Content-Type': 'multipart/form-data; boundary=xyz',
          'Content-Length': String(50 * 1024 * 1024),
        },
        chunks: [],
        endBody: false,
      });
      expectError(rawToApi(res), 413, undefined, 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await expectNothingOnDisk();
    });

    it('answers 413 to a chunked body without a length once it passes the limit, storing nothing', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const mp = multipart([filePart(randomBytes(4 * MAX))]);
      const chunks: Buffer[] = [];
      for (let i = 0; i < mp.body.length; i += 8 * KiB) chunks.push(mp.body.subarray(i, i + 8 * KiB));
      const res = await rawRequest(h.port, {
        method: 'POST',
        path: `/api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256`,
        headers: { 'X-Authorization': `Bearer ${h.admin.token as string}`, 'Content-Type': mp.contentType, 'Transfer-Encoding': 'chunked' },
        chunks,
      });
      expectError(rawToApi(res), 413, undefined, 31);
      expect(await hasData(pkg.id.id)).to.equal(false);
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      await expectNothingOnDisk();
    });

    it('answers 413 to a chunked one-request create and creates no package', async () => {
      const mp = multipart([
        { name: 'title', value: unique('big') },
        { name: 'version', value: '1' },
        { name: 'deviceProfileId', value: profile.id.id },
        { name: 'type', value: 'FIRMWARE' },
        filePart(randomBytes(2 * MAX)),
      ]);
      const res = await rawRequest(h.port, {
        method: 'POST',
        path: '/api/otaPackage',
        headers: { 'X-Authorization': `Bearer ${h.admin.token as string}`, 'Content-Type': mp.contentType, 'Transfer-Encoding': 'chunked' },
        chunks: [mp.body.subarray(0, MAX / 2), mp.body.subarray(MAX / 2)],
      });
      expectError(rawToApi(res), 413, undefined, 31);
      expect(await packageCount()).to.equal(0);
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      await expectNothingOnDisk();
    });

    it('keeps serving after a refused oversized upload', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.upload(pkg.id.id, randomBytes(MAX + 1)), 413, undefined, 31);
      const saved = ok<PackageInfo>(await h.admin.upload(pkg.id.id, randomBytes(100)));
      expect(saved.hasData).to.equal(true);
    });
  });

  describe('an upload interrupted mid-body', () => {
    /**
     * Opens a raw socket, sends the request head and the first half of a multipart body, waits
     * until the server has started staging the file, then drops the connection.
     */
    async function interruptedUpload(urlPath: string, parts: Parameters<typeof multipart>[0], framing: 'length' | 'chunked'): Promise<void> {
      const mp = multipart(parts);
      const half = mp.body.subarray(0, Math.floor(mp.body.length / 2));
      const head = [
        `POST ${urlPath} HTTP/1.1`,
        `Host: 127.0.0.1:${h.port}`,
        `X-Authorization: Bearer ${h.admin.token as string}`,
        `Content-Type: ${mp.contentType}`,
        framing === 'length' ? `Content-Length: ${mp.body.length}` : 'Transfer-Encoding: chunked',
        '',
        '',
      ].join('\r\n');
      const socket = net.connect(h.port, '127.0.0.1');
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.write(head);
      socket.write(framing === 'length' ? half : Buffer.concat([Buffer.from(`${half.length.toString(16)}\r\n`), half, Buffer.from('\r\n')]));
      await eventually(async () => (await h.tmpFiles()).length > 0, 'the upload to be staged in blobs/tmp', { timeoutMs: 5000 });
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.destroy();
      await closed;
    }

    it('removes the staged bytes of a POST /api/otaPackage/{id} and leaves the package without data', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      await interruptedUpload(`/api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256`, [filePart(randomBytes(48 * KiB))], 'length');
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      await expectNothingOnDisk();
      expect(await hasData(pkg.id.id)).to.equal(false);
    });

    it('removes the staged bytes of a chunked upload cut short', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      await interruptedUpload(`/api/otaPackage/${pkg.id.id}?checksumAlgorithm=MD5`, [filePart(randomBytes(48 * KiB))], 'chunked');
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      await expectNothingOnDisk();
      expect(await hasData(pkg.id.id)).to.equal(false);
    });

    it('creates nothing for a one-request POST /api/otaPackage cut short', async () => {
      await interruptedUpload(
        '/api/otaPackage',
        [
          { name: 'title', value: unique('cut') },
          { name: 'version', value: '1' },
          { name: 'deviceProfileId', value: profile.id.id },
          { name: 'type', value: 'FIRMWARE' },
          filePart(randomBytes(48 * KiB)),
        ],
        'length',
      );
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      await expectNothingOnDisk();
      expect(await packageCount()).to.equal(0);
    });

    it('accepts the same upload afterwards', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const bytes = randomBytes(48 * KiB);
      await interruptedUpload(`/api/otaPackage/${pkg.id.id}?checksumAlgorithm=SHA256`, [filePart(bytes)], 'length');
      const saved = ok<PackageInfo>(await h.admin.upload(pkg.id.id, bytes, { checksumAlgorithm: 'SHA256' }));
      expect(saved.checksum).to.equal(checksumOf('SHA256', bytes));
      await eventually(async () => (await h.tmpFiles()).length === 0, 'blobs/tmp to be empty', { timeoutMs: 5000 });
      expect(await h.blobFiles()).to.deep.equal([blobPathOf(checksumOf('SHA256', bytes))]);
    });
  });
});

describe('admin API: tenant storage limit', () => {
  let h: ApiHarness;
  let profile: DeviceProfileBody;
  beforeEach(async () => {
    h = await ApiHarness.start({ maxTenantStorage: 2 * 1024 * KiB });
    profile = await h.admin.createProfile();
  });
  afterEach(async () => h?.close());

  it("refuses an upload past the tenant's total with ThingsBoard's message, storing nothing", async () => {
    const first = await h.admin.createPackage({ deviceProfileId: profile.id.id });
    ok(await h.admin.upload(first.id.id, randomBytes(1536 * KiB)));
    const second = await h.admin.createPackage({ deviceProfileId: profile.id.id });
    const bytes = randomBytes(1024 * KiB);
    expectError(await h.admin.upload(second.id.id, bytes), 400, 'Ota packages total size exceeds the maximum of 2 MB', 31);
    expect(ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${second.id.id}`)).hasData).to.equal(false);
    expect(await h.blobFiles()).to.not.include(blobPathOf(checksumOf('SHA256', bytes)));
    expect(await h.tmpFiles()).to.deep.equal([]);
  });

  it("counts only the tenant's own packages", async () => {
    const other = await h.otherTenant();
    const otherProfile = await other.defaultProfile();
    const big = await other.createPackage({ deviceProfileId: otherProfile.id.id });
    ok(await other.upload(big.id.id, randomBytes(1536 * KiB)));
    const mine = await h.admin.createPackage({ deviceProfileId: profile.id.id });
    ok(await h.admin.upload(mine.id.id, randomBytes(1024 * KiB)));
  });

  it('frees the space of a deleted package', async () => {
    const first = await h.admin.createPackage({ deviceProfileId: profile.id.id });
    ok(await h.admin.upload(first.id.id, randomBytes(1536 * KiB)));
    ok(await h.admin.delete(`/api/otaPackage/${first.id.id}`));
    const second = await h.admin.createPackage({ deviceProfileId: profile.id.id });
    ok(await h.admin.upload(second.id.id, randomBytes(1536 * KiB)));
  });
});
