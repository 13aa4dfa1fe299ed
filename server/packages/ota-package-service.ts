import type { Readable } from 'node:stream';
import { BlobTooLargeError, type BlobStore, type StagedBlob } from '../store/blob-store';
import { checksumFile, type ChecksumAlgorithm } from './checksum';
import type { PageData, PageLink } from '../store/sqlite/database';
import type { DeviceProfileRepository } from '../store/device-profiles';
import type { DeviceRepository } from '../store/devices';
import { entityNotFound, forbidden, invalid, OtaError, ErrorCode, tooLarge } from '../errors';
import { UNLIMITED, type TenantLimitsOf } from '../tenant-limits';
import type { EngineEvents } from '../events';
import { isUuid, newId, type DeviceProfileId, type OtaPackageId, type TenantId } from '../ids';
import { hasData, type OtaPackage, type OtaPackageRepository, type OtaPackageType } from '../store/ota-packages';
import type { TenantPolicyRepository } from '../store/tenant-policies';
import { SIGNATURE_ALGORITHM, type PackageSigning } from './package-signing';
import type { DowngradeGuard } from './downgrade-guard';

/** What `POST /api/otaPackage` carries (ThingsBoard's SaveOtaPackageInfoRequest), already schema-checked. */
export interface PackageInfoInput {
  id?: string;
  deviceProfileId: string | null;
  type: OtaPackageType | null;
  title: string | null;
  version: string | null;
  tag?: string | null;
  url?: string | null;
  usesUrl?: boolean;
  fileName?: string | null;
  contentType?: string | null;
  checksumAlgorithm?: ChecksumAlgorithm | null;
  checksum?: string | null;
  dataSize?: number | null;
  additionalInfo?: Record<string, unknown> | null;
  externalId?: string | null;
}

/** The bytes of an upload and what came with them. */
export interface UploadMeta {
  fileName: string | null;
  contentType: string | null;
  checksumAlgorithm: ChecksumAlgorithm | null;
  checksum: string | null;
  /** A detached base64 Ed25519 signature of the bytes' SHA-256, for keys kept offline. */
  signature?: string | null;
}

export interface PackageLimits {
  /** Largest single package in bytes (413 beyond). */
  maxPackageSize: number;
  /** Total bytes of packages per tenant; 0 = unlimited (ThingsBoard's maxOtaPackagesInBytes). */
  maxTenantStorage: number;
}

const MAX_LENGTH = 255;
const typeWord = (t: OtaPackageType): string => (t === 'FIRMWARE' ? 'firmware' : 'software');

/**
 * The OTA package repository with ThingsBoard's rules: validation messages, immutable fields,
 * deletion guards, assignment checks (reference §7). Bytes go to the blob store; rows to SQLite.
 */
export class OtaPackageService {
  constructor(
    private readonly packages: OtaPackageRepository,
    private readonly profiles: DeviceProfileRepository,
    private readonly devices: DeviceRepository,
    private readonly blobs: BlobStore,
    private readonly events: EngineEvents,
    readonly limits: PackageLimits,
    readonly signing: PackageSigning,
    private readonly policies: TenantPolicyRepository,
    /** Profile and device saves ask it before a package slot changes. */
    readonly downgrades: DowngradeGuard,
    /** The tenant profile's limits (tenant-limits.ts): maxOtaPackagesInBytes is checked on every upload. */
    private readonly limitsOf: TenantLimitsOf = async () => UNLIMITED,
  ) {}

  /** A package of the tenant; 404 when unknown, 403 when it is another tenant's. */
  async get(tenantId: TenantId, id: string, notFoundMessage?: 'generic'): Promise<OtaPackage> {
    const found = isUuid(id) ? await this.packages.findById(tenantId, id as OtaPackageId) : null;
    if (found) return found;
    if (isUuid(id) && (await this.packages.ownerOf(id))) throw forbidden();
    if (notFoundMessage === 'generic') throw new OtaError(404, "Requested item wasn't found!", ErrorCode.ITEM_NOT_FOUND);
    throw entityNotFound('Ota package', id);
  }

  page(tenantId: TenantId, link: PageLink): Promise<PageData<OtaPackage>> {
    return this.packages.page(tenantId, link);
  }

  pageForProfile(tenantId: TenantId, deviceProfileId: DeviceProfileId, type: OtaPackageType, link: PageLink): Promise<PageData<OtaPackage>> {
    return this.packages.page(tenantId, link, { deviceProfileId, type, withData: true });
  }

  count(tenantId: TenantId): Promise<number> {
    return this.packages.count(tenantId);
  }

  /** `POST /api/otaPackage` with JSON: create (no id) or update the package's info. */
  async saveInfo(tenantId: TenantId, input: PackageInfoInput): Promise<OtaPackage> {
    if (input.usesUrl && !input.url?.trim()) throw invalid('Ota package URL should be specified!');
    const before = input.id ? await this.get(tenantId, input.id) : null;
    const pkg = this.fromInput(tenantId, input, before);
    await this.validateInfo(tenantId, pkg);
    if (before) this.validateUpdate(before, pkg);
    await this.checkUnique(pkg, before);
    if (before) await this.packages.update(pkg);
    else await this.packages.insert(pkg);
    this.events.emit('packageSaved', { before, after: pkg });
    return pkg;
  }

  /**
   * Fails fast, before any byte is read, when an upload to `id` can't succeed whatever it holds:
   * unknown package, another tenant's, or a URL-only package.
   */
  async checkUploadable(tenantId: TenantId, id: string): Promise<OtaPackage> {
    const pkg = await this.get(tenantId, id);
    if (pkg.url) throw invalid('Updating otaPackage URL is prohibited!');
    return pkg;
  }

  /** Streams an upload into a staged blob, computing SHA-256 and `algorithm` on the way. */
  async stage(source: Readable, algorithm: ChecksumAlgorithm | null): Promise<StagedBlob> {
    try {
      return await this.blobs.stage(source, { maxSize: this.limits.maxPackageSize, algorithms: algorithm ? [algorithm] : [] });
    } catch (err) {
      if (err instanceof BlobTooLargeError) throw tooLarge(this.limits.maxPackageSize);
      throw err;
    }
  }

  discard(staged: StagedBlob): Promise<void> {
    return this.blobs.discard(staged);
  }

  /**
   * `POST /api/otaPackage/{id}`: attaches staged bytes to an existing package. The staged file is
   * consumed (committed or removed) whatever happens.
   */
  async attachData(tenantId: TenantId, id: string, staged: StagedBlob, meta: UploadMeta): Promise<OtaPackage> {
    try {
      const before = await this.checkUploadable(tenantId, id);
      const pkg = await this.withData(before, staged, meta);
      this.validateUpdate(before, pkg);
      if (before.blobSha256 !== null && before.blobSha256 !== pkg.blobSha256) throw invalid('Updating otaPackage data is prohibited!');
      if (before.blobSha256 === null) await this.checkStorage(tenantId, pkg.dataSize ?? 0);
      await this.blobs.commit(staged, async () => {
        // One conditional write: of simultaneous uploads of different bytes (on any instance) one wins.
        if (await this.packages.attachData(pkg)) return;
        if (!(await this.packages.findById(tenantId, before.id))) throw entityNotFound('Ota package', id);
        throw invalid('Updating otaPackage data is prohibited!');
      });
      this.events.emit('packageSaved', { before, after: pkg });
      return pkg;
    } catch (err) {
      await this.blobs.discard(staged);
      throw err;
    }
  }

  /**
   * The one-request upload admins script: multipart `POST /api/otaPackage` with title, version,
   * deviceProfileId, type (+ checksum fields) and the file, created with its data at once.
   */
  async createWithData(tenantId: TenantId, input: PackageInfoInput, staged: StagedBlob, meta: UploadMeta): Promise<OtaPackage> {
    try {
      // The bytes come with the request: no URL, and the file fields are the upload's.
      const info = this.fromInput(
        tenantId,
        { ...input, url: null, usesUrl: false, fileName: null, contentType: null, checksumAlgorithm: null, checksum: null, dataSize: null },
        null,
      );
      await this.validateInfo(tenantId, info);
      await this.checkUnique(info, null);
      const pkg = await this.withData(info, staged, meta);
      await this.checkStorage(tenantId, pkg.dataSize ?? 0);
      await this.blobs.commit(staged, async () => {
        await this.checkUnique(pkg, null);
        await this.packages.insert(pkg);
      });
      this.events.emit('packageSaved', { before: null, after: pkg });
      return pkg;
    } catch (err) {
      await this.blobs.discard(staged);
      throw err;
    }
  }

  /** `DELETE /api/otaPackage/{id}`: refused while a device or profile uses it; the blob goes with its last package. */
  async delete(tenantId: TenantId, id: string): Promise<void> {
    const pkg = await this.get(tenantId, id);
    const word = pkg.type === 'FIRMWARE' ? 'otaPackage' : 'software';
    if ((await this.devices.countUsingPackage(tenantId, pkg.id)) > 0) throw invalid(`The ${word} referenced by the devices cannot be deleted!`);
    if ((await this.profiles.countUsingPackage(tenantId, pkg.id)) > 0) throw invalid(`The ${word} referenced by the device profile cannot be deleted!`);
    await this.forget(pkg);
    this.events.emit('packageDeleted', { pkg });
  }

  /** Removes a package row and, when no other package shares them, its bytes. */
  async forget(pkg: OtaPackage): Promise<void> {
    const remove = (): Promise<void> => this.packages.delete(pkg.tenantId, pkg.id);
    if (pkg.blobSha256 === null) return remove();
    const sha = pkg.blobSha256;
    await this.blobs.release(sha, remove, async () => (await this.packages.countUsingBlob(sha)) > 0);
  }

  /** The stored bytes, whole or `[start, end]` inclusive. */
  openData(pkg: OtaPackage, range?: { start: number; end: number }): Readable {
    if (pkg.blobSha256 === null) throw invalid('OtaPackage data should be specified!');
    return this.blobs.read(pkg.blobSha256, range);
  }

  /**
   * ThingsBoard's AbstractHasOtaPackageValidator: may `packageId` fill the `type` slot of a device
   * or profile of `deviceProfileId`? Throws its exact messages otherwise. The tenant's signing policy
   * applies only to a package being assigned (`newlyAssigned`, the default), not to one a save keeps.
   */
  async checkAssignable(
    tenantId: TenantId,
    type: OtaPackageType,
    packageId: string,
    deviceProfileId: DeviceProfileId | null,
    opts: { newlyAssigned?: boolean } = {},
  ): Promise<void> {
    const word = typeWord(type);
    const owner = isUuid(packageId) ? await this.packages.ownerOf(packageId) : null;
    if (!owner) throw invalid(`Can't assign non-existent ${word}!`);
    if (owner !== tenantId) throw invalid(`Can't assign ${word} from different tenant!`);
    const pkg = (await this.packages.findById(tenantId, packageId as OtaPackageId)) as OtaPackage;
    if (pkg.type !== type) throw invalid(`Can't assign ${word} with type: ${pkg.type}`);
    if (!hasData(pkg)) throw invalid(`Can't assign ${word} with empty data!`);
    if (pkg.deviceProfileId !== deviceProfileId) throw invalid(`Can't assign ${word} with different deviceProfile!`);
    // The policy governs assigning: a package assigned before it was set stays through other edits (a rename).
    if (opts.newlyAssigned !== false && !pkg.signature && (await this.policies.get(tenantId)).requireSignedPackages) {
      throw invalid(`Can't assign unsigned ${word}: the tenant's policy requires signed packages! Upload it again to sign it.`);
    }
  }

  /** The package with the staged bytes and their checksum, after ThingsBoard's data checks. */
  private async withData(pkg: OtaPackage, staged: StagedBlob, meta: UploadMeta): Promise<OtaPackage> {
    if (!meta.fileName) throw invalid('OtaPackage file name should be specified!');
    if (!meta.contentType) throw invalid('OtaPackage content type should be specified!');
    if (staged.size === 0) throw invalid('OtaPackage data should be specified!');
    // SHA256 when none is named; ThingsBoard itself insists on the parameter.
    const algorithm = meta.checksumAlgorithm ?? 'SHA256';
    const computed = staged.checksums[algorithm] ?? (await checksumFile(algorithm, staged.tempPath));
    // Exact string comparison, as ThingsBoard does: the checksum must be lower-case hex (§8).
    if (meta.checksum && meta.checksum !== computed) throw invalid('Wrong otaPackage file!');
    // Signed over the SHA-256 the upload computed while streaming: see package-signing.ts for why.
    let signature: string | null;
    if (meta.signature) {
      await this.signing.checkDetached(pkg.tenantId, staged.sha256, meta.signature);
      signature = Buffer.from(meta.signature.trim(), 'base64').toString('base64');
    } else {
      signature = await this.signing.sign(pkg.tenantId, staged.sha256);
    }
    return {
      ...pkg,
      url: null,
      fileName: meta.fileName,
      contentType: meta.contentType,
      checksumAlgorithm: algorithm,
      checksum: meta.checksum || computed,
      dataSize: staged.size,
      blobSha256: staged.sha256,
      signature,
      signatureAlgorithm: signature ? SIGNATURE_ALGORITHM : null,
    };
  }

  /** The package a save makes of the request and the stored package (if any). */
  private fromInput(tenantId: TenantId, input: PackageInfoInput, before: OtaPackage | null): OtaPackage {
    return {
      id: (before?.id ?? newId<'OTA_PACKAGE'>()) as OtaPackageId,
      tenantId,
      deviceProfileId: (input.deviceProfileId ?? null) as DeviceProfileId,
      type: input.type as OtaPackageType,
      title: input.title ?? '',
      version: input.version ?? '',
      tag: input.tag ?? null,
      url: input.usesUrl === false ? null : (input.url ?? null),
      fileName: input.fileName ?? null,
      contentType: input.contentType ?? null,
      checksumAlgorithm: input.checksumAlgorithm ?? null,
      checksum: input.checksum ?? null,
      dataSize: input.dataSize ?? null,
      blobSha256: before?.blobSha256 ?? null,
      additionalInfo: input.additionalInfo ?? null,
      externalId: input.externalId ?? null,
      createdTime: before?.createdTime ?? Date.now(),
      // Only an upload signs: a signature is never taken from, nor lost by, an info save.
      signature: before?.signature ?? null,
      signatureAlgorithm: before?.signatureAlgorithm ?? null,
    };
  }

  private async validateInfo(tenantId: TenantId, p: OtaPackage): Promise<void> {
    // ThingsBoard runs the @Length annotation checks first, with these words.
    const tooLong = (
      [
        ['title', p.title],
        ['version', p.version],
        ['tag', p.tag],
        ['url', p.url],
        ['file name', p.fileName],
        ['contentType', p.contentType],
      ] as const
    )
      .filter(([, v]) => v !== null && v.length > MAX_LENGTH)
      .map(([k]) => `${k} length must be equal or less than ${MAX_LENGTH}`)
      .sort();
    if (tooLong.length) throw invalid(`Validation error: ${tooLong.join(', ')}`);
    if (!p.title.trim()) throw invalid('OtaPackage title should be specified!');
    if (p.title.includes('\u0000')) throw invalid('OtaPackage title should not contain 0x00 symbol!');
    if (p.deviceProfileId === null) throw invalid('OtaPackage is referencing to non-existent device profile!');
    if (!isUuid(p.deviceProfileId) || !(await this.profiles.findById(tenantId, p.deviceProfileId))) {
      throw invalid('OtaPackage is referencing to non-existent device profile!');
    }
    if (!p.type) throw invalid('Type should be specified!');
    if (!p.version.trim()) throw invalid('OtaPackage version should be specified!');
    if (p.version.includes('\u0000')) throw invalid('OtaPackage version should not contain 0x00 symbol!');
  }

  /** ThingsBoard's BaseOtaPackageDataValidator.validateUpdate, rule for rule and message for message. */
  private validateUpdate(old: OtaPackage, p: OtaPackage): void {
    if (old.type !== p.type) throw invalid('Updating type is prohibited!');
    if (old.title !== p.title) throw invalid('Updating otaPackage title is prohibited!');
    if (old.version !== p.version) throw invalid('Updating otaPackage version is prohibited!');
    if ((old.tag ?? null) !== (p.tag ?? null)) throw invalid('Updating otaPackage tag is prohibited!');
    if (old.deviceProfileId !== p.deviceProfileId) throw invalid('Updating otaPackage deviceProfile is prohibited!');
    if (old.fileName !== null && old.fileName !== p.fileName) throw invalid('Updating otaPackage file name is prohibited!');
    if (old.contentType !== null && old.contentType !== p.contentType) throw invalid('Updating otaPackage content type is prohibited!');
    // ThingsBoard reports checksum changes with the "content type" text too (a copy-paste quirk kept on purpose).
    if (old.checksumAlgorithm !== null && old.checksumAlgorithm !== p.checksumAlgorithm) throw invalid('Updating otaPackage content type is prohibited!');
    if (old.checksum !== null && old.checksum !== p.checksum) throw invalid('Updating otaPackage content type is prohibited!');
    if (old.dataSize !== null && old.dataSize !== p.dataSize) throw invalid('Updating otaPackage data size is prohibited!');
    if (old.url !== null && old.url !== p.url) throw invalid('Updating otaPackage URL is prohibited!');
  }

  private async checkUnique(p: OtaPackage, before: OtaPackage | null): Promise<void> {
    const same = await this.packages.findByTitleVersion(p.tenantId, p.title, p.version);
    if (same && same.id !== before?.id) throw invalid('OtaPackage with such title and version already exists!');
  }

  /**
   * ThingsBoard's `validateMaxSumDataSizePerTenant`: the tenant profile's maxOtaPackagesInBytes,
   * and the engine-wide cap of every tenant (`maxTenantStorage`), whichever is lower.
   */
  private async checkStorage(tenantId: TenantId, adding: number): Promise<void> {
    const caps = [this.limits.maxTenantStorage, (await this.limitsOf(tenantId)).maxOtaPackagesInBytes].filter((n) => n > 0);
    const max = caps.length ? Math.min(...caps) : 0;
    if (max > 0 && (await this.packages.totalDataSize(tenantId)) + adding > max) {
      throw invalid(`Ota packages total size exceeds the maximum of ${displaySize(max)}`);
    }
  }
}

/**
 * commons-io `FileUtils.byteCountToDisplaySize`, which ThingsBoard's storage-limit message uses:
 * the largest unit that fits, rounded down ("2 MB", "1 GB", "512 bytes").
 */
export function displaySize(bytes: number): string {
  const units: [number, string][] = [
    [1024 ** 6, 'EB'],
    [1024 ** 5, 'PB'],
    [1024 ** 4, 'TB'],
    [1024 ** 3, 'GB'],
    [1024 ** 2, 'MB'],
    [1024, 'KB'],
  ];
  for (const [size, unit] of units) if (bytes >= size) return `${Math.floor(bytes / size)} ${unit}`;
  return `${bytes} bytes`;
}
