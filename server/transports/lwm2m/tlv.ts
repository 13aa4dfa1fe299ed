import { ContentFormatError } from './content-errors';
import { formatPath, type Lwm2mPath } from './paths';
import { resourceType, type Lwm2mValue, type ObjectLinkValue, type ResourceType } from './resource-types';
import type { Lwm2mNode } from './values';

/**
 * OMA TLV (application/vnd.oma.lwm2m+tlv, 11542; OMA-TS-LightweightM2M-Core V1.1 §7.4.3). Each
 * entry: a type byte (bits 7-6: Object Instance 00, Resource Instance 01, Multiple Resource 10,
 * Resource 11; bit 5: 16-bit identifier; bits 4-3: size of the length field, 0-3 bytes; bits 2-0:
 * the length when that field is absent), the identifier, the length, the value.
 */
const enum Kind {
  ObjectInstance = 0,
  ResourceInstance = 1,
  MultipleResource = 2,
  Resource = 3,
}

interface Entry {
  kind: Kind;
  id: number;
  value: Buffer;
}

function readEntries(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  let i = 0;
  while (i < buf.length) {
    const type = buf[i] as number;
    const kind = (type >> 6) as Kind;
    const idSize = type & 0x20 ? 2 : 1;
    const lengthSize = (type >> 3) & 0x03;
    let p = i + 1;
    if (p + idSize + lengthSize > buf.length) throw new ContentFormatError(`TLV entry at byte ${i} is cut short in its header`);
    const id = idSize === 2 ? buf.readUInt16BE(p) : (buf[p] as number);
    p += idSize;
    let length = type & 0x07;
    if (lengthSize > 0) {
      length = buf.readUIntBE(p, lengthSize);
      p += lengthSize;
    }
    if (p + length > buf.length) throw new ContentFormatError(`TLV entry at byte ${i} says ${length} bytes, ${buf.length - p} remain`);
    out.push({ kind, id, value: buf.subarray(p, p + length) });
    i = p + length;
  }
  return out;
}

/**
 * The resource values in a TLV payload answering a request on `path` (an Object, Instance,
 * Resource or Resource Instance), typed by `resourceType` (opaque for resources it does not know).
 */
export function decodeTlv(buf: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  const nodes: Lwm2mNode[] = [];
  const entries = readEntries(buf);
  const resources = (list: Entry[], objectId: number, instanceId: number): void => {
    for (const e of list) {
      if (e.kind === Kind.Resource) push({ objectId, instanceId, resourceId: e.id }, e.value);
      else if (e.kind === Kind.MultipleResource) {
        for (const ri of readEntries(e.value)) {
          if (ri.kind !== Kind.ResourceInstance) throw new ContentFormatError(`TLV Multiple Resource ${e.id} holds something other than Resource Instances`);
          push({ objectId, instanceId, resourceId: e.id, resourceInstanceId: ri.id }, ri.value);
        }
      } else throw new ContentFormatError(`TLV for ${formatPath(path)} has ${kindName(e.kind)} where Resources are expected`);
    }
  };
  const push = (p: Lwm2mPath, raw: Buffer): void => {
    nodes.push({ path: p, value: decodeTlvValue(raw, resourceType(p) ?? 'opaque', p) });
  };

  if (path.instanceId === undefined) {
    for (const e of entries) {
      if (e.kind !== Kind.ObjectInstance) throw new ContentFormatError(`TLV for Object ${path.objectId} has ${kindName(e.kind)} where Object Instances are expected`);
      resources(readEntries(e.value), path.objectId, e.id);
    }
  } else if (path.resourceId === undefined) {
    // §7.4.3: the Object Instance entry may wrap the Resources of a single Instance, or be left out.
    const only = entries.length === 1 ? entries[0] : undefined;
    if (only?.kind === Kind.ObjectInstance) resources(readEntries(only.value), path.objectId, only.id);
    else resources(entries, path.objectId, path.instanceId);
  } else if (path.resourceInstanceId === undefined) {
    resources(entries, path.objectId, path.instanceId);
  } else {
    for (const e of entries) {
      if (e.kind !== Kind.ResourceInstance) throw new ContentFormatError(`TLV for ${formatPath(path)} has ${kindName(e.kind)} where a Resource Instance is expected`);
      push({ ...path, resourceInstanceId: e.id }, e.value);
    }
  }
  return nodes;
}

function decodeTlvValue(raw: Buffer, type: ResourceType, path: Lwm2mPath): Lwm2mValue {
  const bad = (what: string): never => {
    throw new ContentFormatError(`TLV value of ${formatPath(path)} is not ${what} (${raw.length} bytes)`);
  };
  switch (type) {
    case 'string':
    case 'corelnk':
      return raw.toString('utf8');
    case 'integer':
    case 'time':
      if (raw.length === 1) return raw.readInt8(0);
      if (raw.length === 2) return raw.readInt16BE(0);
      if (raw.length === 4) return raw.readInt32BE(0);
      if (raw.length === 8) return Number(raw.readBigInt64BE(0));
      return bad('an integer of 1, 2, 4 or 8 bytes');
    case 'unsigned':
      if (raw.length === 1 || raw.length === 2 || raw.length === 4) return raw.readUIntBE(0, raw.length);
      if (raw.length === 8) return Number(raw.readBigUInt64BE(0));
      return bad('an unsigned integer of 1, 2, 4 or 8 bytes');
    case 'float':
      if (raw.length === 4) return raw.readFloatBE(0);
      if (raw.length === 8) return raw.readDoubleBE(0);
      return bad('a float of 4 or 8 bytes');
    case 'boolean':
      if (raw.length === 1 && (raw[0] === 0 || raw[0] === 1)) return raw[0] === 1;
      return bad('a boolean (one byte, 0 or 1)');
    case 'objlnk':
      if (raw.length === 4) return { objectId: raw.readUInt16BE(0), instanceId: raw.readUInt16BE(2) };
      return bad('an object link (4 bytes)');
    default:
      return Buffer.from(raw);
  }
}

function kindName(k: Kind): string {
  return ['an Object Instance', 'a Resource Instance', 'a Multiple Resource', 'a Resource'][k] as string;
}

function header(kind: Kind, id: number, length: number): Buffer {
  const idSize = id > 0xff ? 2 : 1;
  const lengthSize = length < 8 ? 0 : length <= 0xff ? 1 : length <= 0xffff ? 2 : 3;
  if (length > 0xffffff) throw new ContentFormatError(`TLV value of ${length} bytes is above the 16 MiB a TLV length can say`);
  const out = Buffer.alloc(1 + idSize + lengthSize);
  out[0] = (kind << 6) | (idSize === 2 ? 0x20 : 0) | (lengthSize << 3) | (lengthSize === 0 ? length : 0);
  if (idSize === 2) out.writeUInt16BE(id, 1);
  else out[1] = id;
  if (lengthSize) out.writeUIntBE(length, 1 + idSize, lengthSize);
  return out;
}

/** One Resource (or Resource Instance, when the path names one) as TLV, for a Write. */
export function encodeTlv(path: Lwm2mPath, value: Lwm2mValue, type: ResourceType): Buffer {
  const raw = encodeTlvValue(value, type);
  if (path.resourceId === undefined) throw new ContentFormatError(`TLV Write needs a Resource path, got ${formatPath(path)}`);
  if (path.resourceInstanceId !== undefined) {
    const inner = Buffer.concat([header(Kind.ResourceInstance, path.resourceInstanceId, raw.length), raw]);
    return Buffer.concat([header(Kind.MultipleResource, path.resourceId, inner.length), inner]);
  }
  return Buffer.concat([header(Kind.Resource, path.resourceId, raw.length), raw]);
}

function encodeTlvValue(value: Lwm2mValue, type: ResourceType): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (typeof value === 'boolean') return Buffer.from([value ? 1 : 0]);
  if (typeof value === 'number') {
    if (type === 'float' || !Number.isInteger(value)) {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(value);
      return b;
    }
    // §7.4.3.2: the shortest of 1, 2, 4 or 8 bytes that holds the integer.
    if (value >= -128 && value <= 127) return Buffer.from([value & 0xff]);
    const b = Buffer.alloc(value >= -32768 && value <= 32767 ? 2 : value >= -2147483648 && value <= 2147483647 ? 4 : 8);
    if (b.length === 8) b.writeBigInt64BE(BigInt(value));
    else b.writeIntBE(value, 0, b.length);
    return b;
  }
  const link = value as ObjectLinkValue;
  const b = Buffer.alloc(4);
  b.writeUInt16BE(link.objectId, 0);
  b.writeUInt16BE(link.instanceId, 2);
  return b;
}
