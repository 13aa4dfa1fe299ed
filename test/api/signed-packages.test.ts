import { expect } from 'chai';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { ApiHarness, expectError, filePart, ok, ref, unique, type ApiClient, type DeviceProfileBody, type PackageInfo } from '../support/api-harness';

type SignedInfo = PackageInfo & { signature: string | null; signatureAlgorithm: string | null };
interface SigningKeyBody {
  algorithm: string;
  publicKey: string;
}

const digest = (bytes: Buffer): Buffer => createHash('sha256').update(bytes).digest();
/** What a device does (docs/signed-packages.md): Ed25519 over the 32-byte SHA-256 digest of the file. */
const verifies = (publicKeyPem: string, bytes: Buffer, signature: string): boolean => verify(null, digest(bytes), createPublicKey(publicKeyPem), Buffer.from(signature, 'base64'));

describe('admin API: signed packages', () => {
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h?.close());

  /** A fresh tenant per test, so key imports and policies never leak between tests. */
  async function tenant(): Promise<{ admin: ApiClient; profile: DeviceProfileBody }> {
    const admin = await h.otherTenant();
    const profile = ok<DeviceProfileBody>(await admin.post('/api/deviceProfile', { name: unique('signed') }));
    return { admin, profile };
  }

  async function upload(admin: ApiClient, profile: DeviceProfileBody, bytes: Buffer, query = '', extraParts: { name: string; value: string }[] = []) {
    const info = ok<PackageInfo>(
      await admin.post('/api/otaPackage', { title: unique('fw'), version: '1.0.0', type: 'FIRMWARE', deviceProfileId: ref('DEVICE_PROFILE', profile.id.id) }),
    );
    const res = await admin.postMultipart(`/api/otaPackage/${info.id.id}?checksumAlgorithm=SHA256${query}`, [...extraParts, filePart(bytes)]);
    return { id: info.id.id, res };
  }

  /** A package by URL only: it has no bytes, so it is never signed. */
  function urlPackage(admin: ApiClient, profile: DeviceProfileBody) {
    return admin.post('/api/otaPackage', {
      title: unique('url'),
      version: '1',
      type: 'FIRMWARE',
      deviceProfileId: ref('DEVICE_PROFILE', profile.id.id),
      url: 'http://example.invalid/fw.bin',
    });
  }

  it('generates an Ed25519 key on first need and shows only its public half, the same on every call', async () => {
    const { admin } = await tenant();
    const first = ok<SigningKeyBody>(await admin.get('/api/ota/signingKey'));
    expect(Object.keys(first).sort()).to.deep.equal(['algorithm', 'publicKey']);
    expect(first.algorithm).to.equal('ED25519');
    expect(first.publicKey).to.match(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+-----END PUBLIC KEY-----\n$/);
    expect(createPublicKey(first.publicKey).asymmetricKeyType).to.equal('ed25519');
    expect(ok<SigningKeyBody>(await admin.get('/api/ota/signingKey'))).to.deep.equal(first);
    const other = ok<SigningKeyBody>(await h.admin.get('/api/ota/signingKey'));
    expect(other.publicKey, 'each tenant has its own key').to.not.equal(first.publicKey);
  });

  it('signs an upload: the signature verifies with the public key over the SHA-256 of the bytes', async () => {
    const { admin, profile } = await tenant();
    const bytes = randomBytes(70_000);
    const { id, res } = await upload(admin, profile, bytes);
    const info = ok<SignedInfo>(res);
    expect(info.signatureAlgorithm).to.equal('ED25519');
    expect(info.signature).to.be.a('string');
    const { publicKey } = ok<SigningKeyBody>(await admin.get('/api/ota/signingKey'));
    expect(verifies(publicKey, bytes, info.signature as string)).to.equal(true);
    const changed = Buffer.from(bytes);
    changed[0] = (changed[0] as number) ^ 0xff;
    expect(verifies(publicKey, changed, info.signature as string), 'other bytes do not verify').to.equal(false);
    expect(ok<SignedInfo>(await admin.get(`/api/otaPackage/info/${id}`))).to.include({ signature: info.signature, signatureAlgorithm: 'ED25519' });
  });

  it('keeps the signature when the package info is saved again, and has none for a URL package', async () => {
    const { admin, profile } = await tenant();
    const { res } = await upload(admin, profile, randomBytes(100));
    const info = ok<SignedInfo>(res);
    const saved = ok<SignedInfo>(await admin.post('/api/otaPackage', { ...info, signature: null, additionalInfo: { description: 'edited' } }));
    expect(saved.signature).to.equal(info.signature);
    const url = ok<SignedInfo>(await urlPackage(admin, profile));
    expect(url).to.include({ signature: null, signatureAlgorithm: null });
  });

  describe('with a key kept offline (only its public key imported)', () => {
    const offline = generateKeyPairSync('ed25519');
    const publicPem = offline.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const detached = (bytes: Buffer): string => sign(null, digest(bytes), offline.privateKey).toString('base64');

    async function offlineTenant() {
      const t = await tenant();
      const imported = ok<SigningKeyBody>(await t.admin.post('/api/ota/signingKey', { publicKey: publicPem }));
      expect(imported).to.deep.equal({ algorithm: 'ED25519', publicKey: publicPem });
      expect(ok<SigningKeyBody>(await t.admin.get('/api/ota/signingKey')).publicKey).to.equal(publicPem);
      return t;
    }

    it('accepts a detached signature given as the query parameter', async () => {
      const { admin, profile } = await offlineTenant();
      const bytes = randomBytes(5000);
      const signature = detached(bytes);
      const { res } = await upload(admin, profile, bytes, `&signature=${encodeURIComponent(signature)}`);
      expect(ok<SignedInfo>(res)).to.include({ signature, signatureAlgorithm: 'ED25519', hasData: true });
    });

    it('accepts a detached signature given as the form field', async () => {
      const { admin, profile } = await offlineTenant();
      const bytes = randomBytes(5000);
      const signature = detached(bytes);
      const { res } = await upload(admin, profile, bytes, '', [{ name: 'signature', value: signature }]);
      expect(ok<SignedInfo>(res).signature).to.equal(signature);
    });

    it("refuses a signature of other bytes with 'Wrong otaPackage signature!' and stores nothing", async () => {
      const { admin, profile } = await offlineTenant();
      const bytes = randomBytes(5000);
      const { id, res } = await upload(admin, profile, bytes, `&signature=${encodeURIComponent(detached(randomBytes(5000)))}`);
      expectError(res, 400, 'Wrong otaPackage signature!', 31);
      expect(ok<SignedInfo>(await admin.get(`/api/otaPackage/info/${id}`))).to.include({ hasData: false, signature: null });
      const garbage = await upload(admin, profile, bytes, '&signature=not-base64!');
      expectError(garbage.res, 400, 'Wrong otaPackage signature!');
      expect(await h.blobFiles().then((files) => files.filter((f) => f.endsWith(digest(bytes).toString('hex'))))).to.deep.equal([]);
    });

    it('leaves an upload without a signature unsigned: the server cannot sign without the private key', async () => {
      const { admin, profile } = await offlineTenant();
      const { res } = await upload(admin, profile, randomBytes(100));
      expect(ok<SignedInfo>(res)).to.include({ hasData: true, signature: null, signatureAlgorithm: null });
    });
  });

  it('signs with an imported private key', async () => {
    const { admin, profile } = await tenant();
    const pair = generateKeyPairSync('ed25519');
    const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const shown = ok<SigningKeyBody>(await admin.post('/api/ota/signingKey', { privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }));
    expect(shown).to.deep.equal({ algorithm: 'ED25519', publicKey: publicPem });
    const bytes = randomBytes(1234);
    const info = ok<SignedInfo>((await upload(admin, profile, bytes)).res);
    expect(verifies(publicPem, bytes, info.signature as string)).to.equal(true);
  });

  it('refuses a key that is not an Ed25519 PEM, and a body without a key, changing nothing', async () => {
    const { admin } = await tenant();
    const before = ok<SigningKeyBody>(await admin.get('/api/ota/signingKey'));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expectError(await admin.post('/api/ota/signingKey', { publicKey: rsa }), 400, 'Signing key should be an Ed25519 private or public key in PEM format!');
    expectError(await admin.post('/api/ota/signingKey', { privateKey: 'hello' }), 400, 'Signing key should be an Ed25519 private or public key in PEM format!');
    expectError(await admin.post('/api/ota/signingKey', {}), 400, /^Invalid request body/);
    expect(ok<SigningKeyBody>(await admin.get('/api/ota/signingKey'))).to.deep.equal(before);
    expectError(await h.anonymous().get('/api/ota/signingKey'), 401);
  });

  describe('POST /api/ota/policy {"requireSignedPackages": true}', () => {
    it('refuses to assign an unsigned package to a profile or a device, and allows a signed one', async () => {
      const { admin, profile } = await tenant();
      expect(ok(await admin.get('/api/ota/policy'))).to.deep.equal({ requireSignedPackages: false });
      const unsigned = ok<SignedInfo>(await urlPackage(admin, profile));
      const signed = ok<SignedInfo>((await upload(admin, profile, randomBytes(100))).res);
      expect(ok(await admin.post('/api/ota/policy', { requireSignedPackages: true }))).to.deep.equal({ requireSignedPackages: true });

      const message = "Can't assign unsigned firmware: the tenant's policy requires signed packages! Upload it again to sign it.";
      expectError(await admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: unsigned.id }), 400, message, 31);
      expect(ok<DeviceProfileBody>(await admin.get(`/api/deviceProfile/${profile.id.id}`)).firmwareId).to.equal(null);
      const device = ok<{ id: { id: string } }>(await admin.post('/api/device', { name: unique('d'), deviceProfileId: profile.id }));
      expectError(await admin.post(`/api/device/${device.id.id}`, { firmwareId: unsigned.id }), 400, message);
      expect(ok<DeviceProfileBody>(await admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: signed.id })).firmwareId).to.deep.equal(signed.id);

      // The policy is the tenant's: another tenant may still assign unsigned packages.
      expect(ok(await h.admin.get('/api/ota/policy'))).to.deep.equal({ requireSignedPackages: false });
      expect(ok(await admin.post('/api/ota/policy', { requireSignedPackages: false }))).to.deep.equal({ requireSignedPackages: false });
      ok(await admin.post(`/api/device/${device.id.id}`, { firmwareId: unsigned.id }));
    });

    it('checks the policy only when the assigned package changes: a profile or device keeping an unsigned one can still be saved', async () => {
      const { admin, profile } = await tenant();
      const unsigned = ok<SignedInfo>(await urlPackage(admin, profile));
      ok(await admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: unsigned.id }));
      const device = ok<{ id: { id: string } }>(await admin.post('/api/device', { name: unique('d'), deviceProfileId: profile.id, firmwareId: unsigned.id }));
      ok(await admin.post('/api/ota/policy', { requireSignedPackages: true }));
      expect(ok<DeviceProfileBody>(await admin.post(`/api/deviceProfile/${profile.id.id}`, { description: 'renamed' })).firmwareId).to.deep.equal(unsigned.id);
      ok(await admin.post(`/api/device/${device.id.id}`, { label: 'relabelled' }));
      // Assigning it anew is still refused.
      ok(await admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: null }));
      expectError(await admin.post(`/api/deviceProfile/${profile.id.id}`, { firmwareId: unsigned.id }), 400, /policy requires signed packages/);
      ok(await admin.post('/api/ota/policy', { requireSignedPackages: false }));
    });

    it('refuses a malformed policy with a clear error', async () => {
      const { admin } = await tenant();
      expectError(await admin.post('/api/ota/policy', { requireSignedPackages: 'yes' }), 400, /^Invalid request body/);
      expectError(await admin.post('/api/ota/policy', {}), 400, /^Invalid request body/);
      expect(ok(await admin.get('/api/ota/policy'))).to.deep.equal({ requireSignedPackages: false });
    });
  });
});
