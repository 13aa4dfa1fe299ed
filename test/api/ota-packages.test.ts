import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { CHECKSUM_ALGORITHMS, checksumOf } from '../../server/packages/checksum';
import { ApiHarness, expectError, filePart, ok, ref, unique, type DeviceProfileBody, type PackageInfo, type PageData } from '../support/api-harness';

const UNKNOWN_ID = '3f1e5a5c-0000-4000-8000-0000000000ee';

describe('admin API: OTA packages', () => {
  let h: ApiHarness;
  let profile: DeviceProfileBody;
  before(async () => {
    h = await ApiHarness.start();
    profile = await h.admin.createProfile();
  });
  after(async () => h?.close());

  describe('POST /api/otaPackage (info)', () => {
    it('creates a package without data and returns its OtaPackageInfo', async () => {
      const title = unique('create');
      const info = await h.admin.createPackage({ title, version: '2.0', deviceProfileId: profile.id.id, tag: 'release', additionalInfo: { description: 'first' } });
      expect(info.id.entityType).to.equal('OTA_PACKAGE');
      expect(info.id.id).to.match(/^[0-9a-f-]{36}$/);
      expect(info.tenantId.entityType).to.equal('TENANT');
      expect(info.deviceProfileId).to.deep.equal({ entityType: 'DEVICE_PROFILE', id: profile.id.id });
      expect(info.type).to.equal('FIRMWARE');
      expect(info.title).to.equal(title);
      expect(info.name).to.equal(title);
      expect(info.version).to.equal('2.0');
      expect(info.tag).to.equal('release');
      expect(info.hasData).to.equal(false);
      expect(info.url).to.equal(null);
      expect(info.fileName).to.equal(null);
      expect(info.checksum).to.equal(null);
      expect(info.dataSize).to.equal(null);
      expect(info.additionalInfo).to.deep.equal({ description: 'first' });
      expect(info.createdTime).to.be.a('number');
      expect(info).to.not.have.property('data');
    });

    it('updates the description of a package that has data, keeping the data', async () => {
      const bytes = randomBytes(100);
      const uploaded = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      const saved = ok<PackageInfo>(await h.admin.post('/api/otaPackage', { ...uploaded, additionalInfo: { description: 'edited' } }));
      expect(saved.id.id).to.equal(uploaded.id.id);
      expect(saved.additionalInfo).to.deep.equal({ description: 'edited' });
      expect(saved.hasData).to.equal(true);
      expect(saved.checksum).to.equal(uploaded.checksum);
      const download = await h.admin.get(`/api/otaPackage/${uploaded.id.id}/download`);
      expect(download.bytes.equals(bytes)).to.equal(true);
    });

    it('refuses a duplicate title and version with "OtaPackage with such title and version already exists!"', async () => {
      const title = unique('dup');
      await h.admin.createPackage({ title, version: '1', deviceProfileId: profile.id.id });
      expectError(
        await h.admin.post('/api/otaPackage', h.admin.packageBody({ title, version: '1', deviceProfileId: profile.id.id, type: 'SOFTWARE' })),
        400,
        'OtaPackage with such title and version already exists!',
        31,
      );
    });

    it('accepts the same title with another version', async () => {
      const title = unique('versions');
      await h.admin.createPackage({ title, version: '1', deviceProfileId: profile.id.id });
      await h.admin.createPackage({ title, version: '2', deviceProfileId: profile.id.id });
    });

    it('refuses a missing title with "OtaPackage title should be specified!"', async () => {
      const { title: _t, ...body } = h.admin.packageBody({ deviceProfileId: profile.id.id });
      expectError(await h.admin.post('/api/otaPackage', body), 400, 'OtaPackage title should be specified!', 31);
    });

    it('refuses a blank title with "OtaPackage title should be specified!"', async () => {
      expectError(await h.admin.post('/api/otaPackage', h.admin.packageBody({ title: '  ', deviceProfileId: profile.id.id })), 400, 'OtaPackage title should be specified!', 31);
    });

    it('refuses a missing version with "OtaPackage version should be specified!"', async () => {
      const { version: _v, ...body } = h.admin.packageBody({ deviceProfileId: profile.id.id });
      expectError(await h.admin.post('/api/otaPackage', body), 400, 'OtaPackage version should be specified!', 31);
    });

    it('refuses a missing type with "Type should be specified!"', async () => {
      const { type: _t, ...body } = h.admin.packageBody({ deviceProfileId: profile.id.id });
      expectError(await h.admin.post('/api/otaPackage', body), 400, 'Type should be specified!', 31);
    });

    it('refuses a non-existent profile with "OtaPackage is referencing to non-existent device profile!"', async () => {
      expectError(
        await h.admin.post('/api/otaPackage', h.admin.packageBody({ deviceProfileId: UNKNOWN_ID })),
        400,
        'OtaPackage is referencing to non-existent device profile!',
        31,
      );
    });

    it("refuses a title longer than 255 characters with ThingsBoard's validation message", async () => {
      expectError(
        await h.admin.post('/api/otaPackage', h.admin.packageBody({ title: 'x'.repeat(256), deviceProfileId: profile.id.id })),
        400,
        'Validation error: title length must be equal or less than 255',
        31,
      );
    });

    it('answers an update of an unknown package id with 404', async () => {
      const res = await h.admin.post('/api/otaPackage', { ...h.admin.packageBody({ deviceProfileId: profile.id.id }), id: ref('OTA_PACKAGE', UNKNOWN_ID) });
      expectError(res, 404, undefined, 32);
    });
  });

  describe('immutable fields', () => {
    let pkg: PackageInfo;
    before(async () => {
      pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, tag: 'v1 tag' }, randomBytes(64));
    });

    const cases: [string, (p: PackageInfo) => Record<string, unknown>, string][] = [
      ['type', (p) => ({ ...p, type: 'SOFTWARE' }), 'Updating type is prohibited!'],
      ['title', (p) => ({ ...p, title: `${p.title}-x` }), 'Updating otaPackage title is prohibited!'],
      ['version', (p) => ({ ...p, version: `${p.version}-x` }), 'Updating otaPackage version is prohibited!'],
      ['tag', (p) => ({ ...p, tag: 'another tag' }), 'Updating otaPackage tag is prohibited!'],
      ['file name', (p) => ({ ...p, fileName: 'other.bin' }), 'Updating otaPackage file name is prohibited!'],
      ['content type', (p) => ({ ...p, contentType: 'text/plain' }), 'Updating otaPackage content type is prohibited!'],
      // ThingsBoard reports checksum changes with the "content type" text (its copy-paste quirk)
      ['checksum algorithm', (p) => ({ ...p, checksumAlgorithm: 'MD5' }), 'Updating otaPackage content type is prohibited!'],
      ['checksum', (p) => ({ ...p, checksum: 'f'.repeat(64) }), 'Updating otaPackage content type is prohibited!'],
      ['data size', (p) => ({ ...p, dataSize: 1 }), 'Updating otaPackage data size is prohibited!'],
    ];
    for (const [field, change, message] of cases) {
      it(`refuses a change of ${field} with "${message}"`, async () => {
        expectError(await h.admin.post('/api/otaPackage', change(pkg)), 400, message, 31);
        const stored = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`));
        expect(stored).to.deep.equal(pkg);
      });
    }

    it('refuses a change of device profile with "Updating otaPackage deviceProfile is prohibited!"', async () => {
      const other = await h.admin.createProfile();
      expectError(await h.admin.post('/api/otaPackage', { ...pkg, deviceProfileId: other.id }), 400, 'Updating otaPackage deviceProfile is prohibited!', 31);
    });

    it('refuses dropping the file name of a package with data (clearing is a change)', async () => {
      expectError(await h.admin.post('/api/otaPackage', { ...pkg, fileName: null }), 400, 'Updating otaPackage file name is prohibited!', 31);
    });

    it('refuses a change of URL with "Updating otaPackage URL is prohibited!"', async () => {
      const urlPkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, usesUrl: true, url: 'https://example.org/one.bin' });
      expectError(await h.admin.post('/api/otaPackage', { ...urlPkg, usesUrl: true, url: 'https://example.org/two.bin' }), 400, 'Updating otaPackage URL is prohibited!', 31);
    });
  });

  describe('POST /api/otaPackage/{id} (upload)', () => {
    it('stores the file and returns the info with hasData, fileName, contentType, checksum and dataSize, without data', async () => {
      const bytes = randomBytes(1000);
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const saved = ok<PackageInfo>(await h.admin.upload(info.id.id, bytes, { checksumAlgorithm: 'SHA256', fileName: 'fw-1.bin', contentType: 'application/x-firmware' }));
      expect(saved.id.id).to.equal(info.id.id);
      expect(saved.hasData).to.equal(true);
      expect(saved.fileName).to.equal('fw-1.bin');
      expect(saved.contentType).to.equal('application/x-firmware');
      expect(saved.checksumAlgorithm).to.equal('SHA256');
      expect(saved.checksum).to.equal(checksumOf('SHA256', bytes));
      expect(saved.dataSize).to.equal(1000);
      expect(saved.url).to.equal(null);
      expect(saved).to.not.have.property('data');
    });

    it('uses SHA256 when no algorithm is named', async () => {
      const bytes = randomBytes(200);
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const saved = ok<PackageInfo>(await h.admin.upload(info.id.id, bytes));
      expect(saved.checksumAlgorithm).to.equal('SHA256');
      expect(saved.checksum).to.equal(checksumOf('SHA256', bytes));
    });

    for (const algorithm of CHECKSUM_ALGORITHMS) {
      it(`computes ${algorithm} on upload with ThingsBoard's encoding`, async () => {
        const bytes = randomBytes(777);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const saved = ok<PackageInfo>(await h.admin.upload(info.id.id, bytes, { checksumAlgorithm: algorithm }));
        expect(saved.checksumAlgorithm).to.equal(algorithm);
        expect(saved.checksum).to.equal(checksumOf(algorithm, bytes));
      });

      it(`accepts a correct ${algorithm} checksum given by the uploader`, async () => {
        const bytes = randomBytes(333);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const saved = ok<PackageInfo>(await h.admin.upload(info.id.id, bytes, { checksumAlgorithm: algorithm, checksum: checksumOf(algorithm, bytes) }));
        expect(saved.checksum).to.equal(checksumOf(algorithm, bytes));
      });
    }

    it('gives CRC32 of "123456789" as 2639f4cb, end to end', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const saved = ok<PackageInfo>(await h.admin.upload(info.id.id, Buffer.from('123456789'), { checksumAlgorithm: 'CRC32' }));
      expect(saved.checksum).to.equal('2639f4cb');
      const fetched = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${info.id.id}`));
      expect(fetched.checksum).to.equal('2639f4cb');
    });

    it('accepts the algorithm name in any case and stores the enum name', async () => {
      const bytes = randomBytes(50);
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const saved = ok<PackageInfo>(await h.admin.upload(info.id.id, bytes, { checksumAlgorithm: 'murmur3_128' }));
      expect(saved.checksumAlgorithm).to.equal('MURMUR3_128');
      expect(saved.checksum).to.equal(checksumOf('MURMUR3_128', bytes));
    });

    it('answers an unknown algorithm with 400', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.upload(info.id.id, randomBytes(10), { checksumAlgorithm: 'SHA1' }), 400, /ChecksumAlgorithm\.SHA1/, 31);
    });

    it('refuses a checksum that does not match with "Wrong otaPackage file!"', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.upload(info.id.id, randomBytes(10), { checksumAlgorithm: 'MD5', checksum: '0'.repeat(32) }), 400, 'Wrong otaPackage file!', 31);
      expect(ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${info.id.id}`)).hasData).to.equal(false);
    });

    it('compares the checksum exactly: upper-case hex is "Wrong otaPackage file!"', async () => {
      const bytes = randomBytes(10);
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const upper = checksumOf('SHA256', bytes).toUpperCase();
      expectError(await h.admin.upload(info.id.id, bytes, { checksumAlgorithm: 'SHA256', checksum: upper }), 400, 'Wrong otaPackage file!', 31);
    });

    it('refuses an empty file with "OtaPackage data should be specified!"', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.upload(info.id.id, Buffer.alloc(0), { checksumAlgorithm: 'SHA256' }), 400, 'OtaPackage data should be specified!', 31);
    });

    it('refuses a request without the file part with 400', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await h.admin.postMultipart(`/api/otaPackage/${info.id.id}?checksumAlgorithm=SHA256`, [{ name: 'other', value: 'x' }]);
      expectError(res, 400, "Required request part 'file' is not present", 31);
    });

    it('refuses a request that is not multipart with 400', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      expectError(await h.admin.post(`/api/otaPackage/${info.id.id}?checksumAlgorithm=SHA256`, { data: 'AAAA' }), 400, undefined, 31);
    });

    it('answers an upload to an unknown package with 404', async () => {
      expectError(await h.admin.upload(UNKNOWN_ID, randomBytes(10), { checksumAlgorithm: 'SHA256' }), 404, undefined, 32);
    });

    it('refuses an upload to a URL package with "Updating otaPackage URL is prohibited!"', async () => {
      const urlPkg = await h.admin.createPackage({ deviceProfileId: profile.id.id, usesUrl: true, url: 'https://example.org/u.bin' });
      expectError(await h.admin.upload(urlPkg.id.id, randomBytes(10), { checksumAlgorithm: 'SHA256' }), 400, 'Updating otaPackage URL is prohibited!', 31);
    });

    it('accepts re-uploading the identical file', async () => {
      const bytes = randomBytes(90);
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      const again = ok<PackageInfo>(await h.admin.upload(pkg.id.id, bytes, { checksumAlgorithm: 'SHA256' }));
      expect(again.checksum).to.equal(pkg.checksum);
    });

    it('refuses replacing the file with other bytes (the checksum change reads "content type", as in ThingsBoard)', async () => {
      const bytes = randomBytes(90);
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, bytes);
      expectError(await h.admin.upload(pkg.id.id, randomBytes(90), { checksumAlgorithm: 'SHA256' }), 400, 'Updating otaPackage content type is prohibited!', 31);
      const download = await h.admin.get(`/api/otaPackage/${pkg.id.id}/download`);
      expect(download.bytes.equals(bytes)).to.equal(true);
    });

    describe('checksum fields in the multipart body', () => {
      it('takes checksumAlgorithm and checksum sent as form fields before the file', async () => {
        const bytes = randomBytes(500);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const res = await h.admin.postMultipart(`/api/otaPackage/${info.id.id}`, [
          { name: 'checksumAlgorithm', value: 'MD5' },
          { name: 'checksum', value: checksumOf('MD5', bytes) },
          filePart(bytes),
        ]);
        const saved = ok<PackageInfo>(res);
        expect(saved.checksumAlgorithm).to.equal('MD5');
        expect(saved.checksum).to.equal(checksumOf('MD5', bytes));
      });

      it('takes checksumAlgorithm and checksum sent as form fields after the file', async () => {
        const bytes = randomBytes(500);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const res = await h.admin.postMultipart(`/api/otaPackage/${info.id.id}`, [
          filePart(bytes),
          { name: 'checksumAlgorithm', value: 'SHA512' },
          { name: 'checksum', value: checksumOf('SHA512', bytes) },
        ]);
        const saved = ok<PackageInfo>(res);
        expect(saved.checksumAlgorithm).to.equal('SHA512');
        expect(saved.checksum).to.equal(checksumOf('SHA512', bytes));
      });

      it('computes the algorithm named in a field after the file', async () => {
        const bytes = randomBytes(500);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const saved = ok<PackageInfo>(await h.admin.postMultipart(`/api/otaPackage/${info.id.id}`, [filePart(bytes), { name: 'checksumAlgorithm', value: 'MURMUR3_32' }]));
        expect(saved.checksumAlgorithm).to.equal('MURMUR3_32');
        expect(saved.checksum).to.equal(checksumOf('MURMUR3_32', bytes));
      });

      it('refuses a wrong checksum sent after the file with "Wrong otaPackage file!"', async () => {
        const bytes = randomBytes(500);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const res = await h.admin.postMultipart(`/api/otaPackage/${info.id.id}`, [
          filePart(bytes),
          { name: 'checksumAlgorithm', value: 'CRC32' },
          { name: 'checksum', value: 'deadbeef' },
        ]);
        expectError(res, 400, 'Wrong otaPackage file!', 31);
      });

      it('lets the query parameter win over a form field', async () => {
        const bytes = randomBytes(500);
        const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
        const saved = ok<PackageInfo>(
          await h.admin.postMultipart(`/api/otaPackage/${info.id.id}?checksumAlgorithm=SHA384`, [{ name: 'checksumAlgorithm', value: 'MD5' }, filePart(bytes)]),
        );
        expect(saved.checksumAlgorithm).to.equal('SHA384');
        expect(saved.checksum).to.equal(checksumOf('SHA384', bytes));
      });
    });
  });

  describe('POST /api/otaPackage as multipart (one request)', () => {
    it('creates the package with all its fields and the file at once', async () => {
      const bytes = randomBytes(1234);
      const title = unique('onestep');
      const res = await h.admin.postMultipart('/api/otaPackage', [
        { name: 'title', value: title },
        { name: 'version', value: '3.1.4' },
        { name: 'deviceProfileId', value: profile.id.id },
        { name: 'type', value: 'FIRMWARE' },
        { name: 'checksumAlgorithm', value: 'CRC32' },
        { name: 'checksum', value: checksumOf('CRC32', bytes) },
        { name: 'tag', value: `${title} 3.1.4` },
        { name: 'description', value: 'one request' },
        filePart(bytes, 'one.bin', 'application/octet-stream'),
      ]);
      const saved = ok<PackageInfo>(res);
      expect(saved.title).to.equal(title);
      expect(saved.version).to.equal('3.1.4');
      expect(saved.type).to.equal('FIRMWARE');
      expect(saved.deviceProfileId?.id).to.equal(profile.id.id);
      expect(saved.tag).to.equal(`${title} 3.1.4`);
      expect(saved.additionalInfo).to.deep.equal({ description: 'one request' });
      expect(saved.hasData).to.equal(true);
      expect(saved.fileName).to.equal('one.bin');
      expect(saved.checksumAlgorithm).to.equal('CRC32');
      expect(saved.checksum).to.equal(checksumOf('CRC32', bytes));
      expect(saved.dataSize).to.equal(1234);
      const download = await h.admin.get(`/api/otaPackage/${saved.id.id}/download`);
      expect(download.bytes.equals(bytes)).to.equal(true);
    });

    it('takes the fields after the file too', async () => {
      const bytes = randomBytes(64);
      const title = unique('fieldsafter');
      const saved = ok<PackageInfo>(
        await h.admin.postMultipart('/api/otaPackage', [
          filePart(bytes),
          { name: 'title', value: title },
          { name: 'version', value: '1' },
          { name: 'deviceProfileId', value: profile.id.id },
          { name: 'type', value: 'SOFTWARE' },
          { name: 'checksumAlgorithm', value: 'MD5' },
          { name: 'checksum', value: checksumOf('MD5', bytes) },
        ]),
      );
      expect(saved.type).to.equal('SOFTWARE');
      expect(saved.checksum).to.equal(checksumOf('MD5', bytes));
    });

    it('refuses a missing title with "OtaPackage title should be specified!" and creates nothing', async () => {
      const before = ok<PageData<PackageInfo>>(await h.admin.get('/api/otaPackages?pageSize=1&page=0')).totalElements;
      const res = await h.admin.postMultipart('/api/otaPackage', [
        { name: 'version', value: '1' },
        { name: 'deviceProfileId', value: profile.id.id },
        { name: 'type', value: 'FIRMWARE' },
        filePart(randomBytes(10)),
      ]);
      expectError(res, 400, 'OtaPackage title should be specified!', 31);
      expect(ok<PageData<PackageInfo>>(await h.admin.get('/api/otaPackages?pageSize=1&page=0')).totalElements).to.equal(before);
    });

    it('refuses a duplicate title and version', async () => {
      const title = unique('dupmp');
      await h.admin.createPackage({ title, version: '1', deviceProfileId: profile.id.id });
      const res = await h.admin.postMultipart('/api/otaPackage', [
        { name: 'title', value: title },
        { name: 'version', value: '1' },
        { name: 'deviceProfileId', value: profile.id.id },
        { name: 'type', value: 'FIRMWARE' },
        filePart(randomBytes(10)),
      ]);
      expectError(res, 400, 'OtaPackage with such title and version already exists!', 31);
    });
  });

  describe('reading packages', () => {
    let bytes: Buffer;
    let pkg: PackageInfo;
    before(async () => {
      bytes = randomBytes(4096);
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      pkg = ok<PackageInfo>(await h.admin.upload(info.id.id, bytes, { checksumAlgorithm: 'SHA256', fileName: 'image v1.bin', contentType: 'application/x-binary' }));
    });

    it('GET /api/otaPackage/{id} returns the info with data as base64 of the uploaded bytes', async () => {
      const full = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/${pkg.id.id}`));
      expect(typeof full.data).to.equal('string');
      expect(Buffer.from(full.data as string, 'base64').equals(bytes)).to.equal(true);
      const { data: _data, ...info } = full;
      expect(info).to.deep.equal(pkg);
    });

    it('GET /api/otaPackage/{id} encodes a package larger than one read chunk whose size is not a multiple of 3', async () => {
      const large = randomBytes(200_001);
      const p = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id }, large);
      const full = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/${p.id.id}`));
      expect(full.data).to.equal(large.toString('base64'));
    });

    it('GET /api/otaPackage/{id} returns data null for a package without data', async () => {
      const empty = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const full = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/${empty.id.id}`));
      expect(full.data).to.equal(null);
      expect(full.hasData).to.equal(false);
    });

    it('GET /api/otaPackage/info/{id} returns the info without data', async () => {
      const info = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`));
      expect(info).to.deep.equal(pkg);
      expect(info).to.not.have.property('data');
    });

    it("answers an unknown package id with 404 and ThingsBoard's error JSON", async () => {
      expectError(await h.admin.get(`/api/otaPackage/info/${UNKNOWN_ID}`), 404, "Requested item wasn't found!", 32);
      expectError(await h.admin.get(`/api/otaPackage/${UNKNOWN_ID}`), 404, `Ota package with id [${UNKNOWN_ID}] is not found`, 32);
      expectError(await h.admin.get(`/api/otaPackage/${UNKNOWN_ID}/download`), 404, `Ota package with id [${UNKNOWN_ID}] is not found`, 32);
    });

    it('answers a malformed package id with 400 "Invalid UUID string"', async () => {
      expectError(await h.admin.get('/api/otaPackage/info/not-a-uuid'), 400, 'Invalid UUID string: not-a-uuid', 31);
      expectError(await h.admin.get('/api/otaPackage/not-a-uuid'), 400, 'Invalid UUID string: not-a-uuid', 31);
      expectError(await h.admin.delete('/api/otaPackage/not-a-uuid'), 400, 'Invalid UUID string: not-a-uuid', 31);
    });

    it('downloads the bytes with Content-Disposition, x-filename, Content-Type and Content-Length', async () => {
      const res = await h.admin.get(`/api/otaPackage/${pkg.id.id}/download`);
      expect(res.status).to.equal(200);
      expect(res.bytes.equals(bytes)).to.equal(true);
      expect(res.headers.get('content-disposition')).to.equal('attachment;filename=image v1.bin');
      expect(res.headers.get('x-filename')).to.equal('image v1.bin');
      expect(res.headers.get('content-type')).to.equal('application/x-binary');
      expect(res.headers.get('content-length')).to.equal('4096');
    });

    it('downloads the bytes even when the client sends Accept: application/json', async () => {
      const res = await h.admin.get(`/api/otaPackage/${pkg.id.id}/download`, { Accept: 'application/json' });
      expect(res.status).to.equal(200);
      expect(res.bytes.equals(bytes)).to.equal(true);
      expect(res.headers.get('content-type')).to.equal('application/x-binary');
    });
  });

  describe('URL-only packages', () => {
    it('creates a package that points at a URL, with hasData true', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id, usesUrl: true, url: 'https://example.org/fw-url.bin' });
      expect(info.url).to.equal('https://example.org/fw-url.bin');
      const fetched = ok<PackageInfo>(await h.admin.get(`/api/otaPackage/info/${info.id.id}`));
      expect(fetched.hasData).to.equal(true);
      expect(fetched.url).to.equal('https://example.org/fw-url.bin');
    });

    it('refuses usesUrl without a url with "Ota package URL should be specified!"', async () => {
      expectError(await h.admin.post('/api/otaPackage', h.admin.packageBody({ deviceProfileId: profile.id.id, usesUrl: true })), 400, 'Ota package URL should be specified!', 31);
    });

    it('refuses usesUrl with a blank url with "Ota package URL should be specified!"', async () => {
      expectError(
        await h.admin.post('/api/otaPackage', h.admin.packageBody({ deviceProfileId: profile.id.id, usesUrl: true, url: '   ' })),
        400,
        'Ota package URL should be specified!',
        31,
      );
    });

    it('answers a download of a URL package with 400 and an empty body', async () => {
      const info = await h.admin.createPackage({ deviceProfileId: profile.id.id, usesUrl: true, url: 'https://example.org/nodl.bin' });
      const res = await h.admin.get(`/api/otaPackage/${info.id.id}/download`);
      expect(res.status).to.equal(400);
      expect(res.text).to.equal('');
    });
  });

  describe('GET /api/otaPackages', () => {
    let listProfile: DeviceProfileBody;
    let prefix: string;
    before(async () => {
      listProfile = await h.admin.createProfile();
      prefix = unique('list');
      await h.admin.createPackageWithData({ title: `${prefix}-Beta`, version: '2', deviceProfileId: listProfile.id.id }, randomBytes(30));
      await h.admin.createPackageWithData({ title: `${prefix}-alpha`, version: '1', deviceProfileId: listProfile.id.id, type: 'SOFTWARE' }, randomBytes(10));
      await h.admin.createPackage({ title: `${prefix}-gamma`, version: '3', deviceProfileId: listProfile.id.id });
      await h.admin.createPackage({ title: `${prefix}-delta`, version: '4', deviceProfileId: listProfile.id.id, usesUrl: true, url: 'https://example.org/d.bin' });
      await h.admin.createPackageWithData({ title: `${prefix}-epsilon`, version: '5', deviceProfileId: listProfile.id.id }, randomBytes(20));
    });
    const titles = (p: PageData<PackageInfo>): string[] => p.data.map((x) => x.title.slice(prefix.length + 1));

    it('requires pageSize and page with 400', async () => {
      expectError(await h.admin.get('/api/otaPackages?page=0'), 400, "Required request parameter 'pageSize' for method parameter type int is not present", 31);
      expectError(await h.admin.get('/api/otaPackages?pageSize=5'), 400, "Required request parameter 'page' for method parameter type int is not present", 31);
    });

    it('finds packages by a case-insensitive substring of the title', async () => {
      const page = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=50&page=0&textSearch=${prefix.toUpperCase()}`));
      expect(page.totalElements).to.equal(5);
      expect(page.data.every((p) => !('data' in p))).to.equal(true);
    });

    it('treats % and _ in textSearch literally', async () => {
      const literal = unique('lit');
      await h.admin.createPackage({ title: `${literal}-50%_off`, deviceProfileId: listProfile.id.id });
      await h.admin.createPackage({ title: `${literal}-50xxoff`, deviceProfileId: listProfile.id.id });
      const page = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=50&page=0&textSearch=${encodeURIComponent('50%_')}`));
      expect(page.data.map((p) => p.title)).to.deep.equal([`${literal}-50%_off`]);
    });

    it('sorts by title, ascending and descending', async () => {
      const asc = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=50&page=0&textSearch=${prefix}&sortProperty=title&sortOrder=ASC`));
      expect(titles(asc)).to.deep.equal(['alpha', 'Beta', 'delta', 'epsilon', 'gamma']);
      const desc = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=50&page=0&textSearch=${prefix}&sortProperty=title&sortOrder=DESC`));
      expect(titles(desc)).to.deep.equal(['gamma', 'epsilon', 'delta', 'Beta', 'alpha']);
    });

    it('sorts by version and by type', async () => {
      const byVersion = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=50&page=0&textSearch=${prefix}&sortProperty=version&sortOrder=DESC`));
      expect(byVersion.data.map((p) => p.version)).to.deep.equal(['5', '4', '3', '2', '1']);
      const byType = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=50&page=0&textSearch=${prefix}&sortProperty=type&sortOrder=DESC`));
      expect(byType.data[0]?.type).to.equal('SOFTWARE');
    });

    it('pages with totalPages, totalElements and hasNext', async () => {
      const p0 = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=2&page=0&textSearch=${prefix}&sortProperty=title&sortOrder=ASC`));
      expect(p0).to.include({ totalElements: 5, totalPages: 3, hasNext: true });
      const p2 = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages?pageSize=2&page=2&textSearch=${prefix}&sortProperty=title&sortOrder=ASC`));
      expect(p2.hasNext).to.equal(false);
      expect(titles(p2)).to.deep.equal(['gamma']);
    });

    it('answers an unknown sort property with 400 "Invalid sort property"', async () => {
      expectError(await h.admin.get('/api/otaPackages?pageSize=5&page=0&sortProperty=blobSha256'), 400, 'Invalid sort property', 31);
    });

    it('answers an unknown sort order with 400', async () => {
      expectError(
        await h.admin.get('/api/otaPackages?pageSize=5&page=0&sortOrder=SIDEWAYS'),
        400,
        "Unsupported sort order 'SIDEWAYS'! Only 'ASC' or 'DESC' types are allowed.",
        31,
      );
    });

    it("GET /api/otaPackages/{profileId}/{type} lists only that profile's packages of that type with data or a URL", async () => {
      const fw = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages/${listProfile.id.id}/FIRMWARE?pageSize=50&page=0&sortProperty=title&sortOrder=ASC`));
      expect(titles(fw)).to.deep.equal(['Beta', 'delta', 'epsilon']);
      expect(fw.data.every((p) => p.hasData)).to.equal(true);
      const sw = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages/${listProfile.id.id}/SOFTWARE?pageSize=50&page=0`));
      expect(titles(sw)).to.deep.equal(['alpha']);
    });

    it('GET /api/otaPackages/{profileId}/{type} applies textSearch', async () => {
      const fw = ok<PageData<PackageInfo>>(await h.admin.get(`/api/otaPackages/${listProfile.id.id}/FIRMWARE?pageSize=50&page=0&textSearch=EPS`));
      expect(titles(fw)).to.deep.equal(['epsilon']);
    });

    it('GET /api/otaPackages/{profileId}/{type} refuses a lower-case type with 400', async () => {
      expectError(
        await h.admin.get(`/api/otaPackages/${listProfile.id.id}/firmware?pageSize=50&page=0`),
        400,
        'No enum constant org.thingsboard.server.common.data.ota.OtaPackageType.firmware',
        31,
      );
    });
  });

  describe('DELETE /api/otaPackage/{id}', () => {
    it('deletes a package: 200 with an empty body, then 404', async () => {
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id });
      const res = await h.admin.delete(`/api/otaPackage/${pkg.id.id}`);
      expect(res.status).to.equal(200);
      expect(res.text).to.equal('');
      expectError(await h.admin.get(`/api/otaPackage/info/${pkg.id.id}`), 404, undefined, 32);
    });

    it('answers a delete of an unknown id with 404 "Ota package with id [..] is not found"', async () => {
      expectError(await h.admin.delete(`/api/otaPackage/${UNKNOWN_ID}`), 404, `Ota package with id [${UNKNOWN_ID}] is not found`, 32);
    });

    it('refuses firmware a device uses with "The otaPackage referenced by the devices cannot be deleted!"', async () => {
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id });
      await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, firmwareId: pkg.id });
      expectError(await h.admin.delete(`/api/otaPackage/${pkg.id.id}`), 400, 'The otaPackage referenced by the devices cannot be deleted!', 31);
    });

    it('refuses firmware a profile uses with "The otaPackage referenced by the device profile cannot be deleted!"', async () => {
      const p = await h.admin.createProfile();
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: p.id.id });
      ok(await h.admin.post(`/api/deviceProfile/${p.id.id}`, { firmwareId: pkg.id }));
      expectError(await h.admin.delete(`/api/otaPackage/${pkg.id.id}`), 400, 'The otaPackage referenced by the device profile cannot be deleted!', 31);
    });

    it('refuses software a device uses with "The software referenced by the devices cannot be deleted!"', async () => {
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: profile.id.id, type: 'SOFTWARE' });
      await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id, softwareId: pkg.id });
      expectError(await h.admin.delete(`/api/otaPackage/${pkg.id.id}`), 400, 'The software referenced by the devices cannot be deleted!', 31);
    });

    it('refuses software a profile uses with "The software referenced by the device profile cannot be deleted!"', async () => {
      const p = await h.admin.createProfile();
      const pkg = await h.admin.createPackageWithData({ deviceProfileId: p.id.id, type: 'SOFTWARE' });
      ok(await h.admin.post(`/api/deviceProfile/${p.id.id}`, { softwareId: pkg.id }));
      expectError(await h.admin.delete(`/api/otaPackage/${pkg.id.id}`), 400, 'The software referenced by the device profile cannot be deleted!', 31);
    });

    it('works with Content-Type: application/json and a {} body', async () => {
      const pkg = await h.admin.createPackage({ deviceProfileId: profile.id.id });
      const res = await h.admin.request('DELETE', `/api/otaPackage/${pkg.id.id}`, { body: Buffer.from('{}'), headers: { 'Content-Type': 'application/json' } });
      expect(res.status).to.equal(200);
    });
  });
});
