import { chunkRange, type DevicePackage } from '../firmware-download';
import type { OtaPackageId } from '../../ids';
import type { OtaPackageType } from '../../store/ota-packages';
import { chunkResponseTopic, parseJavaInt } from './topics';

/** The status names ThingsBoard publishes on `v2/fw/error` (reference §3.4). */
export type OtaErrorStatus = 'NOT_FOUND' | 'FAILURE' | 'PAYLOAD_TOO_LARGE';

/** The package a request id was bound to at its first request. */
export interface BoundPackage {
  id: OtaPackageId;
  blobSha256: string;
  dataSize: number;
}

export type ChunkAnswer = { ok: true; topic: string; pkg: BoundPackage; type: OtaPackageType; start: number; end: number } | { ok: false; status: OtaErrorStatus; detail: string };

export interface ChunkRequest {
  type: OtaPackageType;
  requestId: string;
  /** The index as the topic spelled it (decimal digits). */
  chunk: string;
  /** The PUBLISH payload: a decimal chunk size, or empty. */
  payload: Buffer;
}

/**
 * The largest payload one PUBLISH can carry: the remaining length's limit (268,435,455 bytes,
 * [MQTT-2.2.3]) less room for the topic and the packet id. A whole-file answer (chunk size 0) of
 * a larger package cannot be sent, and is refused as PAYLOAD_TOO_LARGE.
 */
export const MAX_PUBLISH_PAYLOAD = 268_435_455 - 1024;

/**
 * Request ids a connection may keep at once; the oldest is forgotten past that. ThingsBoard keeps
 * every one for the connection's life; a device uses one per update, so this only bounds a
 * misbehaving client's memory.
 */
const MAX_REQUEST_IDS = 64;

/**
 * One connection's firmware/software downloads over `v2/fw/request/{requestId}/chunk/{n}` (and
 * `v2/sw/...`), with ThingsBoard's rules (`getOtaPackageCallback`, reference §3.4):
 * - the payload is the chunk size in decimal; a size is remembered per request id, and an empty
 *   payload (or a size of 0 or less, as `Integer.parseInt` then `> 0` reads it) means the
 *   remembered size, else the whole file;
 * - a size above the maximum is PAYLOAD_TOO_LARGE;
 * - the first request of an id binds it to the device's effective package for the whole connection;
 * - bytes `[size*n, min(size*(n+1), len))`, the whole file for size 0, nothing past the end.
 *
 * Ids are kept per type (ThingsBoard shares one map between fw and sw, so `v2/sw/request/1/...`
 * after `v2/fw/request/1/...` would get the firmware; nobody relies on that).
 */
export class FirmwareChunks {
  private readonly sizes = new Map<string, number>();
  private readonly bound = new Map<string, BoundPackage>();

  constructor(private readonly maxChunkSize: number) {}

  /**
   * What to answer `req`. `effectivePackage` is asked only on the first request of an id: the
   * device's package as it is now (its own slot, else its profile's). A request of an id already
   * bound is answered at once, without a promise: a download asks thousands of times.
   */
  answer(req: ChunkRequest, effectivePackage: (type: OtaPackageType) => Promise<DevicePackage>): ChunkAnswer | Promise<ChunkAnswer> {
    const key = `${req.type}/${req.requestId}`;
    const text = req.payload.toString('utf8');
    let size: number;
    if (text === '') {
      size = this.sizes.get(key) ?? 0;
    } else {
      // ThingsBoard's `Integer.parseInt` throws on anything else and the session dies without an
      // answer (UNCONFIRMED, §3.4); we answer FAILURE and close, which a device can act on.
      const asked = parseJavaInt(text);
      if (asked === null) return { ok: false, status: 'FAILURE', detail: `chunk size ${JSON.stringify(text.slice(0, 40))} is not a decimal number` };
      if (asked > 0) remember(this.sizes, key, asked);
      size = asked > 0 ? asked : (this.sizes.get(key) ?? 0);
    }
    if (size > this.maxChunkSize) return { ok: false, status: 'PAYLOAD_TOO_LARGE', detail: `chunk size ${size} is above the maximum of ${this.maxChunkSize}` };
    const index = parseJavaInt(req.chunk);
    if (index === null) return { ok: false, status: 'FAILURE', detail: `chunk index ${req.chunk} is out of range` };

    const pkg = this.bound.get(key);
    return pkg ? cut(req, pkg, size, index) : this.bind(key, req, size, index, effectivePackage);
  }

  /** The first request of an id: binds it to the device's effective package, then answers it. */
  private async bind(key: string, req: ChunkRequest, size: number, index: number, effectivePackage: (type: OtaPackageType) => Promise<DevicePackage>): Promise<ChunkAnswer> {
    const found = await effectivePackage(req.type);
    if ('error' in found) {
      const what = req.type === 'FIRMWARE' ? 'firmware' : 'software';
      return { ok: false, status: found.error, detail: found.error === 'NOT_FOUND' ? `no ${what} assigned` : `the ${what} assigned has a URL, no bytes here` };
    }
    const pkg = { id: found.pkg.id, blobSha256: found.pkg.blobSha256, dataSize: found.pkg.dataSize };
    remember(this.bound, key, pkg);
    return cut(req, pkg, size, index);
  }
}

/** Chunk `index` of `size` bytes of the bound package. */
function cut(req: ChunkRequest, pkg: BoundPackage, size: number, index: number): ChunkAnswer {
  const { start, end } = chunkRange(pkg.dataSize, size, index);
  if (end - start > MAX_PUBLISH_PAYLOAD) return { ok: false, status: 'PAYLOAD_TOO_LARGE', detail: `${end - start} bytes do not fit in one MQTT message; ask in chunks` };
  return { ok: true, topic: chunkResponseTopic(req.type, req.requestId, index), pkg, type: req.type, start, end };
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REQUEST_IDS) map.delete(map.keys().next().value as string);
}
