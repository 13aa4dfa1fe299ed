import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { invalid } from '../errors';
import type { TenantId } from '../ids';
import type { SignatureAlgorithm } from '../store/ota-packages';
import type { SigningKey, SigningKeyRepository } from '../store/signing-keys';

export const SIGNATURE_ALGORITHM: SignatureAlgorithm = 'ED25519';
export const WRONG_SIGNATURE = 'Wrong otaPackage signature!';

/** What `GET /api/ota/signingKey` shows: never the private half. */
export interface PublicSigningKey {
  algorithm: SignatureAlgorithm;
  publicKey: string;
}

/**
 * Per-tenant Ed25519 package signatures (issue 14, "Signed packages").
 *
 * What is signed: the 32 raw bytes of the package's SHA-256 digest, not the package itself. Node's
 * Ed25519 signs a whole message held in memory (no streaming, and no Ed25519ph), while packages
 * reach 2 GB and are only ever streamed; the SHA-256 is computed anyway while the upload streams to
 * disk (blob-store.ts), so signing it reads the bytes once and holds none. It is sound because
 * SHA-256 is collision- and second-preimage-resistant: a signature over the digest commits to the
 * bytes as firmly as one over the bytes. A device therefore verifies
 * `Ed25519.verify(publicKey, message = SHA-256(file) as 32 raw bytes, signature)`; see
 * docs/signed-packages.md. A detached signature made offline must be made over the same digest.
 */
export class PackageSigning {
  constructor(
    private readonly keys: SigningKeyRepository,
    private readonly clock: { now(): number } = Date,
  ) {}

  /** The tenant's key, generated on first need. */
  async keyOf(tenantId: TenantId): Promise<SigningKey> {
    const found = await this.keys.find(tenantId);
    if (found) return found;
    const pair = generateKeyPairSync('ed25519');
    // Two first uses at once (or two instances) keep whichever key was stored first.
    return this.keys.insertIfAbsent({
      tenantId,
      algorithm: SIGNATURE_ALGORITHM,
      publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      createdTime: this.clock.now(),
    });
  }

  async publicKeyOf(tenantId: TenantId): Promise<PublicSigningKey> {
    const key = await this.keyOf(tenantId);
    return { algorithm: key.algorithm, publicKey: key.publicKey };
  }

  /**
   * `POST /api/ota/signingKey`: replaces the tenant's key with an imported PEM. A private key lets
   * the server sign uploads; a public key alone is for a key kept offline, whose uploads carry a
   * detached signature. Packages signed before keep their signature (made with the old key).
   */
  async importKey(tenantId: TenantId, pem: string): Promise<PublicSigningKey> {
    const { publicKey, privateKey } = parseKey(pem);
    const key: SigningKey = {
      tenantId,
      algorithm: SIGNATURE_ALGORITHM,
      publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      privateKey: privateKey ? privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() : null,
      createdTime: this.clock.now(),
    };
    await this.keys.replace(key);
    return { algorithm: key.algorithm, publicKey: key.publicKey };
  }

  /** Signs a package by its SHA-256 (hex); null when the tenant's key is kept offline. */
  async sign(tenantId: TenantId, sha256Hex: string): Promise<string | null> {
    const key = await this.keyOf(tenantId);
    if (!key.privateKey) return null;
    return sign(null, Buffer.from(sha256Hex, 'hex'), createPrivateKey(key.privateKey)).toString('base64');
  }

  /** Checks a detached base64 signature over the package's SHA-256; throws ThingsBoard-style otherwise. */
  async checkDetached(tenantId: TenantId, sha256Hex: string, signatureBase64: string): Promise<void> {
    const signature = decodeBase64(signatureBase64);
    const key = await this.keyOf(tenantId);
    // An Ed25519 signature is 64 bytes; anything else can't verify (and Node would throw on some).
    if (!signature || signature.length !== 64) throw invalid(WRONG_SIGNATURE);
    if (!verify(null, Buffer.from(sha256Hex, 'hex'), createPublicKey(key.publicKey), signature)) throw invalid(WRONG_SIGNATURE);
  }
}

/** Strict base64 (standard alphabet, padding optional): null when `s` is anything else. */
function decodeBase64(s: string): Buffer | null {
  const trimmed = s.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(trimmed)) return null;
  return Buffer.from(trimmed, 'base64');
}

function parseKey(pem: string): { publicKey: KeyObject; privateKey: KeyObject | null } {
  const bad = invalid('Signing key should be an Ed25519 private or public key in PEM format!');
  let privateKey: KeyObject | null = null;
  let publicKey: KeyObject;
  try {
    if (/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----/.test(pem)) {
      privateKey = createPrivateKey(pem);
      publicKey = createPublicKey(privateKey);
    } else {
      publicKey = createPublicKey(pem);
    }
  } catch {
    throw bad;
  }
  if (publicKey.asymmetricKeyType !== 'ed25519') throw bad;
  return { publicKey, privateKey };
}
