import { createHash } from 'node:crypto';
import type { AttributeMap } from '../../store/attributes';
import type { DeviceContext } from '../device-context';
import type { Device } from '../../store/devices';
import { chunkRange } from '../firmware-download';
import type { DeviceId } from '../../ids';
import type { OtaPackageType } from '../../store/ota-packages';
import { parseTelemetry } from '../../store/telemetry';
import type { UplinkEvent } from '../../pipeline/uplink';
import type { PackagePages } from '../package-pages';
import { planBlock, type BlockPlan } from './block-wise';
import { Downloads, type Download } from './downloads';
import type { ProvisionRequest, ProvisionResponse } from '../../devices/device-provisioning';
import { ProtoPayloadError, ProtoPayloads, protoPayloadsOf } from '../proto-payloads';
import { Code, ContentFormat, Method, peerKey, reply, type CoapRequest, type Reply } from './messages';

export interface CoapDeviceApiDeps {
  ctx: DeviceContext;
  /** Pages of package files, shared by the downloads of one package. */
  pages: PackagePages;
  /** Largest Block2 block we send; a client may ask for smaller ones. */
  blockSize: number;
  /** Downloads kept between blocks (OTA_COAP_MAX_DOWNLOADS). */
  maxDownloads: number;
  now(): number;
  /** Cancels the observation of a peer and token (a GET with Observe 1). */
  cancelObservation(req: CoapRequest): void;
  uplink(ev: UplinkEvent): void;
}

/** What a request comes to: a reply, or an observation to register (the registry answers it). */
export type ApiResult = { reply: Reply } | { observe: { device: Device; attributes: AttributeMap; proto: boolean } };

const answer = (r: Reply): ApiResult => ({ reply: r });
const EMPTY = Buffer.alloc(0);

/** The bytes `[start, end)` of a package one response carries, of a chunk of `length` bytes cut by `plan`. */
interface Cut {
  start: number;
  end: number;
  length: number;
  plan: Exclude<BlockPlan, { outOfRange: true }>;
}
const status = (code: Reply['code']): ApiResult => answer(reply(code));

/**
 * ThingsBoard's CoAP device API (reference §5), over requests already parsed:
 *
 *   POST /api/v1/{token}/telemetry               2.01
 *   POST /api/v1/{token}/attributes              2.01
 *   GET  /api/v1/{token}/attributes?clientKeys=&sharedKeys=   2.05 {client, shared}, 4.04 when empty
 *   GET  /api/v1/{token}/attributes  Observe 0 / 1           register / cancel
 *   GET  /fw/{token}?title=&version=&size=&chunk=            the firmware (/sw: software)
 *   GET  /api/v1/{token}/firmware, /software                 the same (ThingsBoard answers 4.00 there)
 *   POST /api/v1/provision                                   device self-provisioning
 *
 * A device whose profile is protobuf (proto-payloads.ts) posts in its profile's schemas and is
 * answered in ThingsBoard's messages, as octet-stream (`ProtoCoapAdaptor`); a payload its schema
 * does not read is 4.00.
 *
 * An unknown token is 4.01; a method a resource does not have is 4.05; any other path is 4.04.
 */
export class CoapDeviceApi {
  private readonly downloadsUnderWay: Downloads;

  constructor(private readonly deps: CoapDeviceApiDeps) {
    this.downloadsUnderWay = new Downloads(deps.now, deps.maxDownloads);
  }

  /** Downloads kept between blocks right now. */
  get downloads(): number {
    return this.downloadsUnderWay.size;
  }

  /** The device changed (deleted, its token or package): its next block is looked up afresh. */
  forgetDevice(deviceId: DeviceId): void {
    this.downloadsUnderWay.forgetDevice(deviceId);
  }

  forgetDownloads(): void {
    this.downloadsUnderWay.clear();
  }

  async handle(req: CoapRequest): Promise<ApiResult> {
    const [first, second, token, feature] = req.path;
    // A block after the first of a download under way: served from what its first block found.
    if (req.block2 !== null && req.block2.num > 0 && req.code === Method.GET) {
      const known = this.downloadsUnderWay.get(downloadKey(req));
      if (known) return this.sendBlock(req, known);
    }
    if (first === 'fw' || first === 'sw') {
      if (req.code !== Method.GET) return status(Code.METHOD_NOT_ALLOWED);
      // ThingsBoard's OtaPackageTransportResource wants exactly /fw/{token}, else 4.01 (reference §5).
      if (req.path.length !== 2 || second === undefined) return status(Code.UNAUTHORIZED);
      return this.withDevice(second, (d) => this.download(req, d, first === 'fw' ? 'FIRMWARE' : 'SOFTWARE'));
    }
    if (first === 'api' && second === 'v1' && req.path.length === 3 && token === 'provision') {
      // ThingsBoard's PROVISION feature: POST only; its GET handler calls other features invalid (4.00).
      if (req.code === Method.GET) return status(Code.BAD_REQUEST);
      if (req.code !== Method.POST) return status(Code.METHOD_NOT_ALLOWED);
      return this.provision(req);
    }
    if (first !== 'api' || second !== 'v1' || req.path.length !== 4 || token === undefined) return status(Code.NOT_FOUND);
    switch (feature) {
      case 'telemetry':
        // ThingsBoard: "Can't fetch/subscribe to timeseries updates" is a 4.00.
        if (req.code === Method.GET) return status(Code.BAD_REQUEST);
        if (req.code !== Method.POST) return status(Code.METHOD_NOT_ALLOWED);
        return this.withDevice(token, (d) => this.postTelemetry(req, d));
      case 'attributes':
        if (req.code === Method.POST) return this.withDevice(token, (d) => this.postAttributes(req, d));
        if (req.code !== Method.GET) return status(Code.METHOD_NOT_ALLOWED);
        return this.withDevice(token, (d) => this.getAttributes(req, d));
      case 'firmware':
      case 'software':
        if (req.code !== Method.GET) return status(Code.METHOD_NOT_ALLOWED);
        return this.withDevice(token, (d) => this.download(req, d, feature === 'firmware' ? 'FIRMWARE' : 'SOFTWARE'));
      default:
        return status(Code.NOT_FOUND);
    }
  }

  private async withDevice(token: string, handler: (d: Device) => Promise<ApiResult>): Promise<ApiResult> {
    const device = await this.deps.ctx.lookups.deviceByToken(token);
    return device ? handler(device) : status(Code.UNAUTHORIZED);
  }

  private uplinkBase(d: Device) {
    return { tenantId: d.tenantId, deviceId: d.id, deviceName: d.name, transport: 'COAP' as const, ts: this.deps.now() };
  }

  /** The device's profile's protobuf payloads; null when it speaks JSON. The profile comes from the instance's lookup cache. */
  private async payloadsOf(d: Device): Promise<ProtoPayloads | 'invalid' | null> {
    return protoPayloadsOf(await this.deps.ctx.lookups.profileOf(d.tenantId, d.deviceProfileId));
  }

  /** A posted body as JSON: parsed, or decoded from the profile's schema; undefined when it is neither. */
  private async uplinkBody(req: CoapRequest, d: Device, decode: (p: ProtoPayloads) => unknown): Promise<unknown> {
    const payloads = await this.payloadsOf(d);
    if (!payloads) return parseJson(req.payload);
    if (payloads === 'invalid') return undefined;
    try {
      return decode(payloads);
    } catch (err) {
      if (err instanceof ProtoPayloadError) return undefined;
      throw err;
    }
  }

  private async postTelemetry(req: CoapRequest, d: Device): Promise<ApiResult> {
    const entries = parseTelemetry(await this.uplinkBody(req, d, (p) => p.decodeTelemetry(req.payload)), this.deps.now());
    if (!entries) return status(Code.BAD_REQUEST);
    await this.deps.ctx.telemetry.save(d.id, entries);
    this.deps.uplink({ ...this.uplinkBase(d), kind: 'telemetry', entries });
    return status(Code.CREATED);
  }

  private async postAttributes(req: CoapRequest, d: Device): Promise<ApiResult> {
    const body = await this.uplinkBody(req, d, (p) => p.decodeAttributes(req.payload));
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return status(Code.BAD_REQUEST);
    const attributes = body as AttributeMap;
    await this.deps.ctx.attributes.save(d.id, 'CLIENT', attributes, this.deps.now());
    this.deps.uplink({ ...this.uplinkBase(d), kind: 'attributes', attributes });
    return status(Code.CREATED);
  }

  private async getAttributes(req: CoapRequest, d: Device): Promise<ApiResult> {
    const { attributes } = this.deps.ctx;
    const proto = (await this.payloadsOf(d)) !== null;
    // Observe 0 registers: the first notification is every shared attribute, flat (reference §5).
    if (req.observe === 0) return { observe: { device: d, attributes: await attributes.get(d.id, 'SHARED'), proto } };
    // Observe 1 cancels, and the GET is then served as usual [RFC 7641 §3.6].
    if (req.observe === 1) this.deps.cancelObservation(req);
    const clientKeys = keyList(req.query.get('clientKeys'));
    const sharedKeys = keyList(req.query.get('sharedKeys'));
    const all = clientKeys === undefined && sharedKeys === undefined;
    const out: Record<string, AttributeMap> = {};
    if (all || clientKeys !== undefined) {
      const client = await attributes.get(d.id, 'CLIENT', all ? undefined : clientKeys);
      if (Object.keys(client).length) out.client = client;
    }
    if (all || sharedKeys !== undefined) {
      const shared = await attributes.get(d.id, 'SHARED', all ? undefined : sharedKeys);
      if (Object.keys(shared).length) out.shared = shared;
    }
    // Unlike HTTP (200 {}), ThingsBoard's CoAP transport answers 4.04 when nothing was found.
    if (!out.client && !out.shared) return status(Code.NOT_FOUND);
    if (proto) {
      const body = ProtoPayloads.encodeAttributeResponse(0, out, this.deps.now());
      return answer(this.body(req, body, ContentFormat.OCTET_STREAM, etagOf(body.toString('base64'))));
    }
    return answer(this.body(req, Buffer.from(JSON.stringify(out)), ContentFormat.JSON, etagOf(JSON.stringify(out))));
  }

  /**
   * `POST /api/v1/provision` (ThingsBoard's `processProvision`): JSON, or else a protobuf
   * ProvisionDeviceRequestMsg; the answer in the same format, 2.01 on SUCCESS and 4.00 otherwise
   * (the status says why). A body that is neither is an empty 4.00.
   */
  private async provision(req: CoapRequest): Promise<ApiResult> {
    let request = parseJson(req.payload);
    const json = request !== undefined;
    if (!json) {
      try {
        request = ProtoPayloads.decodeProvisionRequest(req.payload);
      } catch (err) {
        if (err instanceof ProtoPayloadError) return status(Code.BAD_REQUEST);
        throw err;
      }
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) return status(Code.BAD_REQUEST);
    const provisioning = this.deps.ctx.provisioning;
    const result: ProvisionResponse = provisioning ? await provisioning.provision(request as ProvisionRequest) : { status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' };
    const code = result.status === 'SUCCESS' ? Code.CREATED : Code.BAD_REQUEST;
    // Californium's respond(code, String) marks the JSON text/plain; the protobuf answer carries no format.
    return answer(json ? reply(code, Buffer.from(JSON.stringify(result)), ContentFormat.TEXT_PLAIN) : reply(code, ProtoPayloads.encodeProvisionResponse(result)));
  }

  /**
   * A package download: `size` and `chunk` cut the application-level chunk as over HTTP (reference
   * §4), then Block2 cuts that into blocks; only the block sent is read from the blob store.
   */
  private async download(req: CoapRequest, d: Device, type: OtaPackageType): Promise<ApiResult> {
    const q = (k: string): string | undefined => req.query.get(k)?.[0];
    const found = await this.deps.ctx.lookups.packageOf(d.tenantId, d.id, type);
    if ('error' in found) return status(Code.NOT_FOUND);
    const { pkg } = found;
    // Title and version are checked only when given, case-sensitive (reference §5).
    const title = q('title');
    const version = q('version');
    if ((title !== undefined && title !== pkg.title) || (version !== undefined && version !== pkg.version)) return status(Code.BAD_REQUEST);
    const download = { device: d, type, pkg };
    const result = await this.sendBlock(req, download);
    if ('reply' in result && result.reply.block2?.more) this.downloadsUnderWay.set(downloadKey(req), download);
    return result;
  }

  /**
   * A block of a download under way whose bytes are in memory, answered at once (the endpoint
   * then sends it in the turn the request arrived); undefined when that takes a lookup or a read
   * (then `handle`).
   */
  block(req: CoapRequest): Reply | undefined {
    if (req.block2 === null || req.block2.num === 0 || req.code !== Method.GET) return undefined;
    const known = this.downloadsUnderWay.get(downloadKey(req));
    if (!known) return undefined;
    const cut = this.cut(req, known);
    if ('reply' in cut) return cut.reply;
    const payload = cut.end > cut.start ? this.deps.pages.cached(known.pkg.blobSha256, known.pkg.dataSize, cut.start, cut.end) : EMPTY;
    return payload && this.blockReply(known, cut, payload);
  }

  /** One response of a download: which bytes (`cut`), read from the blob store's pages. */
  private async sendBlock(req: CoapRequest, download: Download): Promise<ApiResult> {
    const cut = this.cut(req, download);
    if ('reply' in cut) return cut;
    const { pkg } = download;
    const payload = cut.end > cut.start ? await this.deps.pages.read(pkg.blobSha256, pkg.dataSize, cut.start, cut.end) : EMPTY;
    return answer(this.blockReply(download, cut, payload));
  }

  /**
   * The bytes of the package one response carries: `size` and `chunk` cut the application-level
   * chunk as over HTTP (reference §4), then Block2 cuts that into blocks.
   */
  private cut(req: CoapRequest, { pkg }: Download): { reply: Reply } | Cut {
    const q = (k: string): string | undefined => req.query.get(k)?.[0];
    const size = Number(q('size') ?? 0);
    const chunk = Number(q('chunk') ?? 0);
    if (!Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(chunk) || chunk < 0) return { reply: reply(Code.BAD_REQUEST) };
    const slice = chunkRange(pkg.dataSize, size, chunk);
    const length = slice.end - slice.start;
    const plan = planBlock(length, req.block2, this.deps.blockSize);
    if ('outOfRange' in plan) return { reply: reply(Code.BAD_OPTION) };
    const start = slice.start + (plan.whole ? 0 : plan.start);
    const end = plan.whole ? slice.end : slice.start + plan.end;
    return { start, end, length, plan };
  }

  /**
   * The response carrying `payload`, bytes `[start, end)`. ThingsBoard sends nothing for a chunk
   * past the end (the client times out); an empty 2.05 ends the download at once, as HTTP's empty
   * 200 does (a documented deviation).
   */
  private blockReply({ device: d, type, pkg }: Download, { start, end, length, plan }: Cut, payload: Buffer): Reply {
    if (payload.length !== end - start) throw new Error(`blob ${pkg.blobSha256} gave ${payload.length} bytes at ${start}, expected ${end - start}`);
    // Object literals of one shape, not spreads: this runs for every block (a spread cost ~3 us each).
    if (payload.length) {
      const ts = this.deps.now();
      this.deps.uplink({
        tenantId: d.tenantId,
        deviceId: d.id,
        deviceName: d.name,
        transport: 'COAP',
        ts,
        kind: 'download',
        type,
        packageId: pkg.id,
        bytes: payload.length,
        offset: start,
        size: pkg.dataSize,
      });
    }
    const etag = etagOfBlob(pkg.blobSha256);
    const contentFormat = ContentFormat.OCTET_STREAM;
    if (plan.whole) return payload.length ? { code: Code.CONTENT, payload, contentFormat, etag } : { code: Code.CONTENT, contentFormat, etag };
    return { code: Code.CONTENT, payload, contentFormat, etag, block2: plan.block, size2: length };
  }

  /** A body held in memory (a JSON answer), cut by Block2 when it is larger than a block. */
  private body(req: CoapRequest, body: Buffer, contentFormat: number, etag: Buffer): Reply {
    const plan = planBlock(body.length, req.block2, this.deps.blockSize);
    if ('outOfRange' in plan) return reply(Code.BAD_OPTION);
    if (plan.whole) return reply(Code.CONTENT, body, contentFormat);
    return { ...reply(Code.CONTENT, body.subarray(plan.start, plan.end), contentFormat), block2: plan.block, size2: body.length, etag };
  }
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Comma-separated or repeated keys, as ThingsBoard reads them (reference §3.2, §4); an empty list
 * is no list ("both absent/empty → all").
 */
function keyList(values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  const keys = values
    .flatMap((v) => v.split(','))
    .map((k) => k.trim())
    .filter((k) => k !== '');
  return keys.length ? keys : undefined;
}

/** A download's blocks share peer, path and query [RFC 7959 §2.4]; Block2 itself is not part of the URI. */
function downloadKey(req: CoapRequest): string {
  let key = peerKey(req.peer);
  for (const segment of req.path) key += `/${segment}`;
  for (const [k, values] of req.query) for (const v of values) key += `?${k}=${v}`;
  return key;
}

/** A package's ETag: the first 8 bytes of its SHA-256, decoded once per package, not per block. */
const blobEtags = new Map<string, Buffer>();
function etagOfBlob(sha256: string): Buffer {
  let etag = blobEtags.get(sha256);
  if (!etag) {
    if (blobEtags.size >= 1024) blobEtags.clear();
    blobEtags.set(sha256, (etag = Buffer.from(sha256.slice(0, 16), 'hex')));
  }
  return etag;
}

/** An ETag (at most 8 bytes, RFC 7252 §5.10.6) telling the blocks of one representation apart from another's. */
const etagOf = (s: string): Buffer => createHash('sha256').update(s).digest().subarray(0, 8);
