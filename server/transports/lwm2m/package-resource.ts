import type { OtaPackageId, TenantId } from '../../ids';
import type { OtaPackageRepository, OtaPackageType } from '../../store/ota-packages';
import { planBlock } from '../coap/block-wise';
import type { PackagePages } from '../package-pages';
import { Code, reply, type CoapRequest, type Reply } from '../coap/messages';

/** One block of a pull served, for the download progress of the device that asked. */
export interface PulledBlock {
  type: OtaPackageType;
  packageId: string;
  offset: number;
  bytes: number;
  size: number;
}

/**
 * The LwM2M server's own `tbfw` and `tbsw` CoAP resources (reference §6): `GET /tbfw/{packageId}`
 * answers the package's bytes, cut into Block2 blocks [RFC 7959 §2.4] when larger than a block.
 * ThingsBoard looks the package up by UUID with no authentication; we serve a package only while
 * it is the target of an LwM2M device (`allow`), and from that device's tenant, so an id alone
 * reaches nothing else. Anything else is 4.04; a method other than GET is 4.05.
 */
export class PackageResource {
  /** Packages some LwM2M device is told to pull, and their tenant. */
  private readonly servable = new Map<string, TenantId>();

  constructor(private readonly deps: { packages: OtaPackageRepository; pages: PackagePages; blockSize: number }) {}

  allow(packageId: string, tenantId: TenantId): void {
    this.servable.set(packageId, tenantId);
  }

  forget(packageId: string): void {
    this.servable.delete(packageId);
  }

  static handles(req: CoapRequest): boolean {
    return req.path.length >= 1 && (req.path[0] === 'tbfw' || req.path[0] === 'tbsw');
  }

  async serve(req: CoapRequest, onBlock: (block: PulledBlock) => void): Promise<Reply> {
    if (req.code !== '0.01') return reply(Code.METHOD_NOT_ALLOWED);
    const id = req.path[1];
    if (req.path.length !== 2 || !id) return reply(Code.NOT_FOUND);
    const tenantId = this.servable.get(id);
    if (!tenantId) return reply(Code.NOT_FOUND);
    const pkg = await this.deps.packages.findById(tenantId, id as OtaPackageId);
    if (!pkg || pkg.url || pkg.blobSha256 === null || pkg.dataSize === null) return reply(Code.NOT_FOUND);
    const size = pkg.dataSize;
    const plan = planBlock(size, req.block2, this.deps.blockSize);
    if ('outOfRange' in plan) return reply(Code.BAD_OPTION);
    const start = plan.whole ? 0 : plan.start;
    const end = plan.whole ? size : plan.end;
    const payload = end > start ? await this.deps.pages.read(pkg.blobSha256, size, start, end) : Buffer.alloc(0);
    if (payload.length) onBlock({ type: pkg.type, packageId: pkg.id, offset: start, bytes: payload.length, size });
    const r: Reply = { ...reply(Code.CONTENT, payload, 42), etag: Buffer.from(pkg.blobSha256.slice(0, 16), 'hex') };
    return plan.whole ? r : { ...r, block2: plan.block, size2: size };
  }
}
