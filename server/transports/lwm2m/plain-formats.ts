import { ContentFormatError } from './content-errors';
import { formatPath, isResourcePath, type Lwm2mPath } from './paths';
import { resourceType, type Lwm2mValue } from './resource-types';
import type { Lwm2mNode } from './values';

/**
 * text/plain (0; LwM2M 1.1 §7.4.1): one Resource (Instance) value as text, typed by the resource:
 * integers and floats in decimal, booleans "0"/"1", opaque as base64, object links "3:0".
 */
export function decodePlainText(buf: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  requireSingle(path, 'text/plain');
  const text = buf.toString('utf8');
  const bad = (what: string): never => {
    throw new ContentFormatError(`text/plain value "${text.slice(0, 40)}" of ${formatPath(path)} is not ${what}`);
  };
  let value: Lwm2mValue;
  switch (resourceType(path)) {
    case 'integer':
    case 'unsigned':
    case 'time':
      if (!/^-?[0-9]{1,20}$/.test(text)) bad('an integer');
      value = Number(text);
      break;
    case 'float':
      if (!/^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/.test(text)) bad('a number');
      value = Number(text);
      break;
    case 'boolean':
      if (text !== '0' && text !== '1') bad('a boolean ("0" or "1")');
      value = text === '1';
      break;
    case 'opaque':
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) bad('base64');
      value = Buffer.from(text, 'base64');
      break;
    case 'objlnk': {
      const m = /^([0-9]{1,5}):([0-9]{1,5})$/.exec(text);
      if (!m) return bad('an object link "objectId:instanceId"');
      value = { objectId: Number(m[1]), instanceId: Number(m[2]) };
      break;
    }
    default:
      value = text;
  }
  return [{ path, value }];
}

export function encodePlainText(path: Lwm2mPath, value: Lwm2mValue): Buffer {
  requireSingle(path, 'text/plain');
  if (Buffer.isBuffer(value)) return Buffer.from(value.toString('base64'), 'utf8');
  if (typeof value === 'boolean') return Buffer.from(value ? '1' : '0', 'utf8');
  if (typeof value === 'object') return Buffer.from(`${value.objectId}:${value.instanceId}`, 'utf8');
  return Buffer.from(String(value), 'utf8');
}

/** application/octet-stream (42; §7.4.2): the raw bytes of one opaque Resource. */
export function decodeOpaque(buf: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  requireSingle(path, 'opaque');
  return [{ path, value: Buffer.from(buf) }];
}

export function encodeOpaque(path: Lwm2mPath, value: Lwm2mValue): Buffer {
  requireSingle(path, 'opaque');
  if (!Buffer.isBuffer(value)) throw new ContentFormatError(`Opaque content format carries bytes only, not a ${typeof value} (${formatPath(path)})`);
  return value;
}

function requireSingle(path: Lwm2mPath, format: string): void {
  if (!isResourcePath(path) && path.resourceInstanceId === undefined) {
    throw new ContentFormatError(`${format} carries one Resource value; ${formatPath(path)} is not a Resource`);
  }
}
