import { createReadStream } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { parseChecksumAlgorithm, type ChecksumAlgorithm } from './checksum';
import type { OtaEngine } from '../engine';
import { invalid } from '../errors';
import { isUuid, type TenantId } from '../ids';
import { packageInfoJson } from '../admin/wire';
import type { PackageInfoInput } from './ota-package-service';
import { OTA_PACKAGE_TYPES, type OtaPackageType } from '../store/ota-packages';

/** What the ota-package-store node (or any caller outside HTTP) can ask of the package repository. */
export type PackageCommand =
  | { op: 'create'; info: PackageInfoFields }
  | { op: 'upload'; packageId?: string; info?: PackageInfoFields; data: UploadSource; checksumAlgorithm?: string; checksum?: string; fileName?: string; contentType?: string }
  | { op: 'list'; pageSize?: number; page?: number; textSearch?: string; sortProperty?: string; sortOrder?: 'ASC' | 'DESC' }
  | { op: 'get'; packageId: string }
  | { op: 'delete'; packageId: string };

export type PackageOperation = PackageCommand['op'];
export const PACKAGE_OPERATIONS: readonly PackageOperation[] = ['create', 'upload', 'list', 'get', 'delete'];

/** Bytes in memory, or a file to stream from. */
export type UploadSource = { buffer: Buffer } | { file: string };

/** Package info as a flow writes it: the profile by id, `{id}` reference or name. */
export interface PackageInfoFields {
  title?: string;
  version?: string;
  type?: string;
  deviceProfileId?: string | { id: string };
  deviceProfile?: string;
  tag?: string;
  url?: string;
  description?: string;
}

/** Runs one command for a tenant; the result is ThingsBoard's JSON (package info, or a page of them). */
export async function runPackageCommand(engine: OtaEngine, tenantId: TenantId, cmd: PackageCommand): Promise<unknown> {
  const packages = engine.packages;
  switch (cmd.op) {
    case 'create':
      return packageInfoJson(await packages.saveInfo(tenantId, await toInput(engine, tenantId, cmd.info)));
    case 'upload': {
      const algorithm = cmd.checksumAlgorithm ? parseAlgorithm(cmd.checksumAlgorithm) : null;
      const source = 'buffer' in cmd.data ? Readable.from([cmd.data.buffer]) : createReadStream(cmd.data.file);
      const fileName = cmd.fileName ?? ('file' in cmd.data ? path.basename(cmd.data.file) : null);
      if (!cmd.packageId && !cmd.info) throw invalid('Upload needs msg.packageId (an existing package) or package info to create one');
      // Fail before reading any byte when the target can't take them.
      if (cmd.packageId) await packages.checkUploadable(tenantId, cmd.packageId);
      const input = cmd.info && !cmd.packageId ? await toInput(engine, tenantId, cmd.info) : null;
      const staged = await packages.stage(source, algorithm);
      const meta = {
        fileName: fileName ?? 'package.bin',
        contentType: cmd.contentType ?? 'application/octet-stream',
        checksumAlgorithm: algorithm,
        checksum: cmd.checksum ?? null,
      };
      const pkg = input ? await packages.createWithData(tenantId, input, staged, meta) : await packages.attachData(tenantId, cmd.packageId as string, staged, meta);
      return packageInfoJson(pkg);
    }
    case 'list': {
      const page = await packages.page(tenantId, {
        pageSize: cmd.pageSize ?? 100,
        page: cmd.page ?? 0,
        ...(cmd.textSearch ? { textSearch: cmd.textSearch } : {}),
        ...(cmd.sortProperty ? { sortProperty: cmd.sortProperty } : {}),
        ...(cmd.sortOrder ? { sortOrder: cmd.sortOrder } : {}),
      });
      return { ...page, data: page.data.map(packageInfoJson) };
    }
    case 'get':
      return packageInfoJson(await packages.get(tenantId, cmd.packageId));
    case 'delete':
      await packages.delete(tenantId, cmd.packageId);
      return { deleted: cmd.packageId };
  }
}

function parseAlgorithm(name: string): ChecksumAlgorithm {
  const alg = parseChecksumAlgorithm(name);
  if (!alg) throw invalid(`Unknown checksum algorithm: ${name}`);
  return alg;
}

async function toInput(engine: OtaEngine, tenantId: TenantId, info: PackageInfoFields): Promise<PackageInfoInput> {
  const type = info.type?.toUpperCase();
  if (type !== undefined && !OTA_PACKAGE_TYPES.includes(type as OtaPackageType)) throw invalid(`type must be FIRMWARE or SOFTWARE, not ${info.type}`);
  let profileId: string | null = typeof info.deviceProfileId === 'object' ? info.deviceProfileId.id : (info.deviceProfileId ?? null);
  const profileName = info.deviceProfile ?? (profileId && !isUuid(profileId) ? profileId : undefined);
  if (profileName !== undefined) {
    const profile = await engine.profiles.findByName(tenantId, profileName);
    if (!profile) throw invalid(`No device profile named '${profileName}'`);
    profileId = profile.id;
  }
  return {
    deviceProfileId: profileId,
    type: (type ?? null) as OtaPackageType | null,
    title: info.title ?? null,
    version: info.version ?? null,
    tag: info.tag ?? null,
    url: info.url ?? null,
    usesUrl: !!info.url,
    additionalInfo: info.description ? { description: info.description } : null,
  };
}
